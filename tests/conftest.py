"""Shared fixtures: tiny hand-written NetCDF files (bring-your-own layouts, odd grids) and, once the
synthetic generator exists, session-scoped CORDEX-layout domains (2 years each)."""

from __future__ import annotations

import os
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


_CARTOPY_DATA = Path(__file__).resolve().parents[2] / "shared" / "cartopy_data"


@pytest.fixture(scope="session", autouse=True)
def offline_map_data():
    """Maps in tests use the offline Natural Earth files beside the checkout (drawn without them if absent)."""
    if _CARTOPY_DATA.is_dir() and "ML_BENCH_CARTOPY_DATA" not in os.environ:
        os.environ["ML_BENCH_CARTOPY_DATA"] = str(_CARTOPY_DATA)
        yield
        os.environ.pop("ML_BENCH_CARTOPY_DATA", None)
    else:
        yield


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
