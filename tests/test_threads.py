"""runtime.num_threads: the automatic thread count and its application to torch and dask."""

from __future__ import annotations

import os

import dask
import pytest
import torch

from ml_benchmark_spategan.utils.threads import apply_num_threads, available_cpus, resolve_num_threads


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_auto_order_omp_then_slurm_then_affinity(clean_env):
    assert resolve_num_threads(3) == 3
    assert resolve_num_threads(0) == available_cpus() == len(os.sched_getaffinity(0))
    clean_env.setenv("LOCAL_WORLD_SIZE", str(available_cpus() * 2))  # torchrun: CPUs shared by local ranks
    assert resolve_num_threads(0) == 1
    clean_env.setenv("SLURM_CPUS_PER_TASK", "5")
    assert resolve_num_threads(0) == 5
    clean_env.setenv("OMP_NUM_THREADS", "2")
    assert resolve_num_threads(0) == 2 and resolve_num_threads(4) == 4
    clean_env.setenv("OMP_NUM_THREADS", "garbage")
    assert resolve_num_threads(0) == 5
    with pytest.raises(ValueError, match="runtime.num_threads: must be >= 0"):
        resolve_num_threads(-1)


def test_apply_sets_torch_and_dask(clean_env):
    before = torch.get_num_threads()
    try:
        assert apply_num_threads(1) == 1 and torch.get_num_threads() == 1
        assert dask.config.get("num_workers") == 1
    finally:
        torch.set_num_threads(before)
