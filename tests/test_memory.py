"""Freed memory kept for reuse (glibc), and in-place clipping of negative pr in the submission writer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml_benchmark_spategan.submission.writer import _clip_negative

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, numpy as np
from ml_benchmark_spategan.utils.memory import keep_freed_memory, usage, usage_since
np._core.multiarray._set_madvise_hugepage(False)  # 4 KiB pages, as torch's CPU allocations
def faults():
    before = usage()
    a = np.ones(64 * 2**20 // 8)  # 64 MiB, written once
    del a
    return usage_since(before)["minor_faults"]
plain = [faults(), faults()]
applied = keep_freed_memory()
kept = [faults(), faults()]
print(json.dumps({"plain": plain, "applied": applied, "kept": kept}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_stops_refaulting_large_buffers():
    out = subprocess.run([sys.executable, "-c", SCRIPT], check=True, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}).stdout
    r = json.loads(out)
    pages = 64 * 2**20 // 4096
    assert r["applied"] is True
    assert min(r["plain"]) > 0.9 * pages  # glibc mmaps each 64 MiB buffer and unmaps it on free
    assert r["kept"][1] < 0.05 * pages  # the second buffer reuses the first one's pages


def test_clip_negative_in_place_counts_and_keeps_nan():
    values = np.arange(-6, 42, dtype=np.float32).reshape(2, 24, 1)
    values[1, 30 % 24, 0] = np.nan
    expected = np.where(values < 0, 0, values)
    assert _clip_negative(values, block=5) == 6
    np.testing.assert_array_equal(values, expected)
    assert np.isnan(values[1, 6, 0]) and np.nanmin(values) == 0
