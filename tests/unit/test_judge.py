"""The rollout judge: a pure function from a rollout and its evidence to running, ready or breached."""

from __future__ import annotations

import pytest

from classifier.store.judge import Evidence, RoleEvidence, Verdict, judge
from classifier.store.rollout import Guards, Rollout

CURRENT = "20261122T100000Z-0123456789ab"
CANDIDATE = "20261123T100000Z-ba9876543210"
GUARDS = Guards(min_requests=100, max_error_rate=0.02, max_latency_ratio=1.5, min_agreement=0.9)


def rollout(mode: str = "canary", auto_promote: bool = False) -> Rollout:
    return Rollout(name="resnet50", candidate=CANDIDATE, current=CURRENT, mode=mode, percent=20,
                   started_at="2026-11-23T10:00:00Z", guards=GUARDS, auto_promote=auto_promote)


def evidence(*, requests: int = 200, errors: int = 0, p95: float | None = 30.0, current_p95: float | None = 25.0,
             compared: int = 0, agreed: int = 0, role: str = "canary", load_error: str | None = None) -> Evidence:
    return Evidence(
        current=RoleEvidence(CURRENT, "current", 800, 1, 20.0, current_p95),
        candidate=RoleEvidence(CANDIDATE, role, requests, errors, 22.0, p95),
        compared=compared, agreed=agreed, load_error=load_error,
    )


def test_running_until_min_requests_even_with_errors() -> None:
    # GIVEN 99 candidate requests, all failed: not enough to judge by the rules the user set
    verdict = judge(rollout(), evidence(requests=99, errors=99))
    assert (verdict.state, str(verdict), verdict.action(rollout())) == ("running", "running", None)
    assert "99 of the 100" in verdict.reason


def test_ready_when_every_guard_holds_and_promotes_only_with_auto_promote() -> None:
    verdict = judge(rollout(), evidence(requests=100, errors=2, p95=37.5))  # exactly at both limits
    assert str(verdict) == "ready"
    assert verdict.action(rollout()) is None
    assert verdict.action(rollout(auto_promote=True)) == "promote"


@pytest.mark.parametrize(("kwargs", "guard", "why"), [
    ({"errors": 5}, "max_error_rate", "error rate 0.0250 (5 of 200) is over 0.02"),
    ({"p95": 37.6}, "max_latency_ratio", "p95 37.6 ms is over 1.5 x the current version's 25.0 ms"),
    ({"load_error": "model.onnx: not an ONNX model"}, "load", "could not be loaded: model.onnx: not an ONNX"),
])
def test_a_breach_names_its_guard_and_aborts(kwargs: dict[str, object], guard: str, why: str) -> None:
    verdict = judge(rollout(auto_promote=True), evidence(**kwargs))  # type: ignore[arg-type]
    assert (str(verdict), verdict.guard) == (f"breached: {guard}", guard)
    assert why in verdict.reason
    assert verdict.action(rollout(auto_promote=True)) == "abort"


def test_a_load_failure_aborts_before_any_request() -> None:
    verdict = judge(rollout(), Evidence(
        current=RoleEvidence(CURRENT, "current"), candidate=RoleEvidence(CANDIDATE, "canary"), load_failures=3))
    assert str(verdict) == "breached: load" and "3 failed loads" in verdict.reason


def test_shadow_agreement_guard() -> None:
    shadow = rollout("shadow", auto_promote=True)
    # 179 of 200 agree: 0.895 < 0.9
    low = judge(shadow, evidence(role="shadow", compared=200, agreed=179))
    assert str(low) == "breached: min_agreement" and "0.8950 (179 of 200 images)" in low.reason
    held = judge(shadow, evidence(role="shadow", compared=200, agreed=180))
    assert str(held) == "ready" and held.action(shadow) == "promote"
    # AND with no image compared yet it keeps running
    assert str(judge(shadow, evidence(role="shadow"))) == "running"


def test_agreement_is_not_a_guard_of_a_canary() -> None:
    assert str(judge(rollout(), evidence(compared=200, agreed=0))) == "ready"


def test_a_full_canary_is_not_held_to_a_latency_it_cannot_compare() -> None:
    # A 100% canary leaves the current version no requests: latency cannot be compared, the rest still is.
    verdict = judge(rollout(), evidence(current_p95=None, p95=900.0))
    assert str(verdict) == "ready" and "latency not compared" in verdict.reason
    assert str(judge(rollout(), evidence(current_p95=None, errors=50))) == "breached: max_error_rate"


def test_verdict_and_evidence_serialise_for_the_log_and_status() -> None:
    verdict = Verdict("breached", "slow", "max_latency_ratio")
    assert verdict.as_dict() == {"verdict": "breached: max_latency_ratio", "state": "breached",
                                 "guard": "max_latency_ratio", "reason": "slow"}
    found = evidence(role="shadow", compared=4, agreed=3).as_dict()
    assert found["agreement"] == 0.75 and found["candidate"]["error_rate"] == 0.0
    assert found["current"] == {"version": CURRENT, "role": "current", "requests": 800, "errors": 1,
                                "error_rate": 0.00125, "p50_ms": 20.0, "p95_ms": 25.0}
