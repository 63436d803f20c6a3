"""End to end with real-world-shaped bring-your-own data (issue 10): per-variable predictor files on two
grids; a degC ``tg`` target with NaN sea on a winter-only time axis, a rotated-pole ``tasmax`` and a
``pr`` in kg m-2 s-1. Each trains a tiny model, predicts (masked) and evaluates ``--split test`` (the
held-out year) with maps; units, masks and projections are checked on the files and figure objects."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import cartopy.crs as ccrs
import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.collections import QuadMesh

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.generator.filters=4", "model.generator.n_coarse_blocks=1", "model.generator.upsample_channels=[4,4,4]",
        "model.discriminator.hr_channels=[4,4,4,4,4]", "model.discriminator.lr_channels=[4,4]", "training.epochs=1",
        "training.max_steps_per_epoch=2", "training.batch_size=4", "training.val_members=1",
        "logging.progress_bar=false", "logging.plot_every_epochs=0", "device=cpu", "runtime.num_threads=1"]
TARGETS = {"tg": "tg", "rotated": "tasmax", "pr_flux": "pr"}
_CACHE: dict = {}


def _evaluate_cli():
    key = "cli_evaluate"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "evaluation" / "evaluate.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def files_sets(layouts, target: str, runs: Path, *extra: str) -> list[str]:
    return ["data.source=files", f"data.files.predictor_files=[{layouts['predictor_glob']}]",
            "data.files.predictor_variables=[t850, z500, q850, u850]", f"data.files.target_file={layouts[target]}",
            f"data.files.target_variable={TARGETS[target]}", "data.train_years=[2000-2001]", "data.val_years=[2002]",
            "data.test_years=[2003]", "data.use_orography=false", f"run.root={runs / target}", *TINY, *extra]


def _run_and_evaluate(layouts, target: str, runs: Path, model: str) -> SimpleNamespace:
    from ml_benchmark_spategan.config import load_config
    from ml_benchmark_spategan.training.run import train

    cli = _evaluate_cli()
    figures: dict[str, object] = {}
    original = cli.save_figure

    def keep(fig, path, *args, **kwargs):
        figures[Path(path).name] = fig
        return original(fig, path, *args, **kwargs)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(load_config(ROOT / "config.yml", files_sets(layouts, target, runs, f"model.name={model}")))
        cli.save_figure = keep
        try:
            status = cli.main([str(run), "--split", "test", "--members", "2", "--device", "cpu"])
        finally:
            cli.save_figure = original
    return SimpleNamespace(run=run, status=status, figures=figures, warnings=[str(w.message) for w in caught])


@pytest.fixture(scope="session")
def byo_runs(byo_layouts, tmp_path_factory):
    """tg: tiny SpaGAN; rotated tasmax: the bilinear baseline; pr (kg m-2 s-1): tiny SpaGAN. Each evaluated on
    the held-out test year 2003 with 2 members and every plot."""
    if "runs" not in _CACHE:
        runs = tmp_path_factory.mktemp("byo_runs")
        _CACHE["runs"] = {t: _run_and_evaluate(byo_layouts, t, runs, m)
                          for t, m in (("tg", "spagan"), ("rotated", "bilinear"), ("pr_flux", "spagan"))}
    return _CACHE["runs"]


def _units(label: str) -> str:
    """The units of a colour-bar label "<quantity> (<units>)"."""
    return label.rsplit("(", 1)[-1].rstrip(")") if label.endswith(")") else label


def _colorbar_labels(fig) -> set[str]:
    return {ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"}


def _meshes(fig, title_part: str) -> list:
    return [c for ax in fig.axes if title_part in ax.get_title() for c in ax.collections if isinstance(c, QuadMesh)]


# --- tg in degC with NaN sea, winter only ----------------------------------------------------------------
def test_tg_predictions_are_masked_with_units(byo_runs, byo_layouts):
    r = byo_runs["tg"]
    assert r.status == 0
    path = r.run / "predictions_test.nc"
    with netCDF4.Dataset(path) as nc:
        var = nc.variables["tg"]
        assert var.units == "degC" and var.long_name == "daily mean temperature"
        assert var.standard_name == "air_temperature" and np.isnan(var._FillValue)
    with xr.open_dataset(path) as ds, xr.open_dataset(byo_layouts["tg"]) as obs:
        pred = ds["tg"].load()
        sea = obs["tg"].isnull().all("time").values
        days = pd.DatetimeIndex(obs["time"].values)
        np.testing.assert_array_equal(pred["time"].values, obs["time"].values[days.year == 2003])
    assert sea.sum() > 0 and pred.dims == ("member", "time", "lat", "lon") and pred.sizes["member"] == 2
    assert np.isnan(pred.values[..., sea]).all() and np.isfinite(pred.values[..., ~sea]).all()


def test_tg_summary_scores_kind_and_units(byo_runs):
    r = byo_runs["tg"]
    summary = json.loads((r.run / "evaluation" / "test" / "summary.json").read_text())
    facts = summary["run"]
    assert (facts["variable"], facts["units"], facts["target_kind"], facts["split"]) == ("tg", "degC", "temperature", "test")
    assert facts["years"] == "2003" and facts["target_file"].endswith("tg_obs.nc")
    keys = {k.split("/")[0] for k in summary["scores"]}
    assert {"bias_mean", "bias_annual_max", "bias_annual_min"} <= keys and "bias_su" not in keys and "bias_txx" not in keys


def test_tg_maps_in_degc_with_sea_missing(byo_runs, byo_layouts):
    figs = byo_runs["tg"].figures
    day_maps = [name for name in figs if name.startswith("maps_")]
    assert len(day_maps) == 3
    for name in day_maps + ["index_bias_maps.png", "rmse_maps.png"]:
        labels = _colorbar_labels(figs[name])
        # colour bars read "<quantity> (<units>)": the target's own units, never kelvin
        assert any(label.endswith("(degC)") for label in labels), (name, labels)
        assert not any(label == "K" or label.endswith("(K)") for label in labels), (name, labels)
    with xr.open_dataset(byo_layouts["tg"]) as obs:
        sea = obs["tg"].isnull().all("time").values
    for title in ("tg target", "tg member 1", "tg ensemble mean"):
        (mesh,) = _meshes(figs[day_maps[0]], title)
        values = np.ma.masked_invalid(mesh.get_array()).reshape(sea.shape)
        assert values.mask[sea].all() and not values.mask[~sea].any(), title
    for mesh in _meshes(figs["rmse_maps.png"], "wasserstein"):
        assert np.ma.masked_invalid(mesh.get_array()).reshape(sea.shape).mask[sea].all()
    assert "degC" in figs["distributions.png"].axes[0].get_xlabel()


def test_tg_run_log_and_no_noise(byo_runs):
    r = byo_runs["tg"]
    log = (r.run / "training.log").read_text()
    assert "data: files tg_obs.nc:tg (temperature, degC)" in log and "ALPS" not in log
    assert "predictor 'q850' regridded (bilinear)" in log and "predictor 'u850' regridded" in log
    assert "runtime: 1 CPU thread(s)" in log and "epoch 1/1 " in log
    noise = ("chunks", "Mean of empty slice", "All-NaN", "Degrees of freedom", "invalid value")
    assert not [w for w in r.warnings if any(n in w for n in noise)], r.warnings


# --- rotated pole ------------------------------------------------------------------------------------------
def test_rotated_target_maps_in_its_crs(byo_runs):
    r = byo_runs["rotated"]
    assert r.status == 0
    fig = r.figures["index_bias_maps.png"]
    maps = [ax for ax in fig.axes if hasattr(ax, "projection")]
    assert maps and all(isinstance(ax.projection, ccrs.RotatedPole) for ax in maps)
    pole = maps[0].projection.proj4_params
    assert pole["o_lat_p"] == pytest.approx(39.25) and pole["lon_0"] == pytest.approx(18.0)  # 180 + (-162)
    day = r.figures[next(n for n in r.figures if n.startswith("maps_"))]
    predictor_ax = next(ax for ax in day.axes if ax.get_title().startswith("predictor"))
    assert isinstance(predictor_ax.projection, ccrs.RotatedPole)
    assert any(line.get_linestyle() == "--" for line in predictor_ax.get_lines())  # the target box
    features = [c for ax in maps for c in ax.artists + ax.collections if type(c).__name__ == "FeatureArtist"]
    assert features or any("coastlines" in w for w in r.warnings)  # coastlines when Natural Earth files exist
    units = {_units(label) for label in _colorbar_labels(fig)}
    assert "K" in units and "days" in units  # TXx in K, SU in days
    assert not [w for w in r.warnings if "grid coordinates" in w]


def test_bilinear_run_logs_no_epochs(byo_runs):
    r = byo_runs["rotated"]
    log = (r.run / "training.log").read_text()
    assert "bilinear baseline: predictor 't850' interpolated bilinearly (geographic" in log
    assert "epoch 1/" not in log and "bilinear (no training)" in log
    summary = json.loads((r.run / "evaluation" / "test" / "summary.json").read_text())
    assert {"bias_txx", "bias_su"} <= {k.split("/")[0] for k in summary["scores"]}


# --- pr in kg m-2 s-1 ---------------------------------------------------------------------------------------
def test_flux_precipitation_units_thresholds_and_plots(byo_runs):
    r = byo_runs["pr_flux"]
    assert r.status == 0
    with xr.open_dataset(r.run / "predictions_test.nc") as ds:
        pred = ds["pr"].load()
    assert pred.attrs["units"] == "kg m-2 s-1" and pred.attrs["standard_name"] == "precipitation_flux"
    assert float(pred.min()) >= 0.0 and float(pred.max()) < 1e-2  # a flux, not mm/day
    summary = json.loads((r.run / "evaluation" / "test" / "summary.json").read_text())
    assert summary["fss_thresholds"]["1mm"] == pytest.approx(1 / 86400)
    assert {"bias_sdii", "bias_cwd", "bias_rx1day"} <= {k.split("/")[0] for k in summary["scores"]}
    for name in ("index_bias_maps.png", "rmse_maps.png"):
        assert "kg m-2 s-1" in {_units(label) for label in _colorbar_labels(r.figures[name])}
    day = r.figures[next(n for n in r.figures if n.startswith("maps_"))]
    (mesh,) = _meshes(day, "pr target")
    assert mesh.norm.vmin == pytest.approx(0.1 / 86400)  # the 0.1 mm/day floor of the log scale, converted


def test_comparison_header_names_the_files_target(byo_runs, tmp_path):
    spec = importlib.util.spec_from_file_location("cli_compare_byo", ROOT / "evaluation" / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    r = byo_runs["tg"]
    assert compare.main([str(r.run), "--split", "test", "--out", str(tmp_path / "cmp")]) == 0
    header = (tmp_path / "cmp" / "comparison.md").read_text().splitlines()[0]
    assert header == "# Comparison: tg (degC) from tg_obs.nc (test)"
