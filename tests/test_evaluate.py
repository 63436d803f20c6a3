"""Evaluation of trained runs: the report's scores (against brute-force numpy) and the evaluate.py CLI.

The CLI tests share tiny runs made once per session by :func:`build_runs` (also used by test_compare.py):
a 2-year synthetic NZ domain cut to 60 days per year (training files and two test periods, one with its
synthetic truth), a tiny SpaGAN (pr) and bilinear runs for pr and tasmax.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ml_benchmark_spategan import cordex
from ml_benchmark_spategan.evaluation import report

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.domain=NZ", "data.train_years=[1961]", "data.val_years=[1962]", "model.generator.filters=4",
        "model.generator.n_coarse_blocks=1", "model.generator.upsample_channels=[4,4,4]",
        "model.discriminator.hr_channels=[4,4,4,4,4]", "model.discriminator.lr_channels=[4,4]", "training.epochs=1",
        "training.max_steps_per_epoch=2", "training.batch_size=4", "training.val_members=1",
        "logging.progress_bar=false", "device=cpu"]
SHORT_DAYS = 60  # days kept per year of every file: a val split of 60 days, test periods of 120
GCM = cordex.domain_spec("NZ").gcm1
_RUNS: dict[str, SimpleNamespace] = {}


# --- shared runs ---------------------------------------------------------------------------------------------
def load_script(name: str):
    """``evaluation/<name>.py`` as a module (registered in sys.modules: its dataclasses need that)."""
    key = f"cli_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "evaluation" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def _short_copy(src: Path, dst: Path, days: int) -> None:
    """``src`` cut to the first ``days`` days of each of its years (lazy: the time axis stays increasing)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with xr.open_dataset(src) as ds:
        keep = np.flatnonzero(ds["time"].dt.dayofyear.values <= days)
        ds.isel(time=keep).load().to_netcdf(dst)


def _short_root(root: Path, short: Path, days: int = SHORT_DAYS) -> Path:
    """A copy of the synthetic NZ tree with ``days`` days per year (faster tests): the ESD training files, the
    historical (with truth) and mid_century (without) perfect test files of GCM1; static fields linked."""
    experiment = "ESD_pseudo_reality"
    static = cordex.static_fields_path(short, "NZ", experiment)
    static.parent.mkdir(parents=True)
    static.symlink_to(cordex.static_fields_path(root, "NZ", experiment))
    pairs = [(cordex.train_predictor_path(root, "NZ", experiment), cordex.train_predictor_path(short, "NZ", experiment)),
             (cordex.train_target_path(root, "NZ", experiment), cordex.train_target_path(short, "NZ", experiment)),
             (cordex.truth_path(root, "NZ", "historical", GCM), cordex.truth_path(short, "NZ", "historical", GCM))]
    pairs += [(cordex.test_predictor_path(root, "NZ", period, "perfect", GCM),
               cordex.test_predictor_path(short, "NZ", period, "perfect", GCM)) for period in ("historical", "mid_century")]
    for src, dst in pairs:
        _short_copy(src, dst, days)
    return short


def build_runs(tmp_path_factory) -> SimpleNamespace:
    """Runs made once per session: data root, tiny GAN (pr), bilinear pr and tasmax runs. Evaluated with 2
    members: the GAN on val (plots, the pr bilinear as baseline), the GAN and the pr bilinear on the short
    historical test period (no plots)."""
    if "runs" in _RUNS:
        return _RUNS["runs"]
    from ml_benchmark_spategan.config import load_config
    from ml_benchmark_spategan.synthetic import generate_domain
    from ml_benchmark_spategan.training.run import train

    base = tmp_path_factory.mktemp("evaluate")
    generate_domain(base / "full", "NZ", years=2, seed=0)
    root = _short_root(base / "full", base / "data")
    common = [f"data.root={root}", f"run.root={base / 'runs'}", *TINY]
    gan = train(load_config(ROOT / "config.yml", common))
    bilinear = train(load_config(ROOT / "config.yml", [*common, "model.name=bilinear"]))
    tasmax = train(load_config(ROOT / "config.yml", [*common, "model.name=bilinear", "data.target_variable=tasmax"]))
    cli = load_script("evaluate")
    test_args = ["--split", "test", "--members", "2", "--device", "cpu", "--no-plots"]
    status = {
        "gan": cli.main([str(gan), "--members", "2", "--device", "cpu", "--baseline", str(bilinear)]),
        "gan_test": cli.main([str(gan), *test_args]),
        "bilinear_test": cli.main([str(bilinear), *test_args]),
    }
    _RUNS["runs"] = SimpleNamespace(root=root, gan=gan, bilinear=bilinear, tasmax=tasmax,
                                    status=status, base=base, test_label=f"test_historical_perfect_{GCM}")
    return _RUNS["runs"]


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return build_runs(tmp_path_factory)


def val_truth(root: Path, variable: str = "pr") -> xr.DataArray:
    path = cordex.train_target_path(root, "NZ", "ESD_pseudo_reality")
    with xr.open_dataset(path) as ds:
        da = ds[variable]
        return da.isel(time=np.flatnonzero(da["time"].dt.year.values == 1962)).load()


def assert_not_blank(path: Path) -> None:
    image = mpimg.imread(path)
    assert image.ndim == 3 and image[..., :3].std() > 0.05, f"{path.name} looks blank"


# --- report: known cases --------------------------------------------------------------------------------------
def _fields(variable: str, days: int = 400, shape=(24, 20), members: int = 3, seed: int = 0):
    """Truth (time, lat, lon) and an ensemble of noisy copies (member, time, lat, lon)."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("1990-01-01", periods=days, freq="D").values
    coords = {"time": time, "lat": np.linspace(-40, -38, shape[0], dtype=np.float32),
              "lon": np.linspace(170, 172, shape[1], dtype=np.float32)}
    if variable == "pr":
        values = rng.gamma(0.6, 5.0, (days, *shape)) * (rng.random((days, *shape)) < 0.6)
    else:
        values = 295.0 + 6.0 * rng.standard_normal((days, *shape))
    truth = xr.DataArray(values.astype(np.float32), dims=("time", "lat", "lon"), coords=coords)
    noise = xr.DataArray(rng.standard_normal((members, days, *shape)).astype(np.float32),
                         dims=("member", "time", "lat", "lon"), coords={"member": np.arange(members)})
    pred = truth + noise if variable == "tasmax" else np.maximum(truth + noise, 0.0)
    return truth, pred.transpose("member", "time", "lat", "lon")


@pytest.mark.parametrize("variable", ["pr", "tasmax"])
def test_perfect_ensemble_scores_zero_errors(variable):
    truth, _ = _fields(variable, days=120, members=2)
    pred = xr.concat([truth, truth], dim="member").assign_coords(member=[0, 1])
    rep = report.compute_report(truth, pred, variable)
    s = rep.scores
    for key in ("rmse/member0", "rmse/ensemble_mean", "rmse/member_mean", "wasserstein/member0",
                "wasserstein_map/member0", "ralsd/member0", "ralsd/all_members", "crps/standard", "crps/fair"):
        assert s[key] == pytest.approx(0.0, abs=1e-6), key
    for name in report.INDEX_BIASES[variable]:
        assert s[f"bias_{name}/member0"] == pytest.approx(0.0, abs=1e-6)
    assert s["ralsd_rms/member0"] == pytest.approx(0.0, abs=1e-6)
    fss = [v for k, v in s.items() if k.startswith("fss/") and v is not None]
    assert fss and np.allclose(fss, 1.0)
    assert s["spread_skill/ratio"] is None  # 0 / 0: undefined, written as null
    assert sum(rep.rank_histogram) == truth.size


def test_offset_prediction_scores_equal_the_offset():
    truth, _ = _fields("tasmax", days=730, members=1)
    pred = (truth + 1.5).expand_dims(member=[0])
    s = report.compute_report(truth, pred, "tasmax").scores
    for key in ("rmse/member0", "rmse/ensemble_mean", "bias_mean/member0", "bias_txx/ensemble_mean",
                "wasserstein/member0", "wasserstein_map/member0", "crps/standard"):
        assert s[key] == pytest.approx(1.5, rel=1e-5), key
    assert s["crps/fair"] is None and s["spread_skill/ratio"] is None  # one member


@pytest.mark.parametrize("variable", ["pr", "tasmax"])
def test_report_matches_brute_force(variable):
    truth, pred = _fields(variable)
    rep = report.compute_report(truth, pred, variable, dx_km=10.0)
    t, p = truth.values.astype(np.float64), pred.values.astype(np.float64)
    mean = p.mean(0)
    s = rep.scores
    assert s["rmse/ensemble_mean"] == pytest.approx(np.sqrt(((mean - t) ** 2).mean(0)).mean(), rel=1e-5)
    assert s["rmse/member_mean"] == pytest.approx(np.sqrt(((p - t) ** 2).mean(1)).mean(), rel=1e-5)
    # float32 time means of ~295 K values are good to ~1e-5 K
    assert s["bias_mean/member0"] == pytest.approx(np.abs(p[0].mean(0) - t.mean(0)).mean(), abs=1e-4)
    if variable == "pr":
        wet_t = np.where(t >= 1, t, np.nan)
        wet_p = np.where(mean >= 1, mean, np.nan)
        sdii = np.abs(np.nanmean(wet_p, 0) - np.nanmean(wet_t, 0)).mean()
        assert s["bias_sdii/ensemble_mean"] == pytest.approx(sdii, rel=1e-5)
        assert rep.fss_thresholds == {"1mm": 1.0, "5mm": 5.0, "20mm": 20.0}
    else:
        assert rep.fss_thresholds["p95"] == pytest.approx(np.percentile(t, 95), rel=1e-6)
    spread = np.sqrt(p.var(0, ddof=1).mean() * 4 / 3)
    assert s["spread_skill/spread"] == pytest.approx(spread, rel=1e-5)
    assert s["spread_skill/ratio"] == pytest.approx(spread / np.sqrt(((mean - t) ** 2).mean()), rel=1e-5)
    assert len(rep.rank_histogram) == 4 and sum(rep.rank_histogram) == t.size
    assert set(rep.psd["series"].values) == {"target", "member 0", "ensemble mean", "all members"}
    q = rep.quantiles["quantile"].sel(series="target").values
    np.testing.assert_allclose(q, np.quantile(t, report.QQ_PROBABILITIES), rtol=1e-6)
    assert "wavenumber_per_km" in rep.psd.coords


def test_binned_spread_skill_known_bins():
    spread2 = np.repeat([1.0, 4.0], 50)
    err2 = np.repeat([4.0, 16.0], 50)
    bins = report.binned_spread_skill(spread2, err2, n_bins=2)
    assert bins == {"spread": [1.0, 2.0], "rmse": [2.0, 4.0]}


def test_report_rejects_bad_input():
    truth, pred = _fields("pr", days=30)
    shifted = pred.assign_coords(lat=pred["lat"] + np.float32(1e-3))
    with pytest.raises(ValueError, match="dimension 'lat': coordinates differ"):
        report.compute_report(truth, shifted, "pr")
    with pytest.raises(ValueError, match=r"expected dims \(member, time, row, col\)"):
        report.compute_report(truth, pred.isel(member=0), "pr")
    # any name is fine now: 'tas' is temperature-like, a daily mean (mean, annual max and min are scored)
    keys = {k.split("/")[0] for k in report.compute_report(truth, pred, "tas", full=False).scores if k.startswith("bias")}
    assert keys == {"bias_mean", "bias_annual_max", "bias_annual_min"}
    with pytest.raises(ValueError, match="needs 'val', or 'test' with period, kind and gcm"):
        report.evaluation_label("test", "historical")
    assert report.evaluation_label("test", "historical", "perfect", "X") == "test_historical_perfect_X"


def test_summary_markdown_lists_scores_and_baselines():
    summary = {"run": {"run_id": "r1", "label": "val"}, "scores": {"rmse/member0": 1.25, "crps/fair": None},
               "baselines": {"bilinear (b)": {"scores": {"rmse/member0": 2.5}}}, "rank_histogram": [1, 2, 3]}
    text = report.summary_markdown(summary)
    assert "| rmse/member0 | 1.25 | 2.5 |" in text
    assert "| crps/fair | n/a | n/a |" in text
    assert "[1, 2, 3]" in text


# --- CLI on trained runs -------------------------------------------------------------------------------------
def _rmse_scores(pred: xr.DataArray, truth: xr.DataArray) -> tuple[float, float]:
    """Brute force: (RMSE of the ensemble mean, mean over members of the member RMSE), spatial means of the
    RMSE-over-time maps."""
    t, p = truth.values.astype(np.float64), pred.values.astype(np.float64)
    return np.sqrt(((p.mean(0) - t) ** 2).mean(0)).mean(), np.sqrt(((p - t) ** 2).mean(1)).mean()


def test_evaluate_val_predictions_and_summary(runs):
    assert runs.status == {"gan": 0, "gan_test": 0, "bilinear_test": 0}
    truth = val_truth(runs.root)
    with xr.open_dataset(runs.gan / "predictions_val.nc") as ds:
        pred = ds["pr"].load()
        assert ds["pr"].encoding["zlib"] and ds["pr"].encoding["complevel"] == 1
    assert pred.dims == ("member", "time", "lat", "lon") and pred.sizes["member"] == 2
    for dim in ("lat", "lon"):
        np.testing.assert_array_equal(pred[dim].values, truth[dim].values)
        assert pred[dim].dtype == truth[dim].dtype == np.float32
    np.testing.assert_array_equal(pred["time"].values, truth["time"].values)
    assert float(pred.min()) >= 0.0
    summary = json.loads((runs.gan / "evaluation" / "val" / "summary.json").read_text())
    rmse_mean, rmse_members = _rmse_scores(pred, truth)
    assert summary["scores"]["rmse/ensemble_mean"] == pytest.approx(rmse_mean, rel=1e-5)
    assert summary["scores"]["rmse/member_mean"] == pytest.approx(rmse_members, rel=1e-5)
    p, t = pred.values[0].astype(np.float64), truth.values
    assert summary["scores"]["bias_mean/member0"] == pytest.approx(np.abs(p.mean(0) - t.mean(0)).mean(), rel=1e-5)
    facts = summary["run"]
    assert (facts["members"], facts["n_days"], facts["years"], facts["variable"]) == (2, SHORT_DAYS, "1962", "pr")
    assert (facts["model"], facts["checkpoint_file"], facts["epoch"]) == ("spagan", "best.pt", 1)
    assert facts["prediction_seconds"] > 0
    assert sum(summary["rank_histogram"]) == t.size
    assert "| rmse/ensemble_mean |" in (runs.gan / "evaluation" / "val" / "summary.md").read_text()


def test_evaluate_baseline_scores_and_psd_file(runs):
    from ml_benchmark_spategan.dataloader.reader import open_training_data
    from ml_benchmark_spategan.dataloader.split import split_data
    from ml_benchmark_spategan.inference import load_run, predict_ensemble

    folder = runs.gan / "evaluation" / "val"
    summary = json.loads((folder / "summary.json").read_text())
    (label, base), = summary["baselines"].items()
    assert label == f"bilinear ({runs.bilinear.name})"
    run = load_run(runs.bilinear)
    data = open_training_data(run.cfg.data)
    _, val = split_data(data, run.cfg.data)
    pred = predict_ensemble(run, val.predictors, val.target, 2, orography=data.orography)
    rmse_mean, _ = _rmse_scores(pred, val_truth(runs.root))
    assert base["scores"]["rmse/ensemble_mean"] == pytest.approx(rmse_mean, rel=1e-5)
    with xr.open_dataset(folder / "psd.nc") as psd:
        series = [str(s) for s in psd["series"].values]
        assert series[:4] == ["target", "member 0", "ensemble mean", "all members"]
        assert f"{label} member 0" in series
        assert psd["power"].dims == ("series", "wavenumber") and "wavenumber_per_km" in psd.coords
    with xr.open_dataset(folder / "quantiles.nc") as q:
        assert q["quantile"].sel(series="target").values[-1] > 0


def test_evaluate_plots_are_drawn(runs):
    folder = runs.gan / "evaluation" / "val"
    names = ["index_bias_maps.png", "rmse_maps.png", "psd.png", "distributions.png", "rank_histogram.png",
             "spread_skill.png"]
    maps = sorted(p.name for p in folder.glob("maps_*.png"))
    assert len(maps) == 3 and any(m.startswith("maps_wettest_") for m in maps)
    for name in names + maps:
        assert_not_blank(folder / name)
    assert not list((runs.gan / "evaluation" / runs.test_label).glob("*.png"))  # --no-plots


def test_evaluate_test_split_with_truth(runs):
    for run_dir in (runs.gan, runs.bilinear):
        with xr.open_dataset(run_dir / f"predictions_{runs.test_label}.nc") as ds:
            pred = ds["pr"].load()
        with xr.open_dataset(cordex.truth_path(runs.root, "NZ", "historical", GCM)) as ds:
            truth = ds["pr"].load()
        np.testing.assert_array_equal(pred["time"].values, truth["time"].values)
        assert dict(pred.sizes) == {"member": 2, "time": 2 * SHORT_DAYS, "lat": 128, "lon": 128}
        summary = json.loads((run_dir / "evaluation" / runs.test_label / "summary.json").read_text())
        assert summary["scores"]["rmse/ensemble_mean"] == pytest.approx(_rmse_scores(pred, truth)[0], rel=1e-5)
        facts = summary["run"]
        assert (facts["split"], facts["period"], facts["kind"], facts["gcm"]) == ("test", "historical", "perfect", GCM)


def test_evaluate_test_split_tasmax(runs, tmp_path):
    cli = load_script("evaluate")
    out = tmp_path / "tasmax_eval"
    args = ["--split", "test", "--members", "1", "--device", "cpu", "--data-root", str(runs.root),
            "--out", str(out), "--no-plots"]
    assert cli.main([str(runs.tasmax), *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"bias_txx/member0", "bias_su/ensemble_mean", "fss/p99/s25/member0"} <= set(summary["scores"])
    assert set(summary["fss_thresholds"]) == {"p90", "p95", "p99"}
    assert summary["scores"]["crps/fair"] is None  # one member
    with xr.open_dataset(runs.tasmax / f"predictions_{runs.test_label}.nc") as ds:
        assert ds["tasmax"].sizes["member"] == 1 and float(ds["tasmax"].min()) > 200.0  # K


def test_evaluate_without_truth_writes_predictions_only(runs, capsys):
    cli = load_script("evaluate")
    args = ["--split", "test", "--period", "mid_century", "--members", "1", "--device", "cpu",
            "--data-root", str(runs.root)]
    assert cli.main([str(runs.bilinear), *args]) == 1
    assert "NZ_domain_truth" in capsys.readouterr().err
    label = f"test_mid_century_perfect_{cordex.domain_spec('NZ').gcm1}"
    with xr.open_dataset(runs.bilinear / f"predictions_{label}.nc") as ds:
        assert ds["pr"].sizes["time"] == 2 * SHORT_DAYS
    assert not (runs.bilinear / "evaluation" / label).exists()


def test_evaluate_bad_run_folder(tmp_path, capsys):
    cli = load_script("evaluate")
    assert cli.main([str(tmp_path / "nope")]) == 2
    assert f"run folder {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text("data: {}\n")
    assert cli.main([str(tmp_path / "empty")]) == 2
    assert "has no checkpoints" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["config.yaml", "empty"]


def test_evaluate_refuses_baseline_of_another_variable(runs, capsys):
    cli = load_script("evaluate")
    before = sorted(runs.bilinear.rglob("*"))
    assert cli.main([str(runs.bilinear), "--baseline", str(runs.tasmax), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(runs.tasmax) in err and str(runs.bilinear) in err and "tasmax" in err
    assert sorted(runs.bilinear.rglob("*")) == before
