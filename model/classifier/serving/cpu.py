"""How many CPUs this process may really use, and how to size thread pools.

``os.cpu_count()`` reports the host's cores; inside a container the process
may be limited by CPU affinity or a cgroup quota, and inside Lambda by its
memory size: a function gets CPU time in proportion to its memory, one full
vCPU per 1,769 MB, while it *sees* 2 or more vCPUs from 128 MB up. Thread
pools sized by what the process sees then wait, at every operator's barrier,
for a thread that has been descheduled (the measurements are in docs/performance.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from classifier.config import Settings

# Lambda allocates CPU in proportion to memory: 1,769 MB is one full vCPU
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
LAMBDA_MB_PER_VCPU = 1769


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    try:  # cgroup v2: "<quota|max> <period>"
        quota, period = (root / "cpu.max").read_text().split()
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def visible_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_share(env: Mapping[str, str] | None = None) -> float:
    """The CPU time this process is entitled to, in cores (may be fractional)."""
    env = os.environ if env is None else env
    share = float(visible_cpus())
    quota = _cgroup_quota()
    if quota:
        share = min(share, quota)
    memory = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if memory and memory.isdigit():
        share = min(share, int(memory) / LAMBDA_MB_PER_VCPU)
    return share


@dataclass(frozen=True)
class ThreadPlan:
    """How the process's inference pools run: the one place the backends read it from."""

    threads: int
    # Spinning keeps idle pool threads busy-waiting for the next operator. It
    # saves a wake-up per operator when each thread has a core to itself and
    # nothing else runs; it takes the CPU from whatever else needs it when two
    # sessions take turns, requests overlap, or the share is below the threads
    # (measured: docs/performance.md, "Spinning"). Settings.spinning decides.
    spin: bool
    share: float


def serving_plan(settings: Settings) -> ThreadPlan:
    """The one thread plan of a process serving ``settings``' models (``MODELS``)."""
    several = settings.every_model or len(settings.served_models) > 1
    return plan_threads(settings.threads, models=2 if several else 1, spinning=settings.spinning)


def plan_threads(configured: int | None = None, env: Mapping[str, str] | None = None, *,
                 models: int = 1, spinning: str = "off") -> ThreadPlan:
    """Intra-op threads = the CPU share rounded to whole cores (at least 1).

    ``spinning`` is ``Settings.spinning``: ``off`` (the default, measured in
    docs/performance.md), ``on``, or ``auto``: spin only when every thread owns a whole
    core and the process serves one model. Every ONNX Runtime session has its own pool:
    sessions of several models take turns on the same cores, and the threads of the one
    that just ran would spin on the cores the next one needs. ``models`` is how many this
    process may load (2 for "several").
    """
    share = cpu_share(env)
    threads = configured or max(1, min(visible_cpus(), round(share)))
    spin = {"off": False, "on": True}.get(spinning, share >= threads and models == 1)
    return ThreadPlan(threads=threads, spin=spin, share=round(share, 2))
