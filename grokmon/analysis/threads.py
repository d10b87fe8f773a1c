"""How many CPU threads torch uses while `analyze` runs: `--threads`, else the cores other processes leave idle.

torch's own default is one thread per core, whatever else runs. On a machine that other jobs keep busy, every
multi-threaded kernel then waits at its barrier for a thread that the scheduler has put aside: measured on a
shared 2-core machine, the sample run took 120 s with torch's default against 37 s with one thread
(benchmarks/bench_threads.py). The default here is the number of usable cores (the affinity mask, capped by
a cgroup CPU quota) less the load that other processes put on them (the 1-minute load average, scaled to the
cores this process may use), rounded, and at least 1: all cores on an idle machine, one on a busy one.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"


def cgroup_cpu_quota(path: Path = CGROUP_CPU_MAX) -> float | None:
    """The CPUs a cgroup v2 quota allows this process (e.g. 1.5), or None without a quota."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask, capped by a container's CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.floor(quota)) if quota else cores)


def default_threads(cores: int | None = None, load: float | None = None, machine_cores: int | None = None) -> int:
    """Threads for torch: the usable `cores` less the busy ones (`load` over `machine_cores`), at least 1.

    >>> default_threads(cores=2, load=0.1, machine_cores=2), default_threads(cores=2, load=3.9, machine_cores=2)
    (2, 1)
    >>> default_threads(cores=16, load=4.2, machine_cores=16), default_threads(cores=4, load=8.0, machine_cores=64)
    (12, 4)
    """
    cores = usable_cores() if cores is None else cores
    machine_cores = (os.cpu_count() or cores) if machine_cores is None else machine_cores
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = load * cores / max(cores, machine_cores)  # the load average counts every core of the machine
    return max(1, min(cores, round(cores - busy)))


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[int]:
    """torch's CPU threads set to `threads` (None: `default_threads()`) inside the block, restored after it."""
    before = torch.get_num_threads()
    chosen = default_threads() if threads is None else threads
    torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        torch.set_num_threads(before)
