"""Diagnostics with the CORDEX ML-Bench definitions (x0 = reference, x1 = prediction).

Inputs are ``xr.DataArray`` (time, <spatial dims>[, member]) or ``xr.Dataset`` plus ``var``; ``season``
as in :mod:`.indices`. Outputs are DataArrays named after the variable (the benchmark returns a
one-variable Dataset for ``rmse``; ``ds[[var]]`` vs ``ds[var]`` is the only difference).

Alignment: by default x0 and x1 are combined with xarray's inner-join alignment, as the benchmark does
(coordinates that differ by a float32 ulp silently drop points). ``strict=True`` runs
:func:`check_same_coords` first and raises instead.

Member policy: an x1 ``member`` dim broadcasts against x0, so maps and indices are per member;
``rmse(dim=None)`` pools members; ``wasserstein_distance`` pools members into one sample per grid point
(or one global sample); the PSD (:mod:`.spectra`) pools members.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import dask
import numpy as np
import xarray as xr

from . import indices as _indices
from ._common import (
    BLOCK_DAYS,
    MEMBER,
    TIME,
    check_same_coords,
    filter_season,
    is_dask,
    prepare_pair,
    same_grid,
    select_var,
    single_time_chunk,
    spatial_dims,
    time_first_values,
    time_sum,
    without_time,
)
from .spectra import psd, psd_corrected, ralsd, ralsd_rms  # noqa: F401  (benchmark names live here too)

_POINTS_PER_BLOCK = 256


def rmse(x0, x1, var: str | None = None, season: str | None = None, dim: str | list[str] | None = None,
         strict: bool = False) -> xr.DataArray:
    """``sqrt(mean((x1 - x0)^2))`` over ``dim`` (all dims when None; members pooled). Units of the variable.

    NaN policy: skipna mean (a NaN in either input drops that pair). Alignment: see module docstring.
    """
    a0, a1 = prepare_pair(x0, x1, var, season, strict, "rmse")
    if dim in (TIME, [TIME], (TIME,)) and same_grid(a0, a1) and not (is_dask(a0) or is_dask(a1)):
        return _rmse_time(a0, a1)
    sq = (a1 - a0) ** 2
    mse = sq.mean() if dim is None else sq.mean(dim)
    return np.sqrt(mse).rename(a1.name)


def _rmse_time(a0: xr.DataArray, a1: xr.DataArray) -> xr.DataArray:
    """RMSE over time of two in-memory arrays on one grid: one blocked pass (no full-size temporaries);
    points with a NaN (rare: masked cells) are recomputed with the skipna mean."""
    v0, v1 = time_first_values(a0), time_first_values(a1)
    dtype = np.result_type(v0, v1)
    v0, v1 = v0.astype(dtype, copy=False), v1.astype(dtype, copy=False)

    def squared_diff(days, out):
        np.subtract(v1[days], v0[days], out=out)
        return np.multiply(out, out, out=out)

    mse = time_sum(v1, squared_diff) / v0.shape[0]
    bad = np.isnan(mse)
    if bad.any():  # skipna mean where a pair has NaN
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points stay NaN
            mse[bad] = np.nanmean((v1[:, bad].astype(np.float64) - v0[:, bad]) ** 2, axis=0)
    return without_time(a1, np.sqrt(mse).astype(dtype, copy=False))


def _resolve_index(index_fn: Callable | str) -> Callable:
    if callable(index_fn):
        return index_fn
    try:
        return _indices.INDICES[index_fn]
    except KeyError:
        raise ValueError(f"unknown index {index_fn!r}; expected one of {sorted(_indices.INDICES)}") from None


def _index_pair(x0, x1, index_fn, var, season, strict, kwargs):
    fn = _resolve_index(index_fn)
    i0, i1 = fn(x0, var=var, season=season, **kwargs), fn(x1, var=var, season=season, **kwargs)
    if strict:
        check_same_coords(i0, i1)
    return i0, i1


def bias_index(x0, x1, index_fn: Callable | str, var: str | None = None, season: str | None = None,
               relative: bool = False, strict: bool = False, **index_kwargs) -> xr.DataArray:
    """Bias of an index: ``index(x1) - index(x0)``, or ``(index(x1) - index(x0)) / index(x0)`` if relative.

    ``index_fn``: a function of :mod:`.indices` or its name. Unlike the benchmark, ``mean``/``quantile``
    work with a season. The relative bias divides by zero where ``index(x0)`` is 0 (inf/NaN kept).
    """
    i0, i1 = _index_pair(x0, x1, index_fn, var, season, strict, index_kwargs)
    bias = i1 - i0
    return bias / i0 if relative else bias


def ratio_index(x0, x1, index_fn: Callable | str, var: str | None = None, season: str | None = None,
                strict: bool = False, **index_kwargs) -> xr.DataArray:
    """Ratio of an index: ``index(x1) / index(x0)``."""
    i0, i1 = _index_pair(x0, x1, index_fn, var, season, strict, index_kwargs)
    return i1 / i0


def bias_multivariable_correlation(x0: xr.Dataset, x1: xr.Dataset, var_x: str, var_y: str,
                                   season: str | None = None, strict: bool = False) -> xr.Dataset:
    """Pearson correlation over time of ``var_x`` with ``var_y`` at each grid point, and its bias.

    Returns a Dataset with ``correlation_x0``, ``correlation_x1`` (per member if present) and
    ``correlation_bias = correlation_x1 - correlation_x0``. Time steps where either variable is NaN are
    dropped pairwise (xarray ``corr``).
    """
    c = {}
    for key, ds in (("x0", x0), ("x1", x1)):
        ax = filter_season(select_var(ds, var_x, "bias_multivariable_correlation"), season)
        ay = filter_season(select_var(ds, var_y, "bias_multivariable_correlation"), season)
        c[key] = _corr_time(ax, ay)
    if strict:
        check_same_coords(c["x0"], c["x1"])
    return xr.Dataset({"correlation_x0": c["x0"], "correlation_x1": c["x1"],
                       "correlation_bias": c["x1"] - c["x0"]})


def _corr_time(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """Pearson over time per point (same numbers as ``xr.corr(a, b, dim='time')``; vectorised numpy)."""
    if same_grid(a, b) and not (is_dask(a) or is_dask(b)):
        r = _pearson_time_blocked(time_first_values(a), time_first_values(b))
        if r is not None:
            return without_time(a, r, name=None)
    return _corr_time_ufunc(a, b)


def _pearson_time_blocked(u: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    """Pearson along axis 0 in two blocked passes (means, then centred float64 sums); None when a NaN
    occurs (pairwise NaN handling is left to the general path)."""
    n = u.shape[0]
    mu, mv = time_sum(u) / n, time_sum(v) / n
    if np.isnan(mu).any() or np.isnan(mv).any():
        return None
    u2, v2 = u.reshape(n, -1), v.reshape(n, -1)
    mu, mv = mu.reshape(-1), mv.reshape(-1)
    suv, suu, svv = (np.zeros(u2.shape[1]) for _ in range(3))
    bu = np.empty((min(BLOCK_DAYS, n), u2.shape[1]))
    bv = np.empty_like(bu)
    for start in range(0, n, BLOCK_DAYS):
        days = slice(start, min(start + BLOCK_DAYS, n))
        cu, cv = bu[:days.stop - start], bv[:days.stop - start]
        np.subtract(u2[days], mu, out=cu)
        np.subtract(v2[days], mv, out=cv)
        suv += np.einsum("ij,ij->j", cu, cv)
        suu += np.einsum("ij,ij->j", cu, cu)
        svv += np.einsum("ij,ij->j", cv, cv)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (suv / np.sqrt(suu * svv)).reshape(u.shape[1:])


def _corr_time_ufunc(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    def core(u, v):
        u, v = np.moveaxis(u, -1, 0), np.moveaxis(v, -1, 0)
        with np.errstate(invalid="ignore"):  # centring first limits cancellation in the sums
            u = u - np.nanmean(u, axis=0, dtype=np.float64)
            v = v - np.nanmean(v, axis=0, dtype=np.float64)
        return _indices.pearson_axis0(u, v)
    a, b = single_time_chunk(a), single_time_chunk(b)
    return xr.apply_ufunc(core, a, b, input_core_dims=[[TIME], [TIME]], dask="parallelized",
                          output_dtypes=[np.float64])


# --- one-number reductions (README) ------------------------------------------------------------------
def spatial_mean(da: xr.DataArray) -> xr.DataArray:
    """Mean over the two spatial dims (skipna: NaN cells, e.g. masked sea, are left out); other dims (e.g.
    member) kept."""
    return da.mean(list(spatial_dims(da, "spatial_mean")))


def spatial_mean_abs(da: xr.DataArray) -> xr.DataArray:
    """Spatial mean of ``|da|``: the README's one-number reduction of an index bias map."""
    return spatial_mean(abs(da))


def rmse_score(x0, x1, var: str | None = None, season: str | None = None, strict: bool = False) -> xr.DataArray:
    """Spatial mean of the RMSE-over-time map (the README's one number; per member if present)."""
    return spatial_mean(rmse(x0, x1, var, season, dim=TIME, strict=strict))


# --- Wasserstein --------------------------------------------------------------------------------------
def w1_sorted(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between samples sorted along the last axis: (..., n), (..., m) -> (...).

    ``W1 = integral_0^1 |U^-1(t) - V^-1(t)| dt``: the quantile functions are step functions with steps at
    i/n and j/m, so the integral is a weighted sum over the merged steps (equals
    ``scipy.stats.wasserstein_distance`` on each 1-D sample).
    """
    n, m = u.shape[-1], v.shape[-1]
    if n == m:
        return np.mean(np.abs(u.astype(np.float64) - v), axis=-1)
    edges = np.unique(np.concatenate([[0.0], np.arange(1, n + 1) / n, np.arange(1, m + 1) / m]))
    widths = np.diff(edges)
    mids = edges[:-1] + widths / 2
    iu = np.minimum((mids * n).astype(np.int64), n - 1)
    iv = np.minimum((mids * m).astype(np.int64), m - 1)
    return np.abs(u[..., iu].astype(np.float64) - v[..., iv]) @ widths


def _w1_points(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per-point W1 over the last axis (samples): NaN samples left out; NaN where a point has no finite
    sample in ``u`` or ``v`` (e.g. a masked sea cell). Complete points are sorted and processed in blocks."""
    lead = u.shape[:-1]
    u2, v2 = u.reshape(-1, u.shape[-1]), v.reshape(-1, v.shape[-1])
    nan_u, nan_v = np.isnan(u2), np.isnan(v2)
    complete = ~(nan_u.any(axis=1) | nan_v.any(axis=1))
    out = np.full(u2.shape[0], np.nan)
    rows = np.arange(u2.shape[0]) if complete.all() else np.flatnonzero(complete)
    for s in range(0, rows.size, _POINTS_PER_BLOCK):
        block = rows[s:s + _POINTS_PER_BLOCK]
        block = slice(block[0], block[-1] + 1) if complete.all() else block
        out[block] = w1_sorted(np.sort(u2[block], axis=-1), np.sort(v2[block], axis=-1))
    for i in np.flatnonzero(~complete):  # partly NaN (rare): each sample without its NaN values
        a, b = u2[i][~nan_u[i]], v2[i][~nan_v[i]]
        if a.size and b.size:
            out[i] = w1_sorted(np.sort(a), np.sort(b))
    return out.reshape(lead)


def _w1_map_in_memory(a0: xr.DataArray, a1: xr.DataArray) -> np.ndarray | None:
    """Per-point W1 of in-memory (time, y, x) arrays without NaN, read in blocks of points straight from
    the time-first layout (no full transposed copy); None when the general path is needed."""
    if a0.ndim != 3 or a1.ndim != 3 or a0.shape[1:] != a1.shape[1:] or is_dask(a0) or is_dask(a1):
        return None
    v0, v1 = time_first_values(a0), time_first_values(a1)
    if v0 is None or v1 is None or not v0.size or not v1.size or np.isnan(v0.min()) or np.isnan(v1.min()):
        return None
    u2, w2 = v0.reshape(v0.shape[0], -1), v1.reshape(v1.shape[0], -1)
    out = np.empty(u2.shape[1])
    for s in range(0, u2.shape[1], _POINTS_PER_BLOCK):
        block = slice(s, s + _POINTS_PER_BLOCK)
        u, w = np.ascontiguousarray(u2[:, block].T), np.ascontiguousarray(w2[:, block].T)
        u.sort(axis=-1)
        w.sort(axis=-1)
        out[block] = w1_sorted(u, w)
    return out.reshape(v0.shape[1:])


def _as_samples(da: xr.DataArray) -> xr.DataArray:
    dims = [d for d in (TIME, MEMBER) if d in da.dims]
    da = da.stack(sample=dims) if len(dims) > 1 else da.rename({TIME: "sample"})
    da = da.drop_vars([c for c in ("sample", TIME, MEMBER) if c in da.coords])
    return da.chunk({"sample": -1}) if da.chunks is not None else da


def wasserstein_distance(x0, x1, var: str | None = None, season: str | None = None,
                         spatial: bool = False) -> float | xr.DataArray:
    """Wasserstein-1 distance between the value distributions of x0 and x1 (units of the variable).

    ``spatial=False``: all values (time, space and member) flattened into one sample each; returns a float
    (needs the data in memory; the two sorts run in two threads unless the thread setting is 1). ``spatial=True``: per grid point over
    time (members pooled into the sample); returns a map with the spatial dims only (no scalar ``time``
    coordinate, no other variables, unlike the benchmark's Dataset copy of ``x0.isel(time=0)``).
    NaN policy: NaN values are left out of each sample; a grid point without any finite value (a masked
    cell, e.g. sea) is NaN in the map, so the map's spatial mean runs over valid cells only. (The benchmark
    sets NaN to 0, which puts the same mass at 0 into both samples and shrinks the distance; on data
    without NaN, such as the benchmark's, both give the same numbers.) Positional, like the benchmark: no
    coordinate alignment.
    """
    a0, a1 = prepare_pair(x0, x1, var, season, False, "wasserstein_distance")
    if not spatial:
        def finite_sorted(a):
            values = np.asarray(a.values).ravel()
            if values.dtype.kind == "f" and np.isnan(values.min(initial=0.0)):
                values = values[~np.isnan(values)]
            return np.sort(values)

        with ThreadPoolExecutor(min(2, dask.config.get("num_workers", None) or 2)) as pool:
            u, v = pool.map(finite_sorted, (a0, a1))
        return float(w1_sorted(u, v)) if u.size and v.size else float("nan")
    ydim, xdim = spatial_dims(a0, "wasserstein_distance")
    fast = _w1_map_in_memory(a0, a1)
    if fast is not None:
        return xr.DataArray(fast, dims=(ydim, xdim), coords={d: a0[d] for d in (ydim, xdim) if d in a0.coords},
                            name=a0.name)
    s0, s1 = _as_samples(a0), _as_samples(a1)
    s1 = s1.rename({d: d0 for d, d0 in zip(spatial_dims(a1), (ydim, xdim), strict=True)})
    s1 = s1.assign_coords({d: s0[d] for d in (ydim, xdim) if d in s0.coords})
    return xr.apply_ufunc(
        _w1_points, s0, s1, input_core_dims=[["sample"], ["sample"]], exclude_dims={"sample"},
        dask="parallelized", output_dtypes=[np.float64],
    ).rename(a0.name)
