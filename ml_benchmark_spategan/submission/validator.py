"""Check a submission folder against the CORDEX ML-Bench rules (the benchmark ships no checker).

``validate_submission(folder)`` takes the ``<name>/`` folder (the one holding ``<D>_Domain/``) and returns
one :class:`Problem` per violation; an empty list means the folder passes. Checks:

* completeness: every expected file of each domain/experiment (a missing domain folder is one problem);
* names: files the layout does not expect (left-over ``.tmp`` files, stray files) are reported;
* per file: both ``pr`` and ``tasmax`` present, no other data variables; dims ``(time, row, col)`` in this
  order plus ``member`` (ALPS ``(time, y, x)``, NZ/SA ``(time, lat, lon)``); spatial coordinates equal to the
  template grid with the template dtype (1-D exactly, ALPS 2-D lat/lon within 1e-6°); data dtypes of the
  templates; times equal to the predictor file's (with ``data_root``) or else daily (29 February may be
  skipped), increasing and inside the period's years; ``member`` on both variables, same size, equal to
  ``members`` when given; values finite, pr >= 0 and <= 2000 mm/day, tasmax in 180-340 K; units attributes
  ``mm/day`` and ``K``.

Values are scanned in time blocks (``check_values=False`` skips the scan, which reads every byte).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ml_benchmark_spategan.cordex import DOMAINS, EXPERIMENTS, TEST_PERIODS, target_coords, test_predictor_path
from ml_benchmark_spategan.submission.layout import (
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
    time_row_col = file_dims(domain)[:3]
    sizes = {}
    for name in VARIABLES:
        da = ds[name]
        core = tuple(d for d in da.dims if d != MEMBER_DIM)
        if core != time_row_col:
            problems.append(Problem(rel, f"dims of {name}", f"({', '.join(time_row_col)}) in this order (+ member)",
                                    str(da.dims)))
        if MEMBER_DIM not in da.dims:
            problems.append(Problem(rel, f"member dim of {name}", "a 'member' dimension", str(da.dims)))
            continue
        sizes[name] = da.sizes[MEMBER_DIM]
        if members is not None and sizes[name] != members:
            problems.append(Problem(rel, f"member size of {name}", str(members), str(sizes[name])))
    if len(set(sizes.values())) > 1:
        problems.append(Problem(rel, "member sizes differ", "the same size on pr and tasmax", str(sizes)))
    return problems


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
def _cached_times(path: Path, mtime_ns: int) -> np.ndarray:
    with xr.open_dataset(path, engine="netcdf4", decode_cf=True) as ds:
        return ds["time"].values


def _predictor_times(path: Path) -> np.ndarray:
    """Decoded times of a predictor file (cached: both experiments' files share each predictor file)."""
    return _cached_times(path, path.stat().st_mtime_ns)


def _time_problems_against(times: np.ndarray, predictor: Path, rel: str) -> list[Problem]:
    if not predictor.is_file():
        return [Problem(rel, "time", f"the times of {predictor}", "no such predictor file")]
    reference = _predictor_times(predictor)
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


def _scan_values(da: xr.DataArray) -> tuple[int, int | None, float, float]:
    """(number of non-finite values, first time index holding one, min, max of the finite values)."""
    n_bad, first, lo, hi = 0, None, np.inf, -np.inf
    for start in range(0, da.sizes["time"], _BLOCK_DAYS):
        block = np.asarray(da.isel(time=slice(start, start + _BLOCK_DAYS)).values)
        finite = np.isfinite(block)
        if not finite.all():
            n_bad += int((~finite).sum())
            if first is None:
                first = start + int(np.argmax(~finite.reshape(len(block), -1).all(axis=1)))
        if finite.any():
            lo, hi = min(lo, float(block[finite].min())), max(hi, float(block[finite].max()))
    return n_bad, first, lo, hi


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
        if not check_values or "time" not in da.dims:
            continue
        n_bad, first, lo, hi = _scan_values(da)
        if n_bad:
            problems.append(Problem(rel, f"non-finite values in {name}", "no NaN/Inf",
                                    f"{n_bad} values, first at time index {first} ({da['time'].values[first]})"))
        low, high = VALUE_RANGES[name]
        if lo < low or hi > high:
            problems.append(Problem(rel, f"value range of {name}", f"[{low}, {high}] {UNITS[name][0]}",
                                    f"[{lo:.6g}, {hi:.6g}]"))
    return problems


def validate_file(path: str | Path, domain: str, period: str, *, rel: str | None = None, members: int | None = None,
                  predictor: Path | None = None, check_values: bool = True) -> list[Problem]:
    """Problems of one prediction file (``predictor``: the test predictor file whose times it must carry)."""
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
        elif predictor is not None:
            problems += _time_problems_against(ds["time"].values, predictor, rel)
        else:
            problems += _daily_problems(ds["time"].values, rel, period)
        problems += _variable_problems(ds, rel, domain, check_values)
    return problems


def validate_submission(folder: str | Path, domains: Sequence[str] | None = None,
                        experiments: Iterable[str] = EXPERIMENTS, members: int | None = None,
                        data_root: str | Path | None = None, check_values: bool = True) -> list[Problem]:
    """All problems of the submission folder ``<name>/`` (see the module docstring); [] when it passes.

    ``domains``: the domains to check (default all three: a complete submission covers them all);
    ``members``: the required ensemble size (None: only equal on both variables); ``data_root``: the data
    folder holding ``<D>_domain/test/``, whose predictor times the files must carry.
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
