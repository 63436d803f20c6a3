"""The CORDEX ML-Bench evaluation formulas, written the way the benchmark's own code computes them.

Baseline for ``bench_metrics.py`` only (not used by the package). Written from the documented semantics in
``shared/cordex/SCHEMA.md`` §4 (the benchmark's ``evaluation/indices.py`` and ``diagnostics.py``): plain
xarray reductions on ``ds[[var]]``, ``resample(time='1YE')`` / ``groupby('time.year')`` for annual indices,
a per-point spell function vectorised by ``apply_ufunc(vectorize=True)``, ``fft2`` + ``fftshift`` with a
per-field radial average, ``xr.corr`` for correlations and scipy's Wasserstein distance (per grid point in a
loop for the map). Where a step could be written faster without changing what the benchmark does (the
per-point spell length, the radial average), the faster form is used, so the ratios are conservative.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import xarray as xr

SEASONS = {"winter": "DJF", "spring": "MAM", "summer": "JJA", "autumn": "SON"}


def _season(ds: xr.Dataset, season: str | None) -> xr.Dataset:
    if season in SEASONS:
        return ds.where(ds.time.dt.season == SEASONS[season], drop=True)
    return ds


def rmse(x0, x1, var, season=None, dim=None):
    x0, x1 = _season(x0, season), _season(x1, season)
    return np.sqrt(((x1[[var]] - x0[[var]]) ** 2).mean(dim=dim))


def mean(x, var):
    return x[[var]].mean("time", skipna=True)


def su(x, var, season=None, threshold=300.0):
    x = _season(x, season)
    return (x[[var]] > threshold).groupby("time.year").sum("time").mean("year")


def txx(x, var, season=None):
    return _season(x, season)[[var]].resample(time="1YE").max().mean("time")


def rx1day(x, var, season=None):
    return _season(x, season)[[var]].resample(time="1YE").max().mean("time")


def sdii(x, var, season=None, wet_threshold=1.0):
    da = _season(x, season)[[var]]
    return da.where(da >= wet_threshold).mean("time", skipna=True)


def _longest_run(flags: np.ndarray) -> int:
    """Longest run of True in a 1-D boolean array."""
    padded = np.diff(np.r_[0, flags.astype(np.int8), 0])
    starts, ends = np.flatnonzero(padded == 1), np.flatnonzero(padded == -1)
    return int((ends - starts).max()) if starts.size else 0


def cwd(x, var, season=None, wet_threshold=1.0):
    wet = _season(x, season)[[var]] >= wet_threshold

    def per_year(group):
        return xr.apply_ufunc(_longest_run, group, input_core_dims=[["time"]], vectorize=True)

    return wet.groupby("time.year").map(per_year).mean("year")


def bias_index(x0, x1, index_fn, var, season=None, **kwargs):
    if season is not None:
        kwargs["season"] = season
    return index_fn(x1, var, **kwargs) - index_fn(x0, var, **kwargs)


def _radial_average(image: np.ndarray) -> np.ndarray:
    ny, nx = image.shape
    row, col = np.indices(image.shape)
    r = np.hypot(col - (nx - 1) / 2.0, row - (ny - 1) / 2.0).astype(int)
    return np.bincount(r.ravel(), image.ravel()) / np.bincount(r.ravel())


def psd(x0, x1, var, season=None):
    out = []
    for x in (x0, x1):
        values = np.nan_to_num(_season(x, season)[var].values, nan=0.0)
        power = np.abs(np.fft.fftshift(np.fft.fft2(values), axes=(-2, -1))) ** 2
        out.append(xr.DataArray(np.mean([_radial_average(p) for p in power], axis=0), dims=["wavenumber"]))
    return out[0].rename("PSD_x0"), out[1].rename("PSD_x1")


def ralsd(psd_x0, psd_x1):
    return float(np.mean((10 * np.log10(psd_x0.values / np.maximum(psd_x1.values, 1e-30))) ** 2))


def wasserstein_distance(x0, x1, var, season=None, spatial=False):
    a0 = np.nan_to_num(_season(x0, season)[var].values, nan=0.0)
    a1 = np.nan_to_num(_season(x1, season)[var].values, nan=0.0)
    if not spatial:
        return float(scipy.stats.wasserstein_distance_nd(a0.ravel(), a1.ravel()))
    out = np.empty(a0.shape[1:])
    for i in range(a0.shape[1]):
        for j in range(a0.shape[2]):
            out[i, j] = scipy.stats.wasserstein_distance(a0[:, i, j], a1[:, i, j])
    return xr.DataArray(out, dims=x0[var].dims[1:])


def bias_multivariable_correlation(x0, x1, var_x, var_y, season=None):
    c0 = xr.corr(_season(x0, season)[var_x], _season(x0, season)[var_y], dim="time")
    c1 = xr.corr(_season(x1, season)[var_x], _season(x1, season)[var_y], dim="time")
    return xr.Dataset({"correlation_x0": c0, "correlation_x1": c1, "correlation_bias": c1 - c0})
