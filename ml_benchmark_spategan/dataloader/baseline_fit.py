"""Fitting the interpolation baseline (``model.name: bilinear``) on the training split (xarray + numpy).

What the baseline predicts for a day ``d`` of month ``m`` at target cell ``i`` (physical units)::

    y_i(d) = gain[m, i] * p_i(d) + offset[m, i]

* ``p_i(d)``: the *matching predictor* in its physical units (the normalisation undone), interpolated
  bilinearly to the cell's position. Positions are geographic when both grids carry latitude/longitude
  (1-D or 2-D, e.g. a rotated-pole or Lambert target inside a lat/lon predictor grid; cells beyond the
  predictor grid take its edge values), else the two grids' shared 1-D coordinates, else their extents are
  aligned (as ``torch.nn.functional.interpolate(align_corners=False)``).
* The matching predictor is ``model.bilinear_predictor`` or, with ``auto``, the predictor of the target's
  kind (same name first, then a near-surface one, then the lowest pressure level: t_850 for tasmax). With
  none (``none``, or no predictor of that kind: e.g. precipitation from the CORDEX predictors) the
  interpolated field is the target's own training climatology, coarse-grained to the predictor grid; the
  monthly mean correction below then turns it back into the per-cell monthly training climatology, so the
  baseline predicts that climatology (``gain = 0``).
* ``gain`` / ``offset`` per calendar month and cell, fitted on the training years (days where the target
  is valid), with means ``mu`` and standard deviations ``sd`` of target ``t`` and interpolated predictor ``p``:
  temperature-like targets: mean and variance correction, ``gain = sd_t / sd_p`` (capped at 10),
  ``offset = mu_t - gain * mu_p``; precipitation-like: multiplicative mean correction, ``gain = mu_t / mu_p``,
  ``offset = 0`` (stays non-negative); generic: additive mean correction, ``gain = 1``, ``offset = mu_t - mu_p``.
  A month absent from the training years (e.g. summer in winter-only data) uses the correction fitted on
  all training days (row 12, also used when no day of the year is given). Cells never valid get the
  domain-mean climatology (they are masked in every output anyway).
* Months are the calendar months of a 365-day year indexed by day of year (1 Jan = day 1): in leap years
  (and 360-day calendars) a month boundary moves by at most a day. Fitting and prediction use the same
  mapping, so the correction is consistent for any calendar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ml_benchmark_spategan.dataloader.errors import DataError
from ml_benchmark_spategan.dataloader.regrid import axis_weights, is_latitude, is_longitude
from ml_benchmark_spategan.variables import VariableInfo

MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
#: Row of the correction fitted on all training days.
ALL_MONTHS = 12
MAX_TEMPERATURE_GAIN = 10.0
_BLOCK_DAYS = 256


def month_of_doy() -> np.ndarray:
    """(367,) int64: month index 0..11 of day of year 1..366 in a 365-day year (366 -> December), and
    :data:`ALL_MONTHS` at index 0 (unknown day)."""
    months = np.repeat(np.arange(12), MONTH_DAYS)
    return np.concatenate([[ALL_MONTHS], months, [11]]).astype(np.int64)


# --- which predictor -------------------------------------------------------------------------------------
def _level(name: str) -> float:
    """Pressure level in a name like t_850 / t850 (hPa); surface-like names (no number) rank first."""
    match = re.search(r"(\d+)\s*$", name)
    return float(match.group(1)) if match else float("inf")


def matching_predictor(choice: str, target: VariableInfo, predictors: dict[str, VariableInfo]) -> str | None:
    """The predictor the baseline interpolates (None: the target's climatology); see the module docstring."""
    names = list(predictors)
    if choice == "none":
        return None
    if choice != "auto":
        if choice not in names:
            raise DataError(f"model.bilinear_predictor: predictor {choice!r} not among the predictors {names}")
        return choice
    same = [n for n in names if predictors[n].kind == target.kind and target.kind != "generic"]
    if target.name in names:
        return target.name
    if not same:
        return None
    return sorted(same, key=lambda n: (-_level(n), names.index(n)))[0]


# --- where each target cell lies in the predictor grid ---------------------------------------------------
def _find(da: xr.DataArray, test) -> xr.DataArray | None:
    for name in da.coords:
        coord = da.coords[name]
        if coord.ndim in (1, 2) and set(coord.dims) <= set(da.dims[-2:]) and test(coord):
            return coord
    return None


def _target_points(target: xr.DataArray) -> tuple[np.ndarray, np.ndarray] | None:
    """(lat, lon) of every target cell, each (H, W), or None without geographic coordinates."""
    lat, lon = _find(target, is_latitude), _find(target, is_longitude)
    if lat is None or lon is None:
        return None
    row, col = target.dims[-2:]
    lat2d, lon2d = xr.broadcast(lat, lon)
    return (np.asarray(lat2d.transpose(row, col).values, dtype=np.float64),
            np.asarray(lon2d.transpose(row, col).values, dtype=np.float64))


def point_weights(predictors: xr.DataArray, target: xr.DataArray) -> tuple[np.ndarray, np.ndarray, str]:
    """Bilinear weights from the predictor grid (dims -2, -1) to every target cell: (index (H*W, 4) int64
    into the flattened predictor grid, weight (H*W, 4) float32, a description of how cells were placed)."""
    pdims, tdims = predictors.dims[-2:], target.dims[-2:]
    h, w = (predictors.sizes[d] for d in pdims)
    H, W = (target.sizes[d] for d in tdims)
    points = _target_points(target)
    plat, plon = (predictors.coords.get(d) for d in pdims)
    if points is not None and plat is not None and plon is not None and is_latitude(plat) and is_longitude(plon):
        wy = axis_weights(plat.values, points[0].ravel(), clamp=True)
        wx = axis_weights(plon.values, points[1].ravel(), longitude=True, clamp=True)
        how = "geographic (target cell latitude/longitude within the predictor grid)"
    elif tuple(pdims) == tuple(tdims) and all(d in predictors.coords and d in target.coords for d in pdims):
        yy, xx = np.meshgrid(target[tdims[0]].values, target[tdims[1]].values, indexing="ij")
        wy = axis_weights(predictors[pdims[0]].values, yy.ravel(), clamp=True)
        wx = axis_weights(predictors[pdims[1]].values, xx.ravel(), clamp=True)
        how = f"by the shared coordinates {tuple(pdims)}"
    else:
        yy, xx = np.meshgrid((np.arange(H) + 0.5) * h / H - 0.5, (np.arange(W) + 0.5) * w / W - 0.5, indexing="ij")
        wy = axis_weights(np.arange(h), yy.ravel(), clamp=True)
        wx = axis_weights(np.arange(w), xx.ravel(), clamp=True)
        how = "extents aligned (no common coordinates to place the target cells)"
    index = np.stack([wy.lo * w + wx.lo, wy.lo * w + wx.hi, wy.hi * w + wx.lo, wy.hi * w + wx.hi], axis=1)
    weight = np.stack([(1 - wy.w) * (1 - wx.w), (1 - wy.w) * wx.w, wy.w * (1 - wx.w), wy.w * wx.w], axis=1)
    return index.astype(np.int64), weight.astype(np.float32), how


def interpolate_points(field: np.ndarray, index: np.ndarray, weight: np.ndarray, shape) -> np.ndarray:
    """(n, h, w) predictor fields -> (n, H, W) at the target cells (float64)."""
    flat = np.asarray(field, dtype=np.float64).reshape(field.shape[0], -1)
    return (flat[:, index] * weight).sum(axis=-1).reshape(field.shape[0], *shape)


# --- the fit ---------------------------------------------------------------------------------------------
@dataclass
class BaselineFit:
    """Everything :class:`~ml_benchmark_spategan.model.baselines.BilinearBaseline` loads: numpy arrays plus
    the chosen predictor (None: climatology) and a one-line description for the run log."""

    predictor: str | None
    channel: int
    index: np.ndarray
    weight: np.ndarray
    gain: np.ndarray  # (13, H, W) float32
    offset: np.ndarray  # (13, H, W) float32
    description: str


def _moments(train, channel: int, index, weight, shape, months: np.ndarray) -> np.ndarray:
    """Sums per (month row, cell): [n, sum t, sum t^2, sum p, sum p^2] over valid target days; (13, 5, H, W)."""
    sums = np.zeros((ALL_MONTHS + 1, 5, *shape))
    for start in range(0, train.n_days, _BLOCK_DAYS):
        block = slice(start, start + _BLOCK_DAYS)
        t = np.asarray(train.target.isel(time=block).values, dtype=np.float64)
        valid = np.isfinite(t)
        t = np.where(valid, t, 0.0)
        if channel >= 0:
            field = train.predictors.isel(time=block, channel=channel).values
            p = np.where(valid, interpolate_points(field, index, weight, shape), 0.0)
        else:
            p = np.zeros_like(t)
        for m in np.unique(months[block]):
            sel = months[block] == m
            part = np.stack([valid[sel].sum(0), t[sel].sum(0), (t[sel] ** 2).sum(0), p[sel].sum(0),
                             (p[sel] ** 2).sum(0)])
            sums[m] += part
            sums[ALL_MONTHS] += part
    return sums


def _correction(sums: np.ndarray, kind: str, has_predictor: bool) -> tuple[np.ndarray, np.ndarray]:
    n = sums[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mu_t, mu_p = sums[:, 1] / n, sums[:, 3] / n
        sd_t = np.sqrt(np.maximum(sums[:, 2] / n - mu_t**2, 0.0))
        sd_p = np.sqrt(np.maximum(sums[:, 4] / n - mu_p**2, 0.0))
        if not has_predictor:
            gain = np.zeros_like(mu_t)
        elif kind == "temperature":
            gain = np.where(sd_p > 1e-12, np.minimum(sd_t / sd_p, MAX_TEMPERATURE_GAIN), 0.0)
        elif kind == "precipitation":
            gain = np.where(mu_p > 1e-30, mu_t / mu_p, 0.0)
        else:
            gain = np.ones_like(mu_t)
        offset = np.zeros_like(mu_t) if (has_predictor and kind == "precipitation") else mu_t - gain * mu_p
        offset = np.where((gain == 0) & (n > 0), mu_t, offset)
    missing = n == 0  # months absent from training (or never-valid cells): the all-days fit
    gain = np.where(missing, gain[ALL_MONTHS], gain)
    offset = np.where(missing, offset[ALL_MONTHS], offset)
    never = ~np.isfinite(offset) | ~np.isfinite(gain)
    fallback = float(np.nanmean(mu_t[ALL_MONTHS])) if np.isfinite(mu_t[ALL_MONTHS]).any() else 0.0
    return np.where(never, 0.0, gain).astype(np.float32), np.where(never, fallback, offset).astype(np.float32)


def fit_bilinear_baseline(train, choice: str = "auto") -> BaselineFit:
    """Fit the baseline on the training split ``train`` (a :class:`~.reader.DomainData`); see module docstring."""
    info = train.info
    predictor = matching_predictor(choice, info, dict(train.predictor_info) or
                                   {c: VariableInfo(c, "generic") for c in train.channels})
    channel = train.channels.index(predictor) if predictor is not None else -1
    shape = tuple(train.target.shape[1:])
    index, weight, how = point_weights(train.predictors, train.target)
    months = month_of_doy()[np.asarray(xr.DataArray(train.time, dims="time").dt.dayofyear.values)]
    sums = _moments(train, channel, index, weight, shape, months)
    gain, offset = _correction(sums, info.kind, predictor is not None)
    if predictor is None:
        what = "the target's monthly training climatology (no predictor of its kind)"
    else:
        what = (f"predictor {predictor!r} interpolated bilinearly ({how}) with a per-cell monthly "
                f"{'mean and variance' if info.kind == 'temperature' else 'mean'} correction")
    return BaselineFit(predictor, channel, index, weight, gain, offset, f"bilinear baseline: {what}")
