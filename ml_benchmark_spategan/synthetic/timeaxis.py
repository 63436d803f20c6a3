"""Time axes of the synthetic files, encoded exactly as in the benchmark's files (see SCHEMA §1.6).

=========  =====  =========  ======================================  =====================  =======
domain     hour   leap days  units                                   calendar               dtype
=========  =====  =========  ======================================  =====================  =======
ALPS       12:00  kept       days since 1949-12-01                   gregorian              float64
NZ         00:00  removed    days since 1961-01-01                   proleptic_gregorian    int64
SA         12:00  removed    minutes since 1961-01-01                standard               float32
SA (GCM2)  12:00  (none)     minutes since 1961-01-01                noleap                 float32
=========  =====  =========  ======================================  =====================  =======

Removing 29 February from a "standard" calendar leaves gaps in the decoded datetime64 axis (as in the
real SA and NZ files); the SA files of ``DomainSpec.noleap_gcms`` decode to ``cftime.DatetimeNoLeap``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_benchmark_spategan.cordex import DomainSpec

_NOLEAP_MONTH_START = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])


@dataclass(frozen=True)
class TimeAxis:
    """Encoded time of one file segment (``n`` days).

    ``values``: (n,) numbers in ``units``/``calendar`` with the file's dtype; ``bounds``: (n, 2) or None
    (SA: the day's 00:00 and 24:00); ``day_of_year``: (n,) float64, 0 = 1 January; ``year``: (n,) int.
    """

    values: np.ndarray
    units: str
    calendar: str
    bounds: np.ndarray | None
    day_of_year: np.ndarray
    year: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    def slice(self, start: int, stop: int) -> TimeAxis:
        """The days ``start:stop`` of this axis."""
        bounds = None if self.bounds is None else self.bounds[start:stop]
        return TimeAxis(self.values[start:stop], self.units, self.calendar, bounds,
                        self.day_of_year[start:stop], self.year[start:stop])


def time_axis(spec: DomainSpec, gcm: str, first_year: int, last_year: int) -> TimeAxis:
    """Daily time axis of ``spec``'s files for ``gcm`` from 1 Jan ``first_year`` to 31 Dec ``last_year``."""
    if last_year < first_year:
        raise ValueError(f"time axis: last_year {last_year} is before first_year {first_year}")
    days = pd.date_range(f"{first_year}-01-01", f"{last_year}-12-31", freq="D")
    if not spec.leap_days:
        days = days[~((days.month == 2) & (days.day == 29))]
    year = days.year.to_numpy()
    noleap = gcm in spec.noleap_gcms
    if noleap:
        day_of_year = _NOLEAP_MONTH_START[days.month.to_numpy() - 1] + days.day.to_numpy() - 1
    else:
        day_of_year = days.day_of_year.to_numpy() - 1
    hours = np.full(len(days), spec.time_hour, dtype=np.float64)
    values, bounds = _encode(spec, noleap, days, year, day_of_year, hours)
    calendar = "noleap" if noleap else spec.time_calendar
    return TimeAxis(values, spec.time_units, calendar, bounds, day_of_year.astype(np.float64), year)


def _encode(spec, noleap, days, year, day_of_year, hours):
    unit, _, origin = spec.time_units.partition(" since ")
    if noleap:
        origin_year = pd.Timestamp(origin).year
        elapsed_days = (year - origin_year) * 365.0 + day_of_year + hours / 24.0
    else:
        elapsed_days = (days - pd.Timestamp(origin)).days.to_numpy() + hours / 24.0
    per_day = {"days": 1.0, "minutes": 1440.0}[unit]
    dtype = {"ALPS": np.float64, "NZ": np.int64, "SA": np.float32}[spec.name]
    values = (elapsed_days * per_day).astype(dtype)
    if spec.name != "SA":
        return values, None
    start = (elapsed_days - hours / 24.0) * per_day
    bounds = np.stack([start, start + per_day], axis=-1).astype(dtype)
    return values, bounds
