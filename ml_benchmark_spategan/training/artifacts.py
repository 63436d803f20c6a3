"""Run-folder figures: sample maps, per-epoch diagnostics, loss curves, diagnostics history.

The plot functions (``ml_benchmark_spategan.visualization``) draw; this module picks the data from the
session and saves PNGs atomically (tmp name, then rename) so a crash never leaves half an image.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ml_benchmark_spategan.training.history import series
from ml_benchmark_spategan.visualization.figures import (
    diagnostics_figure,
    diagnostics_history_figure,
    losses_figure,
    sample_figure,
)
from ml_benchmark_spategan.visualization.maps import map_grid_from_xarray
from ml_benchmark_spategan.visualization.run_report import write_report as _write_report

SAMPLE_PREDICTOR = {"pr": "q_850", "tasmax": "t_850"}
DIAGNOSTIC_KEYS = ("val/rmse", "val/bias_mean", "val/bias_q95", "val/bias_q98", "val/std_ratio", "val/corr",
                   "val/ralsd", "val/crps", "val/spread_skill")


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, path)
    return path


def _domain(session) -> str | None:
    return session.cfg.data.domain if session.cfg.data.source == "cordex" else None


def _map_grid(session):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return map_grid_from_xarray(session.val_data.target, _domain(session))


def _run_id(session) -> str:
    return Path(session.run_dir).name


def _day(stamp) -> str:
    """'1963-01-01' for datetime64 and cftime stamps alike."""
    return str(stamp).replace("T", " ")[:10]


def plot_sample(session, result, epoch: int) -> Path | None:
    """``sample_plots/epoch_NNN.png``: predictor, target, 3 members, ensemble mean and spread of one day."""
    sample = result.sample
    if sample is None:
        return None
    info = session.val_data.info
    var = info.name
    names = [str(c) for c in session.val_data.predictors["channel"].values]
    name = SAMPLE_PREDICTOR.get(var, names[0]) if SAMPLE_PREDICTOR.get(var) in names else names[0]
    pred = session.val_data.predictors.isel(time=sample["day"]).sel(channel=name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pgrid = map_grid_from_xarray(pred)
    units = getattr(session.val_data.predictor_info.get(name), "units", None)
    fig = sample_figure(_map_grid(session), np.asarray(pred.values), pgrid, name, sample["target"],
                        sample["members"], title=f"run {_run_id(session)}, epoch {epoch + 1}: validation day "
                        f"{_day(sample['time'])}", var=var, units=info.units, kind=info.kind,
                        predictor_units=units or None)
    return save_figure(fig, session.run_dir / "sample_plots" / f"epoch_{epoch + 1:03d}.png")


def plot_diagnostics(session, result, epoch: int) -> Path:
    """``diagnostics_epoch_NNN.png``: RMSE / bias / std-ratio maps, the scores and the PSD curves."""
    scalars = {k: v for k, v in result.scalars.items() if k in DIAGNOSTIC_KEYS}
    info = session.val_data.info
    n_days = session.val_data.target.sizes["time"]
    fig = diagnostics_figure(result.maps, scalars, _map_grid(session), info.name, psd=result.psd,
                             psd_xlabel=result.psd_xlabel, units=info.units, kind=info.kind,
                             title=f"run {_run_id(session)}, epoch {epoch + 1}: validation diagnostics "
                                   f"({n_days} days, {session.cfg.training.val_members} members)")
    return save_figure(fig, session.run_dir / f"diagnostics_epoch_{epoch + 1:03d}.png")


def _numeric_keys(rows: list[dict], prefix: str) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k, v in row.items() if k.startswith(prefix) and isinstance(v, float) and k not in keys)
    return keys


def write_report(session) -> Path:
    """``report.html``: the run's page with every figure so far (see :mod:`.visualization.run_report`)."""
    return _write_report(session.run_dir)


def plot_history(session) -> None:
    """``losses.png`` and ``diagnostics_history.png`` from all epochs so far."""
    rows = session.history
    epochs = [r["epoch"] for r in rows]
    losses = {k.removeprefix("train/"): series(rows, k) for k in _numeric_keys(rows, "train/")
              if k.split("/")[-1].startswith("loss")}
    losses.update({k: series(rows, k) for k in ("val/loss_l1", "val/loss_mse") if any(k in r for r in rows)})
    upto = f"run {_run_id(session)}, epochs 1-{epochs[-1]}" if epochs else f"run {_run_id(session)}"
    if losses:
        save_figure(losses_figure(losses, epochs, title=f"{upto}: losses"), session.run_dir / "losses.png")
    diags = {k: series(rows, k) for k in DIAGNOSTIC_KEYS if any(k in r for r in rows)}
    if diags:
        fig = diagnostics_history_figure(diags, epochs, units=session.val_data.info.units,
                                         title=f"{upto}: validation diagnostics")
        save_figure(fig, session.run_dir / "diagnostics_history.png")
