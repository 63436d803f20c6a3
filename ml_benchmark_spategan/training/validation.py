"""Validation diagnostics on the validation split (``training.val_days`` evenly spaced days of it, or all
days when 0), in physical units.

Predictions come from ``session.eval_generator``: G_ema when ``training.ema.enabled`` (GANs), else the
trained weights.

Each validation day gets ``training.val_members`` generator members. Which prediction a score uses:

* ensemble mean: ``val/rmse`` (benchmark reduction: spatial mean of the RMSE-over-time map),
  ``val/corr`` (spatial mean of the per-point Pearson correlation over time), content losses
  ``val/loss_l1`` / ``val/loss_mse`` (normalised space, as the training loss);
* member 0 (one realisation, which a generative model should make realistic): ``val/bias_mean``,
  ``val/bias_q95``, ``val/bias_q98`` (spatial mean of |bias| of the per-point index — the benchmark's
  reduction), ``val/std_ratio`` (spatial mean of std_pred / std_true over time), ``val/ralsd``
  (the benchmark's RALSD in dB², time-mean spectra);
* all members: ``val/crps`` (fair CRPS, mean over cells and days; the standard estimator, i.e. the MAE,
  with one member), ``val/spread_skill`` (with the (m + 1)/m correction: 1 = reliable; NaN with one member).

Every score comes from :mod:`ml_benchmark_spategan.evaluation` (the implementations ``evaluate.py`` uses).

Masked (invalid) target cells are NaN in physical space and skipped by every score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from ml_benchmark_spategan import cordex
from ml_benchmark_spategan.evaluation import diagnostics, indices, spectra, streaming
from ml_benchmark_spategan.model.baselines import sample_members
from ml_benchmark_spategan.model.losses import masked_l1, masked_mse
from ml_benchmark_spategan.training.session import Session
from ml_benchmark_spategan.utils.progress import track


@dataclass
class ValidationResult:
    scalars: dict[str, float]
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    psd: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    sample: dict | None = None
    psd_xlabel: str = "wavenumber (cycles/km)"


@dataclass
class _Collected:
    truth: np.ndarray  # (T, H, W) physical, NaN where masked
    mean: np.ndarray  # ensemble mean
    member0: np.ndarray
    crps: streaming.CRPS
    spread_skill: streaming.SpreadSkill | None  # None with one member
    losses: dict[str, float]
    sample: dict | None


def _predict_batches(session: Session, members: int):
    """Yield (batch, normalised samples (B, M, H, W), physical samples, physical truth)."""
    inverse = session.target_normalizer
    generator = session.eval_generator
    bar = track(session.val_loader, "validation", unit="batches", logger=session.logger,
                enabled=session.cfg.logging.progress_bar)
    for batch in bar:
        batch = {k: v.to(session.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.no_grad():
            samples = sample_members(generator, batch["x_lr"], members, session.static_hr, batch.get("doy")).float()
            phys = inverse.inverse(samples)
            truth = inverse.inverse(batch["y_hr"])
        nan = ~batch["mask"]
        phys = phys.masked_fill(nan, float("nan"))
        truth = truth.masked_fill(nan, float("nan"))[:, 0]
        yield batch, samples, phys.cpu().numpy(), truth.cpu().numpy()


def _collect(session: Session, members: int, sample_day: int) -> _Collected:
    n_days = session.val_data.target.sizes["time"]
    shape = (n_days, *session.geometry["out_shape"])
    truth, mean, member0 = (np.full(shape, np.nan, np.float32) for _ in range(3))
    crps = streaming.CRPS(fair=members > 1)  # fair CRPS needs 2+ members
    spread_skill = streaming.SpreadSkill() if members > 1 else None
    loss_sums, n_cells, sample = {"val/loss_l1": 0.0, "val/loss_mse": 0.0}, 0, None
    for batch, samples, phys, y in _predict_batches(session, members):
        idx = batch["time_index"].cpu().numpy()
        truth[idx], mean[idx], member0[idx] = y, phys.mean(1), phys[:, 0]
        crps.update(y, phys)
        if spread_skill is not None:
            spread_skill.update(y, phys)
        ens_mean = samples.mean(1, keepdim=True)
        valid = int(batch["mask"].sum())  # weight each batch's masked mean by its valid cells
        loss_sums["val/loss_l1"] += float(masked_l1(ens_mean, batch["y_hr"], batch["mask"])) * valid
        loss_sums["val/loss_mse"] += float(masked_mse(ens_mean, batch["y_hr"], batch["mask"])) * valid
        n_cells += valid
        if sample is None and sample_day in idx:
            j = int(np.flatnonzero(idx == sample_day)[0])
            sample = {"day": sample_day, "time": batch["time"][j], "members": phys[j], "target": y[j]}
    losses = {k: v / max(n_cells, 1) for k, v in loss_sums.items()}
    return _Collected(truth, mean, member0, crps, spread_skill, losses, sample)


def _as_xr(values: np.ndarray, like: xr.DataArray) -> xr.DataArray:
    return xr.DataArray(values, dims=like.dims, coords={d: like[d] for d in like.dims if d in like.coords})


def plot_spectra(series: dict[str, xr.DataArray], dx_km: float | None) -> tuple[dict, str]:
    """Corrected spectra of each series for the figure (true DC, Nyquist cut) against wavenumber in
    cycles/km when the grid spacing is known, else in cycles per grid cell; returns (curves, x label)."""
    curves = {}
    for label, da in series.items():
        power = spectra.power_spectrum(da, kind="corrected", dx_km=dx_km)
        k = power["wavenumber_per_km"] if dx_km else power[spectra.WAVENUMBER]
        curves[label] = (np.asarray(k.values), np.asarray(power.values))
    return curves, "wavenumber (cycles/km)" if dx_km else "wavenumber (cycles per grid cell)"


def _scores(c: _Collected, like: xr.DataArray, dx_km: float | None) -> tuple[dict, dict, dict, str]:
    truth, mean, member0 = _as_xr(c.truth, like), _as_xr(c.mean, like), _as_xr(c.member0, like)
    rmse_map = diagnostics.rmse(truth, mean, dim="time")
    bias_map = diagnostics.bias_index(truth, member0, indices.mean)
    std_ratio = member0.std("time") / truth.std("time")
    corr = xr.corr(truth, mean, dim="time")
    scalars = {
        "val/rmse": float(diagnostics.spatial_mean(rmse_map)),
        "val/bias_mean": float(diagnostics.spatial_mean_abs(bias_map)),
        "val/bias_q95": float(diagnostics.spatial_mean_abs(diagnostics.bias_index(truth, member0, "quantile", q=0.95))),
        "val/bias_q98": float(diagnostics.spatial_mean_abs(diagnostics.bias_index(truth, member0, "quantile", q=0.98))),
        "val/std_ratio": float(diagnostics.spatial_mean(std_ratio)),
        "val/corr": float(diagnostics.spatial_mean(corr)),
        "val/crps": float(np.nanmean(c.crps.compute().values)),
    }
    psd_true, psd_pred = spectra.psd(truth, member0)
    _, psd_mean = spectra.psd(truth, mean)
    scalars["val/ralsd"] = spectra.ralsd(psd_true, psd_pred)
    scalars["val/spread_skill"] = c.spread_skill.compute() if c.spread_skill is not None else float("nan")
    psd, xlabel = plot_spectra({"target": truth, "member 0": member0, "ensemble mean": mean}, dx_km)
    maps = {"rmse (ensemble mean)": rmse_map.values, "bias of mean (member 0)": bias_map.values,
            "std ratio (member 0)": std_ratio.values}
    return scalars, maps, psd, xlabel


def validate(session: Session) -> ValidationResult:
    """Predict the validation split (its ``training.val_days`` subsample) and compute the diagnostics listed in the module docstring."""
    cfg = session.cfg
    generator = session.eval_generator
    was_training = generator.training
    generator.eval()
    try:
        n_days = session.val_data.target.sizes["time"]
        collected = _collect(session, cfg.training.val_members, min(cfg.logging.sample_day, n_days - 1))
    finally:
        generator.train(was_training)
    dx_km = cordex.grid_spacing_km(cfg.data.domain) if cfg.data.source == "cordex" else None
    scalars, maps, psd, xlabel = _scores(collected, session.val_data.target, dx_km)
    scalars.update(collected.losses)
    return ValidationResult(scalars, maps, psd, collected.sample, xlabel)
