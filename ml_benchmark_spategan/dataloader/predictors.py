"""Predictors from one or many NetCDF files, combined by variable and time, on one predictor grid.

Rules (each violation raises :class:`DataError` naming the file and variable):

* Every file is opened lazily; each requested variable is collected from the files that hold it (one file
  per variable and year, one file per year with all variables, one file with everything: all the same).
  Files holding none of the requested variables are left out (with a note).
* Per variable, its files are ordered by their first time stamp and concatenated along ``time``; they must
  share one grid and must not overlap in time.
* All variables must have exactly the same time stamps: a variable that lacks a time step another has is
  reported with the first missing stamp (nothing is intersected).
* The predictor grid is that of the first variable, or of ``grid_variable``. A variable on another grid is
  interpolated onto it (bilinear, :mod:`.regrid`; a note per variable); grids that do not overlap, or do not
  cover the predictor grid, are errors.
* A variable's spatial dims are its non-``time`` dims (size-1 dims such as a single pressure level are
  dropped), latitude-like first.

The result is a lazy ``(time, channel, row, col)`` float32 DataArray plus one :class:`PredictorSource` per
channel, which the streaming reader uses to read (and regrid) exactly the same values from the files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ml_benchmark_spategan.cordex import PREDICTOR_VARIABLES
from ml_benchmark_spategan.dataloader.errors import DataError
from ml_benchmark_spategan.dataloader.netcdf import (
    check_same_grid,
    check_time_axis,
    first_missing_stamp,
    open_dataset,
    spatial_dims,
)
from ml_benchmark_spategan.dataloader.regrid import (
    Regrid,
    describe_grid,
    ordered_spatial_dims,
    plan_regrid,
    regrid_dataarray,
    same_grid,
)
from ml_benchmark_spategan.variables import VariableInfo

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PredictorSource:
    """Where one predictor channel is read from: the files holding ``variable`` in time order, the days in
    each, its spatial dims in those files (row, col), size-1 dims to drop (index 0), and the bilinear
    :class:`~.regrid.Regrid` onto the predictor grid (None when it is already on that grid)."""

    variable: str
    files: tuple[str, ...]
    file_lengths: tuple[int, ...]
    dims: tuple[str, str]
    squeeze: tuple[str, ...] = ()
    regrid: Regrid | None = None


@dataclass(frozen=True, eq=False)
class Predictors:
    """The assembled predictors (time, channel, row, col), their sources, per-variable info and notes."""

    data: xr.DataArray
    sources: tuple[PredictorSource, ...]
    info: dict
    notes: tuple[str, ...]


def _select(ds: xr.Dataset, name: str, path, dims: Sequence[str] | None) -> tuple[xr.DataArray, tuple, tuple]:
    """Variable ``name`` as (time, row, col) float32, its (row, col) dims and the size-1 dims dropped."""
    da = ds[name]
    squeeze: tuple[str, ...] = ()
    if dims is None and da.ndim > 3:
        squeeze = tuple(d for d in da.dims if d != "time" and da.sizes[d] == 1)[: da.ndim - 3]
        da = da.isel({d: 0 for d in squeeze}, drop=True)
    spatial = spatial_dims(da, path, dims)
    if dims is None:
        spatial = ordered_spatial_dims(da, spatial)
    return da.transpose("time", *spatial).astype(np.float32), spatial, squeeze


def _collect(paths: Sequence[str | Path], variables: Sequence[str], chunk_days: int, dims, notes: list):
    """{variable: [(path, DataArray, dims, squeeze)]} over all files; DataError for absent variables."""
    found: dict[str, list] = {v: [] for v in variables}
    held: set[str] = set()
    for path in paths:
        ds = open_dataset(path, chunk_days)
        held.update(str(v) for v in ds.data_vars)
        present = [v for v in variables if v in ds.data_vars]
        if not present:
            notes.append(f"predictor file {path} holds none of the predictor variables; not used")
            continue
        for v in present:
            found[v].append((str(path), *_select(ds, v, path, dims)))
    missing = [v for v in variables if not found[v]]
    if missing:
        where = f"{paths[0]}: predictor" if len(paths) == 1 else f"predictor files {_names(paths)}:"
        raise DataError(f"{where} variable(s) {missing} not found; the file{'s hold' if len(paths) > 1 else ' holds'} "
                        f"{sorted(held)}")
    return found


def _names(paths: Sequence) -> str:
    names = [str(p) for p in paths]
    return ", ".join(names) if len(names) <= 4 else f"{', '.join(names[:3])} ... ({len(names)} files)"


def _concat_variable(name: str, pieces: list) -> tuple[xr.DataArray, PredictorSource]:
    """One variable's files in time order, concatenated; checks one grid and no overlap."""
    pieces = sorted(pieces, key=lambda p: p[1]["time"].values[0])
    first_path, first, dims, squeeze = pieces[0]
    for path, da, d, _ in pieces[1:]:
        if d != dims:
            raise DataError(f"predictor {name!r}: {path} has spatial dims {d}, {first_path} has {dims}")
        check_same_grid(da, first, f"predictor {name!r}: file {path} vs {first_path}")
    da = first if len(pieces) == 1 else xr.concat([p[1] for p in pieces], dim="time", join="exact",
                                                  coords="minimal", compat="override")
    check_time_axis(da, f"predictor {name!r} in {_names([p[0] for p in pieces])}")
    source = PredictorSource(name, tuple(p[0] for p in pieces), tuple(int(p[1].sizes["time"]) for p in pieces),
                             dims, squeeze)
    return da.rename(name), source


def _check_times(name: str, da: xr.DataArray, ref_name: str, ref: xr.DataArray, files: Sequence[str]) -> None:
    ta, tr = da["time"].values, ref["time"].values
    if ta.shape == tr.shape and ta.dtype.kind == tr.dtype.kind:
        try:
            if np.all(ta == tr):
                return
        except TypeError:
            pass
    lacking = first_missing_stamp(ta, tr)
    if lacking is not None:
        raise DataError(f"predictor {name!r} ({_names(files)}) lacks time step {lacking} that predictor "
                        f"{ref_name!r} has; every predictor needs exactly the same time steps")
    extra = first_missing_stamp(tr, ta)
    if extra is not None:
        raise DataError(f"predictor {ref_name!r} lacks time step {extra} that predictor {name!r} ({_names(files)}) "
                        "has; every predictor needs exactly the same time steps")
    raise DataError(f"predictor {name!r} ({_names(files)}): time stamps differ from those of {ref_name!r} "
                    f"({ta.dtype} vs {tr.dtype}, e.g. another calendar); every predictor needs the same time steps")


def _info(name: str, da: xr.DataArray, default_units: dict | None) -> VariableInfo:
    units = str(da.attrs.get("units", "") or "")
    if not units and default_units:
        units = default_units.get(name.split("_")[0], "")
    return VariableInfo.from_attrs(name, da.attrs, units=units)


def open_predictor_sources(paths: Sequence[str | Path], variables: Sequence[str], chunk_days: int,
                           dims: Sequence[str] | None = None, grid_variable: str = "",
                           default_units: dict | None = None) -> Predictors:
    """Assemble ``variables`` from the files ``paths`` (see the module docstring).

    ``dims``: the expected spatial dims of every variable (CORDEX: lat, lon); None detects them.
    ``grid_variable``: the variable whose grid is the predictor grid (empty = the first of ``variables``).
    ``default_units``: units by name prefix for variables without a ``units`` attribute.
    """
    variables = tuple(variables)
    if grid_variable and grid_variable not in variables:
        raise DataError(f"data.files.predictor_grid: {grid_variable!r} is not one of the predictor variables "
                        f"{list(variables)}")
    notes: list[str] = []
    found = _collect(list(paths), variables, chunk_days, tuple(dims) if dims is not None else None, notes)
    arrays, sources = {}, {}
    for v in variables:
        arrays[v], sources[v] = _concat_variable(v, found[v])
    ref_name = grid_variable or variables[0]
    ref, ref_dims = arrays[ref_name], sources[ref_name].dims
    for v in variables:
        if v != ref_name:
            _check_times(v, arrays[v], ref_name, ref, sources[v].files)
        if not same_grid(arrays[v], ref, sources[v].dims, ref_dims):
            arrays[v], sources[v] = _regridded(v, arrays[v], sources[v], ref_name, ref, ref_dims, notes)
    stacked = xr.concat([arrays[v].assign_coords(time=ref["time"]) for v in variables], dim="channel",
                        coords="minimal", compat="override", join="exact")
    stacked = stacked.assign_coords(channel=np.array(variables, dtype=str)).transpose("time", "channel", *ref_dims)
    stacked.name = "predictors"
    for note in notes:
        LOG.info("%s", note)
    infos = {v: _info(v, found[v][0][1], default_units) for v in variables}
    return Predictors(stacked, tuple(sources[v] for v in variables), infos, tuple(notes))


def _regridded(name, da, source, ref_name, ref, ref_dims, notes):
    what = f"predictor {name!r} ({source.files[0]}) onto the grid of {ref_name!r}"
    regrid = plan_regrid(da, source.dims, ref, ref_dims, what)
    notes.append(f"predictor {name!r} regridded (bilinear) from {describe_grid(da, source.dims)} to the "
                 f"predictor grid of {ref_name!r}, {describe_grid(ref, ref_dims)}")
    out = regrid_dataarray(da, regrid, source.dims, ref, ref_dims)
    return out, PredictorSource(name, source.files, source.file_lengths, source.dims, source.squeeze, regrid)


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


def open_predictors(path: str | Path, variables: Sequence[str] = PREDICTOR_VARIABLES, chunk_days: int = 128, *,
                    dims: Sequence[str] | None = ("lat", "lon"), check_finite: bool = True) -> xr.DataArray:
    """Predictors of one file as (time, channel, *dims) float32, channels selected by name.

    ``dims``: the expected spatial dims (in output order); None detects them (latitude-like first).
    ``check_finite`` scans the values once (dask) and raises :class:`DataError` naming the variable and the
    first time stamp holding NaN/Inf.
    """
    da = open_predictor_sources([path], variables, chunk_days, dims).data
    if check_finite:
        check_finite_predictors(da, path)
    return da
