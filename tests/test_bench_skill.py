"""benchmarks/bench_skill.py on a tiny case (3 one-year splits, 2 models, 2 steps): the JSON keys, the skip
message for an unknown model, and the numbers against direct computations from the run's predictions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ml_benchmark_spategan.config.schema import DataConfig
from ml_benchmark_spategan.dataloader import open_training_data
from ml_benchmark_spategan.dataloader.split import held_out_split

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
KEYS = ["benchmark", "model", "variable", "budget", "rmse", "crps", "mae", "ralsd", "std_ratio", "spread_skill",
        "rank_edge_fraction", "dry_freq_error", "p99_ratio", "wasserstein", "seconds"]
TINY = ("data.train_years=[1961]", "data.val_years=[1962]", "data.test_years=[1963]", "training.batch_size=8",
        "model.generator.filters=8", "model.generator.upsample_channels=[8,8]", "model.discriminator.hr_channels=[8]",
        "model.discriminator.lr_channels=[8]")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    synthetic = pytest.importorskip("ml_benchmark_spategan.synthetic")
    out = tmp_path_factory.mktemp("bench_skill")
    synthetic.generate_domain(out / "data", "ALPS", years=3, seed=0, truth=False)
    cmd = [sys.executable, str(BENCH / "bench_skill.py"), "--models", "nosuchmodel", "bilinear", "deepesd",
           "--variable", "pr", "--steps", "2", "--members", "3", "--threads", "1", "--out", str(out)]
    for item in TINY:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return out, rows, proc


def test_keys_rows_and_skip_message(bench):
    out, rows, proc = bench
    assert [(r["model"], r["variable"]) for r in rows] == [("bilinear", "pr"), ("deepesd", "pr")]
    assert all(list(r) == KEYS and r["benchmark"] == "skill" for r in rows)
    assert "skipping model 'nosuchmodel': not in the registry" in proc.stderr
    assert "| model | variable | budget | rmse |" in proc.stdout and "| deepesd | pr |" in proc.stdout
    deepesd = rows[1]
    assert deepesd["budget"].startswith("2 steps") and rows[0]["budget"] == "fit only"
    assert deepesd["spread_skill"] == 0.0 and deepesd["rank_edge_fraction"] == 1.0  # a deterministic model
    assert deepesd["crps"] == pytest.approx(deepesd["mae"], abs=2e-4)  # identical members: fair CRPS = MAE


def test_values_match_a_direct_computation(bench):
    out, rows, _ = bench
    bilinear = rows[0]
    run = next((out / "runs").glob("*_bilinear_pr"))
    summary = json.loads((run / "evaluation" / "bench_test" / "summary.json").read_text())
    assert bilinear["rmse"] == pytest.approx(summary["scores"]["rmse/ensemble_mean"], abs=1e-4)
    cfg = DataConfig(root=str(out / "data"), domain="ALPS", target_variable="pr", target_coarsen=2,
                     train_years=("1961",), val_years=("1962",), test_years=("1963",))
    truth = held_out_split(open_training_data(cfg), cfg).target.values.astype(np.float64)
    with xr.open_dataset(run / "predictions_test.nc") as ds:
        pred = ds["pr"].values.astype(np.float64)
    assert truth.shape == pred.shape[1:] == (365, 64, 64)  # the target coarsened x2
    mean = pred.mean(axis=0)
    rmse = np.nanmean(np.sqrt(np.nanmean((mean - truth) ** 2, axis=0)))  # benchmark: spatial mean of RMSE maps
    assert bilinear["rmse"] == pytest.approx(rmse, rel=1e-3)
    assert bilinear["mae"] == pytest.approx(np.nanmean(np.abs(mean - truth)), rel=1e-3)
    valid = np.isfinite(truth)
    dry = 100 * abs((pred[0][valid] < 1.0).mean() - (truth[valid] < 1.0).mean())
    assert bilinear["dry_freq_error"] == pytest.approx(dry, abs=1e-3)
    p99 = np.quantile(pred[0][valid], 0.99) / np.quantile(truth[valid], 0.99)
    assert bilinear["p99_ratio"] == pytest.approx(p99, rel=1e-3)


def test_budget_hook_stops_before_the_epoch_that_would_overrun(monkeypatch):
    sys.path.insert(0, str(BENCH))
    import bench_skill

    clock = iter([0.0, 30.0, 65.0, 90.0])  # start, then the end of epochs 1, 2, 3
    monkeypatch.setattr(bench_skill.time, "perf_counter", lambda: next(clock))
    hook = bench_skill.budget_hook(bench_skill.time.perf_counter(), 100.0)
    session = type("S", (), {"run_dir": "run"})()
    hook(session, {"epoch": 1})  # 30 s + another 30 s epoch = 60 <= 100
    hook(session, {"epoch": 2})  # 65 + 35 = 100: still within
    with pytest.raises(bench_skill.BudgetReached, match="90 s after epoch 3"):
        hook(session, {"epoch": 3})  # 90 + 25 > 100
    assert bench_skill.available_models(["spagan", "nosuch", "spagan"]) == ["spagan"]


def test_model_overrides_order_case_then_user_then_model():
    sys.path.insert(0, str(BENCH))
    import bench_skill

    args = bench_skill.parse_args(["--steps", "30", "--set", "training.batch_size=8",
                                   "--set-model", "deepesd:training.batch_size=4", "--set-model", "spagan:x.y=1"])
    sets = bench_skill.model_overrides(args, "deepesd", "tasmax", Path("/d"), 1)
    assert sets.index("training.batch_size=16") < sets.index("training.batch_size=8") < \
        sets.index("training.batch_size=4") and "x.y=1" not in sets
    assert "data.target_variable=tasmax" in sets and "training.max_steps_per_epoch=30" in sets
    assert 'data.train_years=["1961-1966"]' in sets and "data.target_coarsen=2" in sets
