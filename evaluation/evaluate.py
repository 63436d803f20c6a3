#!/usr/bin/env python
"""Evaluate a trained run folder: predict an ensemble for a split, score it, draw the diagnostics.

    python evaluation/evaluate.py runs/<id> [--checkpoint best|last|final|epoch_N] [--split val|test|test_years]
        [--period historical|mid_century|end_century] [--kind perfect|imperfect] [--gcm GCM]
        [--members 10] [--batch-size 64] [--device auto|cpu|cuda] [--threads N] [--baseline runs/<b> ...]
        [--data-root DIR] [--out DIR] [--no-plots]

Splits:

* ``val``: the run's validation years of its training files (``data.val_years``);
* ``test_years``: the run's held-out test years of its training files (``data.test_years``, never seen in
  training or validation), for either data source; label ``test``;
* ``test``: for a bring-your-own run (``data.source: files``) the same as ``test_years``; for a CORDEX run
  one test predictor file of the CORDEX layout (default historical, perfect, the domain's GCM1), scored
  against the synthetic truth ``<root>/<DOMAIN>_domain_truth/...`` (``cordex.truth_path``), label
  ``test_<period>_<kind>_<gcm>``. The real benchmark has no test targets: then the predictions are written,
  an error names the missing truth file and the exit status is 1.

Units are the target's own (from its file; CORDEX pr mm/day, tasmax K) in the predictions, the scores and
every plot; the index biases scored depend on the target's kind (see ``report.index_specs``). Threads:
``--threads`` or the run's ``runtime.num_threads`` (0 = auto).

Outputs:

* ``<run>/predictions_<label>.nc``: the variable as (member, time, row, col) float32 in the target's units
  (``units``, ``long_name``, ``standard_name``, ``_FillValue`` NaN; cells NaN on every training day are NaN,
  e.g. sea), the target grid's exact coordinates (and grid mapping), the predictors' time values and
  time encoding, zlib-compressed, written atomically;
* ``<run>/evaluation/<label>/`` (or ``--out``), label ``val`` or ``test_<period>_<kind>_<gcm>``:
  ``summary.json`` / ``summary.md`` (all scores, see :mod:`ml_benchmark_spategan.evaluation.report`, the
  baselines' scores, the run's checkpoint, epoch, members, period and timings), ``psd.nc`` (spectra of the
  target, the run and the baselines), ``quantiles.nc`` (for QQ plots) and the PNGs: ``maps_<day>.png``
  (target, 3 members, ensemble mean for the wettest/hottest, the median and the first day by domain
  mean), ``index_bias_maps.png``, ``rmse_maps.png``, ``psd.png``, ``distributions.png`` (histograms and
  QQ), ``rank_histogram.png``, ``spread_skill.png`` (the last two need >= 2 members); each figure's title
  names the run, checkpoint, epoch and split;
* ``<run>/report.html`` rewritten with this evaluation's scores and figures
  (:mod:`ml_benchmark_spategan.visualization.run_report`).

Prediction and scoring show progress with an ETA (a bar on a terminal, log lines every 10 % otherwise).

Baselines (``--baseline``, e.g. a bilinear run) are predicted the same way on the same days; they must
share the domain and variable. Maps draw coastlines from the Natural Earth files shipped with the
package (offline; ``ML_BENCH_CARTOPY_DATA`` overrides).

Exit status: 0 success; 1 predictions written but not scored (no truth); 2 bad arguments, run folder,
checkpoint or data (nothing written).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import xarray as xr

from ml_benchmark_spategan import cordex
from ml_benchmark_spategan.dataloader.coarsen import coarsen_field
from ml_benchmark_spategan.dataloader.reader import (
    check_same_grid,
    check_same_times,
    open_predictors,
    open_static,
    open_target,
    open_training_data,
)
from ml_benchmark_spategan.dataloader.split import format_years, held_out_split, split_data
from ml_benchmark_spategan.evaluation.report import (
    EvaluationReport,
    compute_report,
    evaluation_label,
    summary_markdown,
)
from ml_benchmark_spategan.inference import LoadedRun, load_run, predict_ensemble, prediction_attrs
from ml_benchmark_spategan.monitor.status import evaluating
from ml_benchmark_spategan.training.artifacts import SAMPLE_PREDICTOR, save_figure
from ml_benchmark_spategan.training.checkpoint import CheckpointError
from ml_benchmark_spategan.training.rundir import RunDirError, resolve_device
from ml_benchmark_spategan.utils.threads import apply_num_threads
from ml_benchmark_spategan.visualization import evaluation_figures as ef
from ml_benchmark_spategan.visualization.figures import diagnostics_figure, sample_figure
from ml_benchmark_spategan.visualization.maps import CARTOPY_DATA_ENV, configure_cartopy_data, map_grid_from_xarray
from ml_benchmark_spategan.visualization.run_report import write_report

LOG = logging.getLogger("evaluate")
#: Errors meaning bad input (exit status 2).
INPUT_ERRORS = (ValueError, FileNotFoundError, CheckpointError, RunDirError)
COMPRESSION = {"zlib": True, "complevel": 1, "shuffle": True}


@dataclass
class SplitData:
    """What to predict and score. predictors (time, channel, lat, lon); truth (time, row, col) or None;
    grid: a DataArray on the target grid (its coordinates are copied to the predictions)."""

    label: str
    split: str
    predictors: xr.DataArray
    truth: xr.DataArray | None
    grid: xr.DataArray
    orography: xr.DataArray | None
    facts: dict


# --- arguments and runs ----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Predict, score and plot a trained run on a split.")
    p.add_argument("run_dir", help="run folder (runs/<id>) holding config.yaml and checkpoints/")
    p.add_argument("--checkpoint", default="best", help="best, last, final or epoch_N (default %(default)s)")
    p.add_argument("--split", default="val", choices=("val", "test", "test_years"),
                   help="val; test_years = the held-out data.test_years; test = test_years for your own files, "
                        "a CORDEX test period (--period/--kind/--gcm) for CORDEX runs (default %(default)s)")
    p.add_argument("--period", default="historical", choices=sorted(cordex.TEST_PERIODS), help="test period")
    p.add_argument("--kind", default="perfect", choices=cordex.PREDICTOR_KINDS, help="test predictor kind")
    p.add_argument("--gcm", default=None, help="test GCM (default: the domain's GCM1)")
    p.add_argument("--members", type=int, default=10, help="ensemble members (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (0 = auto; default: the run's runtime.num_threads)")
    p.add_argument("--baseline", action="append", default=[], metavar="RUN_DIR", help="baseline run; repeatable")
    p.add_argument("--data-root", default=None, help="folder holding <DOMAIN>_domain/ (default: the run's data.root)")
    p.add_argument("--out", default=None, help="evaluation folder (default: <run>/evaluation/<label>)")
    p.add_argument("--no-plots", action="store_true", help="write predictions and scores only")
    args = p.parse_args(argv)
    if args.members < 1 or args.batch_size < 1:
        p.error(f"--members and --batch-size must be >= 1 (got {args.members}, {args.batch_size})")
    return args


def check_run_dir(path: str | Path) -> Path:
    """The run folder if it holds config.yaml and at least one checkpoint; FileNotFoundError otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} does not exist")
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(f"{path} is not a run folder: config.yaml is missing")
    if not any((path / "checkpoints").glob("*.pt")):
        raise FileNotFoundError(f"{path} has no checkpoints (expected {path / 'checkpoints'}/*.pt; train it first)")
    return path


def load_runs(args: argparse.Namespace) -> tuple[LoadedRun, list[LoadedRun]]:
    """The run and its baselines, loaded on the device; baselines must match domain and variable."""
    device = resolve_device(args.device, "fallback")
    run = load_run(check_run_dir(args.run_dir), args.checkpoint, device)
    baselines = [load_run(check_run_dir(b), "best", device) for b in args.baseline]
    for base in baselines:
        check_comparable(run, base)
    return run, baselines


def check_comparable(run: LoadedRun, other: LoadedRun) -> None:
    """ValueError unless both runs downscale the same variable on the same domain / data source."""
    def key(r):
        d = r.cfg.data
        return (d.source, d.domain if d.source == "cordex" else d.files.target_file, r.geometry["target_variable"])
    if key(run) != key(other):
        raise ValueError(f"baseline {other.run_dir} ({', '.join(key(other))}) does not match run "
                         f"{run.run_dir} ({', '.join(key(run))}): same data source, domain and variable needed")


# --- data ------------------------------------------------------------------------------------------------
def open_split(run: LoadedRun, args: argparse.Namespace) -> SplitData:
    data_cfg = run.cfg.data if args.data_root is None else replace(run.cfg.data, root=args.data_root)
    if args.split == "val":
        return _years_split(data_cfg, "val")
    if args.split == "test_years" or data_cfg.source != "cordex":
        return _years_split(data_cfg, "test")
    return _test_split(run, data_cfg, args.period, args.kind, args.gcm)


def _years_split(data_cfg, which: str) -> SplitData:
    """The validation years (``val``) or the held-out test years (``test``) of the training files."""
    data = open_training_data(data_cfg)
    if which == "val":
        _, part = split_data(data, data_cfg)
    else:
        part = held_out_split(data, data_cfg)
    years = format_years(np.unique(part.predictors["time"].dt.year.values).tolist())
    return SplitData(which, which, part.predictors, part.target, part.target, data.orography, {"years": years})


def _test_split(run: LoadedRun, data_cfg, period: str, kind: str, gcm: str | None) -> SplitData:
    spec = cordex.domain_spec(data_cfg.domain)
    gcm = gcm or spec.gcm1
    if gcm not in spec.gcms:
        raise ValueError(f"--gcm {gcm!r}: domain {spec.name} has test GCMs {list(spec.gcms)}")
    root, chunk, var = data_cfg.root, data_cfg.loader.chunk_days, data_cfg.target_variable
    predictor_file = cordex.test_predictor_path(root, spec.name, period, kind, gcm)
    predictors = open_predictors(predictor_file, run.geometry["predictor_names"], chunk)
    grid = open_target(cordex.train_target_path(root, spec.name, data_cfg.experiment), var, chunk, spec.target_dims)
    truth_file = cordex.truth_path(root, spec.name, period, gcm)
    truth = open_target(truth_file, var, chunk, spec.target_dims) if truth_file.is_file() else None
    if truth is not None:
        check_same_grid(truth, grid, f"truth {truth_file} vs the training target")
        check_same_times(predictors, truth, f"test predictors {predictor_file}", f"truth {truth_file}")
    orography = None
    if run.geometry["static_channels"]:
        orography = open_static(cordex.static_fields_path(root, spec.name, data_cfg.experiment), "orog", grid)
    factor = data_cfg.target_coarsen  # the run's target grid: block-averaged like its training target
    grid, truth, orography = (None if a is None else coarsen_field(a, factor, f"{spec.name} {var} grid")
                              for a in (grid, truth, orography))
    facts = {"period": period, "kind": kind, "gcm": gcm, "truth_file": str(truth_file),
             "years": cordex.period_label(cordex.TEST_PERIODS[period])}
    return SplitData(evaluation_label("test", period, kind, gcm), "test", predictors, truth, grid, orography, facts)


# --- prediction ------------------------------------------------------------------------------------------
def predict(run: LoadedRun, split: SplitData, members: int, batch_size: int) -> tuple[xr.DataArray, float]:
    """(member, time, row, col) ensemble in physical units and the seconds it took (with progress and ETA)."""
    start = time.perf_counter()
    pred = predict_ensemble(run, split.predictors, split.grid, members, batch_size, orography=split.orography,
                            progress=f"predicting {run.run_dir.name} {split.label}")
    return pred, time.perf_counter() - start


def write_predictions(pred: xr.DataArray, path: Path, split: SplitData, run: LoadedRun) -> Path:
    """Compressed NetCDF (member, time, row, col), time encoded as in the predictor file; atomic. The
    variable carries the target's units, long_name and standard_name; masked cells are NaN (_FillValue)."""
    var = str(pred.name)
    ds = pred.to_dataset()
    ds[var].attrs = {**prediction_attrs(run, split.grid), **pred.attrs, "run": str(run.run_dir),
                     "checkpoint": run.checkpoint, "epoch": run.epoch, "weights": run.weights}
    chunks = (1, min(pred.sizes["time"], 32), *pred.shape[2:])
    encoding = {var: {**COMPRESSION, "chunksizes": chunks, "dtype": "float32", "_FillValue": np.float32(np.nan)}}
    time_enc = {k: v for k, v in split.predictors["time"].encoding.items() if k in ("units", "calendar", "dtype")}
    if time_enc:
        encoding["time"] = time_enc
    tmp = path.with_name(path.name + ".tmp")
    ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
    os.replace(tmp, path)
    return path


# --- summary ---------------------------------------------------------------------------------------------
def run_facts(run: LoadedRun, args, split: SplitData, pred: xr.DataArray, seconds: float, pred_file: Path) -> dict:
    t = pred["time"].values
    d, info = run.cfg.data, run.target
    return {"run_dir": str(run.run_dir), "run_id": run.run_dir.name, "model": run.cfg.model.name,
            "data_source": d.source, "domain": d.domain if d.source == "cordex" else None,
            "target_file": d.files.target_file if d.source == "files" else None,
            "experiment": d.experiment if d.source == "cordex" else None, "variable": info.name,
            "units": info.units, "target_kind": info.kind, "checkpoint": args.checkpoint,
            "checkpoint_file": run.checkpoint, "epoch": run.epoch, "weights": run.weights, "members": int(pred.sizes["member"]),
            "split": split.split, "label": split.label, **split.facts, "n_days": int(t.size),
            "first_day": str(t[0]), "last_day": str(t[-1]), "predictions_file": str(pred_file),
            "prediction_seconds": round(seconds, 3), "device": str(run.device),
            "created": datetime.now().isoformat(timespec="seconds")}


def baseline_label(run: LoadedRun) -> str:
    return f"{run.cfg.model.name} ({run.run_dir.name})"


def build_summary(facts: dict, report: EvaluationReport, baselines: dict[str, tuple[LoadedRun, EvaluationReport, float]]) -> dict:
    """The dict written to summary.json (NaN/inf as null)."""
    return {"run": facts, "scores": report.scores, "rank_histogram": report.rank_histogram,
            "fss_thresholds": report.fss_thresholds, "spread_skill_bins": report.spread_skill_bins,
            "baselines": {label: {"run_dir": str(r.run_dir), "model": r.cfg.model.name, "checkpoint_file": r.checkpoint,
                                  "epoch": r.epoch, "prediction_seconds": round(sec, 3), "scores": rep.scores}
                          for label, (r, rep, sec) in baselines.items()}}


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_summary(folder: Path, summary: dict, report: EvaluationReport, baselines: dict) -> None:
    """summary.json, summary.md, psd.nc and quantiles.nc (the run's series, then each baseline's)."""
    _write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    _write_text(folder / "summary.md", summary_markdown(summary))
    for name in ("psd", "quantiles"):
        parts = [getattr(report, name)]
        for label, (_, rep, _) in baselines.items():
            part = getattr(rep, name).drop_sel(series="target")
            parts.append(part.assign_coords(series=[f"{label} {s}" for s in part["series"].values]))
        ds = xr.concat(parts, dim="series")
        ds = ds.assign_coords(series=ds["series"].values.astype(str))
        tmp = folder / f"{name}.nc.tmp"
        ds.to_netcdf(tmp, engine="netcdf4")
        os.replace(tmp, folder / f"{name}.nc")


# --- plots -----------------------------------------------------------------------------------------------
def _curve_labels(members: int, prefix: str = "") -> list[str]:
    return [f"{prefix}member 0"] + ([f"{prefix}ensemble mean"] if members > 1 else [])


def plot_day_maps(folder: Path, run: LoadedRun, split: SplitData, truth: xr.DataArray, pred: xr.DataArray, grid) -> None:
    """maps_<which>_<day>.png for the extreme (wettest/hottest), median and first day by domain mean."""
    info = run.target
    var = info.name
    domain_mean = truth.mean([d for d in truth.dims if d != "time"]).values
    order = np.argsort(np.nan_to_num(domain_mean, nan=-np.inf))
    extreme = {"precipitation": "wettest", "temperature": "hottest"}.get(info.kind, "highest")
    days = {extreme: int(order[-1]), "median": int(order[order.size // 2]), "first": 0}
    names = [str(c) for c in split.predictors["channel"].values]
    channel = SAMPLE_PREDICTOR.get(var) if SAMPLE_PREDICTOR.get(var) in names else names[0]
    for which, day in days.items():
        x = split.predictors.isel(time=day).sel(channel=channel)
        stamp = str(truth["time"].values[day])[:10]
        fig = sample_figure(grid, np.asarray(x.values), map_grid_from_xarray(x), channel, truth.isel(time=day).values,
                            pred.isel(time=day).values, title=f"run {run.run_dir.name} ({run.checkpoint}, epoch "
                            f"{run.epoch}), {split.label}: {which} day {stamp}", var=var, units=info.units,
                            kind=info.kind)
        save_figure(fig, folder / f"maps_{which}_{stamp}.png")


def _save(fig, path: Path, who: str) -> None:
    """Save with ``who`` (run, checkpoint, epoch, split) as the figure's title."""
    if who:
        fig.suptitle(who, fontsize=9)
    save_figure(fig, path)


def plot_curves(folder: Path, var: str, report: EvaluationReport, members: int, baselines: dict,
                units: str | None = None, who: str = "") -> None:
    """psd.png (target, member 0, ensemble mean, baselines), rank_histogram.png and spread_skill.png (m >= 2)."""
    power = report.psd["power"]
    k_name = "wavenumber_per_km" if "wavenumber_per_km" in power.coords else "wavenumber"
    xlabel = "wavenumber (cycles/km)" if k_name == "wavenumber_per_km" else "wavenumber (cycles per grid length)"
    curves = {s: (power[k_name].values, power.sel(series=s).values) for s in ["target", *_curve_labels(members)]}
    for label, (_, rep, _) in baselines.items():
        bp = rep.psd["power"]
        curves[f"{label} member 0"] = (bp[k_name].values, bp.sel(series="member 0").values)
    _save(ef.psd_figure(curves, var, xlabel=xlabel, units=units), folder / "psd.png", who)
    if report.rank_histogram and members > 1:
        fig = ef.rank_histogram_figure(report.rank_histogram, title=f"{var} rank histogram ({members} members)")
        _save(fig, folder / "rank_histogram.png", who)
    if report.spread_skill_bins.get("spread"):
        fig = ef.spread_skill_figure(report.spread_skill_bins["spread"], report.spread_skill_bins["rmse"], var,
                                     ratio=report.scores.get("spread_skill/ratio"), units=units)
        _save(fig, folder / "spread_skill.png", who)


def plot_distributions(folder: Path, var: str, truth, pred, report: EvaluationReport, baselines: dict,
                       baseline_preds: dict, units: str | None = None, kind: str | None = None, who: str = "") -> None:
    """distributions.png: histograms of target / member 0 / ensemble mean (/ baselines' member 0) and QQ."""
    m = pred.sizes["member"]
    values = {"target": truth.values, "member 0": pred.isel(member=0).values}
    if m > 1:
        values["ensemble mean"] = pred.mean("member").values
    values.update({f"{label} member 0": p.isel(member=0).values for label, p in baseline_preds.items()})
    q = report.quantiles["quantile"]
    by_label = {s: q.sel(series=s).values for s in _curve_labels(m)}
    for label, (_, rep, _) in baselines.items():
        by_label[f"{label} member 0"] = rep.quantiles["quantile"].sel(series="member 0").values
    bins = ef.histogram_bins(truth.values, var, kind=kind, units=units)
    fig = ef.distribution_figure(values, bins, q.sel(series="target").values, by_label, var, units=units, kind=kind)
    _save(fig, folder / "distributions.png", who)


def plot_maps(folder: Path, var: str, report: EvaluationReport, grid, units: str | None = None,
              kind: str | None = None, who: str = "") -> None:
    """index_bias_maps.png and rmse_maps.png (with their one-number scores)."""
    bias = {k: v.values for k, v in report.maps.items() if k.startswith("bias")}
    scalars = {k: v for k, v in report.scores.items() if k.startswith("bias") and v is not None}
    save_figure(diagnostics_figure(bias, scalars, grid, var, ncols=len(bias) // 2 or 1, units=units, kind=kind,
                                   title=f"{who}: index biases" if who else ""), folder / "index_bias_maps.png")
    errors = {k: v.values for k, v in report.maps.items() if not k.startswith("bias")}
    keys = ("rmse/", "crps/", "wasserstein", "spread_skill/ratio", "ralsd/member0", "ralsd_rms/member0")
    scalars = {k: v for k, v in report.scores.items() if k.startswith(keys) and v is not None}
    save_figure(diagnostics_figure(errors, scalars, grid, var, ncols=3, units=units, kind=kind,
                                   title=f"{who}: errors" if who else ""), folder / "rmse_maps.png")


def make_plots(folder: Path, run: LoadedRun, split: SplitData, truth, pred, report, baselines, baseline_preds) -> None:
    info = run.target
    var, units, kind = info.name, info.units, info.kind
    who = f"run {run.run_dir.name} ({run.checkpoint}, epoch {run.epoch}), {split.label}"
    if configure_cartopy_data() is None:
        LOG.warning("maps drawn without coastlines: %s holds no Natural Earth 50m files (unset it to use the "
                    "copy shipped with the package)", CARTOPY_DATA_ENV)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="map drawn without coastlines", category=UserWarning)
        domain = run.cfg.data.domain if run.cfg.data.source == "cordex" else None
        grid = map_grid_from_xarray(truth, domain)
        plot_day_maps(folder, run, split, truth, pred, grid)
        plot_maps(folder, var, report, grid, units, kind, who)
    plot_curves(folder, var, report, pred.sizes["member"], baselines, units, who)
    plot_distributions(folder, var, truth, pred, report, baselines, baseline_preds, units, kind, who)


# --- main ------------------------------------------------------------------------------------------------
def predictions_path(run: LoadedRun, split: SplitData) -> Path:
    return run.run_dir / f"predictions_{split.label}.nc"


def evaluate(args: argparse.Namespace) -> int:
    run, baselines = load_runs(args)
    threads = apply_num_threads(run.cfg.runtime.num_threads if args.threads is None else args.threads)
    LOG.info("%d CPU thread(s)", threads)
    split = open_split(run, args)
    folder = Path(args.out) if args.out else run.run_dir / "evaluation" / split.label
    with evaluating(run.run_dir, split.label):  # status.json: state "evaluating" meanwhile
        return _predict_and_score(run, baselines, split, folder, args)


def _predict_and_score(run: LoadedRun, baselines: list[LoadedRun], split: SplitData, folder: Path,
                       args: argparse.Namespace) -> int:
    LOG.info("%s (%s, epoch %d, %s weights): predicting %s, %d days x %d members", run.run_dir, run.checkpoint,
             run.epoch, run.weights, split.label, split.predictors.sizes["time"], args.members)
    pred, seconds = predict(run, split, args.members, args.batch_size)
    pred_file = write_predictions(pred, predictions_path(run, split), split, run)
    LOG.info("predictions: %s (%.1f s)", pred_file, seconds)
    if split.truth is None:
        print(f"error: no truth for {split.label}: {split.facts['truth_file']} does not exist (the benchmark has no "
              f"test targets); predictions written to {pred_file}, not scored", file=sys.stderr)
        return 1
    info, dx_km, benchmark = run.target, _dx_km(run), run.cfg.data.source == "cordex"
    truth = split.truth.load()
    start = time.perf_counter()
    report = compute_report(truth, pred, info.name, dx_km, info=info, benchmark=benchmark,
                            progress=f"scoring {run.run_dir.name}")
    facts = run_facts(run, args, split, pred, seconds, pred_file)
    facts["scoring_seconds"] = round(time.perf_counter() - start, 3)
    base_reports, base_preds = {}, {}
    for base in baselines:
        label = baseline_label(base)
        base_preds[label], sec = predict(base, split, args.members, args.batch_size)
        base_reports[label] = (base, compute_report(truth, base_preds[label], info.name, dx_km, full=False, info=info,
                                                    benchmark=benchmark, progress=f"scoring {label}"), sec)
    folder.mkdir(parents=True, exist_ok=True)
    summary = build_summary(facts, report, base_reports)
    write_summary(folder, summary, report, base_reports)
    if not args.no_plots:
        make_plots(folder, run, split, truth, pred.where(truth.notnull()), report, base_reports, base_preds)
    LOG.info("evaluation written to %s; report: %s", folder, write_report(run.run_dir))
    return 0


def _dx_km(run: LoadedRun) -> float | None:
    d = run.cfg.data
    return cordex.grid_spacing_km(d.domain) if d.source == "cordex" else None


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        return evaluate(args)
    except INPUT_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
