"""Open CORDEX ML-Bench training data and test predictors lazily (xarray + dask), with checks.

Conventions (see the project's data documentation):

* Predictors become one DataArray ``(time, channel, lat, lon)`` float32 whose ``channel`` coordinate holds
  the variable names in the order asked for (the canonical :data:`cordex.PREDICTOR_VARIABLES` by default).
  Variables are selected BY NAME: the order of variables inside a file is irrelevant (it differs between
  the benchmark's files). Bring-your-own files keep their own spatial dim names instead of lat/lon.
* The target becomes ``(time, row, col)`` float32 with the file's native spatial dim names (``y, x`` for
  ALPS, ``lat, lon`` for NZ/SA), transposed explicitly, keeping the file's coordinates (2-D lat/lon in ALPS).
* Bounds variables (``time_bnds``, ``lat_bnds``, ...) and ``crs`` are dropped.
* Time axes may be datetime64 or cftime (SA's NorESM2-MM files are noleap). Predictor and target
  times must be equal value by value; nothing is intersected or shifted.
* Validity: a target cell is *valid* (``DomainData.mask``) when it is finite on every day of the file.
  Cells that are NaN on some days only are kept: the torch bridge masks them per sample (its batch
  ``mask`` is the finiteness of that day), so no day is thrown away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from ml_benchmark_spategan.config.schema import DataConfig
from ml_benchmark_spategan.cordex import (
    PREDICTOR_VARIABLES,
    domain_spec,
    static_fields_path,
    train_predictor_path,
    train_target_path,
)
from ml_benchmark_spategan.dataloader.errors import DataError

#: Auxiliary variables of the benchmark files that never enter the data layer.
DROPPED_VARIABLES = ("time_bnds", "time_bounds", "lat_bnds", "lon_bnds", "x_bnds", "y_bnds", "crs")
#: Spatial dims of every CORDEX predictor file (ALPS included).
CORDEX_PREDICTOR_DIMS = ("lat", "lon")
#: Exceptions the netCDF4 engine raises on unreadable files.
_OPEN_ERRORS = (OSError, ValueError, RuntimeError, TypeError, KeyError, IndexError)


@dataclass(frozen=True, eq=False)
class DataOrigin:
    """Where a :class:`DomainData` comes from: all a worker process needs to reopen the files itself.

    ``positions`` (int64, one per day of the data) index the time axis of the predictor files laid end
    to end (which equals the target file's time axis); a split keeps the positions of its days.
    """

    predictor_files: tuple[str, ...]
    file_lengths: tuple[int, ...]
    variables: tuple[str, ...]
    predictor_dims: tuple[str, str]
    target_file: str
    target_variable: str
    target_dims: tuple[str, str]
    positions: np.ndarray


@dataclass(frozen=True, eq=False)
class DomainData:
    """Training data of one domain (or of bring-your-own files), opened lazily.

    predictors: (time, channel, lat, lon) float32, dask-chunked along time; ``channel`` = variable names.
    target: (time, row, col) float32 in the file's units (pr mm/day, tasmax K), dask-chunked; native dims.
    mask: (row, col) bool, True where the target is finite on every day of the file (loaded).
    orography: (row, col) float32 on the target grid (loaded), or None.
    valid_count: (time,) int64 number of finite target cells per day (loaded; split checks use it).
    """

    predictors: xr.DataArray
    target: xr.DataArray
    mask: xr.DataArray
    orography: xr.DataArray | None
    valid_count: xr.DataArray
    target_variable: str
    domain: str
    spatial_dims: tuple[str, str]
    origin: DataOrigin

    @property
    def channels(self) -> tuple[str, ...]:
        """Predictor variable names in channel order."""
        return tuple(str(c) for c in self.predictors["channel"].values)

    @property
    def time(self) -> np.ndarray:
        """The time stamps (datetime64 or cftime objects), shape (time,)."""
        return self.predictors["time"].values

    @property
    def n_days(self) -> int:
        return int(self.predictors.sizes["time"])

    @property
    def predictor_dims(self) -> tuple[str, str]:
        return tuple(self.predictors.dims[2:])

    def isel_time(self, index: np.ndarray) -> DomainData:
        """The days at positions ``index`` (int array, increasing) of this data."""
        sel = _as_slice(np.asarray(index, dtype=np.int64))
        origin = replace(self.origin, positions=self.origin.positions[sel])
        return replace(
            self,
            predictors=self.predictors.isel(time=sel),
            target=self.target.isel(time=sel),
            valid_count=self.valid_count.isel(time=sel),
            origin=origin,
        )


def _as_slice(index: np.ndarray) -> slice | np.ndarray:
    """A slice when ``index`` is a contiguous increasing run (cheaper for dask), else the array."""
    if index.size and np.all(np.diff(index) == 1):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


# --- opening ---------------------------------------------------------------------------------------
def open_dataset(path: str | Path, chunk_days: int | None = None) -> xr.Dataset:
    """Open a NetCDF file (lazily; dask chunks of ``chunk_days`` along time when given), without the
    bounds/crs variables. Missing or unreadable files raise :class:`DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a NetCDF file at this path)")
    chunks = {"time": chunk_days} if chunk_days else None
    try:
        ds = xr.open_dataset(path, engine="netcdf4", chunks=chunks)
    except _OPEN_ERRORS as err:
        raise DataError(f"{path}: cannot read the file as NetCDF ({type(err).__name__}: {err})") from err
    return ds.drop_vars([v for v in DROPPED_VARIABLES if v in ds.variables])


def _spatial_dims(da: xr.DataArray, path, expected: Sequence[str] | None) -> tuple[str, str]:
    """The two spatial dims of a (time, a, b) variable: ``expected`` (in that order) or the file's order."""
    dims = tuple(da.dims)
    if len(dims) != 3 or "time" not in dims:
        want = f"(time, {', '.join(expected)})" if expected else "(time, <two spatial dims>)"
        raise DataError(f"{path}: variable {da.name!r} has dims {dims}; expected {want}")
    spatial = tuple(d for d in dims if d != "time")
    if expected is not None and set(spatial) != set(expected):
        raise DataError(f"{path}: variable {da.name!r} has dims {dims}; expected (time, {', '.join(expected)})")
    return tuple(expected) if expected is not None else spatial


def _check_time_axis(da: xr.DataArray, path) -> None:
    if "time" not in da.coords:
        raise DataError(f"{path}: dimension 'time' has no coordinate values (expected decoded time stamps)")
    t = da["time"].values
    if t.size > 1 and not np.all(t[1:] > t[:-1]):
        i = int(np.argmin(t[1:] > t[:-1]))
        raise DataError(f"{path}: time stamps must increase strictly; stamp {i + 1} ({t[i + 1]}) follows {t[i]}")


def open_predictors(
    path: str | Path,
    variables: Sequence[str] = PREDICTOR_VARIABLES,
    chunk_days: int = 128,
    *,
    dims: Sequence[str] | None = CORDEX_PREDICTOR_DIMS,
    check_finite: bool = True,
) -> xr.DataArray:
    """Predictors of one file as (time, channel, *dims) float32, channels selected by name.

    ``dims``: the expected spatial dims (in output order); None detects them as the variable's non-time dims
    in file order. ``check_finite`` scans the values once (dask) and raises :class:`DataError` naming the
    variable and the first time stamp holding NaN/Inf.
    """
    ds = open_dataset(path, chunk_days)
    variables = tuple(variables)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise DataError(f"{path}: predictor variable(s) {missing} not found; the file holds {sorted(ds.data_vars)}")
    spatial = _spatial_dims(ds[variables[0]], path, dims)
    arrays = []
    for v in variables:
        _spatial_dims(ds[v], path, spatial)
        arrays.append(ds[v].transpose("time", *spatial).astype(np.float32))
    da = xr.concat(arrays, dim="channel", coords="minimal", compat="override", join="exact")
    da = da.assign_coords(channel=np.array(variables, dtype=str)).transpose("time", "channel", *spatial)
    da.name = "predictors"
    _check_time_axis(da, path)
    if check_finite:
        check_finite_predictors(da, path)
    return da


def check_finite_predictors(da: xr.DataArray, path) -> None:
    """Raise :class:`DataError` if the (time, channel, ...) predictors hold NaN/Inf (one lazy pass)."""
    bad = (~np.isfinite(da)).any(dim=list(da.dims[2:])).values  # (time, channel)
    if not bad.any():
        return
    t = int(np.argmax(bad.any(axis=1)))
    names = [str(c) for c, b in zip(da["channel"].values, bad[t], strict=True) if b]
    n_days = int(bad.any(axis=1).sum())
    raise DataError(
        f"{path}: non-finite values (NaN/Inf) in predictor variable(s) {names}: first at time "
        f"{da['time'].values[t]} (index {t}); {n_days} of {bad.shape[0]} days affected; predictors must be finite"
    )


def open_target(path: str | Path, variable: str, chunk_days: int = 128,
                dims: Sequence[str] | None = None) -> xr.DataArray:
    """Target variable as (time, row, col) float32 with the file's coordinates; ``dims`` as in
    :func:`open_predictors` (None: the file's order)."""
    ds = open_dataset(path, chunk_days)
    if variable not in ds.data_vars:
        raise DataError(f"{path}: target variable {variable!r} not found; the file holds {sorted(ds.data_vars)}")
    da = ds[variable]
    spatial = _spatial_dims(da, path, dims)
    da = da.transpose("time", *spatial).astype(np.float32)
    _check_time_axis(da, path)
    return da


def open_static(path: str | Path, variable: str, target: xr.DataArray) -> xr.DataArray:
    """A static field (e.g. orography) on the target grid, as (row, col) float32, loaded."""
    ds = open_dataset(path)
    if variable not in ds.data_vars:
        raise DataError(f"{path}: static variable {variable!r} not found; the file holds {sorted(ds.data_vars)}")
    da = ds[variable].squeeze(drop=True)
    row, col = target.dims[1:]
    if set(da.dims) != {row, col}:
        raise DataError(f"{path}: variable {variable!r} has dims {da.dims}; expected ({row}, {col}) like the target")
    da = da.transpose(row, col).astype(np.float32).load()
    check_same_grid(da, target, f"{path}:{variable} vs the target grid")
    return da


# --- consistency checks ----------------------------------------------------------------------------
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


# --- assembling ------------------------------------------------------------------------------------
def open_predictor_files(paths: Sequence[str | Path], variables: Sequence[str], chunk_days: int,
                         dims: Sequence[str] | None) -> tuple[xr.DataArray, list[str], list[int]]:
    """Open several predictor files on one grid and concatenate them along time (ordered by their first
    stamp). Returns (predictors, ordered paths, days per file)."""
    opened = [(str(p), open_predictors(p, variables, chunk_days, dims=dims)) for p in paths]
    opened.sort(key=lambda item: item[1]["time"].values[0])
    first_path, first = opened[0]
    for p, da in opened[1:]:
        check_same_grid(da, first, f"predictor file {p} vs {first_path}")
    da = opened[0][1] if len(opened) == 1 else xr.concat([d for _, d in opened], dim="time", join="exact")
    _check_time_axis(da, " + ".join(p for p, _ in opened))
    return da, [p for p, _ in opened], [int(d.sizes["time"]) for _, d in opened]


def _summarise_target(target: xr.DataArray, path) -> tuple[xr.DataArray, xr.DataArray]:
    """(mask (row, col) bool: finite on every day, valid_count (time,) int64), in one lazy pass."""
    finite = np.isfinite(target)
    mask, count = dask.compute(finite.all("time"), finite.sum(target.dims[1:]).astype(np.int64))
    if int(count.sum()) == 0:
        raise DataError(f"{path}: target variable {target.name!r} is NaN everywhere (no valid value)")
    mask = mask.drop_vars("time", errors="ignore").rename("mask")
    return mask, count.rename("valid_count")


def assemble_domain_data(predictor_paths: Sequence[str | Path], variables: Sequence[str],
                         predictor_dims: Sequence[str] | None, target_path: str | Path, target_variable: str,
                         target_dims: Sequence[str] | None, chunk_days: int, domain: str,
                         static: tuple[str | Path, str] | None = None) -> DomainData:
    """Open, check and bundle predictors, target, validity mask and an optional static field."""
    preds, ordered, lengths = open_predictor_files(predictor_paths, variables, chunk_days, predictor_dims)
    target = open_target(target_path, target_variable, chunk_days, target_dims)
    check_same_times(preds, target, f"predictors {' + '.join(ordered)}", f"target {target_path}")
    mask, count = _summarise_target(target, target_path)
    orography = open_static(static[0], static[1], target) if static else None
    origin = DataOrigin(
        predictor_files=tuple(ordered), file_lengths=tuple(lengths), variables=tuple(variables),
        predictor_dims=tuple(preds.dims[2:]), target_file=str(target_path), target_variable=target_variable,
        target_dims=tuple(target.dims[1:]), positions=np.arange(preds.sizes["time"], dtype=np.int64),
    )
    return DomainData(predictors=preds, target=target, mask=mask, orography=orography, valid_count=count,
                      target_variable=target_variable, domain=domain, spatial_dims=tuple(target.dims[1:]),
                      origin=origin)


def open_training_data(cfg: DataConfig) -> DomainData:
    """The training data described by ``cfg`` (CORDEX layout under ``cfg.root``, or bring-your-own files
    when ``cfg.source == 'files'``), all days of the training file(s); split with :mod:`.split`."""
    if cfg.source == "files":
        from ml_benchmark_spategan.dataloader.byo import open_files_data

        return open_files_data(cfg)
    spec = domain_spec(cfg.domain)
    pred = train_predictor_path(cfg.root, cfg.domain, cfg.experiment)
    target = train_target_path(cfg.root, cfg.domain, cfg.experiment)
    static = static_fields_path(cfg.root, cfg.domain, cfg.experiment)
    for p in (pred, target) + ((static,) if cfg.use_orography else ()):
        if not p.is_file():
            raise DataError(f"{p}: file not found (expected by the CORDEX ML-Bench layout under data.root="
                            f"{cfg.root!r} for domain {cfg.domain}, experiment {cfg.experiment})")
    return assemble_domain_data(
        [pred], PREDICTOR_VARIABLES, CORDEX_PREDICTOR_DIMS, target, cfg.target_variable, spec.target_dims,
        cfg.loader.chunk_days, cfg.domain, (static, "orog") if cfg.use_orography else None,
    )
