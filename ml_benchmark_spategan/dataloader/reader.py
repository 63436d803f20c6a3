"""Open CORDEX ML-Bench training data and test predictors lazily (xarray + dask), with checks.

Conventions (see the project's data documentation):

* Predictors become one DataArray ``(time, channel, lat, lon)`` float32 whose ``channel`` coordinate holds
  the variable names in the order asked for (the canonical :data:`cordex.PREDICTOR_VARIABLES` by default).
  Variables are selected BY NAME: the order of variables inside a file is irrelevant (it differs between
  the benchmark's files). Bring-your-own files keep their own spatial dim names instead of lat/lon.
* The target becomes ``(time, row, col)`` float32 with the file's native spatial dim names (``y, x`` for
  ALPS, ``lat, lon`` for NZ/SA), transposed explicitly, keeping the file's coordinates (2-D lat/lon in ALPS).
* Bounds variables (``time_bnds``, ``lat_bnds``, ...) and ``crs`` are dropped (your own files keep the
  target's CF grid-mapping variable, e.g. ``rotated_pole``, as a scalar coordinate for maps).
* Predictors may come from many files, combined by variable and time, and from several grids, interpolated
  onto one (see :mod:`.predictors`).
* The target's kind and units (:class:`~ml_benchmark_spategan.variables.VariableInfo`) travel with the data.
* Time axes may be datetime64 or cftime (SA's NorESM2-MM files are noleap). Predictor and target
  times must be equal value by value; nothing is intersected or shifted.
* Validity: a target cell is *valid* (``DomainData.mask``) when it is finite on every day of the file.
  Cells that are NaN on some days only are kept: the torch bridge masks them per sample (its batch
  ``mask`` is the finiteness of that day), so no day is thrown away.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from ml_benchmark_spategan.config.schema import DataConfig
from ml_benchmark_spategan.cordex import (
    PREDICTOR_UNITS,
    PREDICTOR_VARIABLES,
    domain_spec,
    static_fields_path,
    train_predictor_path,
    train_target_path,
)
from ml_benchmark_spategan.dataloader.coarsen import coarsen_field
from ml_benchmark_spategan.dataloader.errors import DataError
from ml_benchmark_spategan.dataloader.netcdf import (  # noqa: F401  (re-exported: the data layer's public names)
    DROPPED_VARIABLES,
    check_same_grid,
    check_same_times,
    check_time_axis,
    open_dataset,
    spatial_dims,
)
from ml_benchmark_spategan.dataloader.predictors import (  # noqa: F401  (re-exported)
    PredictorSource,
    check_finite_predictors,
    open_predictor_sources,
    open_predictors,
)
from ml_benchmark_spategan.dataloader.regrid import ordered_spatial_dims
from ml_benchmark_spategan.variables import CORDEX_TARGETS, VariableInfo, default_info

LOG = logging.getLogger(__name__)
#: Spatial dims of every CORDEX predictor file (ALPS included).
CORDEX_PREDICTOR_DIMS = ("lat", "lon")


@dataclass(frozen=True, eq=False)
class DataOrigin:
    """Where a :class:`DomainData` comes from: all a worker process needs to reopen the files itself.

    ``sources``: one :class:`PredictorSource` per channel (in channel order); ``predictor_dims``: the spatial
    dims of the assembled predictors. ``positions`` (int64, one per day of the data) index the common time
    axis of the predictors, i.e. each source's files laid end to end (which equals the target file's time
    axis); a split keeps the positions of its days. ``target_coarsen``: the target is block-averaged by this
    factor after reading (:mod:`.coarsen`).
    """

    sources: tuple[PredictorSource, ...]
    predictor_dims: tuple[str, str]
    target_file: str
    target_variable: str
    target_dims: tuple[str, str]
    positions: np.ndarray
    target_coarsen: int = 1

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(s.variable for s in self.sources)

    @property
    def predictor_files(self) -> tuple[str, ...]:
        """Every predictor file, each once, in order of first use."""
        return tuple(dict.fromkeys(f for s in self.sources for f in s.files))


@dataclass(frozen=True, eq=False)
class DomainData:
    """Training data of one domain (or of bring-your-own files), opened lazily.

    predictors: (time, channel, lat, lon) float32, dask-chunked along time; ``channel`` = variable names.
    target: (time, row, col) float32 in the file's units, dask-chunked; native dims (and, for your own files,
    the grid-mapping variable as a scalar coordinate).
    mask: (row, col) bool, True where the target is finite on every day of the file (loaded).
    orography: (row, col) float32 on the target grid (loaded), or None.
    valid_count: (time,) int64 number of finite target cells per day (loaded; split checks use it).
    target_info / predictor_info: kind, units and CF metadata of the target and of each predictor.
    notes: things worth a line in the run log (e.g. each regridded predictor).
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
    target_info: VariableInfo | None = None
    predictor_info: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def info(self) -> VariableInfo:
        """The target's :class:`VariableInfo` (from the name alone when not recorded)."""
        return self.target_info or default_info(self.target_variable)

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
def open_target(path: str | Path, variable: str, chunk_days: int = 128, dims: Sequence[str] | None = None,
                *, keep_grid_mapping: bool = False) -> xr.DataArray:
    """Target variable as (time, row, col) float32 with the file's coordinates and attributes.

    ``dims``: the expected spatial dims in output order; None takes the file's (latitude-like first).
    ``keep_grid_mapping``: attach the CF grid-mapping variable named by the target's ``grid_mapping``
    attribute (e.g. ``rotated_pole``) as a scalar coordinate, so maps can place the grid on the globe.
    """
    ds = open_dataset(path, chunk_days, keep=("crs",) if keep_grid_mapping else ())
    if variable not in ds.data_vars:
        raise DataError(f"{path}: target variable {variable!r} not found; the file holds {sorted(ds.data_vars)}")
    da = ds[variable]
    spatial = spatial_dims(da, path, dims)
    if dims is None:
        spatial = ordered_spatial_dims(da, spatial)
    da = da.transpose("time", *spatial).astype(np.float32)
    mapping = str(da.attrs.get("grid_mapping", "") or "")
    if keep_grid_mapping and mapping in ds.variables and mapping not in da.coords:
        da = da.assign_coords({mapping: ds[mapping].reset_coords(drop=True)})
    check_time_axis(da, path)
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


def target_info(target: xr.DataArray, kind: str = "auto", units: str = "", cordex: bool = False) -> VariableInfo:
    """Kind, units and CF metadata of the target (see :mod:`ml_benchmark_spategan.variables`).

    CORDEX targets take the benchmark's units (pr mm/day, tasmax K: the NZ/ALPS files carry none);
    ``units`` replaces the file's; ``kind`` overrides the inferred kind."""
    name = str(target.name)
    if cordex and name in CORDEX_TARGETS:
        base = CORDEX_TARGETS[name]
        return base if kind in ("auto", base.kind) else replace(base, kind=kind)
    return VariableInfo.from_attrs(name, target.attrs, kind=kind, units=units)


# --- assembling ------------------------------------------------------------------------------------
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
                         static: tuple[str | Path, str] | None = None, *, grid_variable: str = "",
                         target_kind: str = "auto", target_units: str = "", target_coarsen: int = 1) -> DomainData:
    """Open, check and bundle predictors, target, validity mask and an optional static field.

    ``domain`` is the CORDEX domain name or ``'files'``; ``grid_variable``, ``target_kind``,
    ``target_units`` and ``target_coarsen`` as in ``data.files.predictor_grid``, ``data.target_kind``,
    ``data.files.target_units`` and ``data.target_coarsen`` (the target and the static field are
    block-averaged by this factor, NaN-aware; see :mod:`.coarsen`).
    """
    cordex = domain != "files"
    preds = open_predictor_sources(predictor_paths, variables, chunk_days, predictor_dims, grid_variable,
                                   PREDICTOR_UNITS if cordex else None)
    check_finite_predictors(preds.data, _files_label(preds.sources))
    target = open_target(target_path, target_variable, chunk_days, target_dims, keep_grid_mapping=not cordex)
    check_same_times(preds.data, target, f"predictors {_files_label(preds.sources)}", f"target {target_path}")
    orography = open_static(static[0], static[1], target) if static else None
    target = coarsen_field(target, target_coarsen, f"target {target_path}:{target_variable}")
    if orography is not None:
        orography = coarsen_field(orography, target_coarsen, f"static field {static[0]}:{static[1]}")
    mask, count = _summarise_target(target, target_path)
    origin = DataOrigin(
        sources=preds.sources, predictor_dims=tuple(preds.data.dims[2:]), target_file=str(target_path),
        target_variable=target_variable, target_dims=tuple(target.dims[1:]),
        positions=np.arange(preds.data.sizes["time"], dtype=np.int64), target_coarsen=int(target_coarsen),
    )
    return DomainData(predictors=preds.data, target=target, mask=mask, orography=orography, valid_count=count,
                      target_variable=target_variable, domain=domain, spatial_dims=tuple(target.dims[1:]),
                      origin=origin, target_info=target_info(target, target_kind, target_units, cordex),
                      predictor_info=preds.info, notes=preds.notes)


def _files_label(sources) -> str:
    files = list(dict.fromkeys(f for s in sources for f in s.files))
    return " + ".join(files) if len(files) <= 3 else f"{' + '.join(files[:2])} + ... ({len(files)} files)"


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
        target_kind=cfg.target_kind, target_coarsen=cfg.target_coarsen,
    )
