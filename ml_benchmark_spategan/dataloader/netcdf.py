"""NetCDF primitives of the data layer: opening files lazily with dask chunks aligned to the stored ones,
spatial dims of a variable, and the grid / time-axis consistency checks (each raising :class:`DataError`
naming the file, variable or dimension)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ml_benchmark_spategan.dataloader.errors import DataError

#: Auxiliary variables of the benchmark files that never enter the data layer.
DROPPED_VARIABLES = ("time_bnds", "time_bounds", "lat_bnds", "lon_bnds", "x_bnds", "y_bnds", "crs")
#: Exceptions the netCDF4 engine raises on unreadable files.
_OPEN_ERRORS = (OSError, ValueError, RuntimeError, TypeError, KeyError, IndexError)


def time_chunk(da: xr.DataArray, chunk_days: int) -> int:
    """Days per dask chunk: the multiple of the file's stored time chunk nearest ``chunk_days`` (so no
    stored chunk is split between two dask chunks), or ``chunk_days`` for unchunked (contiguous) files."""
    stored = da.encoding.get("chunksizes") or da.encoding.get("preferred_chunks")
    if isinstance(stored, dict):
        stored = stored.get("time")
    elif stored is not None and "time" in da.dims:
        stored = stored[list(da.dims).index("time")]
    if not stored or stored >= da.sizes.get("time", 0):
        return int(chunk_days)
    return int(max(1, round(chunk_days / stored)) * stored)


def open_dataset(path: str | Path, chunk_days: int | None = None, keep: Sequence[str] = ()) -> xr.Dataset:
    """Open a NetCDF file lazily, without the bounds/crs variables (except those named in ``keep``).

    With ``chunk_days`` every variable with a ``time`` dim becomes a dask array chunked along time (see
    :func:`time_chunk`: aligned to the stored chunks, which avoids xarray's "chunks separate the stored
    chunks" warning and double reads). Missing or unreadable files raise :class:`DataError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a NetCDF file at this path)")
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except _OPEN_ERRORS as err:
        raise DataError(f"{path}: cannot read the file as NetCDF ({type(err).__name__}: {err})") from err
    ds = ds.drop_vars([v for v in DROPPED_VARIABLES if v in ds.variables and v not in keep])
    if chunk_days:
        for name in list(ds.data_vars):
            if "time" in ds[name].dims:
                ds[name] = ds[name].chunk({"time": time_chunk(ds[name], chunk_days)})
    return ds


def spatial_dims(da: xr.DataArray, path, expected: Sequence[str] | None) -> tuple[str, str]:
    """The two spatial dims of a (time, a, b) variable: ``expected`` (in that order) or the file's order."""
    dims = tuple(da.dims)
    if len(dims) != 3 or "time" not in dims:
        want = f"(time, {', '.join(expected)})" if expected else "(time, <two spatial dims>)"
        raise DataError(f"{path}: variable {da.name!r} has dims {dims}; expected {want}")
    spatial = tuple(d for d in dims if d != "time")
    if expected is not None and set(spatial) != set(expected):
        raise DataError(f"{path}: variable {da.name!r} has dims {dims}; expected (time, {', '.join(expected)})")
    return tuple(expected) if expected is not None else spatial


def check_time_axis(da: xr.DataArray, path) -> None:
    """Raise :class:`DataError` unless ``da`` has decoded, strictly increasing time stamps."""
    if "time" not in da.coords:
        raise DataError(f"{path}: dimension 'time' has no coordinate values (expected decoded time stamps)")
    t = da["time"].values
    if t.size > 1 and not np.all(t[1:] > t[:-1]):
        i = int(np.argmin(t[1:] > t[:-1]))
        raise DataError(f"{path}: time stamps must increase strictly; stamp {i + 1} ({t[i + 1]}) follows {t[i]}")


def check_same_grid(a: xr.DataArray, b: xr.DataArray, what: str) -> None:
    """Raise :class:`DataError` unless ``a`` and ``b`` lie on the same spatial grid: same spatial dim
    names in the same order, same sizes, and exactly equal spatial coordinates (1-D and 2-D).
    Spatial dims are all dims except ``time`` and ``channel``. ``what`` names the two arrays."""
    da_dims = [d for d in a.dims if d not in ("time", "channel")]
    db_dims = [d for d in b.dims if d not in ("time", "channel")]
    if da_dims != db_dims:
        raise DataError(f"{what}: spatial dims differ: {tuple(da_dims)} vs {tuple(db_dims)}")
    for d in da_dims:
        if a.sizes[d] != b.sizes[d]:
            raise DataError(f"{what}: dimension {d!r} has size {a.sizes[d]} vs {b.sizes[d]}")
    spatial = set(da_dims)
    for name in sorted(set(a.coords) & set(b.coords)):
        ca, cb = a.coords[name], b.coords[name]
        if not set(ca.dims) or not set(ca.dims) <= spatial:
            continue
        va, vb = np.asarray(ca.transpose(*[d for d in da_dims if d in ca.dims]).values), np.asarray(
            cb.transpose(*[d for d in db_dims if d in cb.dims]).values)
        if va.shape != vb.shape or not np.array_equal(va, vb, equal_nan=True):
            diff = np.flatnonzero(va.ravel() != vb.ravel()) if va.shape == vb.shape else [0]
            i = int(diff[0]) if len(diff) else 0
            raise DataError(
                f"{what}: coordinate {name!r} differs (first at flat index {i}: "
                f"{va.ravel()[i] if va.size else None} vs {vb.ravel()[i] if vb.size else None})"
            )


def _stamps_equal(ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    if ta.dtype.kind != tb.dtype.kind:
        return np.zeros(len(ta), dtype=bool)
    try:
        return np.asarray(ta == tb, dtype=bool)
    except TypeError:  # cftime objects of different calendars do not compare
        return np.zeros(len(ta), dtype=bool)


def check_same_times(a: xr.DataArray, b: xr.DataArray, what_a: str, what_b: str) -> None:
    """Raise :class:`DataError` unless the time stamps of ``a`` and ``b`` are equal value by value."""
    ta, tb = a["time"].values, b["time"].values
    n = min(len(ta), len(tb))
    equal = _stamps_equal(ta[:n], tb[:n])
    if len(ta) == len(tb) and equal.all():
        return
    i = int(np.argmin(equal)) if not equal.all() else n
    sa = ta[i] if i < len(ta) else "<none>"
    sb = tb[i] if i < len(tb) else "<none>"
    raise DataError(
        f"time axes differ: {what_a} has {len(ta)} stamps ({ta.dtype}), {what_b} has {len(tb)} ({tb.dtype}); "
        f"first mismatch at index {i}: {sa} vs {sb}; predictors and target must have exactly the same stamps"
    )


def first_missing_stamp(have: np.ndarray, want: np.ndarray):
    """The first stamp of ``want`` absent from ``have`` (None when all present; also None when the two
    cannot be compared, e.g. different calendars)."""
    try:
        missing = np.setdiff1d(want, have)
    except TypeError:
        return None
    return missing[0] if missing.size else None
