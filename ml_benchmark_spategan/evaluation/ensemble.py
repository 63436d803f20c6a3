"""Ensemble and neighbourhood scores: CRPS, rank histogram, spread-skill ratio, FSS.

Written as tested formulas (``properscoring`` / ``xskillscore`` are not installed; no new packages).
``obs`` is the reference DataArray (time, <spatial dims>), ``ens`` the prediction with a ``member`` dim.
Everything is vectorised over grid points and time; dask inputs work (CRPS stays lazy; the rank
histogram and FSS are reductions and return computed arrays).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage
import xarray as xr

from ._common import MEMBER, TIME, spatial_dims

_DAYS_PER_BLOCK = 366
_POINTS_PER_BLOCK = 1 << 20


def _require_member(ens: xr.DataArray, member_dim: str, where: str) -> None:
    if member_dim not in ens.dims:
        raise ValueError(f"{where}: ensemble has no {member_dim!r} dimension (dims: {tuple(ens.dims)})")


def sort_members(x: np.ndarray) -> np.ndarray:
    """Sort along axis 0 (members first). For m <= 12 an odd-even transposition network of vectorised
    min/max over whole member slices (much faster than ``np.sort`` along a short axis); else ``np.sort``.
    NaN propagates through the network (the CRPS of such a point is NaN either way)."""
    m = x.shape[0]
    if m > 12:
        return np.sort(x, axis=0)
    rows = [x[i] for i in range(m)]
    for rnd in range(m):
        for i in range(rnd % 2, m - 1, 2):
            rows[i], rows[i + 1] = np.minimum(rows[i], rows[i + 1]), np.maximum(rows[i], rows[i + 1])
    return np.stack(rows)


def crps_sorted(y: np.ndarray, x_sorted: np.ndarray, fair: bool = False) -> np.ndarray:
    """CRPS of members sorted along axis 0, (m, ...), against ``y`` (...); O(m log m) per point.

    ``CRPS = mean_i |x_i - y| - S / (2 m^2)`` (standard) or ``- S / (2 m (m - 1))`` (fair, Ferro 2014),
    with ``S = sum_ij |x_i - x_j| = 2 sum_i (2i - m - 1) x_(i)`` for sorted members (i = 1..m).
    """
    m = x_sorted.shape[0]
    if fair and m < 2:
        raise ValueError(f"fair CRPS needs at least 2 members, got {m}")
    y = np.asarray(y, dtype=np.float64)
    skill = np.zeros(np.broadcast_shapes(y.shape, x_sorted.shape[1:]))
    pair_sum = np.zeros_like(skill)
    for i in range(m):
        xi = x_sorted[i].astype(np.float64)
        skill += np.abs(xi - y)
        pair_sum += (2.0 * (2 * i + 1 - m)) * xi
    return skill / m - pair_sum / (2.0 * m * (m - 1 if fair else m))


def _crps_core(y: np.ndarray, x: np.ndarray, fair: bool) -> np.ndarray:
    """apply_ufunc core: ``x`` has members last; processed member-first in blocks of points."""
    x = np.moveaxis(x, -1, 0)
    y, _ = np.broadcast_arrays(np.asarray(y), x[0])
    shape = y.shape
    xf, yf = x.reshape(x.shape[0], -1), y.reshape(-1)
    out = np.empty(yf.shape)
    for s in range(0, yf.size, _POINTS_PER_BLOCK):
        block = slice(s, s + _POINTS_PER_BLOCK)
        out[block] = crps_sorted(yf[block], sort_members(np.ascontiguousarray(xf[:, block])), fair)
    return out.reshape(shape)


def crps(obs: xr.DataArray, ens: xr.DataArray, member_dim: str = MEMBER, fair: bool = False,
         dim: str | Sequence[str] | None = None) -> xr.DataArray:
    """Continuous ranked probability score of an ensemble, per (time, grid point), optionally averaged over ``dim``.

    ``fair=True`` gives the unbiased (fair) estimator. A one-member ensemble gives MAE (standard).
    NaN policy: a NaN observation or member gives NaN at that point; the ``dim`` mean skips NaN.
    Units of the variable.
    """
    _require_member(ens, member_dim, "crps")
    if ens.chunks is not None:
        ens = ens.chunk({member_dim: -1})
    score = xr.apply_ufunc(_crps_core, obs, ens, kwargs={"fair": fair},
                           input_core_dims=[[], [member_dim]], dask="parallelized", output_dtypes=[np.float64])
    return score if dim is None else score.mean(dim)


# --- rank histogram ------------------------------------------------------------------------------------
def ranks_with_ties(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of ``y`` (...) among members ``x`` (..., m), 0..m, ties broken uniformly at random; -1 where NaN."""
    valid = ~(np.isnan(y) | np.isnan(x).any(axis=-1))
    below = (x < y[..., None]).sum(axis=-1)
    ties = (x == y[..., None]).sum(axis=-1)
    tied = np.flatnonzero(ties)
    ranks = below.ravel()
    ranks[tied] += rng.integers(0, ties.ravel()[tied] + 1)
    return np.where(valid, ranks.reshape(below.shape), -1)


def rank_counts(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Histogram (m + 1,) of :func:`ranks_with_ties` over all valid points."""
    ranks = ranks_with_ties(y, x, rng)
    return np.bincount(ranks[ranks >= 0], minlength=x.shape[-1] + 1)


def rank_histogram(obs: xr.DataArray, ens: xr.DataArray, member_dim: str = MEMBER, seed: int = 0) -> xr.DataArray:
    """Rank histogram (counts, dim ``rank`` = 0..m) pooled over time and grid points.

    Ties (frequent for pr: many zeros) are broken at random with a generator seeded by ``seed``; data are
    read in fixed blocks of days, so the result is reproducible and independent of dask chunking.
    Points where the observation or any member is NaN are left out.
    """
    _require_member(ens, member_dim, "rank_histogram")
    ydim, xdim = spatial_dims(obs, "rank_histogram")
    o = obs.transpose(TIME, ydim, xdim)
    e = ens.transpose(TIME, ydim, xdim, member_dim)
    rng = np.random.default_rng(seed)
    counts = np.zeros(ens.sizes[member_dim] + 1, dtype=np.int64)
    for start in range(0, o.sizes[TIME], _DAYS_PER_BLOCK):
        block = {TIME: slice(start, start + _DAYS_PER_BLOCK)}
        y = np.asarray(o.isel(block).values, dtype=np.float64)
        counts += rank_counts(y, np.asarray(e.isel(block).values, dtype=np.float64), rng)
    return xr.DataArray(counts, dims=["rank"], coords={"rank": np.arange(counts.size)}, name="rank_histogram")


# --- spread-skill ----------------------------------------------------------------------------------------
def spread_correction(m: int) -> float:
    """``(m + 1) / m``: for a reliable ensemble of m members ``E[(mean_ens - obs)^2] = (m + 1)/m * E[var_ens]``
    (var_ens with ddof 1; Fortin et al. 2014), so the corrected spread of a reliable ensemble equals its RMSE."""
    return (m + 1) / m


def spread_skill_from_means(mean_var, mean_err2, m: int, correction: bool = True):
    """``sqrt(c * mean var_ens) / sqrt(mean (mean_ens - obs)^2)`` with ``c = (m + 1)/m`` (or 1 without
    ``correction``): the one formula behind every spread-skill ratio of the package (arrays or scalars)."""
    factor = spread_correction(m) if correction else 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(factor * mean_var) / np.sqrt(mean_err2)


def spread_skill_ratio(obs: xr.DataArray, ens: xr.DataArray, member_dim: str = MEMBER,
                       dim: str | Sequence[str] | None = None, correction: bool = True) -> xr.DataArray:
    """Spread-skill ratio ``sqrt(mean var_ens) / RMSE(ensemble mean)`` over ``dim`` (all non-member dims if None).

    ``var_ens`` is the unbiased (ddof 1) member variance. For a reliable ensemble of m members
    ``E[(mean_ens - obs)^2] = (m + 1)/m * E[var_ens]`` (Fortin et al. 2014), so ``correction=True`` multiplies
    the variance by ``(m + 1)/m`` and a reliable ensemble scores 1 (without it: sqrt(m / (m + 1))).
    NaN: skipped in the means.
    """
    _require_member(ens, member_dim, "spread_skill_ratio")
    m = ens.sizes[member_dim]
    if m < 2:
        raise ValueError(f"spread_skill_ratio needs at least 2 members along {member_dim!r}, got {m}")
    var = ens.var(member_dim, ddof=1)
    err2 = (ens.mean(member_dim) - obs) ** 2
    dims = [d for d in err2.dims] if dim is None else dim
    return spread_skill_from_means(var.mean(dims), err2.mean(dims), m, correction)


# --- FSS -------------------------------------------------------------------------------------------------
def fss_sums(obs: np.ndarray, pred: np.ndarray, thresholds: Sequence[float], scales: Sequence[int]) -> np.ndarray:
    """Sums for the FSS: (n_thr, n_scale[, m], 2) = [sum (Fo - Ff)^2, sum Fo^2 + sum Ff^2].

    obs (T, ny, nx); pred (T, ny, nx) or (T, m, ny, nx) (then per member). Events are ``x >= threshold``;
    fractions use ``scipy.ndimage.uniform_filter`` of size ``scale`` over the two spatial axes only
    (zero padding outside the domain; float32 fractions, float64 sums: relative error ~1e-7). Cells where obs or pred is NaN are no event in both.
    """
    obs, pred = np.asarray(obs), np.asarray(pred)
    if pred.ndim == 4:
        obs = obs[:, None]
    nan = np.isnan(obs) | np.isnan(pred)
    has_nan = bool(nan.any())
    out = np.empty((len(thresholds), len(scales), *(pred.shape[1:2] if pred.ndim == 4 else ()), 2))
    sum_axes = (0, 2, 3) if pred.ndim == 4 else (0, 1, 2)
    for i, thr in enumerate(thresholds):
        ev_o = _events(obs, thr, nan if has_nan else None)
        ev_f = _events(pred, thr, nan if has_nan else None)
        for j, scale in enumerate(scales):
            size = (1,) * (pred.ndim - 2) + (int(scale), int(scale))
            fo = scipy.ndimage.uniform_filter(ev_o, size=size, mode="constant")
            ff = scipy.ndimage.uniform_filter(ev_f, size=size, mode="constant")
            out[i, j, ..., 0] = ((fo - ff) ** 2).sum(axis=sum_axes, dtype=np.float64)
            out[i, j, ..., 1] = (fo * fo).sum(axis=sum_axes, dtype=np.float64) \
                + (ff * ff).sum(axis=sum_axes, dtype=np.float64)
    return out


def _events(x: np.ndarray, threshold: float, nan: np.ndarray | None) -> np.ndarray:
    """float32 event field ``x >= threshold``; 0 where ``nan`` (broadcast to its shape) is True."""
    ev = (x >= threshold).astype(np.float32)
    return ev if nan is None else np.where(nan, np.float32(0.0), ev)


def fss_from_sums(sums: np.ndarray) -> np.ndarray:
    """``FSS = 1 - sum (Fo - Ff)^2 / (sum Fo^2 + sum Ff^2)``; NaN where neither field has an event."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[..., 1] > 0, 1.0 - sums[..., 0] / sums[..., 1], np.nan)


def fss_dataarray(score: np.ndarray, thresholds, scales, members=None) -> xr.DataArray:
    dims = ["threshold", "scale"] + ([MEMBER] if score.ndim == 3 else [])
    coords = {"threshold": np.asarray(thresholds, dtype=np.float64), "scale": np.asarray(scales, dtype=np.int64)}
    if members is not None and score.ndim == 3:
        coords[MEMBER] = members
    return xr.DataArray(score, dims=dims, coords=coords, name="fss")


def fss(obs: xr.DataArray, pred: xr.DataArray, thresholds: Sequence[float], scales: Sequence[int],
        member_dim: str = MEMBER) -> xr.DataArray:
    """Fractions skill score (Roberts & Lean 2008) per threshold and neighbourhood scale (grid cells).

    Aggregated over the whole period: the sums run over time and space before the ratio. With a
    ``member`` dim in ``pred`` the score is per member. Returns dims (threshold, scale[, member]); a
    perfect prediction gives 1. Processed in blocks of days, so dask/large inputs stay bounded in memory.
    """
    ydim, xdim = spatial_dims(obs, "fss")
    o = obs.transpose(TIME, ydim, xdim)
    has_member = member_dim in pred.dims
    p = pred.transpose(TIME, *([member_dim] if has_member else []), ydim, xdim)
    total = None
    for start in range(0, o.sizes[TIME], _DAYS_PER_BLOCK):
        block = slice(start, start + _DAYS_PER_BLOCK)
        sums = fss_sums(o.isel({TIME: block}).values, p.isel({TIME: block}).values, thresholds, scales)
        total = sums if total is None else total + sums
    members = p[member_dim].values if has_member and member_dim in p.coords else None
    return fss_dataarray(fss_from_sums(total), thresholds, scales, members)
