"""Keep freed heap memory in the process for reuse (glibc), instead of returning it to the kernel.

Prediction allocates the same large buffers for every batch (activations of B x members fields, the
output block, the writer's chunk). glibc serves allocations above its mmap threshold (at most 32 MiB)
with fresh ``mmap`` pages and unmaps them on ``free``, so every batch faults in (and the kernel zeroes)
hundreds of MB again: system time about equal to user time and tens of millions of minor page faults
over a test period. ``keep_freed_memory()`` turns that off for the process: no ``mmap`` for ``malloc``
(``M_MMAP_MAX = 0``) and no trimming of the heap top (``M_TRIM_THRESHOLD`` very large), so the second
batch reuses the first one's pages. The resident size then stays at its peak (which it reaches anyway).
A no-op where glibc's ``mallopt`` is unavailable (macOS, musl) or when ``ML_BENCH_KEEP_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the glibc settings once per process; True when they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("ML_BENCH_KEEP_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


def usage() -> dict[str, float]:
    """This process's CPU times (s) and page faults so far (``resource.getrusage``)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"user_s": r.ru_utime, "system_s": r.ru_stime, "minor_faults": r.ru_minflt, "major_faults": r.ru_majflt}


def usage_since(before: dict[str, float]) -> dict[str, float]:
    """Differences of :func:`usage` since ``before``."""
    now = usage()
    return {k: round(now[k] - before[k], 3) for k in now}
