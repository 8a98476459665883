"""docs/security.md lists every accepted checkov and cdk-nag finding, read from the synthesized templates.

The reasons live in the constructs (``NagPackSuppression``, ``CheckovSkip``)
and reach the templates' metadata; the table in the doc is generated from
there, so a reason is written once. ``UPDATE_SECURITY_DOC=1`` rewrites it.
"""

from __future__ import annotations

import os
from typing import Any

from .conftest import ROOT, Synth

DOC = ROOT / "docs" / "security.md"
START, END = "<!-- accepted-findings:start -->", "<!-- accepted-findings:end -->"


def construct_path(resource: Any) -> str:
    """Where a resource is in the app: ``service: Api/Api`` (its construct, without the stack's own name)."""
    stack_path, _, path = resource.node.path.partition("/")
    kind = "storage" if stack_path.endswith("-storage-stack") else "service"
    return f"{kind}: {path.removesuffix('/Resource')}"


def outermost(paths: set[str]) -> list[str]:
    """The paths no other path of the set contains (a suppression applied to a construct and its children)."""
    return sorted(p for p in paths if not any(p != q and p.startswith(f"{q}/") for q in paths))


def accepted_findings_table(synths: dict[str, Synth]) -> str:
    """One row per tool, check and reason, with the constructs it is accepted on, over every configuration."""
    from aws_cdk import CfnResource

    rows: dict[tuple[str, str, str], set[str]] = {}
    for synth in synths.values():
        for stack in (synth.deployment.storage, synth.deployment.service):
            for construct in stack.node.find_all():
                if not isinstance(construct, CfnResource):
                    continue
                nag = construct.get_metadata("cdk_nag") or {}
                for rule in nag.get("rules_to_suppress", []):
                    rows.setdefault(("cdk-nag", rule["id"], rule["reason"]), set()).add(construct_path(construct))
                for skip in (construct.get_metadata("checkov") or {}).get("skip", []):
                    rows.setdefault(("checkov", skip["id"], skip["comment"]), set()).add(construct_path(construct))
    lines = ["| tool | check | on | why it is accepted |", "| --- | --- | --- | --- |"]
    for (tool, check, reason), paths in sorted(rows.items()):
        on = "<br>".join(f"`{path}`" for path in outermost(paths))
        lines.append(f"| {tool} | {check} | {on} | {reason.replace('|', '/')} |")
    return "\n".join(lines)


def test_security_doc_lists_every_accepted_finding(all_synths: dict[str, Synth]) -> None:
    # The table between the markers is exactly what the five test configurations accept.
    expected = accepted_findings_table(all_synths)
    text = DOC.read_text()
    before, rest = text.split(START)
    current, after = rest.split(END)
    if os.environ.get("UPDATE_SECURITY_DOC") == "1":
        DOC.write_text(f"{before}{START}\n{expected}\n{END}{after}")
        current = f"\n{expected}\n"
    assert current.strip() == expected, (
        "docs/security.md's findings table is out of date: UPDATE_SECURITY_DOC=1 "
        ".venv/bin/python -m pytest tests/infra/test_security_doc.py"
    )
