#!/usr/bin/env python3
"""The CDK app: ``npx cdk synth --all`` / ``cdk deploy <name>-service-stack`` run this file.

Context (cdk.json, ``-c key=value``) is read once into a validated
``AppConfig``; a wrong value stops here with a message naming the key.
"""

from __future__ import annotations

import sys

from aws_cdk import App

from lambda_docker import DeployConfigError, build


def main() -> int:
    app = App()
    try:
        build(app)
    except DeployConfigError as exc:
        print(f"cdk.json / -c context error: {exc}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
