"""Bring your own data (``data.source: files``, settings in ``data.files``).

Rules (checked at open time, :class:`DataError` otherwise):

* ``predictor_files``: NetCDF files or glob patterns, combined by variable *and* time (one file per
  variable, per year, per variable and year, or one file with everything; see :mod:`.predictors`). Every
  predictor needs exactly the same time steps. Predictors on different grids are interpolated (bilinear)
  onto the grid of ``predictor_grid`` (default: the first variable), with a note per regridded variable.
* ``predictor_variables``: channel order; empty = the 15 CORDEX ML-Bench names.
* Grids are free: any sizes (the target/predictor ratio need not be 8) and any dim names. The two
  spatial dims of a variable are its non-``time`` dims (size-1 dims such as a pressure level are dropped);
  every variable needs a ``time`` dim with decoded stamps (datetime64 or cftime, any calendar, gaps
  allowed, e.g. winter-only data).
* ``target_file`` / ``target_variable`` (any name; empty = ``data.target_variable``): NaN cells are allowed
  (e.g. sea); the validity mask travels with the data. Predictors must be finite. The target's units come
  from the file (``target_units`` when it has none) and its kind from CF metadata (``data.target_kind``).
* Predictor and target time stamps must be equal value by value: they are NOT intersected, so a
  missing or shifted day is reported rather than silently dropped.
* ``orography_file`` (optional; used when ``data.use_orography``): ``orography_variable`` on the target grid.
"""

from __future__ import annotations

import glob
from pathlib import Path

from ml_benchmark_spategan.config.schema import DataConfig
from ml_benchmark_spategan.cordex import PREDICTOR_VARIABLES
from ml_benchmark_spategan.dataloader.errors import DataError
from ml_benchmark_spategan.dataloader.reader import DomainData, assemble_domain_data


def expand_files(patterns: tuple[str, ...] | list[str], what: str) -> list[Path]:
    """Files matching ``patterns`` (plain paths or globs), sorted, without duplicates."""
    if not patterns:
        raise DataError(f"{what}: no file given")
    files: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise DataError(f"{what}: the pattern {pattern!r} matches no file")
            files.extend(Path(m) for m in matches)
        else:
            files.append(Path(pattern))  # a missing file is reported by the reader with its path
    return list(dict.fromkeys(files))


def target_name(cfg: DataConfig) -> str:
    """The target variable's name in the data: ``data.files.target_variable`` for your own files (when
    set), else ``data.target_variable``."""
    return (cfg.files.target_variable or cfg.target_variable) if cfg.source == "files" else cfg.target_variable


def open_files_data(cfg: DataConfig) -> DomainData:
    """Open bring-your-own predictors, target and optional static field described by ``cfg.files``."""
    files = cfg.files
    predictor_paths = expand_files(files.predictor_files, "data.files.predictor_files")
    if not files.target_file:
        raise DataError("data.files.target_file: no file given")
    variables = tuple(files.predictor_variables) or PREDICTOR_VARIABLES
    static = None
    if cfg.use_orography and files.orography_file:
        static = (files.orography_file, files.orography_variable)
    return assemble_domain_data(
        predictor_paths, variables, None, files.target_file, target_name(cfg), None,
        cfg.loader.chunk_days, "files", static, grid_variable=files.predictor_grid,
        target_kind=cfg.target_kind, target_units=files.target_units, target_coarsen=cfg.target_coarsen,
    )
