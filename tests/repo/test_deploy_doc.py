"""docs/deploy.md's context-key table tells the truth: it lists exactly the keys ``AppConfig`` reads, one a
row, each with cdk.json's value as its default."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from lambda_docker.config import AppConfig

from helpers import ROOT

DEPLOY_DOC = ROOT / "docs" / "deploy.md"
SECTION = "## Context keys"
# A table row: its first two cells (the key, the default); the effect may hold anything.
ROW = re.compile(r"^\| ([^|]+?) \| ([^|]+?) \|", re.M)


def context_key_rows() -> dict[str, str]:
    """The table's rows in docs/deploy.md's context-key section: key -> default cell."""
    text = DEPLOY_DOC.read_text()
    start = text.index(SECTION) + len(SECTION)
    end = text.find("\n## ", start)
    section = text[start:] if end == -1 else text[start:end]
    rows: dict[str, str] = {}
    for key_cell, default_cell in ROW.findall(section):
        if key_cell == "key":  # the header
            continue
        match = re.fullmatch(r"`([^`]+)`", key_cell)
        assert match, f"docs/deploy.md: a context-key row names one key in backticks, not {key_cell!r}"
        assert match[1] not in rows, f"docs/deploy.md lists context key {match[1]!r} twice"
        rows[match[1]] = default_cell
    return rows


def documented_default(value: Any) -> str:
    """How the table writes cdk.json's ``value``: ``none`` for null, else the value in backticks, as JSON
    would write it (a string without its quotes)."""
    if value is None:
        return "none"
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


CDK_JSON_CONTEXT: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
ROWS = context_key_rows()


def test_the_table_lists_every_key_of_app_config_and_no_other() -> None:
    documented, known = set(ROWS), set(AppConfig.context_keys())
    assert known - documented == set(), "keys AppConfig reads that docs/deploy.md's table misses"
    assert documented - known == set(), "keys in docs/deploy.md's table that AppConfig does not read"


@pytest.mark.parametrize("key", sorted(ROWS))
def test_each_documented_default_is_cdk_json_s(key: str) -> None:
    assert key in CDK_JSON_CONTEXT, f"docs/deploy.md documents {key!r}, which cdk.json does not set"
    expected = documented_default(CDK_JSON_CONTEXT[key])
    # A null default may say what stands in for it ("none: this account").
    assert ROWS[key] == expected or ROWS[key].startswith(f"{expected}:"), (
        f"docs/deploy.md gives {key!r} the default {ROWS[key]!r}; cdk.json has {CDK_JSON_CONTEXT[key]!r} "
        f"(write {expected!r})"
    )
