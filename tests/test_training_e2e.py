"""End to end: tiny CPU runs on the synthetic NZ domain produce a complete, trustworthy run folder."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from ml_benchmark_spategan.config import load_config
from ml_benchmark_spategan.training.checkpoint import CheckpointError, load_checkpoint
from ml_benchmark_spategan.training.run import train
from ml_benchmark_spategan.training.signals import Preempted

ROOT = Path(__file__).resolve().parents[1]


def tiny_overrides(data_root: Path, run_root: Path, **extra) -> list[str]:
    sets = {
        "data.root": str(data_root), "data.domain": "NZ", "data.train_years": "[1961]",
        "data.val_years": "[1962]", "model.generator.filters": 8, "model.generator.upsample_channels": "[8,8,8]",
        "model.generator.n_coarse_blocks": 1,
        "model.discriminator.hr_channels": "[8,8,8,8,8]", "model.discriminator.lr_channels": "[8,8]",
        "training.epochs": 2, "training.max_steps_per_epoch": 3, "training.batch_size": 4,
        "training.val_members": 1, "training.schedule.warmup_epochs": 1, "logging.progress_bar": "false",
        "logging.checkpoint_every_epochs": 1, "device": "cpu", "run.root": str(run_root),
    }
    sets.update(extra)
    return [f"{k}={v}" for k, v in sets.items()]


@pytest.fixture(scope="module")
def gan_run(cordex_root, tmp_path_factory):
    sets = tiny_overrides(cordex_root, tmp_path_factory.mktemp("runs"), **{"training.val_members": 2})
    return train(load_config(ROOT / "config.yml", sets))


def _assert_real_png(path: Path) -> None:
    image = mpimg.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200, path
    rgb = image[..., :3]
    assert rgb.std() > 0.05, f"{path} looks blank"
    assert (rgb.mean(-1) < 0.9).mean() > 0.02, f"{path} is almost all white"


EXPECTED = [
    "config.yaml", "training.log", "metrics.csv", "history.json", "losses.png", "diagnostics_history.png",
    "diagnostics_epoch_001.png", "diagnostics_epoch_002.png", "sample_plots/epoch_001.png",
    "sample_plots/epoch_002.png", "normalization/norm_predictors.nc", "normalization/norm_target.nc",
    "normalization/norm_static.nc", "checkpoints/last.pt", "checkpoints/best.pt",
    "checkpoints/checkpoint_epoch_001.pt", "checkpoints/checkpoint_epoch_002.pt",
    "checkpoints/final_generator.pt", "checkpoints/final_discriminator.pt",
]


def test_gan_run_folder_is_complete(gan_run):
    name = gan_run.name
    assert len(name.split("_")) >= 3 and name[:8].isdigit() and name[9:15].isdigit()
    missing = [f for f in EXPECTED if not (gan_run / f).is_file()]
    assert not missing, missing
    for png in gan_run.rglob("*.png"):
        _assert_real_png(png)
    assert not list(gan_run.rglob("*.tmp")), "temporary files left behind"


def test_history_and_metrics_have_one_row_per_epoch(gan_run):
    rows = list(csv.DictReader(open(gan_run / "metrics.csv")))
    history = json.loads((gan_run / "history.json").read_text())
    assert [int(r["epoch"]) for r in rows] == [1, 2] == [h["epoch"] for h in history]
    for key in ("train/g/loss", "train/d/loss", "train/d/loss_real", "train/g/loss_adv", "val/rmse", "val/crps",
                "val/bias_q98", "val/std_ratio", "val/corr", "val/ralsd", "lr/g", "lr/d", "time/epoch_seconds",
                "time/samples_per_second"):
        assert all(np.isfinite(float(r[key])) for r in rows), key
    assert history[0]["train/steps"] == 3
    from ml_benchmark_spategan.config.loader import VALIDATION_METRICS

    assert {k for k in history[-1] if k.startswith("val/")} == set(VALIDATION_METRICS)
    assert history[0]["lr/g"] == pytest.approx(1e-6)  # warm-up start
    assert history[1]["lr/g"] == pytest.approx(1e-3)  # the generator's peak rate (training.optimizer_g default)
    log = (gan_run / "training.log").read_text()
    assert "epoch 1/2" in log and "epoch 2/2" in log and "new best val/crps" in log  # logging.best_metric auto, a GAN


def test_validation_rmse_matches_a_direct_computation(gan_run, cordex_root):
    """val/rmse is the spatial mean of the per-point RMSE over the whole validation year."""
    from ml_benchmark_spategan.dataloader.reader import open_training_data
    from ml_benchmark_spategan.dataloader.split import split_data
    from ml_benchmark_spategan.inference import load_run, predict_ensemble

    run = load_run(gan_run, "last")
    _, val = split_data(open_training_data(run.cfg.data), run.cfg.data)
    assert val.n_days == 365
    torch.manual_seed(0)
    pred = predict_ensemble(run, val.predictors, val.target, members=2, orography=val.orography)
    truth = val.target.values
    rmse_map = np.sqrt(((pred.mean("member").values - truth) ** 2).mean(0))
    row = json.loads((gan_run / "history.json").read_text())[-1]
    # members are random: the recorded and the recomputed value agree to within sampling noise
    assert row["val/rmse"] == pytest.approx(rmse_map.mean(), rel=0.1)
    # val/spread_skill is evaluation's ratio, with the (m + 1)/m correction
    from ml_benchmark_spategan.evaluation.ensemble import spread_skill_ratio

    target = val.target.where(val.target.notnull())
    assert row["val/spread_skill"] == pytest.approx(float(spread_skill_ratio(target, pred)), rel=0.1)
    assert (pred.values >= 0).all()


def test_checkpoints_hold_everything_to_continue(gan_run):
    state = load_checkpoint(gan_run / "checkpoints" / "last.pt")
    for key in ("config", "geometry", "generator", "discriminator", "optimizers", "schedulers", "rng",
                "history", "normalization", "epoch", "global_step", "best"):
        assert key in state, key
    assert state["epoch"] == 2 and state["global_step"] == 6
    assert set(state["optimizers"]) == {"g", "d"}
    assert state["generator_ema"]["updates"] == 6  # one G_ema update per generator step
    assert any(not torch.equal(state["generator_ema"]["module"][k], v) for k, v in state["generator"].items()
               if v.is_floating_point())
    best = load_checkpoint(gan_run / "checkpoints" / "best.pt")
    assert np.isfinite(best["best"])


def test_inference_loads_g_ema_unless_asked_for_the_trained_weights(gan_run):
    from ml_benchmark_spategan.inference import load_run

    for which in ("last", "final"):
        state = load_checkpoint(gan_run / "checkpoints" / ("final_generator.pt" if which == "final" else "last.pt"))
        run = load_run(gan_run, which)
        assert run.weights == "ema"
        loaded = run.bundle.generator.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state["generator_ema"]["module"].items())
    trained = load_run(gan_run, "last", use_ema=False)
    assert trained.weights == "trained"
    assert all(torch.equal(trained.bundle.generator.state_dict()[k], v) for k, v in state["generator"].items())


def test_baseline_deepesd_run(cordex_root, tmp_path):
    cfg = load_config(ROOT / "config.yml", tiny_overrides(cordex_root, tmp_path, **{"model.name": "deepesd",
                                                                                   "data.target_variable": "tasmax"}))
    run = train(cfg)
    for f in ("metrics.csv", "losses.png", "diagnostics_epoch_002.png", "sample_plots/epoch_002.png",
              "checkpoints/best.pt", "checkpoints/final_generator.pt"):
        assert (run / f).is_file(), f
    assert not (run / "checkpoints" / "final_discriminator.pt").exists()
    history = json.loads((run / "history.json").read_text())
    assert "train/d/loss" not in history[0] and np.isfinite(history[1]["train/g/loss_mse"])
    assert history[1]["val/rmse"] < 15.0  # K; tasmax standardised globally, even an untrained net is close


def test_bilinear_baseline_needs_no_training(cordex_root, tmp_path):
    cfg = load_config(ROOT / "config.yml", tiny_overrides(cordex_root, tmp_path, **{"model.name": "bilinear"}))
    run = train(cfg)
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1 and "train/g/loss" not in history[0]
    assert (run / "checkpoints" / "final_generator.pt").is_file()


def test_bad_input_creates_no_run_folder(cordex_root, tmp_path):
    from ml_benchmark_spategan.dataloader.errors import DataError

    runs = tmp_path / "runs"
    cfg = load_config(ROOT / "config.yml", tiny_overrides(cordex_root, runs, **{"data.val_years": "[1990]"}))
    with pytest.raises(DataError, match="1990"):
        train(cfg)
    cfg = load_config(ROOT / "config.yml", tiny_overrides(tmp_path / "nowhere", runs))
    with pytest.raises(DataError, match="nowhere"):
        train(cfg)
    assert not runs.exists()


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    return {**{f"g.{k}": v for k, v in state["generator"].items()},
            **{f"d.{k}": v for k, v in state["discriminator"].items()},
            **{f"ema.{k}": v for k, v in state["generator_ema"]["module"].items()},
            "ema.updates": torch.tensor(state["generator_ema"]["updates"])}


def _metric_rows(run_dir: Path) -> list[dict]:
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


@pytest.mark.parametrize("oversample", ["none", "p99"])
def test_signal_mid_epoch_then_resume_is_identical(cordex_root, tmp_path, oversample):
    """SIGUSR1 after a step -> last.pt + Preempted; --resume ends bit-identical to an uninterrupted run
    (also with the extremes oversampled: the weights are logged and written to the run folder)."""
    extra = {"training.deterministic": "true", "training.epochs": 2, "training.max_steps_per_epoch": 4,
             "logging.diagnostics_every_epochs": 2, "data.oversampling.statistic": oversample}
    cfg = load_config(ROOT / "config.yml", tiny_overrides(cordex_root, tmp_path / "runs", **extra))
    reference = train(cfg, run_dir=tmp_path / "reference")

    import ml_benchmark_spategan.training.loop as loop

    real_step, calls = loop._step, {"n": 0}

    def step_then_signal(session, batch):
        out = real_step(session, batch)
        calls["n"] += 1
        if calls["n"] == 6:  # epoch 2, step 2 of 4
            os.kill(os.getpid(), signal.SIGUSR1)
        return out

    loop._step = step_then_signal
    try:
        with pytest.raises(Preempted, match="SIGUSR1"):
            train(cfg, run_dir=tmp_path / "interrupted")
    finally:
        loop._step = real_step
    state = load_checkpoint(tmp_path / "interrupted" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["epoch_step"]) == (1, 2)
    train(cfg, run_dir=tmp_path / "interrupted", resume=tmp_path / "interrupted")
    w_ref, w_res = _weights(reference), _weights(tmp_path / "interrupted")
    assert w_ref.keys() == w_res.keys()
    assert all(torch.equal(w_ref[k], w_res[k]) for k in w_ref)
    assert _metric_rows(reference) == _metric_rows(tmp_path / "interrupted")
    weights_file = tmp_path / "interrupted" / "sampling_weights.csv"
    assert weights_file.is_file() == (oversample != "none")
    if oversample != "none":
        assert "oversampling: p99 (rank, strength 1, cap 10) | relative weights min" in \
            (tmp_path / "interrupted" / "training.log").read_text()
        assert weights_file.read_text() == (reference / "sampling_weights.csv").read_text()


def test_resume_refuses_mismatched_or_missing_runs(gan_run, cordex_root, tmp_path):
    other = load_config(ROOT / "config.yml", tiny_overrides(cordex_root, tmp_path, **{"model.generator.filters": 16}))
    before = (gan_run / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="model.generator"):
        train(other, resume=gan_run)
    assert (gan_run / "checkpoints" / "last.pt").read_bytes() == before
    from ml_benchmark_spategan.training.rundir import RunDirError

    with pytest.raises(RunDirError, match="does not exist"):
        train(other, resume=tmp_path / "no_such_run")


def test_kill_9_during_training_then_resume_auto(cordex_root, tmp_path):
    """A process killed with SIGKILL mid-run resumes from its last complete checkpoint (--resume auto)."""
    run_dir = tmp_path / "job"
    args = [sys.executable, str(ROOT / "training_v2.py"), "--config", str(ROOT / "config.yml"),
            "--run-dir", str(run_dir), "--resume", "auto"]
    for item in tiny_overrides(cordex_root, tmp_path / "runs", **{"training.epochs": 3,
                                                                  "logging.diagnostics_every_epochs": 3}):
        args += ["--set", item]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: at the latest during epoch 2, possibly while a checkpoint is being written
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert "resumed" in (run_dir / "training.log").read_text()


def _nan_at_step(monkeypatch, bad_step: int):
    import ml_benchmark_spategan.training.loop as loop

    real_step, calls = loop._step, {"n": 0}

    def step(session, batch):
        out = real_step(session, batch)
        calls["n"] += 1
        if calls["n"] == bad_step:
            with torch.no_grad():  # a diverged update: NaN weights, NaN optimiser moments and a NaN loss
                next(session.bundle.generator.parameters()).fill_(float("nan"))
                for opt in session.optimizers.values():
                    for state in opt.state.values():
                        for key in ("exp_avg", "exp_avg_sq"):
                            state[key].fill_(float("nan"))
            out = {**out, "g/loss": torch.tensor(float("nan"))}
        return out

    monkeypatch.setattr(loop, "_step", step)


def test_nonfinite_loss_stops_without_saving_best(cordex_root, tmp_path, monkeypatch):
    from ml_benchmark_spategan.training.loop import NonFiniteLossError

    _nan_at_step(monkeypatch, 2)
    cfg = load_config(ROOT / "config.yml", tiny_overrides(cordex_root, tmp_path, **{"training.epochs": 1}))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(.*g/loss.*\) in epoch 1"):
        train(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()


def test_nonfinite_loss_skip_rolls_back(cordex_root, tmp_path, monkeypatch):
    _nan_at_step(monkeypatch, 2)
    cfg = load_config(ROOT / "config.yml", tiny_overrides(cordex_root, tmp_path, **{
        "training.epochs": 1, "training.nonfinite_loss": "skip"}))
    run = train(cfg, run_dir=tmp_path / "run")
    history = json.loads((run / "history.json").read_text())
    assert history[0]["train/skipped_steps"] == 1 and history[0]["train/steps"] == 2
    for name in ("best.pt", "last.pt"):  # the steps after the skipped one stay finite (moments restored too)
        state = load_checkpoint(run / "checkpoints" / name)
        assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())


def _torchrun(nproc: int, run_dir: Path, sets: list[str], *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(ROOT / "training_v2.py"), "--config", str(ROOT / "config.yml"), "--run-dir", str(run_dir), *extra]
    for item in sets:
        args += ["--set", item]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_two_process_ddp_run_resumes_in_one_process_and_back(cordex_root, tmp_path):
    """torchrun with 2 gloo processes writes one run folder; it resumes in 1 process, then in 2 again."""
    run_dir = tmp_path / "ddp"
    sets = tiny_overrides(cordex_root, tmp_path / "runs", **{"training.epochs": 1, "training.max_steps_per_epoch": 2})
    first = _torchrun(2, run_dir, sets, "--resume", "auto")
    assert first.returncode == 0, first.stderr[-3000:]
    assert [ln for ln in first.stdout.splitlines() if ln.startswith("run folder:")] == [f"run folder: {run_dir}"]
    assert (run_dir / "training.log").read_text().count("epoch 1/1") == 1
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert not any(k.startswith("module.") for k in state["generator"])  # saved unwrapped
    sets2 = [s if not s.startswith("training.epochs") else "training.epochs=2" for s in sets]
    single = subprocess.run([sys.executable, str(ROOT / "training_v2.py"), "--config", str(ROOT / "config.yml"),
                             "--resume", str(run_dir), *sum((["--set", s] for s in sets2), [])],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    sets3 = [s if not s.startswith("training.epochs") else "training.epochs=3" for s in sets]
    again = _torchrun(2, run_dir, sets3, "--resume", str(run_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [h["train/steps"] for h in history] == [2, 2, 2]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["global_step"] == 6
