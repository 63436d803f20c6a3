"""Checkpoints: atomic writes, corrupt/truncated files, configuration mismatches, RNG round trip."""

import os
import random

import numpy as np
import pytest
import torch

from ml_benchmark_spategan.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_compatible,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _state(value: float) -> dict:
    return {"weights": {"w": torch.full((3,), value)}, "config": {"data": {"domain": "ALPS"}}}


def test_round_trip_and_no_tmp_left(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", _state(1.5))
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"]["w"], torch.full((3,), 1.5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", _state(1.0))

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(path, _state(2.0))
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["weights"]["w"], torch.full((3,), 1.0))
    assert not (tmp_path / "last.pt.tmp").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_refused_with_its_path(tmp_path, damage):
    path = save_checkpoint(tmp_path / "last.pt", _state(1.0))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="last.pt is truncated or corrupt"):
        load_checkpoint(path)


def test_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"w": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint of this pipeline"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_compatibility_names_the_mismatch():
    saved = {"config": {"data": {"domain": "ALPS", "target_variable": "pr"}, "model": {"name": "spagan"}}}
    same = {"data": {"domain": "ALPS", "target_variable": "pr"}, "model": {"name": "spagan"}}
    check_compatible(saved, same, "x.pt")
    other = {"data": {"domain": "NZ", "target_variable": "tasmax"}, "model": {"name": "spagan"}}
    with pytest.raises(CheckpointError, match=r"data.domain: checkpoint has 'ALPS', this run has 'NZ'") as err:
        check_compatible(saved, other, "x.pt")
    assert "data.target_variable" in str(err.value)


def test_a_checkpoint_from_before_later_keys_stays_compatible():
    """A run stored before model.base, the spectral loss and stage_noise_init existed resumes: the keys it
    lacks take the values that rebuild its model, not a difference."""
    from ml_benchmark_spategan.config import load_config
    from ml_benchmark_spategan.config.loader import config_to_dict

    old = config_to_dict(load_config(None))
    del old["model"]["base"], old["model"]["generator"]["stage_noise_init"], old["training"]["loss"]["spectral_weight"]
    resumed = config_to_dict(load_config(None, ["model.base=none", "training.loss.spectral_weight=0"]))
    check_compatible({"config": old}, resumed, "old.pt")
    with pytest.raises(CheckpointError, match=r"model.base: checkpoint has 'none', this run has 'auto'"):
        check_compatible({"config": old}, config_to_dict(load_config(None)), "old.pt")


def test_rng_state_round_trip():
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_kill_9_during_a_write_keeps_the_previous_checkpoint(tmp_path):
    """A process killed (SIGKILL) while it writes last.pt leaves the previous last.pt loadable and unchanged."""
    import signal
    import subprocess
    import sys
    import time

    path = save_checkpoint(tmp_path / "last.pt", _state(1.0))
    writer = (
        "import torch, sys\n"
        "from ml_benchmark_spategan.training.checkpoint import save_checkpoint\n"
        "big = {'weights': {'w': torch.zeros(64_000_000)}}\n"  # 256 MB: the write takes a while
        "while True:\n"
        "    save_checkpoint(sys.argv[1], big)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(path)])
    tmp = tmp_path / "last.pt.tmp"
    deadline = time.monotonic() + 120
    while not (tmp.exists() and tmp.stat().st_size > 1_000_000) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert tmp.exists(), "the writer was not caught in the middle of a write"
    assert torch.equal(load_checkpoint(path)["weights"]["w"], torch.full((3,), 1.0))
