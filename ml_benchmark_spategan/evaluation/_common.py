"""Shared helpers of the evaluation package: variable selection, season filters, coordinate checks.

Conventions used throughout ``ml_benchmark_spategan.evaluation``:

* ``x0`` is the reference (truth), ``x1`` the prediction, as in the benchmark.
* Data are ``xr.DataArray`` with a ``time`` dimension, two spatial dimensions (``(lat, lon)`` or
  ``(y, x)``; always the last two non-``time``/``member`` dims) and optionally ``member``.
* Functions also accept an ``xr.Dataset`` plus a variable name (the benchmark's ``(ds, var)`` call style).

Seasons
-------
The benchmark's names are Northern-Hemisphere labels: ``winter`` -> DJF, ``spring`` -> MAM,
``summer`` -> JJA, ``autumn`` -> SON (so "summer" is the austral winter for NZ and SA). These keep their
benchmark meaning here. In addition the three-letter codes (``"DJF"`` ...) select directly and
``austral_*`` / ``boreal_*`` names are hemisphere-aware (``austral_summer`` -> DJF). Unlike the benchmark,
an unknown name raises instead of silently returning unfiltered data.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

TIME = "time"
MEMBER = "member"

#: Benchmark season names (Northern-Hemisphere labels, as in the benchmark's ``_filter_by_season``).
BENCHMARK_SEASONS = {"winter": "DJF", "spring": "MAM", "summer": "JJA", "autumn": "SON"}
_HEMISPHERE_SEASONS = {
    "boreal_winter": "DJF", "boreal_spring": "MAM", "boreal_summer": "JJA", "boreal_autumn": "SON",
    "austral_summer": "DJF", "austral_autumn": "MAM", "austral_winter": "JJA", "austral_spring": "SON",
}
SEASON_CODES = ("DJF", "MAM", "JJA", "SON")


def season_code(season: str) -> str:
    """Three-letter season code (DJF/MAM/JJA/SON) of a season name; ValueError on unknown names."""
    if season in SEASON_CODES:
        return season
    code = BENCHMARK_SEASONS.get(season) or _HEMISPHERE_SEASONS.get(season)
    if code is None:
        allowed = sorted([*SEASON_CODES, *BENCHMARK_SEASONS, *_HEMISPHERE_SEASONS])
        raise ValueError(f"unknown season {season!r}; expected one of {allowed}")
    return code


def season_mask(time: xr.DataArray, season: str | None) -> xr.DataArray:
    """Boolean DataArray over ``time``: True on the days of ``season`` (all True when None)."""
    if season is None:
        return xr.ones_like(time, dtype=bool)
    return time.dt.season == season_code(season)


def filter_season(da: xr.DataArray | xr.Dataset, season: str | None) -> xr.DataArray | xr.Dataset:
    """Keep only the days of ``season`` (see module docstring for names); None returns ``da`` unchanged.

    Works for datetime64 and cftime time axes. Removed days are dropped (not masked), as in the
    benchmark, so consecutive positions may be months apart afterwards.
    """
    if season is None:
        return da
    require_dim(da, TIME, "filter_season")
    return da.isel({TIME: season_mask(da[TIME], season).values})


def select_var(x: xr.DataArray | xr.Dataset, var: str | None, where: str) -> xr.DataArray:
    """``x`` itself if a DataArray, ``x[var]`` if a Dataset; clear errors otherwise."""
    if isinstance(x, xr.DataArray):
        return x
    if not isinstance(x, xr.Dataset):
        raise TypeError(f"{where}: expected xr.DataArray or xr.Dataset, got {type(x).__name__}")
    if var is None:
        raise ValueError(f"{where}: a Dataset was given, so 'var' is required (variables: {list(x.data_vars)})")
    if var not in x.data_vars:
        raise KeyError(f"{where}: variable {var!r} not in dataset (variables: {list(x.data_vars)})")
    return x[var]


def require_dim(da: xr.DataArray | xr.Dataset, dim: str, where: str) -> None:
    if dim not in da.dims:
        raise ValueError(f"{where}: dimension {dim!r} missing (dims: {tuple(da.dims)})")


def spatial_dims(da: xr.DataArray, where: str = "spatial_dims") -> tuple[str, str]:
    """The two spatial dims: the last two dims of ``da`` that are neither ``time`` nor ``member``."""
    dims = [d for d in da.dims if d not in (TIME, MEMBER)]
    if len(dims) < 2:
        raise ValueError(f"{where}: expected two spatial dims besides time/member, got dims {tuple(da.dims)}")
    return dims[-2], dims[-1]


def is_dask(da: xr.DataArray) -> bool:
    return da.chunks is not None


def single_time_chunk(da: xr.DataArray) -> xr.DataArray:
    """Rechunk a dask-backed array to one chunk along ``time`` (needed for core-dim ufuncs)."""
    if is_dask(da) and len(da.chunksizes[TIME]) > 1:
        return da.chunk({TIME: -1})
    return da


def check_same_coords(x0: xr.DataArray | xr.Dataset, x1: xr.DataArray | xr.Dataset, *, atol: float = 0.0) -> None:
    """Raise ValueError unless x0 and x1 share the values of every dimension coordinate they both have.

    Replaces xarray's silent inner-join alignment (which drops points whose coordinates differ by one
    float32 ulp) in the strict variants. The message names the dimension and the largest difference.
    Dimensions present in only one input (e.g. ``member``) are allowed (they broadcast).
    """
    for dim in x0.dims:
        if dim not in x1.dims:
            continue
        if x0.sizes[dim] != x1.sizes[dim]:
            raise ValueError(f"dimension {dim!r}: sizes differ (x0 {x0.sizes[dim]}, x1 {x1.sizes[dim]})")
        if dim not in x0.coords or dim not in x1.coords:
            continue
        c0, c1 = x0[dim].values, x1[dim].values
        if np.issubdtype(c0.dtype, np.number) and np.issubdtype(c1.dtype, np.number):
            diff = float(np.max(np.abs(c0.astype(np.float64) - c1.astype(np.float64)), initial=0.0))
            if diff > atol:
                raise ValueError(f"dimension {dim!r}: coordinates differ (max |x1 - x0| = {diff:.6g}, atol {atol})")
        elif not np.array_equal(c0, c1):
            bad = int(np.argmax(c0 != c1))
            raise ValueError(f"dimension {dim!r}: coordinates differ (first at index {bad}: {c0[bad]!r} vs {c1[bad]!r})")


def prepare_pair(x0, x1, var: str | None, season: str | None, strict: bool, where: str):
    """Select ``var``, filter ``season`` and (if ``strict``) check coordinates of a reference/prediction pair."""
    a0, a1 = select_var(x0, var, where), select_var(x1, var, where)
    a0, a1 = filter_season(a0, season), filter_season(a1, season)
    if strict:
        check_same_coords(a0, a1)
    return a0, a1


# --- fast paths on in-memory arrays ------------------------------------------------------------------
#: Days per block of the blocked time reductions: a block of a 128x128 float32 field stays in the CPU
#: cache while several statistics are taken from it (one read of the data from memory).
BLOCK_DAYS = 32


def time_first_values(da: xr.DataArray) -> np.ndarray | None:
    """``da``'s values with ``time`` on axis 0 (a view when already so) if in memory, else None (dask)."""
    if is_dask(da) or TIME not in da.dims:
        return None
    return np.asarray(da.transpose(TIME, ...).values)


def without_time(da: xr.DataArray, values: np.ndarray, name=None) -> xr.DataArray:
    """``values`` (the non-time dims of ``da`` in their order) as a DataArray with ``da``'s non-time coords."""
    dims = [d for d in da.dims if d != TIME]
    coords = {k: c for k, c in da.coords.items() if TIME not in c.dims}
    return xr.DataArray(values, dims=dims, coords=coords, name=da.name if name is None else name)


def same_grid(a0: xr.DataArray, a1: xr.DataArray) -> bool:
    """True when x0 and x1 combine without any alignment: same dims in the same order, equal coords."""
    if a0.dims != a1.dims or a0.shape != a1.shape or set(a0.coords) != set(a1.coords):
        return False
    return all(a0[k].dims == a1[k].dims and np.array_equal(a0[k].values, a1[k].values) for k in a0.coords)


def time_sum(arr: np.ndarray, transform=None) -> np.ndarray:
    """float64 sum over axis 0 of ``transform(days, out)`` (default: ``arr[days]``), taken in blocks of
    :data:`BLOCK_DAYS` days; ``days`` is the block's slice along axis 0 and ``out`` a reusable buffer
    shaped like ``arr[days]`` (no allocation per block). NaN propagates."""
    acc = np.zeros(arr.shape[1:])
    buf = np.empty((min(BLOCK_DAYS, arr.shape[0]), *arr.shape[1:]), dtype=arr.dtype)
    for start in range(0, arr.shape[0], BLOCK_DAYS):
        days = slice(start, min(start + BLOCK_DAYS, arr.shape[0]))
        block = arr[days] if transform is None else transform(days, buf[:days.stop - start])
        acc += np.add.reduce(block, axis=0)
    return acc
