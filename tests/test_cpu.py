"""Thread pools are sized by the CPU the process is entitled to, not the host's cores."""

from __future__ import annotations

import pytest

from classifier import cpu


@pytest.fixture
def two_visible_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Lambda instance sees 2 vCPUs from 128 MB up to 3,538 MB
    monkeypatch.setattr(cpu, "visible_cpus", lambda: 2)
    monkeypatch.setattr(cpu, "_cgroup_quota", lambda: None)


@pytest.mark.parametrize(
    ("memory_mb", "threads", "spin"),
    [
        ("128", 1, False),    # a sliver of one core: one thread, never spin
        ("1769", 1, True),    # exactly one vCPU: one thread that owns it
        ("3008", 2, False),   # 1.7 vCPUs: two threads, but they must not busy-wait
        ("3538", 2, True),    # two full vCPUs
    ],
)
def test_lambda_memory_sets_the_plan(two_visible_cpus: None, memory_mb: str, threads: int, spin: bool) -> None:
    plan = cpu.plan_threads(env={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory_mb})
    assert (plan.threads, plan.spin) == (threads, spin)


def test_outside_lambda_all_visible_cpus_are_used(two_visible_cpus: None) -> None:
    assert cpu.plan_threads(env={}) == cpu.ThreadPlan(threads=2, spin=True, share=2.0)


def test_cgroup_quota_limits_the_share(two_visible_cpus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_cgroup_quota", lambda: 0.5)  # docker run --cpus 0.5
    assert cpu.plan_threads(env={}) == cpu.ThreadPlan(threads=1, spin=False, share=0.5)


def test_configured_threads_win(two_visible_cpus: None) -> None:
    plan = cpu.plan_threads(configured=4, env={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008"})
    assert plan.threads == 4 and plan.spin is False


def test_cgroup_files_are_parsed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu._cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu._cgroup_quota(tmp_path) is None
