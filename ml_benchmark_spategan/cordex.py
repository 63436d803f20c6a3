"""Facts of the CORDEX ML-Bench data format: domains, grids, periods, file layout.

Everything here is a constant or a pure function of constants (numpy only, no file access), so the
package never needs the benchmark's template files at run time. The grids reproduce the benchmark's
templates exactly (``tests/test_cordex_grids.py`` compares them with ``../shared/cordex/templates``).

Grid facts (see the project's data documentation):

* SA target: ``lat = round(-34.7 + 0.1 i, 1)``, ``lon = round(20.5 + 0.1 i, 1)``, float32, dims (lat, lon).
* ALPS target: ``x = 2062.5 + 12.5 i`` km, ``y = 1412.5 + 12.5 i`` km (float64), dims (y, x), on a
  spherical Lambert Conformal Conic projection (standard parallel 49.5°N, central meridian 10.5°E,
  false easting/northing 2825 km, earth radius 6 371 229 m); 2-D lat/lon follow from the projection.
* NZ target: float32 lat/lon with irregular float32 spacing (~0.10733°), kept as constants.
* Predictors: 16×16 regular 2° grids, float64, dims (lat, lon) in every domain (ALPS included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEVELS = (850, 700, 500)
PREDICTOR_BASES = ("z", "t", "q", "u", "v")
#: The canonical predictor order (channel order of every model input).
PREDICTOR_VARIABLES = tuple(f"{v}_{lev}" for v in PREDICTOR_BASES for lev in LEVELS)
PREDICTOR_UNITS = {"z": "gpm", "t": "K", "q": "kg/kg", "u": "m/s", "v": "m/s"}
TARGET_VARIABLES = ("pr", "tasmax")
TARGET_UNITS = {"pr": "mm/day", "tasmax": "K"}
EXPERIMENTS = ("ESD_pseudo_reality", "Emulator_hist_future")
TEST_PERIODS = {
    "historical": (1981, 2000),
    "mid_century": (2041, 2060),
    "end_century": (2080, 2099),
}
TRAINING_PERIODS = {
    "ESD_pseudo_reality": ((1961, 1980),),
    "Emulator_hist_future": ((1961, 1980), (2080, 2099)),
}
#: Default train/validation years per experiment (the benchmark notebook's split, Emulator bug fixed).
DEFAULT_SPLITS = {
    "ESD_pseudo_reality": {"train": ("1961-1974",), "val": ("1975-1980",)},
    "Emulator_hist_future": {"train": ("1961-1980", "2080-2089"), "val": ("2090-2099",)},
}
PREDICTOR_KINDS = ("perfect", "imperfect")

# --- ALPS Lambert Conformal Conic (spherical) --------------------------------------------------
ALPS_LCC = {
    "grid_mapping_name": "lambert_conformal_conic",
    "standard_parallel": 49.5,
    "longitude_of_central_meridian": 10.5,
    "latitude_of_projection_origin": 49.5,
    "false_easting": 2825000.0,
    "false_northing": 2825000.0,
    "earth_radius": 6371229.0,
}

# NZ target coordinates: irregular float32 spacing, not reproducible by a formula (benchmark fact).
# Each axis is its first value plus float32 steps: 'A' = 0.107330322265625, 'B' = the axis's other step.
_NZ_LAT = (-47.5640983581543, 0.10732650756835938,
           "ABAABAABAAABAABAAABAABAABAAABAABAABAAABAABAABAABAAABAABAAABAABAAABAB"
           "AAAABABAAABAABAAABAABAAABABAAABAABAAABABAAABAAABAAABBAAAABA")
_NZ_LON = (166.04061889648438, 0.1073150634765625,
           "AAAAAAAAABAAAAAAAAAAAAABAAAAAAAAAAAAABAAAAAAAAAAAABAAAAAAAAAAAAABAAA"
           "AAAAAAAAABAAAAAAAAAAAAAABAAAAAAAAAAAABAAAAAAAAAAAAABAAAAAAA")


@dataclass(frozen=True)
class DomainSpec:
    """Geometry and file conventions of one benchmark domain."""

    name: str
    gcms: tuple[str, str]  # (GCM1 used for training and tests, GCM2 for transfer tests only)
    target_dims: tuple[str, str]  # spatial dims of target and static files, (row, column)
    predictor_lat: tuple[float, float]  # first and last predictor latitude (2° spacing, 16 values)
    predictor_lon: tuple[float, float]
    time_units: str  # encoding of target/predictor time in the real files
    time_calendar: str
    time_hour: int  # time stamp of each day (12 or 0)
    leap_days: bool  # False: 29 Feb removed from the files
    pr_dtype: str
    tasmax_dtype: str
    noleap_gcms: tuple[str, ...] = ()  # GCMs whose files use a cftime noleap calendar

    @property
    def gcm1(self) -> str:
        return self.gcms[0]

    @property
    def gcm2(self) -> str:
        return self.gcms[1]


DOMAINS = {
    "ALPS": DomainSpec(
        "ALPS", ("CNRM-CM5", "MPI-ESM-LR"), ("y", "x"), (32.0, 62.0), (-4.0, 26.0),
        "days since 1949-12-01", "gregorian", 12, True, "float32", "float32",
    ),
    "NZ": DomainSpec(
        "NZ", ("ACCESS-CM2", "EC-Earth3"), ("lat", "lon"), (-55.5, -25.5), (157.5, 187.5),
        "days since 1961-01-01", "proleptic_gregorian", 0, False, "float64", "float32",
    ),
    "SA": DomainSpec(
        "SA", ("ACCESS-CM2", "NorESM2-MM"), ("lat", "lon"), (-40.0, -10.0), (11.0, 41.0),
        "minutes since 1961-01-01", "standard", 12, False, "float64", "float32",
        noleap_gcms=("NorESM2-MM",),
    ),
}


def domain_spec(domain: str) -> DomainSpec:
    """The :class:`DomainSpec` of ``domain`` (NZ, ALPS or SA); a clear error otherwise."""
    try:
        return DOMAINS[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}; expected one of {sorted(DOMAINS)}") from None


# --- grids ----------------------------------------------------------------------------------------
def predictor_coords(domain: str) -> dict[str, np.ndarray]:
    """1-D float64 ``lat``/``lon`` of the 16×16 predictor grid (ascending, 2° spacing)."""
    spec = domain_spec(domain)
    lat = np.linspace(*spec.predictor_lat, 16)
    lon = np.linspace(*spec.predictor_lon, 16)
    return {"lat": lat, "lon": lon}


def _nz_axis(start: float, other_step: float, steps: str) -> np.ndarray:
    # The benchmark's NZ axes alternate irregularly between two float32 spacings (accumulated in float32).
    step = {"A": np.float32(0.107330322265625), "B": np.float32(other_step)}
    values = [np.float32(start)]
    for s in steps:
        values.append(np.float32(values[-1] + step[s]))
    return np.asarray(values, dtype=np.float32)


def target_coords(domain: str) -> dict[str, np.ndarray]:
    """Exact target-grid coordinates of ``domain``.

    NZ/SA: ``{"lat": float32 (128,), "lon": float32 (128,)}``.
    ALPS: ``{"y": float64 km (128,), "x": float64 km (128,), "lat": (128,128), "lon": (128,128)}``.
    """
    spec = domain_spec(domain)
    i = np.arange(128, dtype=np.float64)
    if spec.name == "SA":
        return {
            "lat": np.round(-34.7 + 0.1 * i, 1).astype(np.float32),
            "lon": np.round(20.5 + 0.1 * i, 1).astype(np.float32),
        }
    if spec.name == "ALPS":
        x = 2062.5 + 12.5 * i
        y = 1412.5 + 12.5 * i
        lat, lon = lcc_to_latlon(*np.meshgrid(x * 1000.0, y * 1000.0))
        return {"y": y, "x": x, "lat": lat, "lon": lon}
    return {"lat": NZ_TARGET_LAT.copy(), "lon": NZ_TARGET_LON.copy()}


def lcc_to_latlon(x_m: np.ndarray, y_m: np.ndarray, params: dict = ALPS_LCC) -> tuple[np.ndarray, np.ndarray]:
    """Inverse spherical Lambert Conformal Conic (one standard parallel): metres -> degrees (lat, lon)."""
    r = params["earth_radius"]
    phi1 = np.deg2rad(params["standard_parallel"])
    phi0 = np.deg2rad(params["latitude_of_projection_origin"])
    lam0 = np.deg2rad(params["longitude_of_central_meridian"])
    n = np.sin(phi1)
    f = np.cos(phi1) * np.tan(np.pi / 4 + phi1 / 2) ** n / n
    rho0 = r * f / np.tan(np.pi / 4 + phi0 / 2) ** n
    dx = np.asarray(x_m, dtype=np.float64) - params["false_easting"]
    dy = rho0 - (np.asarray(y_m, dtype=np.float64) - params["false_northing"])
    rho = np.sign(n) * np.hypot(dx, dy)
    theta = np.arctan2(dx, dy)
    lat = 2 * np.arctan((r * f / rho) ** (1 / n)) - np.pi / 2
    lon = lam0 + theta / n
    return np.rad2deg(lat), np.rad2deg(lon)


def grid_spacing_km(domain: str) -> float:
    """Nominal target-grid spacing in km (for wavenumbers in cycles per km)."""
    return {"ALPS": 12.5, "NZ": 0.10733 * 111.195, "SA": 0.1 * 111.195}[domain_spec(domain).name]


# --- file layout ----------------------------------------------------------------------------------
def period_label(years: tuple[int, int]) -> str:
    return f"{years[0]}-{years[1]}"


def training_label(experiment: str) -> str:
    """``1961-1980`` or ``1961-1980_2080-2099``: the period part of training file names."""
    return "_".join(period_label(p) for p in TRAINING_PERIODS[experiment])


def domain_dir(root: str | Path, domain: str) -> Path:
    return Path(root) / f"{domain_spec(domain).name}_domain"


def train_predictor_path(root, domain, experiment) -> Path:
    spec = domain_spec(domain)
    return domain_dir(root, domain) / "train" / experiment / "predictors" / f"{spec.gcm1}_{training_label(experiment)}.nc"


def static_fields_path(root, domain, experiment) -> Path:
    return domain_dir(root, domain) / "train" / experiment / "predictors" / "Static_fields.nc"


def train_target_path(root, domain, experiment) -> Path:
    spec = domain_spec(domain)
    name = f"pr_tasmax_{spec.gcm1}_{training_label(experiment)}.nc"
    return domain_dir(root, domain) / "train" / experiment / "target" / name


def test_predictor_path(root, domain, period: str, kind: str, gcm: str) -> Path:
    label = period_label(TEST_PERIODS[period])
    return domain_dir(root, domain) / "test" / period / "predictors" / kind / f"{gcm}_{label}.nc"


def truth_path(root, domain, period: str, gcm: str) -> Path:
    """Synthetic truth of a test period (not part of the benchmark; written by our generator)."""
    label = period_label(TEST_PERIODS[period])
    base = Path(root) / f"{domain_spec(domain).name}_domain_truth"
    return base / "test" / period / "target" / f"pr_tasmax_{gcm}_{label}.nc"


def test_files(root, domain) -> list[tuple[str, str, str, Path]]:
    """All (period, kind, gcm, path) test predictor files of a domain: 3 periods × 2 kinds × 2 GCMs."""
    spec = domain_spec(domain)
    return [
        (period, kind, gcm, test_predictor_path(root, domain, period, kind, gcm))
        for period in TEST_PERIODS
        for kind in PREDICTOR_KINDS
        for gcm in spec.gcms
    ]


NZ_TARGET_LAT = _nz_axis(*_NZ_LAT)
NZ_TARGET_LON = _nz_axis(*_NZ_LON)
