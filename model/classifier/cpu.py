"""How many CPUs this process may really use.

``os.cpu_count()`` reports the host's cores; inside Lambda or a container the
process may only use a fraction of them (CPU affinity, cgroup quota). Thread
pools sized by the host oversubscribe the CPU and get slower, not faster.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    try:  # cgroup v2: "<quota|max> <period>"
        quota, period = (root / "cpu.max").read_text().split()
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        pass
    return None


def usable_cpus() -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(count, quota) if quota else count)
