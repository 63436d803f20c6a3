"""status.json, the stop request file, TensorBoard event files and the status command, with real tiny runs."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_sweep import as_overrides, tiny_base_dict

from ml_benchmark_spategan.config import load_config
from ml_benchmark_spategan.monitor.files import STOP_FILE, request_stop
from ml_benchmark_spategan.monitor.status import LOST_ELSEWHERE_SECONDS, STALE_SECONDS, read_status
from ml_benchmark_spategan.training.checkpoint import load_checkpoint
from ml_benchmark_spategan.training.run import train
from ml_benchmark_spategan.training.signals import StopRequested

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory) -> dict:
    tree = tiny_base_dict(tmp_path_factory.mktemp("monitor_data"))
    tree["training"].update(epochs=3, max_steps_per_epoch=3, batch_size=4, deterministic=True)
    tree["logging"].update(checkpoint_every_epochs=1, plot_every_epochs=1)
    return tree


def _cfg(tree: dict):
    return load_config(ROOT / "config.yml", as_overrides(tree))


@pytest.fixture(scope="module")
def reference_run(tiny_tree, tmp_path_factory):
    return train(_cfg(tiny_tree), run_dir=tmp_path_factory.mktemp("ref") / "run")


def _csv_rows(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "metrics.csv", encoding="utf-8")))


def _weights(run: Path) -> dict:
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    return {**{f"g.{k}": v for k, v in state["generator"].items()},
            **{f"d.{k}": v for k, v in state["discriminator"].items()}}


def test_finished_run_status(reference_run):
    status = read_status(reference_run)
    rows = _csv_rows(reference_run)
    crps = [float(r["val/crps"]) for r in rows]  # best_metric auto: val/crps for a GAN
    assert status["state"] == status["reported_state"] == "finished" and status["error"] is None
    assert (status["epoch"], status["epochs"], status["epochs_done"]) == (3, 3, 3)
    assert (status["step"], status["steps_total"], status["steps_per_epoch"]) == (9, 9, 3)
    assert status["best_metric"] == "val/crps" and status["best"] == pytest.approx(min(crps), rel=1e-12)
    assert status["best_epoch"] == 1 + crps.index(min(crps))
    assert Path(status["last_checkpoint"]) == reference_run / "checkpoints" / "last.pt"
    assert (status["host"], status["pid"]) == (socket.gethostname(), os.getpid())
    assert status["eta_s"] == 0.0 and status["samples_per_s"] > 0
    assert abs(status["heartbeat"] - time.time()) < 600


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("age, host, pid, expected", [
    (1.0, "here", "dead", "training"),  # fresh heartbeat: the file's state
    (STALE_SECONDS + 5, "here", "dead", "lost"),  # stale and the pid is gone
    (STALE_SECONDS + 5, "here", "alive", "training"),  # stale but alive (e.g. a slow filesystem)
    (STALE_SECONDS + 5, "elsewhere", "dead", "training"),  # another host: pid unknowable, not stale enough
    (LOST_ELSEWHERE_SECONDS + 5, "elsewhere", "dead", "lost"),
])
def test_lost_runs(tmp_path, age, host, pid, expected):
    status = {"state": "training", "heartbeat": time.time() - age,
              "host": socket.gethostname() if host == "here" else "node-that-is-not-this-one",
              "pid": _dead_pid() if pid == "dead" else os.getpid()}
    (tmp_path / "status.json").write_text(json.dumps(status))
    got = read_status(tmp_path)
    assert (got["state"], got["reported_state"]) == (expected, "training")


def _stop_at(monkeypatch, run_dir: Path, at_step: int) -> None:
    """Write the stop file (as the dashboard's button does) right after training step ``at_step``."""
    import ml_benchmark_spategan.training.loop as loop

    real_step, calls = loop._step, {"n": 0}

    def step(session, batch):
        out = real_step(session, batch)
        calls["n"] += 1
        if calls["n"] == at_step:
            request_stop(run_dir, "test")
        return out

    monkeypatch.setattr(loop, "_step", step)


def test_stop_file_checkpoints_and_resume_is_identical(tiny_tree, reference_run, tmp_path, monkeypatch):
    """STOP after step 5 (epoch 2, step 2 of 3): last.pt at that step, state "stopped", the file consumed;
    --resume finishes with the weights and metrics of the uninterrupted run."""
    run = tmp_path / "run"
    run.mkdir()
    _stop_at(monkeypatch, run, 5)
    with pytest.raises(StopRequested, match="stop request") as stopped:
        train(_cfg(tiny_tree), run_dir=run)
    assert stopped.value.exit_code == 0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (state["epoch"], state["epoch_step"], state["global_step"]) == (1, 2, 5)
    status = read_status(run)
    assert (status["state"], status["step"], status["epoch"]) == ("stopped", 5, 2)
    assert not (run / STOP_FILE).exists() and status["stop_requested"] is False
    monkeypatch.undo()
    train(_cfg(tiny_tree), run_dir=run, resume=run)
    assert read_status(run)["state"] == "finished"
    ref, res = _weights(reference_run), _weights(run)
    assert all(torch.equal(ref[k], res[k]) for k in ref)
    strip = [{k: v for k, v in r.items() if not k.startswith("time/")} for r in _csv_rows(run)]
    assert strip == [{k: v for k, v in r.items() if not k.startswith("time/")} for r in _csv_rows(reference_run)]
    _assert_tensorboard_matches_csv(run, steps_per_epoch=3)


def test_old_stop_file_does_not_stop_the_resumed_run(tiny_tree, reference_run, tmp_path):
    run = Path(shutil.copytree(reference_run, tmp_path / "run"))
    request_stop(run)
    tree = json.loads(json.dumps(tiny_tree))
    tree["training"]["epochs"] = 4
    train(_cfg(tree), run_dir=run, resume=run)
    assert [int(r["epoch"]) for r in _csv_rows(run)] == [1, 2, 3, 4]
    assert read_status(run)["state"] == "finished" and not (run / STOP_FILE).exists()


def _scalars(run: Path) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}, acc


def _assert_tensorboard_matches_csv(run: Path, steps_per_epoch: int) -> None:
    """Every numeric column of metrics.csv is a TensorBoard scalar with one event per epoch, at the global
    step of the epoch's end, with the same value (float32, as TensorBoard stores scalars)."""
    scalars, acc = _scalars(run)
    rows = _csv_rows(run)
    columns = [c for c in rows[0] if c != "epoch" and all(r[c] not in ("", None) for r in rows)]
    assert {"train/g/loss", "train/d/loss", "val/rmse", "lr/g", "time/samples_per_second"} <= set(columns)
    for column in columns:
        events = scalars[column]
        assert [e.step for e in events] == [int(r["epoch"]) * steps_per_epoch for r in rows], column
        for event, row in zip(events, rows, strict=True):
            want = float(row[column])
            assert event.value == pytest.approx(want, rel=1e-6, abs=1e-30) or (math.isnan(want) and math.isnan(event.value))
    images = acc.Tags()["images"]
    assert {"samples", "diagnostics"} <= set(images)
    assert [e.step for e in acc.Images("samples")] == [int(r["epoch"]) * steps_per_epoch for r in rows]


def test_tensorboard_scalars_equal_metrics_csv(reference_run):
    _assert_tensorboard_matches_csv(reference_run, steps_per_epoch=3)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(reference_run / "tensorboard"))
    acc.Reload()
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "filters: 8" in text and "epochs: 3" in text
    assert (reference_run / "tensorboard" / "hparams").is_dir()


def test_resume_from_an_older_checkpoint_purges_later_steps(tiny_tree, reference_run, tmp_path):
    """A run killed after logging epochs 2-3 but resumed from epoch 1's checkpoint: the re-trained epochs
    appear once each (the stale events are purged), with the new metrics.csv values."""
    run = Path(shutil.copytree(reference_run, tmp_path / "run"))
    shutil.copy(run / "checkpoints" / "checkpoint_epoch_001.pt", run / "checkpoints" / "last.pt")
    train(_cfg(tiny_tree), run_dir=run, resume=run)
    _assert_tensorboard_matches_csv(run, steps_per_epoch=3)


def test_status_command(reference_run, tmp_path, capsys):
    from ml_benchmark_spategan.status import main

    root = tmp_path / "runs"
    shutil.copytree(reference_run, root / reference_run.name)
    failed = root / "20000101_000000_failed"
    failed.mkdir()
    (failed / "status.json").write_text(json.dumps({"run": failed.name, "state": "failed", "error": "DataError: x",
                                                    "epoch": 1, "epochs": 5, "step": 7, "steps_total": 50}))
    (root / "not_a_run").mkdir()
    assert main([str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["run", "state", "epoch", "step"] and len(lines) == 3
    assert lines[1].split()[:5] == [reference_run.name, "finished", "3/3", "9/9", "100%"]
    assert lines[2].split()[:6] == [failed.name, "failed:", "DataError:", "x", "1/5", "7/50"]
    assert main([str(root), "--json", "--state", "failed"]) == 0
    assert [s["run"] for s in json.loads(capsys.readouterr().out)] == [failed.name]
    assert main([str(tmp_path / "nowhere")]) == 2


def test_evaluating_state_while_an_evaluation_runs(tmp_path):
    before = {"run": "r", "state": "finished", "heartbeat": time.time() - 3600, "host": "node7", "pid": 1, "best": 2.5}
    (tmp_path / "status.json").write_text(json.dumps(before))
    from ml_benchmark_spategan.monitor.status import evaluating

    with evaluating(tmp_path, "val"):
        during = read_status(tmp_path)
        assert (during["state"], during["evaluation"], during["pid"]) == ("evaluating", "val", os.getpid())
        assert time.time() - during["heartbeat"] < 60
    after = json.loads((tmp_path / "status.json").read_text())
    assert {k: after[k] for k in before if k != "heartbeat"} == {k: v for k, v in before.items() if k != "heartbeat"}
    assert after["state"] == "finished" and after["last_evaluation"] == "val"
    live = {**before, "state": "training", "heartbeat": time.time(), "pid": os.getpid()}
    (tmp_path / "status.json").write_text(json.dumps(live))
    with evaluating(tmp_path, "val"):  # a training process owns the file: left alone
        assert read_status(tmp_path)["state"] == "training"
    assert json.loads((tmp_path / "status.json").read_text()) == live


def test_signal_reads_requeued_and_a_nan_loss_failed(tiny_tree, tmp_path, monkeypatch):
    import signal

    import ml_benchmark_spategan.training.loop as loop
    from ml_benchmark_spategan.training.loop import NonFiniteLossError
    from ml_benchmark_spategan.training.signals import Preempted

    real_step, calls = loop._step, {"n": 0}

    def step(session, batch):
        out = real_step(session, batch)
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        if calls["n"] == 4:  # in the resumed run: a NaN loss
            out = {**out, "g/loss": torch.tensor(float("nan"))}
        return out

    monkeypatch.setattr(loop, "_step", step)
    run = tmp_path / "run"
    with pytest.raises(Preempted) as stopped:
        train(_cfg(tiny_tree), run_dir=run)
    assert stopped.value.exit_code == 75
    status = read_status(run)
    assert (status["state"], status["step"]) == ("requeued", 2) and "SIGUSR1" in status["error"]
    with pytest.raises(NonFiniteLossError):
        train(_cfg(tiny_tree), run_dir=run, resume=run)
    status = read_status(run)
    assert status["state"] == "failed" and status["error"].startswith("NonFiniteLossError: non-finite loss (g/loss)")
