"""Read blocks of days from the files of a :class:`~.reader.DataOrigin` into numpy (no dask).

The torch bridge creates one :class:`BlockReader` per worker process, inside the worker, so no open file
handle is ever pickled. Reads go through xarray's lazy backend indexing without dask: each read is one
``isel(time=...)`` + ``.values`` per variable, single-threaded (netCDF-C is not thread-safe; xarray also
serialises netCDF4 access with its own lock).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ml_benchmark_spategan.dataloader.coarsen import block_mean
from ml_benchmark_spategan.dataloader.errors import DataError
from ml_benchmark_spategan.dataloader.reader import DataOrigin


def _runs(positions: np.ndarray) -> list[slice]:
    """Contiguous runs of increasing int positions as slices."""
    if positions.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [positions.size]])
    return [slice(int(positions[s]), int(positions[e - 1]) + 1) for s, e in zip(starts, ends, strict=True)]


class BlockReader:
    """Reads days (by position on the common time axis) of predictors and target; open lazily, close
    explicitly. Each predictor channel is read from its own files (:class:`~.predictors.PredictorSource`)
    and regridded with the same function as the lazy path, so both give identical values."""

    def __init__(self, origin: DataOrigin):
        self.origin = origin
        self._files: dict[str, xr.Dataset] | None = None
        self._target: xr.Dataset | None = None
        self._offsets = [np.concatenate([[0], np.cumsum(s.file_lengths)]) for s in origin.sources]

    def _open(self) -> None:
        def load(path):
            try:
                return xr.open_dataset(path, engine="netcdf4", chunks=None, cache=False, decode_times=False)
            except (OSError, ValueError, RuntimeError) as err:
                raise DataError(f"{path}: cannot read the file as NetCDF ({type(err).__name__}: {err})") from err

        self._files = {path: load(path) for path in self.origin.predictor_files}
        self._target = load(self.origin.target_file)

    def close(self) -> None:
        for ds in list((self._files or {}).values()) + ([self._target] if self._target is not None else []):
            ds.close()
        self._files, self._target = None, None

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Days at ``positions`` (int, strictly increasing) -> (x (n, C, h, w), y (n, H, W)), float32,
        raw units (the target block-averaged by ``origin.target_coarsen``); invalid target cells stay NaN."""
        if self._files is None:
            self._open()
        positions = np.asarray(positions, dtype=np.int64)
        x = np.concatenate([self._read_predictors(s) for s in _runs(positions)], axis=0)
        y = np.concatenate([self._read_target(s) for s in _runs(positions)], axis=0)
        return x, y

    def _read_predictors(self, sl: slice) -> np.ndarray:
        channels = [self._read_source(source, offsets, sl)
                    for source, offsets in zip(self.origin.sources, self._offsets, strict=True)]
        return np.stack(channels, axis=1)

    def _read_source(self, source, offsets: np.ndarray, sl: slice) -> np.ndarray:
        parts = []
        for k, path in enumerate(source.files):
            lo, hi = max(sl.start, offsets[k]), min(sl.stop, offsets[k + 1])
            if lo >= hi:
                continue
            index = {"time": slice(int(lo - offsets[k]), int(hi - offsets[k])), **{d: 0 for d in source.squeeze}}
            # Variable-level isel: the same lazy backend read without DataArray index bookkeeping.
            var = self._files[path].variables[source.variable].isel(index)
            parts.append(np.asarray(var.transpose("time", *source.dims).values, dtype=np.float32))
        values = np.concatenate(parts, axis=0)
        return values if source.regrid is None else source.regrid.apply(values)

    def _read_target(self, sl: slice) -> np.ndarray:
        var = self._target.variables[self.origin.target_variable].isel(time=sl)
        values = np.asarray(var.transpose("time", *self.origin.target_dims).values, dtype=np.float32)
        return block_mean(values, self.origin.target_coarsen)
