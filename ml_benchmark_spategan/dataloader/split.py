"""Train/validation split of a :class:`~.reader.DomainData` by calendar years."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from ml_benchmark_spategan.config.schema import DataConfig
from ml_benchmark_spategan.cordex import DEFAULT_SPLITS
from ml_benchmark_spategan.dataloader.errors import DataError
from ml_benchmark_spategan.dataloader.reader import DomainData

_YEARS = re.compile(r"^\s*(\d{4})\s*(?:-\s*(\d{4})\s*)?$")


def parse_years(specs: Iterable[str | int]) -> set[int]:
    """``('1961-1974', '1980')`` -> {1961, ..., 1974, 1980}. Ranges are inclusive."""
    years: set[int] = set()
    for spec in specs:
        m = _YEARS.match(str(spec))
        if m is None:
            raise DataError(f"bad year specification {spec!r}; expected 'YYYY' or 'YYYY-YYYY'")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if last < first:
            raise DataError(f"bad year range {spec!r}: the last year is before the first")
        years.update(range(first, last + 1))
    return years


def format_years(years: Iterable[int]) -> str:
    """{1961, 1962, 1963, 1980} -> '1961-1963, 1980'."""
    ys = sorted(set(int(y) for y in years))
    if not ys:
        return "none"
    runs: list[str] = []
    start = prev = ys[0]
    for y in ys[1:] + [None]:
        if y is None or y != prev + 1:
            runs.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = y
        prev = y
    return ", ".join(runs)


def data_years(data: DomainData) -> np.ndarray:
    """Calendar year of every day, (time,) int (datetime64 and cftime alike)."""
    return np.asarray(data.predictors["time"].dt.year.values, dtype=np.int64)


def select_years(data: DomainData, years: Iterable[int]) -> DomainData:
    """The days of ``data`` whose calendar year is in ``years``. Every year asked for must be present;
    an empty selection or one whose target is NaN everywhere raises :class:`DataError`."""
    years = set(int(y) for y in years)
    day_years = data_years(data)
    present = set(np.unique(day_years).tolist())
    if not years:
        raise DataError("empty split: no years given")
    absent = years - present
    if absent:
        raise DataError(f"years {format_years(absent)} (of those asked: {format_years(years)}) are not in the "
                        f"data; the data holds years {format_years(present)}")
    index = np.flatnonzero(np.isin(day_years, sorted(years)))
    subset = data.isel_time(index)
    if int(subset.valid_count.sum()) == 0:
        raise DataError(f"target {data.target_variable!r} is NaN everywhere in years {format_years(years)} "
                        f"({data.origin.target_file})")
    return subset


def split_years(cfg: DataConfig) -> tuple[set[int], set[int]]:
    """(train years, validation years) from ``cfg`` or the experiment's default split; ``data.test_years``
    must not overlap either."""
    default = DEFAULT_SPLITS[cfg.experiment]
    if cfg.source == "files" and not (cfg.train_years and cfg.val_years):
        raise DataError("data.source is 'files': set data.train_years and data.val_years explicitly "
                        "(the CORDEX default split does not apply to your own files)")
    train = parse_years(cfg.train_years or default["train"])
    val = parse_years(cfg.val_years or default["val"])
    overlap = train & val
    if overlap:
        raise DataError(f"data.train_years and data.val_years overlap in {format_years(overlap)}")
    test = parse_years(cfg.test_years)
    for name, years in (("data.train_years", train), ("data.val_years", val)):
        if test & years:
            default_note = "" if getattr(cfg, name.split(".")[1]) else " (the experiment's default; set it explicitly)"
            raise DataError(f"data.test_years and {name}{default_note} overlap in {format_years(test & years)}: "
                            "test years must be held out of training and validation")
    return train, val


def split_data(data: DomainData, cfg: DataConfig) -> tuple[DomainData, DomainData]:
    """(train, validation) subsets of ``data`` by the years of ``cfg`` (defaults: ESD 1961-1974 /
    1975-1980; Emulator 1961-1980 + 2080-2089 / 2090-2099)."""
    train_years, val_years = split_years(cfg)
    try:
        train = select_years(data, train_years)
    except DataError as err:
        raise DataError(f"training split (data.train_years): {err}") from None
    try:
        val = select_years(data, val_years)
    except DataError as err:
        raise DataError(f"validation split (data.val_years): {err}") from None
    return train, val


def subsample_days(data: DomainData, n_days: int) -> DomainData:
    """``n_days`` days of ``data`` evenly spaced over it, first and last included (all days when ``n_days``
    is 0 or at least the number of days): a fixed subsample, the same for every call."""
    total = int(data.predictors.sizes["time"])
    if n_days <= 0 or n_days >= total:
        return data
    index = np.unique(np.round(np.linspace(0, total - 1, n_days)).astype(np.int64))
    return data.isel_time(index)


def held_out_split(data: DomainData, cfg: DataConfig) -> DomainData:
    """The held-out ``data.test_years`` of ``data`` (checked disjoint from training and validation years)."""
    if not cfg.test_years:
        raise DataError("data.test_years is empty: this run holds out no test years (set data.test_years "
                        "when training to score a test split of the training files)")
    split_years(cfg)
    try:
        return select_years(data, parse_years(cfg.test_years))
    except DataError as err:
        raise DataError(f"test split (data.test_years): {err}") from None
