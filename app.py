#!/usr/bin/env python3
"""The CDK app: ``npx cdk synth`` / ``cdk deploy <name>-service-stack`` run this file.

Context (cdk.json, ``-c key=value``) is read once into a validated
``AppConfig``; a wrong value stops here with a message naming the key.
"""

from __future__ import annotations

import os
import sys

# jsii (the CDK's bridge from Python to its JavaScript core) prints a banner on every start
# under a Node.js past its end of life, and its Python side prints each line as a byte string
# (b'!! ...\n'). Node 20, which this project is tested with (docs/deploy.md), is one of them:
# so not at all, unless the caller set these. Set before aws_cdk starts Node.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

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
