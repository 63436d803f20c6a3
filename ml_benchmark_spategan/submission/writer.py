"""Write CORDEX ML-Bench prediction files: one NetCDF4 file per test predictor file, holding pr and tasmax.

File format (see :mod:`ml_benchmark_spategan.submission` for the reasons):

* ``pr(time, row, col, member)`` and ``tasmax(time, row, col, member)``, ``(row, col)`` = ``(y, x)`` for
  ALPS and ``(lat, lon)`` for NZ/SA; dtypes of the benchmark templates (``DomainSpec.pr_dtype`` /
  ``tasmax_dtype``); units mm/day and K; ``_FillValue`` NaN like the templates (no value is missing).
* Spatial coordinates are the template grid's, exactly (``cordex.target_coords``): float32 lat/lon for
  NZ/SA; float64 x/y in km plus 2-D float64 lat(y, x)/lon(y, x) for ALPS.
* ``time`` holds the test predictor file's time values, encoded with the predictor file's units,
  calendar and dtype (cftime noleap stays noleap; SA keeps float32 minutes, NZ int64 days).
* ``member`` = 0..M-1 (int32).
* zlib level 1 with shuffle, chunks of ``chunk_days`` × full grid × all members; written in chunk-sized
  time blocks (memory stays bounded for dask-backed inputs) to ``<file>.tmp``, then moved into place with
  ``os.replace`` (a crash never leaves a half-written file under the final name).

zlib runs on one core per file (HDF5 does not compress in parallel), at about 40 MB/s of raw data on the
development CPU; ``write_submission(workers=N)`` writes N files at once in separate processes while the
next file is predicted.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from ml_benchmark_spategan.cordex import EXPERIMENTS, domain_spec, target_coords, test_files
from ml_benchmark_spategan.submission.layout import (
    DEFAULT_MEMBERS,
    MEMBER_DIM,
    file_dims,
    first_time_mismatch,
    submission_path,
    variable_dtype,
)
from ml_benchmark_spategan.utils.memory import keep_freed_memory
from ml_benchmark_spategan.utils.progress import track

LOG = logging.getLogger(__name__)

#: Variable attributes written to each file (units and names as in the benchmark's templates).
VARIABLE_ATTRS = {
    "pr": {"standard_name": "lwe_precipitation_rate", "long_name": "Daily precipitation", "units": "mm/day"},
    "tasmax": {"standard_name": "air_temperature", "long_name": "Daily Maximum Near-Surface Air Temperature",
               "units": "K", "cell_methods": "time: maximum"},
}
COORD_ATTRS = {
    "lat": {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"},
    "lon": {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"},
    "x": {"standard_name": "projection_x_coordinate", "long_name": "x coordinate of projection", "units": "km",
          "axis": "X"},
    "y": {"standard_name": "projection_y_coordinate", "long_name": "y coordinate of projection", "units": "km",
          "axis": "Y"},
    MEMBER_DIM: {"long_name": "ensemble member"},
}
#: Tolerance (degrees) for 2-D auxiliary lat/lon of ALPS inputs: the projection reproduces the stored
#: values within 1e-8; the 1-D dimension coordinates must match exactly.
AUX_COORD_ATOL = 1e-6
#: predict_fn(experiment, variable, predictors_path) -> DataArray (member, time, row, col), physical units.
PredictFn = Callable[[str, str, Path], xr.DataArray]


@dataclass(frozen=True)
class WriteStats:
    """What writing one file took: ``raw_bytes`` = uncompressed size of pr + tasmax in their dtypes."""

    path: Path
    days: int
    members: int
    seconds: float
    raw_bytes: int
    file_bytes: int

    @property
    def mb_per_s(self) -> float:
        """Raw (uncompressed) megabytes written per second."""
        return self.raw_bytes / 1e6 / max(self.seconds, 1e-9)


# --- checks of one prediction ----------------------------------------------------------------------
def _check_spatial_coords(da: xr.DataArray, name: str, domain: str) -> None:
    for coord, template in target_coords(domain).items():
        if coord not in da.coords:
            continue
        found = np.asarray(da[coord].values)
        if found.shape != template.shape:
            raise ValueError(f"{name}: coordinate {coord!r} has shape {found.shape}; expected {template.shape}")
        if template.ndim == 1:
            ok = np.array_equal(found.astype(template.dtype), template)
        else:
            ok = np.allclose(found, template, rtol=0.0, atol=AUX_COORD_ATOL)
        if not ok:
            i = int(np.argmax(found.astype(template.dtype).ravel() != template.ravel()))
            raise ValueError(f"{name}: coordinate {coord!r} differs from the {domain} template grid "
                             f"(first at flat index {i}: found {found.ravel()[i]!r}, expected {template.ravel()[i]!r})")


def _check_prediction(da: xr.DataArray, name: str, domain: str, predictor_time: xr.DataArray,
                      members: int) -> xr.DataArray:
    """Check one predictand against the template grid, the predictor times and the ensemble size; return it
    lazily transposed to the file's dims ``(time, row, col, member)``."""
    dims = file_dims(domain)
    if not isinstance(da, xr.DataArray) or set(da.dims) != set(dims):
        found = getattr(da, "dims", type(da).__name__)
        raise ValueError(f"{name}: prediction has dims {found}; expected (member, time, {dims[1]}, {dims[2]})")
    expected = {"time": predictor_time.size, dims[1]: 128, dims[2]: 128, MEMBER_DIM: members}
    for dim, size in expected.items():
        if da.sizes[dim] != size:
            raise ValueError(f"{name}: dimension {dim!r} has size {da.sizes[dim]}; expected {size}"
                             + (" (the predictor file's days)" if dim == "time" else ""))
    if "time" in da.coords:
        i = first_time_mismatch(da["time"].values, predictor_time.values)
        if i is not None:
            raise ValueError(f"{name}: time stamp {i} is {da['time'].values[i]!r}; the predictor file has "
                             f"{predictor_time.values[i]!r} (predictions must carry the predictor times)")
    _check_spatial_coords(da, name, domain)
    return da.transpose(*dims)


def _encode_time(predictor_time: xr.DataArray, domain: str) -> tuple[np.ndarray, dict]:
    """The predictor times encoded as in the predictor file: (numbers, attributes incl. units/calendar)."""
    var = predictor_time.variable.copy(deep=False)
    enc = {k: v for k, v in predictor_time.encoding.items() if k in ("units", "calendar", "dtype")}
    enc.setdefault("units", domain_spec(domain).time_units)
    var.encoding = enc
    encoded = xr.conventions.encode_cf_variable(var, name="time")
    attrs = {k: v for k, v in predictor_time.attrs.items() if k not in ("bounds", "_FillValue")}
    attrs.update({k: v for k, v in encoded.attrs.items() if k in ("units", "calendar")})
    return np.asarray(encoded.values), attrs


# --- netCDF writing --------------------------------------------------------------------------------
def _define_coords(nc: netCDF4.Dataset, domain: str, time_values: np.ndarray, time_attrs: dict,
                   members: int) -> None:
    _, row, col, _ = file_dims(domain)
    coords = target_coords(domain)
    for dim, size in (("time", len(time_values)), (row, 128), (col, 128), (MEMBER_DIM, members)):
        nc.createDimension(dim, size)
    t = nc.createVariable("time", time_values.dtype, ("time",), fill_value=False)
    t.setncatts(time_attrs)
    t[:] = time_values
    for dim in (row, col):
        v = nc.createVariable(dim, coords[dim].dtype, (dim,), fill_value=False)
        v.setncatts(COORD_ATTRS[dim] | ({"axis": "Y" if dim == "lat" else "X"} if dim in ("lat", "lon") else {}))
        v[:] = coords[dim]
    if row == "y":  # ALPS: 2-D auxiliary lat/lon
        for name in ("lat", "lon"):
            v = nc.createVariable(name, coords[name].dtype, (row, col), fill_value=False)
            v.setncatts(COORD_ATTRS[name])
            v[:] = coords[name]
    m = nc.createVariable(MEMBER_DIM, "i4", (MEMBER_DIM,), fill_value=False)
    m.setncatts(COORD_ATTRS[MEMBER_DIM])
    m[:] = np.arange(members, dtype=np.int32)


def _write_variable(nc: netCDF4.Dataset, name: str, da: xr.DataArray, domain: str, chunk_days: int,
                    complevel: int) -> None:
    """Write ``da`` (time, row, col, member) in time blocks of ``chunk_days`` through one reused buffer;
    non-finite values (and negative pr) raise ValueError naming the variable and the time stamp."""
    dtype = np.dtype(variable_dtype(domain, name))
    n_days = da.sizes["time"]
    chunks = (min(chunk_days, n_days), *da.shape[1:])
    v = nc.createVariable(name, dtype, da.dims, zlib=complevel > 0, complevel=complevel, shuffle=True,
                          chunksizes=chunks, fill_value=dtype.type(np.nan))
    v.setncatts(VARIABLE_ATTRS[name] | ({"coordinates": "lat lon"} if da.dims[1] == "y" else {}))
    buffer = np.empty(chunks, dtype=dtype)
    for start in range(0, n_days, chunks[0]):
        block = buffer[:min(chunks[0], n_days - start)]
        np.copyto(block, np.asarray(da.isel(time=slice(start, start + chunks[0])).data), casting="same_kind")
        _check_block(block, name, start, da)
        v[start:start + len(block)] = block


def _check_block(block: np.ndarray, name: str, start: int, da: xr.DataArray) -> None:
    lo, hi = block.min(), block.max()  # NaN propagates into both
    if np.isfinite(lo) and np.isfinite(hi) and (name != "pr" or lo >= 0):
        return
    bad = ~np.isfinite(block) | ((block < 0) if name == "pr" else False)
    i = start + int(np.argmax(bad.reshape(len(block), -1).any(axis=1)))
    what = "non-finite (NaN/Inf)" if not np.isfinite(block).all() else "negative"
    raise ValueError(f"{name}: {what} values at time index {i} ({da['time'].values[i]!r}); "
                     "predictions must be finite (and pr >= 0)")


def write_prediction_file(path: str | Path, pr: xr.DataArray, tasmax: xr.DataArray, domain: str,
                          predictor_time: xr.DataArray, members: int = DEFAULT_MEMBERS, *, chunk_days: int = 32,
                          complevel: int = 1) -> WriteStats:
    """Write one prediction file (see the module docstring for the format), atomically.

    ``pr`` / ``tasmax``: (member, time, row, col) in any dim order, mm/day and K, numpy- or dask-backed;
    spatial coordinates, when present, must equal the template grid's; ``time`` must equal
    ``predictor_time``. ``predictor_time``: the test predictor file's decoded ``time`` with its
    ``encoding`` (units, calendar, dtype). ``members``: the expected ensemble size.
    """
    path = Path(path)
    keep_freed_memory()
    arrays = {n: _check_prediction(da, n, domain, predictor_time, members) for n, da in (("pr", pr), ("tasmax", tasmax))}
    time_values, time_attrs = _encode_time(predictor_time, domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    start = time.perf_counter()
    try:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            _define_coords(nc, domain, time_values, time_attrs, members)
            for name, da in arrays.items():
                _write_variable(nc, name, da, domain, chunk_days, complevel)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    raw = sum(da.size * np.dtype(variable_dtype(domain, n)).itemsize for n, da in arrays.items())
    return WriteStats(path, predictor_time.size, members, seconds, raw, path.stat().st_size)


# --- a whole submission ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    experiment: str
    period: str
    kind: str
    gcm: str
    predictors: Path
    output: Path


def plan_submission(sub_root: str | Path, name: str, data_root: str | Path, domain: str,
                    experiments: Iterable[str] = EXPERIMENTS, overwrite: bool = False) -> list[_Job]:
    """Every (test predictor file -> prediction file) of ``domain`` and ``experiments``; raises before
    anything is written if a predictor file is missing or (unless ``overwrite``) an output exists."""
    jobs = [
        _Job(exp, period, kind, gcm, ppath, submission_path(sub_root, name, domain, exp, period, kind, gcm))
        for exp in experiments
        for period, kind, gcm, ppath in test_files(data_root, domain)
    ]
    missing = sorted({str(j.predictors) for j in jobs if not j.predictors.is_file()})
    if missing:
        raise FileNotFoundError(f"{len(missing)} test predictor file(s) not found: {missing}")
    existing = [str(j.output) for j in jobs if j.output.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{len(existing)} prediction file(s) already exist (pass overwrite=True / --overwrite "
                              f"to replace them): {existing[:3]}{' ...' if len(existing) > 3 else ''}")
    return jobs


def predictor_time(path: str | Path) -> xr.DataArray:
    """The decoded ``time`` of a predictor file, loaded, with its encoding (units, calendar, dtype)."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        if "time" not in ds.coords:
            raise ValueError(f"{path}: no 'time' coordinate (expected decoded daily time stamps)")
        return ds["time"].load()


class _FileWriter:
    """Writes files inline (``workers`` = 0) or in ``workers`` spawned processes, at most ``workers``
    files in flight (each holds its predictions in memory until written)."""

    def __init__(self, workers: int):
        if workers < 0:
            raise ValueError(f"workers must be >= 0; got {workers}")
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers else None
        self.pending: list[Future] = []
        self.stats: list[WriteStats] = []

    def submit(self, *args, **kwargs) -> None:
        if self.pool is None:
            self._record(write_prediction_file(*args, **kwargs))
            return
        while len(self.pending) >= self.workers:
            self._record(self.pending.pop(0).result())
        self.pending.append(self.pool.submit(write_prediction_file, *args, **kwargs))

    def _record(self, stats: WriteStats) -> None:
        self.stats.append(stats)
        LOG.info("wrote %s: %d days x %d members, %.1f s (%.0f MB/s raw, %.0f MB on disk)", stats.path, stats.days,
                 stats.members, stats.seconds, stats.mb_per_s, stats.file_bytes / 1e6)

    def __enter__(self) -> _FileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                while self.pending:
                    self._record(self.pending.pop(0).result())
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)


def write_submission(sub_root: str | Path, name: str, data_root: str | Path, domain: str,
                     experiments: Iterable[str], predict_fn: PredictFn, members: int = DEFAULT_MEMBERS,
                     overwrite: bool = False, *, chunk_days: int = 32, complevel: int = 1,
                     workers: int = 0) -> list[WriteStats]:
    """Predict every test predictor file of ``domain`` for each experiment and write the submission files.

    ``predict_fn(experiment, variable, predictors_path)`` returns (member, time, row, col) in mm/day or K
    with the predictor file's times. Refuses to overwrite existing files unless ``overwrite`` (checked for
    all files before the first prediction). ``workers`` > 0 writes files in that many processes while the
    next file is predicted. Returns the statistics of each written file, in writing order.
    """
    jobs = plan_submission(sub_root, name, data_root, domain, tuple(experiments), overwrite)
    LOG.info("submission %s, domain %s: %d files, %d members", name, domain, len(jobs), members)
    with _FileWriter(workers) as writer:
        for i, job in enumerate(track(jobs, f"submission {domain}", unit="files"), 1):
            start = time.perf_counter()
            pr = predict_fn(job.experiment, "pr", job.predictors)
            tasmax = predict_fn(job.experiment, "tasmax", job.predictors)
            LOG.info("[%d/%d] %s %s/%s/%s/%s: predicted in %.1f s", i, len(jobs), domain, job.experiment,
                     job.period, job.kind, job.gcm, time.perf_counter() - start)
            if workers:  # sent to another process: in memory, not as a lazy graph
                pr, tasmax = pr.load(), tasmax.load()
            writer.submit(job.output, pr, tasmax, domain, predictor_time(job.predictors), members,
                          chunk_days=chunk_days, complevel=complevel)
    return writer.stats


# --- predict_fn from trained runs ------------------------------------------------------------------
def _check_run(run, run_dir, domain: str, experiment: str, variable: str) -> None:
    data = run.cfg.data
    found = {"data.source": data.source, "data.domain": data.domain, "data.experiment": data.experiment,
             "target variable": run.geometry["target_variable"], "output grid": tuple(run.geometry["out_shape"])}
    expected = {"data.source": "cordex", "data.domain": domain, "data.experiment": experiment,
                "target variable": variable, "output grid": (128, 128)}
    for key, want in expected.items():
        if found[key] != want:
            raise ValueError(f"run {run_dir} (given for {experiment}:{variable}, domain {domain}): "
                             f"{key} is {found[key]!r}; expected {want!r}")


def _clip_negative(values: np.ndarray, block: int = 32) -> int:
    """Set negative values to 0 in place, in blocks along axis 1 (no full-size temporaries); returns how
    many there were (NaN stays NaN)."""
    count = 0
    for start in range(0, values.shape[1], block):
        part = values[:, start:start + block]
        count += int(np.count_nonzero(part < 0))
        np.maximum(part, 0, out=part)
    return count


def template_like(domain: str) -> xr.DataArray:
    """A (row, col) float32 DataArray of zeros on the template grid (1-D dimension coordinates only)."""
    row, col = domain_spec(domain).target_dims
    coords = target_coords(domain)
    return xr.DataArray(np.zeros((128, 128), np.float32), dims=(row, col), coords={row: coords[row], col: coords[col]})


def run_predict_fn(runs: dict[tuple[str, str], str | Path], members: int = DEFAULT_MEMBERS, device: str = "cpu",
                   batch_size: int = 64, *, domain: str, data_root: str | Path, which: str = "best",
                   chunk_days: int = 128) -> PredictFn:
    """A ``predict_fn`` backed by trained run folders, ``runs[(experiment, variable)] = run_dir``.

    Every run is loaded and checked first (benchmark layout, domain, experiment, variable, 128×128 output;
    orography read from the experiment's ``Static_fields.nc`` when the run used it), so a wrong run fails
    before any file is written. Predictors are selected by the run's predictor names. Negative pr samples
    are set to 0 (a warning gives their fraction).
    """
    from ml_benchmark_spategan import inference  # torch: only when predicting from runs
    from ml_benchmark_spategan.cordex import static_fields_path
    from ml_benchmark_spategan.dataloader.reader import open_predictors, open_static

    like = template_like(domain)
    loaded, orography = {}, {}
    for (experiment, variable), run_dir in runs.items():
        run = inference.load_run(run_dir, which, device)
        _check_run(run, run_dir, domain, experiment, variable)
        loaded[(experiment, variable)] = run
        if run.geometry["static_channels"] and experiment not in orography:
            path = static_fields_path(data_root, domain, experiment)
            orography[experiment] = open_static(path, "orog", like.expand_dims("time"))

    def predict_fn(experiment: str, variable: str, predictors_path: Path) -> xr.DataArray:
        run = loaded.get((experiment, variable))
        if run is None:
            raise KeyError(f"no run given for {experiment}:{variable}; runs: {sorted(loaded)}")
        x = open_predictors(predictors_path, run.geometry["predictor_names"], chunk_days)
        orog = orography.get(experiment) if run.geometry["static_channels"] else None
        y = inference.predict_ensemble(run, x, like, members, batch_size, orography=orog)
        if variable == "pr":
            negative = _clip_negative(y.values) / y.size
            if negative:
                LOG.warning("%s: %.4f%% of pr values negative, set to 0", predictors_path, 100 * negative)
        return y

    return predict_fn
