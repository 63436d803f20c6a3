"""CPU thread count for torch (and dask): one setting, ``runtime.num_threads``, used by training,
evaluation and the benchmarks.

torch's default is the number of *physical cores of the machine*, not of the CPUs this process may use:
on a shared node (a SLURM job with 2 CPUs, or a cgroup/affinity-limited container) it oversubscribes and
a small model can run 10x slower than with the right count. ``0`` (auto) picks, in this order:

1. ``OMP_NUM_THREADS`` when set (an explicit user choice);
2. ``SLURM_CPUS_PER_TASK`` when running under SLURM;
3. the CPUs in this process's affinity mask (``os.sched_getaffinity``; ``os.cpu_count`` where unavailable),
   divided by ``LOCAL_WORLD_SIZE`` when torchrun starts several processes on the node.

Usage: ``apply_num_threads(cfg.runtime.num_threads)`` once at start-up; it returns the count applied.
"""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on (affinity mask; ``os.cpu_count()`` where the mask is unavailable)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None


def resolve_num_threads(requested: int = 0) -> int:
    """The thread count to use: ``requested`` when > 0, else the automatic choice (module docstring)."""
    if requested < 0:
        raise ValueError(f"runtime.num_threads: must be >= 0 (0 = auto), got {requested}")
    if requested:
        return int(requested)
    for name in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        value = _env_int(name)
        if value:
            return value
    local = _env_int("LOCAL_WORLD_SIZE") or 1
    return max(1, available_cpus() // local)


def apply_num_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads (and dask's threaded-scheduler pool) to
    :func:`resolve_num_threads`\\ (``requested``); returns the count applied."""
    import dask
    import torch

    n = resolve_num_threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    dask.config.set(num_workers=n)
    return n
