"""Check a submission folder against the CORDEX ML-Bench rules (the benchmark ships no checker).

``validate_submission(folder)`` takes the ``<name>/`` folder (the one holding ``<D>_Domain/``) and returns
one :class:`Problem` per violation; an empty list means the folder passes. Checks:

* completeness: every expected file of each domain/experiment (a missing domain folder is one problem);
* names: files the layout does not expect (left-over ``.tmp`` files, stray files) are reported;
* per file: both ``pr`` and ``tasmax`` present, no other data variables; dims exactly
  ``(time, row, col, member)`` (ALPS ``(time, y, x, member)``, NZ/SA ``(time, lat, lon, member)``: the
  benchmark needs ``(time, y, x)`` first, so ``(member, time, y, x)`` is refused); spatial coordinates equal
  to the template grid with the template dtype (1-D exactly, ALPS 2-D lat/lon within 1e-6°); data dtypes of
  the templates; time ``units`` (``<unit> since <date>``) and ``calendar`` attributes present and, with
  ``data_root``, equal to the predictor file's (``standard`` = ``gregorian``); decoded times equal to the
  predictor file's (with ``data_root``) or else daily (29 February may be skipped), increasing and inside
  the period's years; ``member`` on both variables with a ``member`` coordinate ``0..M-1`` and ``M`` equal to
  ``members`` (default 10, the benchmark README's size; None accepts any size);
* values: finite, pr >= 0 and <= 2000 mm/day, tasmax in 180-340 K; not one constant (e.g. pr = 1e-9
  everywhere); the file's mean in a physically plausible range (:data:`MEAN_RANGES`: a tasmax in °C or
  shifted by tens of K, a pr in kg m-2 s-1 fail); no member identical to member 0 (a deterministic model
  copied into the ensemble); units attributes ``mm/day`` and ``K``.

Values are scanned in time blocks (``check_values=False`` skips the scan, which reads every byte).
``validate_zip`` checks a packed submission's entries (one ``<name>/`` top level named like the zip, the
layout's files and nothing else, safe paths, NetCDF4/HDF5 contents).
"""

from __future__ import annotations

import functools
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ml_benchmark_spategan.cordex import DOMAINS, EXPERIMENTS, TEST_PERIODS, target_coords, test_predictor_path
from ml_benchmark_spategan.submission.layout import (
    DEFAULT_MEMBERS,
    MEMBER_DIM,
    VARIABLES,
    ExpectedFile,
    domain_folder,
    expected_files,
    file_dims,
    first_time_mismatch,
    variable_dtype,
)

#: Plausible value ranges (inclusive) and units attributes.
VALUE_RANGES = {"pr": (0.0, 2000.0), "tasmax": (180.0, 340.0)}
#: Plausible range of a file's mean (over time, grid and members): the three domains' daily means lie
#: near 1-5 mm/day and 280-305 K; a 20-year domain mean outside these ranges is a unit or offset error.
MEAN_RANGES = {"pr": (0.05, 50.0), "tasmax": (250.0, 320.0)}
#: Calendar names that denote the same calendar (CF: "gregorian" is a deprecated alias of "standard").
_CALENDAR_ALIASES = {"gregorian": "standard"}
_TIME_UNITS = re.compile(r"^(days|hours|minutes|seconds) since \d{1,4}-\d{1,2}-\d{1,2}([ T].*)?$")
UNITS = {"pr": ("mm/day", "mm day-1", "mm d-1"), "tasmax": ("K",)}
AUX_COORD_ATOL = 1e-6
_BLOCK_DAYS = 64


@dataclass(frozen=True)
class Problem:
    """One rule violation: ``file`` relative to the submission folder (or the folder itself)."""

    file: str
    what: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.file}: {self.what}: expected {self.expected}; found {self.found}"


# --- the tree --------------------------------------------------------------------------------------
def _walk_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


def _tree_problems(folder: Path, domains: Sequence[str], expected: dict[str, ExpectedFile]) -> list[Problem]:
    problems = []
    present = set(_walk_files(folder))
    checked_dirs = {domain_folder(d) for d in domains}
    other_domains = {domain_folder(d) for d in DOMAINS} - checked_dirs
    for d in domains:
        if not (folder / domain_folder(d)).is_dir():
            problems.append(Problem(domain_folder(d), "missing domain folder", f"{folder / domain_folder(d)}/",
                                    "nothing"))
    missing_domains = {p.file for p in problems}
    for rel in expected:
        if rel not in present and rel.split("/")[0] not in missing_domains:
            problems.append(Problem(rel, "missing file", str(folder / rel), "nothing"))
    valid = {f.relpath.as_posix() for d in domains for f in expected_files(d, EXPERIMENTS)}
    for rel in sorted(present - valid):
        if rel.split("/")[0] not in other_domains:
            problems.append(Problem(rel, "unexpected file", "only Predictions_pr_tasmax_<GCM>_<period>.nc files "
                                    "in the layout <D>_Domain/<experiment>/<period>/<kind>/", "this file"))
    return problems


# --- one file --------------------------------------------------------------------------------------
def _dims_problems(ds: xr.Dataset, rel: str, domain: str, members: int | None) -> list[Problem]:
    problems = []
    want = file_dims(domain)
    sizes = {}
    for name in VARIABLES:
        da = ds[name]
        if MEMBER_DIM not in da.dims:
            if da.dims != want[:3]:
                problems.append(Problem(rel, f"dims of {name}", f"({', '.join(want)}) in this order", str(da.dims)))
            problems.append(Problem(rel, f"member dim of {name}", "a 'member' dimension", str(da.dims)))
            continue
        if da.dims != want:
            problems.append(Problem(rel, f"dims of {name}", f"({', '.join(want)}) in this order", str(da.dims)))
        sizes[name] = da.sizes[MEMBER_DIM]
        if members is not None and sizes[name] != members:
            problems.append(Problem(rel, f"member size of {name}", str(members), str(sizes[name])))
    if len(set(sizes.values())) > 1:
        problems.append(Problem(rel, "member sizes differ", "the same size on pr and tasmax", str(sizes)))
    elif sizes:
        problems += _member_coord_problems(ds, rel, next(iter(sizes.values())))
    return problems


def _member_coord_problems(ds: xr.Dataset, rel: str, size: int) -> list[Problem]:
    expected = f"a 'member' coordinate 0..{size - 1}"
    if MEMBER_DIM not in ds.coords:
        return [Problem(rel, "member coordinate", expected, "none (the dimension has no coordinate variable)")]
    values = ds[MEMBER_DIM].values
    if values.dtype.kind not in "iu" or not np.array_equal(values, np.arange(size)):
        return [Problem(rel, "member coordinate", expected, f"{values.dtype} {values[:12].tolist()}")]
    return []


def _coord_problems(ds: xr.Dataset, rel: str, domain: str) -> list[Problem]:
    problems = []
    for name, template in target_coords(domain).items():
        if name not in ds.coords:
            problems.append(Problem(rel, f"coordinate {name}", f"{template.dtype} {template.shape}", "missing"))
            continue
        da = ds[name]
        want_dims = tuple(d for d in file_dims(domain)[1:3] if d in da.dims) if template.ndim == 2 else (name,)
        if set(da.dims) != set(want_dims) or len(want_dims) != template.ndim:
            problems.append(Problem(rel, f"coordinate {name}", f"dims {file_dims(domain)[1:3] if template.ndim == 2 else (name,)}",
                                    f"dims {da.dims}"))
            continue
        found = da.transpose(*want_dims).values  # a transposed file is reported once, by its variables' dims
        if found.dtype != template.dtype or found.shape != template.shape:
            problems.append(Problem(rel, f"coordinate {name}", f"{template.dtype} {template.shape}",
                                    f"{found.dtype} {found.shape}"))
            continue
        ok = (np.array_equal(found, template) if template.ndim == 1
              else np.allclose(found, template, rtol=0.0, atol=AUX_COORD_ATOL))
        if not ok:
            i = int(np.argmax(np.abs(found - template).ravel()))
            problems.append(Problem(rel, f"coordinate {name}", f"the template grid (flat index {i}: "
                                    f"{template.ravel()[i]!r})", repr(found.ravel()[i])))
    return problems


@functools.lru_cache(maxsize=64)
def _cached_times(path: Path, mtime_ns: int) -> tuple[np.ndarray, str | None, str | None]:
    with xr.open_dataset(path, engine="netcdf4", decode_cf=True) as ds:
        enc = ds["time"].encoding
        return ds["time"].values, enc.get("units"), enc.get("calendar")


def _predictor_times(path: Path) -> tuple[np.ndarray, str | None, str | None]:
    """Decoded times, units and calendar of a predictor file (cached: both experiments' files share each
    predictor file)."""
    return _cached_times(path, path.stat().st_mtime_ns)


def _calendar(name: str | None) -> str | None:
    return None if name is None else _CALENDAR_ALIASES.get(name.lower(), name.lower())


def _time_encoding_problems(time: xr.DataArray, rel: str, predictor: Path | None) -> list[Problem]:
    """The stored ``units``/``calendar`` of ``time`` (not only the decoded values: a reader without the
    same calendar decodes other dates)."""
    units = time.encoding.get("units", time.attrs.get("units"))
    calendar = time.encoding.get("calendar", time.attrs.get("calendar"))
    problems = []
    if units is None or not _TIME_UNITS.match(units):
        problems.append(Problem(rel, "time units", "'<days|hours|minutes|seconds> since <date>'", repr(units)))
    if calendar is None:
        problems.append(Problem(rel, "time calendar", "a 'calendar' attribute", "none"))
    if predictor is None or not predictor.is_file() or problems:
        return problems
    _, p_units, p_calendar = _predictor_times(predictor)
    if units != p_units:
        problems.append(Problem(rel, "time units", f"{p_units!r} (as {predictor.name})", repr(units)))
    if _calendar(calendar) != _calendar(p_calendar):
        problems.append(Problem(rel, "time calendar", f"{p_calendar!r} (as {predictor.name})", repr(calendar)))
    return problems


def _time_value_problems(time: xr.DataArray, rel: str, period: str, predictor: Path | None) -> list[Problem]:
    if time.dtype.kind not in "MO":
        return [Problem(rel, "time", "CF-decodable times ('<unit> since <date>' and a calendar)",
                        f"undecodable {time.dtype} values (units {time.attrs.get('units')!r})")]
    if predictor is not None:
        return _time_problems_against(time.values, predictor, rel)
    return _daily_problems(time.values, rel, period)


def _time_problems_against(times: np.ndarray, predictor: Path, rel: str) -> list[Problem]:
    if not predictor.is_file():
        return [Problem(rel, "time", f"the times of {predictor}", "no such predictor file")]
    reference = _predictor_times(predictor)[0]
    i = first_time_mismatch(times, reference)
    if i is None:
        return []
    exp = reference[i] if i < len(reference) else "<end>"
    got = times[i] if i < len(times) else "<end>"
    return [Problem(rel, "time", f"{len(reference)} stamps equal to {predictor.name}'s (stamp {i}: {exp!r})",
                    f"{len(times)} stamps (stamp {i}: {got!r})")]


def _daily_problems(times: np.ndarray, rel: str, period: str) -> list[Problem]:
    index = xr.CFTimeIndex(times) if times.dtype == object else pd.DatetimeIndex(times)
    first, last = TEST_PERIODS[period]
    problems = []
    if len(index) and not (first <= index.year.min() and index.year.max() <= last):
        problems.append(Problem(rel, "time", f"years {first}-{last}", f"{index.year.min()}-{index.year.max()}"))
    steps = np.asarray(pd.to_timedelta(np.diff(np.asarray(times))) / pd.Timedelta(days=1))
    skips_feb29 = (index[1:].month == 3) & (index[1:].day == 1) & (index[:-1].day == 28)
    bad = ~((steps == 1.0) | ((steps == 2.0) & skips_feb29))
    if bad.any():
        i = int(np.argmax(bad))
        problems.append(Problem(rel, "time", "daily increasing stamps (29 Feb may be skipped)",
                                f"{index[i]} followed by {index[i + 1]}"))
    return problems


@dataclass
class _Scan:
    """What one pass over a variable's values found."""

    n_bad: int = 0  # non-finite values
    first_bad: int | None = None  # time index of the first
    lo: float = np.inf  # min and max of the finite values
    hi: float = -np.inf
    total: float = 0.0  # sum and count of the finite values
    count: int = 0
    differs: np.ndarray | None = None  # per member: differs from member 0 somewhere

    def add(self, block: np.ndarray, start: int, members: bool) -> None:
        """Add one time block (time first; ``members``: the last axis is ``member``)."""
        finite = np.isfinite(block)
        if members and finite.all():  # per member: differs from member 0 somewhere
            found = (block != block[..., :1]).reshape(-1, block.shape[-1]).any(axis=0)
            self.differs = found if self.differs is None else (self.differs | found)
        if not finite.all():
            self.n_bad += int((~finite).sum())
            if self.first_bad is None:
                self.first_bad = start + int(np.argmax(~finite.reshape(len(block), -1).all(axis=1)))
            block = block[finite]
        if block.size:
            self.lo, self.hi = min(self.lo, float(block.min())), max(self.hi, float(block.max()))
            self.total += float(block.sum(dtype=np.float64))
            self.count += block.size


def _scan_values(da: xr.DataArray) -> _Scan:
    """One pass over ``da`` in time blocks (see :class:`_Scan`); member moved last whatever the file order."""
    scan = _Scan()
    members = MEMBER_DIM in da.dims and da.sizes[MEMBER_DIM] > 1
    da = da.transpose("time", ..., MEMBER_DIM) if MEMBER_DIM in da.dims else da.transpose("time", ...)
    for start in range(0, da.sizes["time"], _BLOCK_DAYS):
        scan.add(np.asarray(da.isel(time=slice(start, start + _BLOCK_DAYS)).values), start, members)
    return scan


def _scan_problems(scan: _Scan, da: xr.DataArray, name: str, rel: str) -> list[Problem]:
    problems = []
    unit = UNITS[name][0]
    if scan.n_bad:
        problems.append(Problem(rel, f"non-finite values in {name}", "no NaN/Inf",
                                f"{scan.n_bad} values, first at time index {scan.first_bad} "
                                f"({da['time'].values[scan.first_bad]})"))
    low, high = VALUE_RANGES[name]
    if scan.lo < low or scan.hi > high:
        problems.append(Problem(rel, f"value range of {name}", f"[{low}, {high}] {unit}",
                                f"[{scan.lo:.6g}, {scan.hi:.6g}]"))
    if scan.count > 1 and scan.lo == scan.hi:
        problems.append(Problem(rel, f"constant {name}", "values that vary in time and space",
                                f"{scan.count} values all equal to {scan.lo:.6g} {unit} (physically implausible)"))
    low, high = MEAN_RANGES[name]
    mean = scan.total / scan.count if scan.count else float("nan")
    if scan.count and not low <= mean <= high:
        problems.append(Problem(rel, f"mean of {name}", f"a physically plausible mean in [{low}, {high}] {unit}",
                                f"{mean:.6g} {unit} (wrong units or an offset?)"))
    if scan.differs is not None and not scan.differs[1:].all():
        same = [int(m) for m in np.flatnonzero(~scan.differs[1:]) + 1]
        problems.append(Problem(rel, f"identical members of {name}",
                                "members that differ (a generative ensemble, not copies of one field)",
                                f"member(s) {same} equal to member 0 everywhere"))
    return problems


def _variable_problems(ds: xr.Dataset, rel: str, domain: str, check_values: bool) -> list[Problem]:
    problems = []
    for name in VARIABLES:
        da = ds[name]
        dtype = np.dtype(variable_dtype(domain, name))
        if da.dtype != dtype:
            problems.append(Problem(rel, f"dtype of {name}", str(dtype), str(da.dtype)))
        units = da.attrs.get("units")
        if units not in UNITS[name]:
            problems.append(Problem(rel, f"units of {name}", " or ".join(UNITS[name]), repr(units)))
        if check_values and "time" in da.dims:
            problems += _scan_problems(_scan_values(da), da, name, rel)
    return problems


def validate_file(path: str | Path, domain: str, period: str, *, rel: str | None = None,
                  members: int | None = DEFAULT_MEMBERS, predictor: Path | None = None,
                  check_values: bool = True) -> list[Problem]:
    """Problems of one prediction file (``predictor``: the test predictor file whose times it must carry;
    ``members``: the required ensemble size, None for any)."""
    rel = rel or str(path)
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except (OSError, ValueError, RuntimeError, TypeError, KeyError, IndexError) as err:
        return [Problem(rel, "unreadable file", "a NetCDF4 file", f"{type(err).__name__}: {err}")]
    with ds:
        missing = [v for v in VARIABLES if v not in ds.data_vars]
        extra = sorted(str(v) for v in ds.data_vars if v not in VARIABLES)
        problems = [Problem(rel, "missing variable", v, f"variables {sorted(map(str, ds.data_vars))}") for v in missing]
        if extra:
            problems.append(Problem(rel, "unexpected variables", "only pr and tasmax", str(extra)))
        if missing:
            return problems
        problems += _dims_problems(ds, rel, domain, members)
        problems += _coord_problems(ds, rel, domain)
        if "time" not in ds.coords:
            problems.append(Problem(rel, "time", "a decoded 'time' coordinate", f"coordinates {sorted(ds.coords)}"))
        else:
            problems += _time_value_problems(ds["time"], rel, period, predictor)
            problems += _time_encoding_problems(ds["time"], rel, predictor)
        problems += _variable_problems(ds, rel, domain, check_values)
    return problems


def validate_submission(folder: str | Path, domains: Sequence[str] | None = None,
                        experiments: Iterable[str] = EXPERIMENTS, members: int | None = DEFAULT_MEMBERS,
                        data_root: str | Path | None = None, check_values: bool = True) -> list[Problem]:
    """All problems of the submission folder ``<name>/`` (see the module docstring); [] when it passes.

    ``domains``: the domains to check (default all three: a complete submission covers them all);
    ``members``: the required ensemble size (default 10, the benchmark README's; None: any size, equal on
    both variables); ``data_root``: the data folder holding ``<D>_domain/test/``, whose predictor times
    (values, units and calendar) the files must carry.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [Problem(str(folder), "missing submission folder", "a folder holding <D>_Domain/", "nothing")]
    domains = list(domains) if domains is not None else list(DOMAINS)
    expected = {f.relpath.as_posix(): f for d in domains for f in expected_files(d, tuple(experiments))}
    problems = _tree_problems(folder, domains, expected)
    for rel, info in expected.items():
        path = folder / rel
        if not path.is_file():
            continue
        predictor = (test_predictor_path(data_root, info.domain, info.period, info.kind, info.gcm)
                     if data_root is not None else None)
        problems += validate_file(path, info.domain, info.period, rel=rel, members=members, predictor=predictor,
                                  check_values=check_values)
    return problems


# --- the zip -----------------------------------------------------------------------------------------
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _entry_problems(zf: zipfile.ZipFile, name: str, valid: set[str]) -> tuple[list[Problem], set[str]]:
    problems, files = [], set()
    for info in zf.infolist():
        entry = info.filename
        parts = entry.rstrip("/").split("/")
        if entry.startswith("/") or "\\" in entry or ".." in parts:
            problems.append(Problem(entry, "unsafe zip entry", "a relative path without '..'", repr(entry)))
            continue
        if parts[0] != name:
            problems.append(Problem(entry, "zip entry outside the top folder", f"'{name}/...' (one top-level "
                                    "folder named like the zip)", repr(entry)))
            continue
        rel = "/".join(parts[1:])
        if info.is_dir():
            if rel and not any(v.startswith(rel + "/") for v in valid):
                problems.append(Problem(entry, "unexpected folder in zip", "only the layout's folders", repr(entry)))
            continue
        if rel not in valid:
            problems.append(Problem(entry, "unexpected file in zip", "only Predictions_pr_tasmax_<GCM>_<period>.nc "
                                    "files in <name>/<D>_Domain/<experiment>/<period>/<kind>/", repr(entry)))
            continue
        if rel in files:
            problems.append(Problem(entry, "duplicate zip entry", "each file once", "twice"))
        files.add(rel)
        with zf.open(info) as fh:
            head = fh.read(len(_HDF5_SIGNATURE))
        if head != _HDF5_SIGNATURE:
            problems.append(Problem(entry, "zip entry is not NetCDF4", "an HDF5/NetCDF4 file", f"first bytes {head!r}"))
    return problems, files


def validate_zip(zip_path: str | Path, domains: Sequence[str] | None = None,
                 experiments: Iterable[str] = EXPERIMENTS) -> list[Problem]:
    """Problems of a packed submission's entries (names and layout, not the values: validate the folder
    for those): one top-level ``<name>/`` folder where ``<name>`` is the zip's stem, every expected file of
    ``domains`` x ``experiments`` once, nothing else, no absolute or ``..`` paths, NetCDF4 contents."""
    zip_path = Path(zip_path)
    if not zipfile.is_zipfile(zip_path):
        return [Problem(str(zip_path), "not a zip file", "a zip archive", "nothing" if not zip_path.exists()
                        else "another file type")]
    domains = list(domains) if domains is not None else list(DOMAINS)
    expected = {f.relpath.as_posix() for d in domains for f in expected_files(d, tuple(experiments))}
    name = zip_path.stem
    with zipfile.ZipFile(zip_path) as zf:
        problems, files = _entry_problems(zf, name, expected)
    problems += [Problem(f"{name}/{rel}", "missing file in zip", f"{name}/{rel}", "no such entry")
                 for rel in sorted(expected - files)]
    return problems
