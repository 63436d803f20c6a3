"""Bring your own data (``data.source: files``, settings in ``data.files``).

Rules (checked at open time, :class:`DataError` otherwise):

* ``predictor_files``: one or more NetCDF files or glob patterns; all files must hold the variables on
  the same grid; they are ordered by their first time stamp and concatenated along ``time``.
* ``predictor_variables``: channel order; empty = the 15 CORDEX ML-Bench names.
* Grids are free: any sizes (the target/predictor ratio need not be 8) and any dim names. The two
  spatial dims of a variable are its non-``time`` dims, in the order stored in the file; every variable
  needs a ``time`` dim with decoded stamps (datetime64 or cftime, any calendar, gaps allowed, e.g.
  winter-only data).
* ``target_file`` / ``target_variable`` (empty = ``data.target_variable``): NaN cells are allowed (e.g. sea);
  the validity mask travels with the data. Predictors must be finite.
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


def open_files_data(cfg: DataConfig) -> DomainData:
    """Open bring-your-own predictors, target and optional static field described by ``cfg.files``."""
    files = cfg.files
    predictor_paths = expand_files(files.predictor_files, "data.files.predictor_files")
    if not files.target_file:
        raise DataError("data.files.target_file: no file given")
    variables = tuple(files.predictor_variables) or PREDICTOR_VARIABLES
    target_variable = files.target_variable or cfg.target_variable
    static = None
    if cfg.use_orography and files.orography_file:
        static = (files.orography_file, files.orography_variable)
    return assemble_domain_data(
        predictor_paths, variables, None, files.target_file, target_variable, None,
        cfg.loader.chunk_days, "files", static,
    )
