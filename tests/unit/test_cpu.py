"""Thread pools are sized by the CPU the process is entitled to, not the host's cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.config import Settings
from classifier.serving import cpu
from classifier.serving.backends.onnx_backend import OnnxBackend
from classifier.serving.manager import ModelManager


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


def test_cgroup_files_are_parsed(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu._cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu._cgroup_quota(tmp_path) is None


def cgroup_v1(root: Path, quota_us: str, period_us: str = "100000") -> Path:
    """A cgroup v1 mount's CPU controller, as Docker on a v1 host shows it under /sys/fs/cgroup."""
    (root / "cpu").mkdir(parents=True, exist_ok=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota_us + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period_us + "\n")
    return root


@pytest.mark.parametrize(
    ("quota_us", "period_us", "share"),
    [
        ("50000", "100000", 0.5),     # docker run --cpus 0.5
        ("250000", "100000", 2.5),
        ("150000", "50000", 3.0),     # another period: the ratio counts, not the quota alone
        ("-1", "100000", None),       # no limit
        ("0", "100000", None),
        ("100000", "0", None),        # a zero period is not a limit (and no division by zero)
        ("lots", "100000", None),     # unreadable: ignored, never a crash at start-up
    ],
)
def test_cgroup_v1_quota_is_parsed(tmp_path: Path, quota_us: str, period_us: str, share: float | None) -> None:
    # GIVEN only cgroup v1 files (no cpu.max)
    root = cgroup_v1(tmp_path, quota_us, period_us)
    # THEN the quota is their ratio, or no limit
    assert cpu._cgroup_quota(root) == share


def test_cgroup_v2_is_read_before_v1(tmp_path: Path) -> None:
    # GIVEN a hybrid host showing both hierarchies
    root = cgroup_v1(tmp_path, "50000")
    (root / "cpu.max").write_text("200000 100000\n")
    assert cpu._cgroup_quota(root) == 2.0
    # AND a v2 file saying "no limit" is believed, not overridden by v1's
    (root / "cpu.max").write_text("max 100000\n")
    assert cpu._cgroup_quota(root) is None
    # AND a malformed v2 file falls back to v1
    (root / "cpu.max").write_text("garbage\n")
    assert cpu._cgroup_quota(root) == 0.5


def session_threads(backend: object) -> tuple[int, str]:
    """The intra-op thread count and spinning switch ONNX Runtime's session was built with."""
    assert isinstance(backend, OnnxBackend)
    options = backend.session.get_session_options()
    return options.intra_op_num_threads, options.get_session_config_entry("session.intra_op.allow_spinning")


# On a host showing 2 CPUs with no quota and outside Lambda, the process owns 2 cores: one thread has
# a core to itself and may spin; three threads cannot each own one and must not.
@pytest.mark.parametrize(("configured", "spins"), [("1", "1"), ("2", "1"), ("3", "0")])
def test_inference_threads_reach_the_onnx_session(two_visible_cpus: None, published_store: Path,
                                                  monkeypatch: pytest.MonkeyPatch, configured: str,
                                                  spins: str) -> None:
    # GIVEN INFERENCE_THREADS in the environment, as the function's configuration sets it
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    settings = Settings.from_env({"MODEL_STORE": str(published_store), "INFERENCE_THREADS": configured})
    # WHEN the model manager loads the published model
    manager = ModelManager(settings)
    manager.refresh()
    # THEN ONNX Runtime's session runs that many intra-op threads, and spins only if each owns a core
    assert session_threads(manager.current().backend) == (int(configured), spins)


def test_without_inference_threads_the_session_follows_the_plan(published_store: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a 1,769 MB Lambda (one vCPU's share) on a host showing 2 CPUs, and no INFERENCE_THREADS
    monkeypatch.setattr(cpu, "visible_cpus", lambda: 2)
    monkeypatch.setattr(cpu, "_cgroup_quota", lambda: None)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769")
    manager = ModelManager(Settings.from_env({"MODEL_STORE": str(published_store)}))
    manager.refresh()
    # THEN the session has one thread, which spins (it owns its core)
    assert session_threads(manager.current().backend) == (1, "1")


def test_several_models_never_spin(two_visible_cpus: None) -> None:
    # Sessions of several models take turns on the same cores: one's spinning threads would slow the next.
    plan = cpu.plan_threads(env={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3538"}, models=2)
    assert (plan.threads, plan.spin) == (2, False)
    assert cpu.plan_threads(env={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3538"}, models=1).spin is True


@pytest.mark.parametrize(("models", "spinning"), [("", "1"), ("resnet50,products", "0"), ("*", "0")])
def test_a_process_serving_several_models_builds_sessions_that_do_not_spin(
        store: Path, two_visible_cpus: None, monkeypatch: pytest.MonkeyPatch, models: str, spinning: str) -> None:
    # GIVEN a Lambda of one vCPU's share, where one model's single thread would spin
    from classifier.serving.registry import ModelRegistry

    from helpers.stores import add_model

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769")
    add_model(store, "products")
    # WHEN a process serving MODELS loads its default model
    registry = ModelRegistry(Settings.from_env({"MODEL_STORE": str(store), "MODELS": models}))
    # THEN its session spins only if that model is the only one the process may load
    assert session_threads(registry.default.current().backend) == (1, spinning)
    assert registry.default.describe()["spinning"] is (spinning == "1")
