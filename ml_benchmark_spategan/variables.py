"""What a variable is: its *kind* (precipitation-like, temperature-like, generic), its units, and unit
conversions of thresholds. Pure Python + numpy (no xarray, no torch), so every layer may use it.

Kinds pick the behaviour that depends on the physics of the target:

=============== ======================================= ============================================
kind            normalisation ``auto`` / non-negativity  indices scored / baseline correction
=============== ======================================= ============================================
precipitation   log1p of the value in mm/day, clamped    mean, SDII, Rx1day, CWD (1 mm/day wet day);
                at 0 when transformed back               multiplicative monthly mean correction
temperature     standardize_global; may be negative      mean, TXx and SU (daily maxima) or annual
                                                         max/min; monthly mean + variance correction
generic         standardize_global; may be negative      mean, P98; additive monthly mean correction
=============== ======================================= ============================================

The kind comes from (first match wins): an explicit override, the CF ``standard_name``, unambiguous
``units`` (a precipitation rate such as kg m-2 s-1 or mm/day; a temperature unit), then the variable name
(``pr``, ``tp``, ``rr`` ... / ``tas``, ``tasmax``, ``tg``, ``t2m`` ...).

Units: a small explicit table rather than a units library. pint (even with cf-xarray's registry) does not
convert a precipitation flux in kg m-2 s-1 to a depth rate in mm/day (that needs the density of water),
and it reads a daily total in ``mm`` as a length, not a rate; both are everyday cases here. The table
knows the spellings found in CF, CORDEX, ERA5 and E-OBS files, and anything it does not know makes the
unit-dependent thresholds unavailable (with a message), never silently wrong.

* temperature: ``K``, ``degC`` (``°C``, ``Celsius`` ...), ``degF``;
* precipitation (as rates, daily data assumed for totals): ``mm/day`` (also ``mm``, ``kg m-2``: a daily
  total), ``kg m-2 s-1`` (= mm/s), ``mm/h``, ``m`` / ``m/day`` (ERA5 daily ``tp``), ``cm/day`` (``m s-1`` is
  left out on purpose: it is a wind speed far more often than a precipitation rate).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

KINDS = ("precipitation", "temperature", "generic")
KIND_CHOICES = ("auto",) + KINDS


class UnitError(ValueError):
    """Units that are unknown or cannot be converted into each other."""


# --- units --------------------------------------------------------------------------------------------
# Each unit: (family, a, b) with value_in_base = a * value + b; base K for temperature, mm/day for precipitation.
_TEMPERATURE = {
    "k": (1.0, 0.0), "kelvin": (1.0, 0.0), "degk": (1.0, 0.0), "deg_k": (1.0, 0.0), "degrees_k": (1.0, 0.0),
    "degc": (1.0, 273.15), "deg_c": (1.0, 273.15), "degrees_c": (1.0, 273.15), "deg c": (1.0, 273.15),
    "degree_celsius": (1.0, 273.15), "degrees_celsius": (1.0, 273.15), "celsius": (1.0, 273.15),
    "c": (1.0, 273.15), "°c": (1.0, 273.15), "ºc": (1.0, 273.15), "degrees c": (1.0, 273.15),
    "degrees celsius": (1.0, 273.15), "degree celsius": (1.0, 273.15), "deg celsius": (1.0, 273.15),
    "degf": (5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0), "deg_f": (5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
    "°f": (5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0), "fahrenheit": (5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
    "degrees_f": (5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
}
_PER_DAY = {"mm": 1.0, "kg m-2": 1.0, "cm": 10.0, "m": 1000.0}
_PER_SECOND = {"mm": 86400.0, "kg m-2": 86400.0}  # not "m s-1": that is a wind speed
_PER_HOUR = {"mm": 24.0, "kg m-2": 24.0}


def _precipitation_table() -> dict[str, float]:
    table: dict[str, float] = {}
    for amount, factor in _PER_DAY.items():
        for suffix in ("", "/day", "/d", " day-1", " d-1", " per day", "/24h", " (24h)-1"):
            table[amount + suffix] = factor
    for amount, factor in _PER_SECOND.items():
        for suffix in ("/s", " s-1", "/sec"):
            table[amount + suffix] = factor
    for amount, factor in _PER_HOUR.items():
        for suffix in ("/h", " h-1", "/hr", " hr-1", "/hour"):
            table[amount + suffix] = factor
    table.update({"kg/m2/s": 86400.0, "kg/m2s": 86400.0, "kg m-2s-1": 86400.0, "kg/(m2 s)": 86400.0,
                  "kg/m2/day": 1.0, "kg/m2": 1.0, "mm/24h": 1.0, "mm d": 1.0})
    return table


_PRECIPITATION = _precipitation_table()
#: Precipitation units that name a rate unambiguously (a bare ``m`` or ``mm`` could be a length).
_RATE_MARKERS = ("s-1", "/s", "day", "/d", " d-1", "h-1", "/h", "hr", "/24h")


def normalise_units(units: str | None) -> str:
    """Lower-case spelling with ``**``/``^`` exponents, ``.`` separators and repeated blanks removed."""
    text = str(units or "").strip().lower()
    text = text.replace("**", "").replace("^", "").replace("·", " ").replace("⋅", " ")
    text = re.sub(r"(?<=[a-z0-9])\.(?=[a-z])", " ", text)
    return re.sub(r"\s+", " ", text)


def unit_family(units: str | None) -> str | None:
    """'temperature', 'precipitation' or None (unknown units)."""
    key = normalise_units(units)
    if key in _TEMPERATURE:
        return "temperature"
    if key in _PRECIPITATION:
        return "precipitation"
    return None


def _to_base(units: str | None) -> tuple[str, float, float]:
    key = normalise_units(units)
    if key in _TEMPERATURE:
        return ("temperature", *_TEMPERATURE[key])
    if key in _PRECIPITATION:
        return ("precipitation", _PRECIPITATION[key], 0.0)
    raise UnitError(f"unknown units {units!r}: expected a temperature (K, degC, degF) or precipitation unit "
                    "(mm/day, mm, kg m-2 s-1, mm/h, m); set the units in the file or in the config")


def convert(values, from_units: str | None, to_units: str | None):
    """``values`` (scalar or array) converted from ``from_units`` to ``to_units``.

    Equal spellings convert to themselves whatever they are; otherwise both units must be known and of
    the same family (:class:`UnitError` otherwise)."""
    if normalise_units(from_units) == normalise_units(to_units):
        return values
    fam_a, a1, b1 = _to_base(from_units)
    fam_b, a2, b2 = _to_base(to_units)
    if fam_a != fam_b:
        raise UnitError(f"cannot convert {from_units!r} ({fam_a}) to {to_units!r} ({fam_b})")
    base = np.asarray(values, dtype=np.float64) * a1 + b1
    out = (base - b2) / a2
    return float(out) if np.ndim(out) == 0 else out


def convertible(from_units: str | None, to_units: str | None) -> bool:
    try:
        convert(0.0, from_units, to_units)
    except UnitError:
        return False
    return True


def mm_per_day_factor(units: str | None) -> float:
    """Factor turning a precipitation value in ``units`` into mm/day (1.0 when the units are unknown)."""
    key = normalise_units(units)
    return _PRECIPITATION.get(key, 1.0)


# --- kinds --------------------------------------------------------------------------------------------
_PR_NAMES = {"pr", "tp", "rr", "precip", "prcp", "precipitation", "rain", "rainfall", "prec", "tot_prec",
             "ppt", "pre", "precipitation_amount", "rr24", "prectot", "prectotcorr"}
_T_NAMES = {"tas", "tasmax", "tasmin", "tg", "tx", "tn", "t2m", "tmax", "tmin", "tmean", "tavg", "temp",
            "temperature", "mx2t", "mn2t", "t_2m", "tmp", "tmx", "tmn", "2t", "air_temperature"}
_MAX_NAMES = {"tasmax", "tx", "tmax", "mx2t", "tmx", "maxtemp", "max_temp"}
_MIN_NAMES = {"tasmin", "tn", "tmin", "mn2t", "tmn", "mintemp", "min_temp"}


def infer_kind(name: str = "", standard_name: str = "", units: str = "", override: str = "auto") -> str:
    """The kind of a variable (see the module docstring for the order of the rules)."""
    if override != "auto":
        if override not in KINDS:
            raise ValueError(f"unknown variable kind {override!r}; expected one of {KIND_CHOICES}")
        return override
    sn = (standard_name or "").lower()
    if "precipitation" in sn or "rainfall" in sn:
        return "precipitation"
    if "temperature" in sn:
        return "temperature"
    family = unit_family(units)
    if family == "temperature":
        return "temperature"
    key = normalise_units(units)
    if family == "precipitation" and any(m in key for m in _RATE_MARKERS):
        return "precipitation"
    lowered = (name or "").lower()
    if lowered in _PR_NAMES:
        return "precipitation"
    if lowered in _T_NAMES:
        return "temperature"
    return "generic"


def daily_statistic(name: str = "", long_name: str = "", cell_methods: str = "") -> str:
    """'max', 'min' or 'mean' (the default) of a daily temperature, from its name, long_name, cell_methods."""
    lowered = (name or "").lower()
    text = f"{long_name} {cell_methods}".lower()
    if lowered in _MAX_NAMES or "maximum" in text:
        return "max"
    if lowered in _MIN_NAMES or "minimum" in text:
        return "min"
    return "mean"


@dataclass(frozen=True)
class VariableInfo:
    """A variable as the pipeline sees it: name in the file, kind, units (as in the file), CF metadata.

    ``statistic`` (temperature only): which daily statistic the values are ('max', 'min', 'mean').
    """

    name: str
    kind: str
    units: str = ""
    standard_name: str = ""
    long_name: str = ""
    statistic: str = "mean"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> VariableInfo:
        return cls(**{k: data[k] for k in ("name", "kind", "units", "standard_name", "long_name", "statistic")
                      if k in data})

    @classmethod
    def from_attrs(cls, name: str, attrs: Mapping, kind: str = "auto", units: str = "") -> VariableInfo:
        """From a NetCDF variable's attributes; ``units`` (when given) replaces the file's units."""
        units = units or str(attrs.get("units", "") or "")
        standard_name = str(attrs.get("standard_name", "") or "")
        long_name = str(attrs.get("long_name", "") or "")
        resolved = infer_kind(name, standard_name, units, kind)
        statistic = daily_statistic(name, long_name, str(attrs.get("cell_methods", "") or ""))
        return cls(name, resolved, units, standard_name, long_name,
                   statistic if resolved == "temperature" else "mean")

    @property
    def label(self) -> str:
        """``name (units)`` for axes and logs."""
        return f"{self.name} ({self.units})" if self.units else self.name

    def threshold(self, value: float, units: str) -> float | None:
        """``value`` given in ``units`` expressed in this variable's units; None when not convertible."""
        try:
            return float(convert(value, units, self.units))
        except UnitError:
            return None


#: The benchmark's targets (CORDEX ML-Bench): units are facts of the files (SA states mm/day; NZ/ALPS carry none).
CORDEX_TARGETS = {
    "pr": VariableInfo("pr", "precipitation", "mm/day", "precipitation_flux", "daily precipitation", "mean"),
    "tasmax": VariableInfo("tasmax", "temperature", "K", "air_temperature",
                           "daily maximum near-surface air temperature", "max"),
}


def default_info(name: str, units: str = "") -> VariableInfo:
    """The info of a CORDEX target name, else one inferred from the name (and ``units``) alone."""
    if name in CORDEX_TARGETS and not units:
        return CORDEX_TARGETS[name]
    return VariableInfo.from_attrs(name, {"units": units})
