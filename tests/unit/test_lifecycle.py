"""The life-cycle commands' arguments: what ``promote`` accepts as a gate."""

from __future__ import annotations

import pytest

from classifier.cli import build_parser

VERSION = "20261122T100000Z-0123456789ab"


@pytest.mark.parametrize("value", ["0", "0.9", "1", "1.0", "0.5e0"])
def test_promote_takes_a_fraction_as_its_gate(value: str) -> None:
    args = build_parser().parse_args(["promote", VERSION, "--data", "eval", "--min-top1", value])
    assert args.min_top1 == float(value)


@pytest.mark.parametrize(("value", "why"), [
    ("30", "30 is not a fraction from 0 to 1 (for 30%, write 0.3)"),
    ("1.5", "1.5 is not a fraction from 0 to 1 (for 1.5%, write 0.015)"),
    ("-0.1", "-0.1 is not a fraction from 0 to 1"),
    ("150", "150 is not a fraction from 0 to 1"),
    ("nan", "nan is not a fraction from 0 to 1"),
    ("ninety", "'ninety' is not a number"),
])
def test_promote_refuses_a_gate_outside_0_to_1(value: str, why: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["promote", VERSION, "--data", "eval", "--min-top1", value])
    assert refused.value.code == 2
    assert f"argument --min-top1: {why}" in capsys.readouterr().err
