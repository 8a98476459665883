"""The templates pass cfn-lint and cdk-nag, and the real CDK CLI synthesizes the app offline."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from aws_cdk.assertions import Annotations, Match

from .conftest import ROOT, SWITCHES, Synth, image_kind

VARIANTS = ("default", "options", "switches", "imported", "public", "http", "http_cognito")
# The CLI must never build the image at synth time: point it at a docker that always fails.
CLI_ENV = {
    **os.environ,
    "CDK_DOCKER": "/bin/false",
    "AWS_EC2_METADATA_DISABLED": "true",  # no credentials lookup against an instance role
    "CDK_DISABLE_CLI_TELEMETRY": "true",
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "18,20",
}


def cdk(*args: str, outdir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The pinned CLI from node_modules (`npm ci`, run by `make`); never downloads one."""
    return subprocess.run(["npx", "--no", "cdk", *args, "--no-notices", "--output", str(outdir)], cwd=ROOT,
                          env=env or CLI_ENV, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cdk_nag_has_no_unsuppressed_findings(variant: str, all_synths: dict[str, Synth]) -> None:
    # AwsSolutions: every finding is fixed or suppressed with a reason; no rule failed to run.
    synth = all_synths[variant]
    for stack in (synth.deployment.storage, synth.deployment.service):
        annotations = Annotations.from_stack(stack)
        pattern = Match.string_like_regexp("AwsSolutions-|CdkNagValidationFailure")
        findings = annotations.find_error("*", pattern) + annotations.find_warning("*", pattern)
        assert not findings, "\n".join(f"{f.id}: {f.entry.data}" for f in findings)


@pytest.mark.parametrize("variant", VARIANTS)
def test_nag_suppressions_are_specific_and_explained(variant: str, all_synths: dict[str, Synth]) -> None:
    # Suppressions sit on resources, not stacks; each has a real reason; IAM ones name what they allow.
    synth = all_synths[variant]
    for template_path in synth.templates:
        template = json.loads(template_path.read_text())
        assert "cdk_nag" not in template.get("Metadata", {}), f"stack-wide suppression in {template_path.name}"
        for logical_id, resource in template["Resources"].items():
            for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
                assert len(rule["reason"]) >= 60, f"{logical_id} {rule['id']}: reason too thin"
                if rule["id"] in ("AwsSolutions-IAM4", "AwsSolutions-IAM5"):
                    assert rule.get("applies_to"), f"{logical_id} {rule['id']} suppresses every finding"


@pytest.mark.parametrize("variant", VARIANTS)
def test_nag_reports_show_suppressions_only(variant: str, all_synths: dict[str, Synth]) -> None:
    # The CSV reports cdk-nag writes list nothing Non-Compliant.
    reports = sorted(all_synths[variant].outdir.glob("AwsSolutions-*-NagReport.csv"))
    assert len(reports) == 2
    for report in reports:
        assert ",\"Non-Compliant\"," not in report.read_text()


def test_cfn_lint_finds_nothing(all_synths: dict[str, Synth]) -> None:
    # Valid CloudFormation per AWS's resource specification, for every configuration.
    # Ignored checks, each with its reason, are in .cfnlintrc.yaml.
    templates = [str(p) for synth in all_synths.values() for p in synth.templates]
    assert len(templates) == 2 * len(VARIANTS)
    result = subprocess.run([str(ROOT / ".venv/bin/cfn-lint"), "--format", "parseable", *templates],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cdk_cli_synthesizes_both_stacks_with_every_switch_on_without_docker(tmp_path: Path) -> None:
    # `npx cdk synth` (as `make synth` runs it) from the repo root with -c for every feature
    # switch: the app runs, nag passes, and both images (the function's and the dashboard's)
    # are only staged (their build context with its Dockerfile), never built.
    out = tmp_path / "cdk.out"
    switches = [arg for key, value in SWITCHES.items() for arg in ("-c", f"{key}={'true' if value is True else value}")]
    result = cdk("synth", "--quiet", *switches, outdir=out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Unknown option" not in result.stdout + result.stderr  # the pinned CLI knows every flag given
    assert {p.name for p in out.glob("*.template.json")} == {
        "demo-storage-stack.template.json", "demo-service-stack.template.json",
    }
    images = json.loads((out / "demo-service-stack.assets.json").read_text())["dockerImages"]
    staged = {(out / image["source"]["directory"], image["source"].get("dockerFile", "Dockerfile"))
              for image in images.values()}
    assert len(staged) == 2  # the inference and upload functions share one image
    assert all((directory / dockerfile).is_file() for directory, dockerfile in staged)
    assert {image_kind(directory) for directory, _ in staged} == {"model", "dashboard"}
    template = json.loads((out / "demo-service-stack.template.json").read_text())
    assert {"DashboardUrl", "FunctionUrl", "InvokerRoleArn", "EdgeUrl"} <= set(template["Outputs"])


def test_cdk_cli_reports_a_wrong_context_value_by_key(tmp_path: Path) -> None:
    # A typo in -c fails synth and says which key is wrong.
    result = cdk("synth", "--quiet", "-c", "memory_mb=lots", outdir=tmp_path / "cdk.out")
    assert result.returncode != 0
    assert "'memory_mb'" in result.stdout + result.stderr


def test_cdk_cli_stops_at_a_misspelt_key_and_prints_text(tmp_path: Path) -> None:
    # `-c api-auth=none` (a hyphen for the underscore) stops synth naming the key meant, under the
    # Node 20 this project runs on, with no jsii banner printed as Python byte strings (b'!! ...').
    env = {k: v for k, v in CLI_ENV.items() if not k.startswith("JSII_SILENCE_WARNING")}
    result = cdk("synth", "--quiet", "-c", "api-auth=none", outdir=tmp_path / "cdk.out", env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown context key 'api-auth': did you mean 'api_auth'?" in output
    assert "b'" not in output and "!!" not in output, output


def test_cdk_cli_lists_the_two_stacks(tmp_path: Path) -> None:
    # `npx cdk ls` from the repo root names exactly the stacks `cdk deploy` takes.
    result = cdk("ls", outdir=tmp_path / "cdk.out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["demo-storage-stack", "demo-service-stack"]
