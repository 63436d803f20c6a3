"""Shared fixtures: tiny hand-written NetCDF files (bring-your-own layouts, odd grids) and, once the
synthetic generator exists, session-scoped CORDEX-layout domains (2 years each)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ml_benchmark_spategan.config.schema import DataConfig, FilesConfig, LoaderConfig
from ml_benchmark_spategan.cordex import PREDICTOR_VARIABLES

SHARED = Path(__file__).resolve().parents[2] / "shared"


# --- tiny NetCDF writers ----------------------------------------------------------------------------
def daily_times(start: str, days: int, hour: int = 12) -> np.ndarray:
    """datetime64 stamps of ``days`` consecutive days at ``hour``:00."""
    return (pd.date_range(start, periods=days, freq="D") + pd.Timedelta(hours=hour)).values


def winter_times(years: Sequence[int]) -> np.ndarray:
    """DJF days (Jan, Feb, Dec) of ``years`` at 12:00: a gappy time axis."""
    days = pd.DatetimeIndex([d for y in years for d in pd.date_range(f"{y}-01-01", f"{y}-12-31", freq="D")
                             if d.month in (12, 1, 2)])
    return (days + pd.Timedelta(hours=12)).values


def predictor_dataset(times, shape=(11, 13), variables: Sequence[str] = PREDICTOR_VARIABLES,
                      dims=("lat", "lon"), seed: int = 0) -> xr.Dataset:
    """Predictors with distinct, known values: variable k = 10 k + N(0, 1), float32. ``variables`` is the
    order in the file."""
    rng = np.random.default_rng(seed)
    n = len(times)
    coords = {"time": times, dims[0]: np.linspace(-10.0, 10.0, shape[0]), dims[1]: np.linspace(0.0, 24.0, shape[1])}
    data = {}
    for v in variables:
        k = list(PREDICTOR_VARIABLES).index(v) if v in PREDICTOR_VARIABLES else len(data)
        data[v] = (("time", *dims), (10.0 * k + rng.normal(size=(n, *shape))).astype(np.float32))
    return xr.Dataset(data, coords=coords)


def target_dataset(times, shape=(75, 90), variable: str = "pr", dims=("lat", "lon"), seed: int = 1,
                   nan_cells: Sequence[tuple[int, int]] = ()) -> xr.Dataset:
    """A non-negative target (gamma distributed, like pr in mm/day) with NaN at ``nan_cells`` on all days."""
    rng = np.random.default_rng(seed)
    values = rng.gamma(0.5, 4.0, size=(len(times), *shape)).astype(np.float32)
    for i, j in nan_cells:
        values[:, i, j] = np.nan
    coords = {"time": times, dims[0]: np.arange(shape[0], dtype=np.float32),
              dims[1]: np.arange(shape[1], dtype=np.float32) * 0.5}
    return xr.Dataset({variable: (("time", *dims), values)}, coords=coords)


def write(ds: xr.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path)
    return path


def byo_config(pred: Sequence[str | Path], target: str | Path, *, train_years=(), val_years=(),
               target_variable="pr", orography="", variables=(), **loader) -> DataConfig:
    files = FilesConfig(predictor_files=tuple(str(p) for p in pred), predictor_variables=tuple(variables),
                        target_file=str(target), orography_file=str(orography))
    return DataConfig(source="files", target_variable=target_variable, train_years=tuple(train_years),
                      val_years=tuple(val_years), use_orography=bool(orography), files=files,
                      loader=LoaderConfig(**loader))


@pytest.fixture(scope="session")
def byo_files(tmp_path_factory):
    """3 years (1990-1992) of daily predictors 11x13 (file order scrambled) and a 75x90 target with two
    NaN cells; returns (predictor path, target path). Session-scoped: do not modify."""
    tmp_path = tmp_path_factory.mktemp("byo")
    times = daily_times("1990-01-01", 365 * 3 + 1)
    scrambled = list(PREDICTOR_VARIABLES[::-1])
    pred = write(predictor_dataset(times, variables=scrambled), tmp_path / "pred.nc")
    target = write(target_dataset(times, nan_cells=[(3, 4), (70, 88)]), tmp_path / "target.nc")
    return pred, target


# --- CORDEX-layout synthetic domains ------------------------------------------------------------------
@pytest.fixture(scope="session")
def cordex_root(tmp_path_factory):
    """A 2-year synthetic CORDEX tree holding ALPS, NZ and SA (generated once per session)."""
    synthetic = pytest.importorskip("ml_benchmark_spategan.synthetic")
    if not hasattr(synthetic, "generate_domain"):
        pytest.skip("ml_benchmark_spategan.synthetic.generate_domain is not available yet")
    root = tmp_path_factory.mktemp("cordex")
    for domain in ("ALPS", "NZ", "SA"):
        synthetic.generate_domain(root, domain, years=2, seed=0, truth=False)
    return root


# --- real-world-shaped bring-your-own layouts (issue 10) ----------------------------------------------
#: Grid A (the predictor grid: the first variable's) and grid B (coarser, wider, 0..360 longitudes).
GRID_A = {"lat": np.linspace(40.0, 50.0, 6), "lon": np.linspace(0.0, 14.0, 8)}
GRID_B = {"latitude": np.linspace(51.0, 39.0, 5), "longitude": (np.linspace(-1.0, 15.0, 7) + 360.0) % 360.0}
WINTER_YEARS = (2000, 2001, 2002, 2003)


def _smooth_field(times, lat, lon, seed: int, base: float, amp: float) -> np.ndarray:
    """A smooth daily field (time, lat, lon): a large-scale wave that moves day by day, plus a gradient."""
    rng = np.random.default_rng(seed)
    phase = np.cumsum(rng.normal(0.0, 0.4, size=len(times)))[:, None, None]
    la, lo = np.meshgrid(np.asarray(lat, float), np.asarray(lon, float) % 360.0, indexing="ij")
    lo = np.where(lo > 180.0, lo - 360.0, lo)
    return (base + amp * np.sin(0.3 * lo + phase) * np.cos(0.2 * la) - 0.3 * (la - 45.0)).astype(np.float32)


def per_variable_predictors(folder: Path, times) -> dict[str, list[Path]]:
    """ERA5-like per-variable files: t850 on grid A split in two files by year, z500 on grid A in one file,
    q850 and u850 together on grid B (descending latitudes, 0..360 longitudes, a size-1 level dim)."""
    years = pd.DatetimeIndex(times).year
    t850 = _smooth_field(times, GRID_A["lat"], GRID_A["lon"], 0, 270.0, 6.0)
    z500 = _smooth_field(times, GRID_A["lat"], GRID_A["lon"], 1, 5500.0, 80.0)
    coords_a = {"time": times, "lat": ("lat", GRID_A["lat"], {"units": "degrees_north"}),
                "lon": ("lon", GRID_A["lon"], {"units": "degrees_east"})}
    files: dict[str, list[Path]] = {"t850": [], "z500": [], "qu850": []}
    for part, sel in (("2000-2001", years <= 2001), ("2002-2003", years >= 2002)):
        ds = xr.Dataset({"t850": (("time", "lat", "lon"), t850[sel], {"units": "K", "standard_name": "air_temperature"})},
                        coords={**coords_a, "time": times[sel]})
        files["t850"].append(write(ds, folder / f"era5_t850_{part}.nc"))
    ds = xr.Dataset({"z500": (("time", "lat", "lon"), z500, {"units": "m"})}, coords=coords_a)
    files["z500"].append(write(ds, folder / "era5_z500.nc"))
    q = _smooth_field(times, GRID_B["latitude"], GRID_B["longitude"], 2, 4e-3, 1e-3)
    u = _smooth_field(times, GRID_B["latitude"], GRID_B["longitude"], 3, 5.0, 4.0)
    ds = xr.Dataset({"q850": (("time", "level", "latitude", "longitude"), q[:, None], {"units": "kg kg-1"}),
                     "u850": (("time", "level", "latitude", "longitude"), u[:, None], {"units": "m s-1"})},
                    coords={"time": times, "level": [850.0], "latitude": GRID_B["latitude"],
                            "longitude": GRID_B["longitude"]})
    files["qu850"].append(write(ds, folder / "era5_qu850.nc"))
    return files


def temperature_target(times, shape=(12, 16), seed: int = 5) -> xr.Dataset:
    """``tg`` in degC (daily mean) on a 12x16 lat/lon grid inside grid A, driven by t850; NaN sea in the
    south-east corner on every day; CF attributes."""
    lat = np.linspace(41.0, 49.0, shape[0])
    lon = np.linspace(1.0, 13.0, shape[1])
    t = _smooth_field(times, lat, lon, 0, 270.0, 6.0)
    rng = np.random.default_rng(seed)
    tg = t - 273.15 + 8.0 + 0.5 * (lat[:, None] - 45.0) + rng.normal(0.0, 0.7, size=t.shape)
    sea = (lat[:, None] < 43.5) & (lon[None, :] > 9.5)
    tg = np.where(sea[None], np.nan, tg).astype(np.float32)
    attrs = {"units": "degC", "standard_name": "air_temperature", "long_name": "daily mean temperature"}
    return xr.Dataset({"tg": (("time", "lat", "lon"), tg, attrs)},
                      coords={"time": times, "lat": ("lat", lat, {"units": "degrees_north"}),
                              "lon": ("lon", lon, {"units": "degrees_east"})})


def rotated_pole_target(times, shape=(10, 12), variable="tasmax") -> xr.Dataset:
    """A EURO-CORDEX-like target on a rotated-pole grid: rlat/rlon (degrees), 2-D lat/lon and a
    ``rotated_pole`` grid-mapping variable (pole at 39.25N, 162W)."""
    import cartopy.crs as ccrs

    rlat = np.linspace(-8.0, -3.0, shape[0])
    rlon = np.linspace(-12.0, -4.0, shape[1])
    pole = ccrs.RotatedPole(pole_longitude=-162.0, pole_latitude=39.25)
    rr, cc = np.meshgrid(rlat, rlon, indexing="ij")
    geo = ccrs.PlateCarree().transform_points(pole, cc, rr)
    lon2d, lat2d = geo[..., 0], geo[..., 1]
    base = _smooth_field(times, lat2d[:, 0], lon2d[0], 0, 275.0, 6.0)
    rng = np.random.default_rng(7)
    values = (base + rng.normal(0.0, 0.5, size=base.shape)).astype(np.float32)
    attrs = {"units": "K", "standard_name": "air_temperature", "cell_methods": "time: maximum",
             "grid_mapping": "rotated_pole"}
    mapping = xr.DataArray(np.int32(0), attrs={"grid_mapping_name": "rotated_latitude_longitude",
                                               "grid_north_pole_latitude": 39.25,
                                               "grid_north_pole_longitude": -162.0})
    ds = xr.Dataset({variable: (("time", "rlat", "rlon"), values, attrs), "rotated_pole": mapping},
                    coords={"time": times,
                            "rlat": ("rlat", rlat, {"standard_name": "grid_latitude", "units": "degrees", "axis": "Y"}),
                            "rlon": ("rlon", rlon, {"standard_name": "grid_longitude", "units": "degrees", "axis": "X"}),
                            "lat": (("rlat", "rlon"), lat2d, {"standard_name": "latitude", "units": "degrees_north"}),
                            "lon": (("rlat", "rlon"), lon2d, {"standard_name": "longitude", "units": "degrees_east"})})
    ds[variable].encoding["coordinates"] = "lat lon"
    return ds


def flux_precipitation_target(times, shape=(12, 16), seed: int = 9) -> xr.Dataset:
    """``pr`` in kg m-2 s-1 with CF standard_name precipitation_flux, intermittent, on a lat/lon grid."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(41.0, 49.0, shape[0])
    lon = np.linspace(1.0, 13.0, shape[1])
    mm = rng.gamma(0.6, 6.0, size=(len(times), *shape)) * (rng.random((len(times), *shape)) < 0.55)
    values = (mm / 86400.0).astype(np.float32)
    attrs = {"units": "kg m-2 s-1", "standard_name": "precipitation_flux", "long_name": "precipitation"}
    return xr.Dataset({"pr": (("time", "lat", "lon"), values, attrs)},
                      coords={"time": times, "lat": ("lat", lat, {"units": "degrees_north"}),
                              "lon": ("lon", lon, {"units": "degrees_east"})})


@pytest.fixture(scope="session")
def byo_layouts(tmp_path_factory):
    """Issue-10 layouts written once: per-variable predictors on two grids (DJF only, 2000-2003), and three
    targets on that time axis: ``tg`` (degC, NaN sea), a rotated-pole ``tasmax`` (K) and ``pr`` (kg m-2 s-1).
    Returns a dict of paths. Session-scoped: do not modify."""
    folder = tmp_path_factory.mktemp("layouts")
    times = winter_times(WINTER_YEARS)
    files = per_variable_predictors(folder / "era5", times)
    return {
        "folder": folder, "times": times, "predictors": [p for group in files.values() for p in group],
        "predictor_glob": str(folder / "era5" / "era5_*.nc"), "variables": ["t850", "z500", "q850", "u850"],
        "tg": write(temperature_target(times), folder / "obs" / "tg_obs.nc"),
        "rotated": write(rotated_pole_target(times), folder / "rcm" / "tasmax_rotated.nc"),
        "pr_flux": write(flux_precipitation_target(times), folder / "obs" / "pr_flux.nc"),
    }
