"""Oversampling of extreme days (``data.oversampling``): per-day sampling weights from the training target.

1. A statistic per training day, from the target in its physical units over the valid cells of that day:

   * ``domain_mean``: the spatial mean (pr: the domain's wetness);
   * ``p99``: the 99th percentile over the cells (pr: local intensity, e.g. one convective cell);
   * ``heat``: the spatial mean of the anomaly from the per-cell monthly mean of the training split
     (tasmax: heat relative to the season, so a hot spring day counts, not only every summer day).

2. A weight ``w = 1 + strength * g``: ``rank`` weighting takes ``g`` = the day's rank quantile in 0..1 (ties
   share their mean rank), so the most extreme day weighs ``1 + strength`` times the least; ``value``
   takes ``g = (s - min s) / (mean s - min s)`` (0 for the least extreme day, 1 for an average one),
   which follows heavy tails. Weights are capped at ``cap`` times their median, then normalised to sum 1.

3. Sampling (:func:`epoch_counts`): each training epoch draws as many days as the split holds, with
   replacement, from these probabilities (a multinomial seeded by the seed and the epoch alone), so the
   order is a pure function of (seed, epoch) and an interrupted run resumes exactly. The in-memory and the
   streaming loader use the same counts (streaming repeats each day of a block ``count`` times).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import xarray as xr

from ml_benchmark_spategan.config.schema import OversamplingConfig

STATISTICS = ("domain_mean", "p99", "heat")


def _per_day(da: xr.DataArray, func) -> np.ndarray:
    """``func(values (..., cells)) -> (...)`` applied per day over the two spatial dims (dask-friendly)."""
    cells = list(da.dims[1:])
    if da.chunks is not None:
        da = da.chunk({d: -1 for d in cells})
    stacked = xr.apply_ufunc(lambda x: func(x.reshape(*x.shape[:-2], -1)), da, input_core_dims=[cells],
                             dask="parallelized", output_dtypes=[np.float64])
    return np.asarray(stacked.values, dtype=np.float64)


def _nanmean(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(x)
        return np.where(finite, x, 0.0).sum(-1) / np.maximum(finite.sum(-1), 1)


def _nanp99(x: np.ndarray) -> np.ndarray:
    out = np.full(x.shape[:-1], np.nan)
    for i in np.ndindex(*x.shape[:-1]):
        v = x[i][np.isfinite(x[i])]
        if v.size:
            out[i] = np.quantile(v.astype(np.float64), 0.99)
    return out


def day_statistic(target: xr.DataArray, statistic: str) -> np.ndarray:
    """The statistic (see the module docstring) of each day of ``target`` (time, row, col), (time,) float64."""
    if statistic == "domain_mean":
        values = _per_day(target, _nanmean)
    elif statistic == "p99":
        values = _per_day(target, _nanp99)
    elif statistic == "heat":
        month = target["time"].dt.month
        clim = target.groupby(month).mean("time")
        values = _per_day(target.groupby(month) - clim, _nanmean)
    else:
        raise ValueError(f"data.oversampling.statistic: expected one of {('none',) + STATISTICS}, found {statistic!r}")
    return np.where(np.isfinite(values), values, np.nanmin(values) if np.isfinite(values).any() else 0.0)


def rank_quantiles(values: np.ndarray) -> np.ndarray:
    """Rank of each value scaled to 0..1 (ties share the mean of their ranks); 0.5 for a single value."""
    n = values.size
    if n == 1:
        return np.full(1, 0.5)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=np.float64)
    uniq, inverse = np.unique(values, return_inverse=True)
    mean_rank = np.bincount(inverse, weights=ranks) / np.bincount(inverse)
    return mean_rank[inverse] / (n - 1)


def sampling_weights(stat: np.ndarray, cfg: OversamplingConfig) -> np.ndarray:
    """Probabilities (sum 1) of drawing each day, from its statistic (see the module docstring)."""
    stat = np.asarray(stat, dtype=np.float64)
    if cfg.weighting == "rank":
        g = rank_quantiles(stat)
    else:
        span = stat.mean() - stat.min()
        g = (stat - stat.min()) / span if span > 0 else np.zeros_like(stat)
    w = 1.0 + float(cfg.strength) * g
    w = np.minimum(w, float(cfg.cap) * np.median(w))
    return w / w.sum()


def epoch_counts(probabilities: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """How often each day is drawn in ``epoch`` (int64, sum = number of days): multinomial, seeded."""
    rng = np.random.default_rng([int(seed), int(epoch), 0x0E5A])
    return rng.multinomial(probabilities.size, probabilities).astype(np.int64)


def write_weights(path: str | Path, times: np.ndarray, stat: np.ndarray, probabilities: np.ndarray) -> Path:
    """``sampling_weights.csv``: time, statistic, weight (probability x number of days: 1 = uniform); atomic."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["time", "statistic", "weight"])
        for t, s, p in zip(times, stat, probabilities * probabilities.size, strict=True):
            writer.writerow([str(t)[:19], f"{s:.6g}", f"{p:.6g}"])
    os.replace(tmp, path)
    return path


def summary_line(cfg: OversamplingConfig, probabilities: np.ndarray) -> str:
    """The run log's line: statistic, weighting and min / median / max of the relative weights."""
    w = probabilities * probabilities.size
    return (f"oversampling: {cfg.statistic} ({cfg.weighting}, strength {cfg.strength:g}, cap {cfg.cap:g}) | "
            f"relative weights min {w.min():.3g} median {np.median(w):.3g} max {w.max():.3g} over {w.size} days")
