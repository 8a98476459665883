"""checkov (the real CLI) finds nothing in the synthesized templates, and every skip says why.

Skips live in each resource's template metadata (``lambda_docker/checkov.py``),
never in a command-line list or a config file, so a new resource is checked
in full until its construct says otherwise.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from .conftest import ROOT, Synth

# Every configuration the suite synthesizes: the defaults, every option changed, every
# switch on, existing resources by id, the least protected deployment synth allows, and
# the HTTP API front door with SigV4 and with Cognito.
CHECKED_VARIANTS = ("default", "options", "switches", "imported", "public", "http", "http_cognito")
MIN_REASON = 40


def reports(output: str) -> list[dict[str, Any]]:
    """checkov's JSON: one report, or a list of them (one per framework that ran)."""
    parsed = json.loads(output)
    return parsed if isinstance(parsed, list) else [parsed]


@pytest.fixture(scope="module")
def checkov(all_synths: dict[str, Synth]) -> list[dict[str, Any]]:
    templates = [str(path) for variant in CHECKED_VARIANTS for path in all_synths[variant].templates]
    assert len(templates) == 2 * len(CHECKED_VARIANTS)
    result = subprocess.run(
        [str(ROOT / ".venv/bin/checkov"), *(arg for t in templates for arg in ("-f", t)),
         "--framework", "cloudformation", "--output", "json",
         # Offline: the built-in checks only, no platform policies or guidelines.
         "--skip-download"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    # checkov exits 1 when a check fails; the report is on stdout either way.
    assert result.returncode in (0, 1), result.stderr
    return reports(result.stdout)


def test_checkov_finds_no_failed_check(checkov: list[dict[str, Any]]) -> None:
    # Zero failed checks in every configuration; every template parsed and checked.
    (report,) = checkov
    assert report["check_type"] == "cloudformation"
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100
    checked_files = {c["file_path"] for c in report["results"]["passed_checks"]}
    assert len(checked_files) == 2 * len(CHECKED_VARIANTS)


def test_every_skip_checkov_reports_has_a_reason(checkov: list[dict[str, Any]]) -> None:
    # What checkov skipped, it skipped because a resource's metadata said so, with a written reason.
    (report,) = checkov
    skipped = report["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        comment = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(comment) >= MIN_REASON, f"{check['check_id']} on {check['resource']}: {comment!r}"


@pytest.mark.parametrize("variant", CHECKED_VARIANTS)
def test_every_skip_in_the_templates_names_a_check_and_a_reason(variant: str, all_synths: dict[str, Synth]) -> None:
    # Resource metadata only (nothing stack-wide), each entry a checkov id with its reason.
    for path in all_synths[variant].templates:
        template = json.loads(path.read_text())
        assert "checkov" not in template.get("Metadata", {}), path.name
        for logical_id, resource in template["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert set(skip) == {"id", "comment"}, logical_id
                assert skip["id"].startswith(("CKV_AWS_", "CKV2_AWS_")), logical_id
                assert len(skip["comment"].strip()) >= MIN_REASON, f"{logical_id} {skip['id']}"
