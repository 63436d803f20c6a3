"""Tests of the synthetic domain generator: file tree, schema, time axes, determinism, physics."""

from __future__ import annotations

from pathlib import Path

import cftime
import netCDF4
import numpy as np
import pytest
import xarray as xr

from ml_benchmark_spategan import cordex
from ml_benchmark_spategan.synthetic import generate_domain
from ml_benchmark_spategan.synthetic.climate import synoptic_state
from ml_benchmark_spategan.synthetic.generate import variable_order
from ml_benchmark_spategan.synthetic.spectral import ar1_filter, coloured_noise, power_law_filter

DOMAINS = ("ALPS", "NZ", "SA")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    for domain in DOMAINS:
        generate_domain(out, domain, years=1, seed=0)
    return out


def _expected_files(root: Path, domain: str) -> list[Path]:
    files = []
    for experiment in cordex.EXPERIMENTS:
        files += [cordex.train_predictor_path(root, domain, experiment), cordex.static_fields_path(root, domain, experiment),
                  cordex.train_target_path(root, domain, experiment)]
    files += [path for *_, path in cordex.test_files(root, domain)]
    files += [cordex.truth_path(root, domain, period, gcm) for period in cordex.TEST_PERIODS
              for gcm in cordex.DOMAINS[domain].gcms]
    return files


@pytest.mark.parametrize("domain", DOMAINS)
def test_file_tree_is_complete_and_exact(root, domain):
    expected = {p.relative_to(root) for p in _expected_files(root, domain)}
    written = {p.relative_to(root) for p in root.glob(f"{domain}_domain*/**/*.nc")}
    assert written == expected
    assert len(expected) == 6 + 12 + 6
    gcm1 = cordex.DOMAINS[domain].gcm1
    assert Path(f"{domain}_domain/train/Emulator_hist_future/target/pr_tasmax_{gcm1}_1961-1980_2080-2099.nc") in expected


@pytest.mark.parametrize("domain", DOMAINS)
def test_predictor_schema(root, domain):
    spec = cordex.DOMAINS[domain]
    for path in [cordex.train_predictor_path(root, domain, e) for e in cordex.EXPERIMENTS] + \
            [p for *_, p in cordex.test_files(root, domain)]:
        with xr.open_dataset(path) as ds:
            names = [v for v in ds.data_vars if v != "time_bnds"]
            assert sorted(names) == sorted(cordex.PREDICTOR_VARIABLES), path
            for name in names:
                assert ds[name].dims == ("time", "lat", "lon") and ds[name].dtype == np.float32
                assert ds[name].attrs["units"] == cordex.PREDICTOR_UNITS[name[0]]
            for axis in ("lat", "lon"):
                np.testing.assert_array_equal(ds[axis].values, cordex.predictor_coords(domain)[axis])
                assert ds[axis].dtype == np.float64
            assert ("time_bnds" in ds) == (spec.name == "SA")
            assert np.isfinite(ds["t_850"].values).all()


@pytest.mark.parametrize("domain", DOMAINS)
def test_predictor_order_differs_between_files(root, domain):
    def order(path):
        with netCDF4.Dataset(path) as ds:
            return [v for v in ds.variables if v in cordex.PREDICTOR_VARIABLES]

    gcm1 = cordex.DOMAINS[domain].gcm1
    train = order(cordex.train_predictor_path(root, domain, "ESD_pseudo_reality"))
    perfect = order(cordex.test_predictor_path(root, domain, "historical", "perfect", gcm1))
    imperfect = order(cordex.test_predictor_path(root, domain, "historical", "imperfect", gcm1))
    assert train == variable_order(domain, "train")
    assert imperfect != train and imperfect != list(cordex.PREDICTOR_VARIABLES)
    if domain == "SA":
        assert train[:3] == ["t_500", "t_700", "t_850"] and imperfect[:3] == ["u_850", "u_700", "u_500"]
    if domain == "NZ":
        assert perfect != imperfect


@pytest.mark.parametrize("domain", DOMAINS)
def test_target_and_static_schema(root, domain):
    spec = cordex.DOMAINS[domain]
    dims = ("time",) + spec.target_dims
    coords = cordex.target_coords(domain)
    for path in (cordex.train_target_path(root, domain, "Emulator_hist_future"),
                 cordex.truth_path(root, domain, "mid_century", spec.gcm2)):
        with xr.open_dataset(path) as ds:
            assert ds["pr"].dims == dims and ds["pr"].dtype == np.dtype(spec.pr_dtype)
            assert ds["tasmax"].dims == dims and ds["tasmax"].dtype == np.dtype(spec.tasmax_dtype)
            assert ds["pr"].attrs["units"] == "mm/day" and ds["tasmax"].attrs["units"] == "K"
            for name, values in coords.items():
                assert ds[name].dtype == values.dtype
                np.testing.assert_array_equal(ds[name].values, values)
            if domain == "SA":
                assert {"time_bnds", "lat_bnds", "lon_bnds", "crs"} <= set(ds.variables)
                assert ds["crs"].dtype == np.int32 and ds["crs"].attrs["earth_radius"] == 6.371e6
    with xr.open_dataset(cordex.static_fields_path(root, domain, "ESD_pseudo_reality")) as ds:
        orog = ds["orog"]
        assert orog.dims == spec.target_dims and orog.dtype == np.float32
        assert float(orog.min()) == 0.0 and 2500.0 < float(orog.max()) < 4800.0


@pytest.mark.parametrize("domain", DOMAINS)
def test_time_encoding(root, domain):
    spec = cordex.DOMAINS[domain]
    dtype = {"ALPS": np.float64, "NZ": np.int64, "SA": np.float32}[domain]
    path = cordex.train_target_path(root, domain, "Emulator_hist_future")
    with xr.open_dataset(path, decode_times=False) as raw:
        assert raw["time"].dtype == dtype
        assert raw["time"].attrs["units"] == spec.time_units and raw["time"].attrs["calendar"] == spec.time_calendar
        first = float(raw["time"][0])
    assert first == {"ALPS": 4049.5, "NZ": 0.0, "SA": 720.0}[domain]  # 1961-01-01 at the domain's hour
    with xr.open_dataset(path) as ds:
        time = ds.indexes["time"]
        assert len(time) == (731 if spec.leap_days else 730)  # 1961 + 2080 (a leap year)
        assert set(time.hour) == {spec.time_hour}
        assert list(time.year[:1]) == [1961] and time.year[-1] == 2080
    with xr.open_dataset(cordex.test_predictor_path(root, domain, "mid_century", "perfect", spec.gcm2)) as ds:
        if domain == "SA":
            assert isinstance(ds.indexes["time"][0], cftime.DatetimeNoLeap)
        else:
            assert ds.indexes["time"].dtype.kind == "M"


@pytest.mark.parametrize("domain", DOMAINS)
def test_leap_days(tmp_path, domain):
    from ml_benchmark_spategan.synthetic.timeaxis import time_axis

    spec = cordex.DOMAINS[domain]
    axis = time_axis(spec, spec.gcm1, 1980, 1980)
    assert len(axis) == (366 if spec.leap_days else 365)
    if domain == "SA":  # 29 Feb removed, so 1 March follows 28 Feb with a 2-day gap in minutes
        gaps = np.diff(axis.values.astype(np.float64))
        assert sorted(set(gaps)) == [1440.0, 2880.0]
        noleap = time_axis(spec, spec.gcm2, 1980, 1980)
        assert noleap.calendar == "noleap" and set(np.diff(noleap.values)) == {1440.0}
        np.testing.assert_array_equal(axis.bounds[:, 1] - axis.bounds[:, 0], 1440.0)


def test_deterministic_by_seed(root, tmp_path):
    generate_domain(tmp_path, "SA", years=1, seed=0, truth=False)
    for path in (cordex.train_target_path(root, "SA", "ESD_pseudo_reality"),
                 cordex.test_predictor_path(root, "SA", "mid_century", "imperfect", "NorESM2-MM"),
                 cordex.static_fields_path(root, "SA", "Emulator_hist_future")):
        with xr.open_dataset(path) as a, xr.open_dataset(tmp_path / path.relative_to(root)) as b:
            xr.testing.assert_identical(a, b)
    assert not (tmp_path / "SA_domain_truth").exists()
    same, other = synoptic_state([0, 1, 2], 30), synoptic_state([1, 1, 2], 30)
    np.testing.assert_array_equal(same["psi"], synoptic_state([0, 1, 2], 30)["psi"])
    assert not np.allclose(same["psi"], other["psi"])
    # a shorter run is a prefix of a longer one (same seed)
    np.testing.assert_array_equal(same["omega"][:10], synoptic_state([0, 1, 2], 10)["omega"])


def _radial_spectrum(fields: np.ndarray) -> np.ndarray:
    power = np.abs(np.fft.fftshift(np.fft.fft2(fields), axes=(-2, -1))) ** 2
    yy, xx = np.indices(fields.shape[-2:])
    radius = np.hypot(yy - 64, xx - 64).astype(int).ravel()
    mean_power = power.mean(axis=0).ravel()
    return np.bincount(radius, mean_power) / np.bincount(radius)


@pytest.mark.parametrize("domain", DOMAINS)
def test_precipitation_physics(root, domain):
    with xr.open_dataset(cordex.train_target_path(root, domain, "ESD_pseudo_reality")) as ds:
        pr = ds["pr"].values.astype(np.float64)
    assert pr.min() >= 0.0 and np.isfinite(pr).all()
    assert 0.5 <= (pr < 1.0).mean() <= 0.7
    assert 1.0 < pr.mean() < 5.0 and 10.0 < np.percentile(pr, 99) < 60.0
    assert np.mean(pr) > np.median(pr)  # skewed
    spectrum = _radial_spectrum(pr[:100])
    k = np.arange(8, 40)
    slope = np.polyfit(np.log(k), np.log(spectrum[k]), 1)[0]
    assert slope < -1.5


@pytest.mark.parametrize("domain", DOMAINS)
def test_temperature_physics(root, domain):
    spec = cordex.DOMAINS[domain]
    with xr.open_dataset(cordex.static_fields_path(root, domain, "ESD_pseudo_reality")) as ds:
        orog = ds["orog"].values.ravel()
    with xr.open_dataset(cordex.train_target_path(root, domain, "ESD_pseudo_reality")) as ds:
        tasmax = ds["tasmax"].values
    assert 250.0 < tasmax.mean() < 310.0
    assert np.corrcoef(tasmax.mean(axis=0).ravel(), orog)[0, 1] < -0.5

    def mean_t(period, kind="perfect"):
        with xr.open_dataset(cordex.test_predictor_path(root, domain, period, kind, spec.gcm1)) as ds:
            return ds["t_850"].values, ds["q_850"].values, ds["z_500"].values - ds["z_850"].values

    t_hist, q_hist, thick = mean_t("historical")
    t_end, q_end, _ = mean_t("end_century")
    t_imp, _, _ = mean_t("historical", "imperfect")
    assert t_end.mean() - t_hist.mean() > 2.0 and q_end.mean() > 1.15 * q_hist.mean()
    assert abs(t_imp.mean() - t_hist.mean()) > 0.5 and not np.allclose(t_imp, t_hist)
    assert np.corrcoef(t_hist.ravel(), q_hist.ravel())[0, 1] > 0.5
    assert np.corrcoef(t_hist.ravel(), thick.ravel())[0, 1] > 0.8


def test_end_century_perfect_is_emulator_future_half(root):
    path = cordex.test_predictor_path(root, "NZ", "end_century", "perfect", "ACCESS-CM2")
    with xr.open_dataset(path) as test, \
            xr.open_dataset(cordex.train_predictor_path(root, "NZ", "Emulator_hist_future")) as train:
        xr.testing.assert_equal(test["u_500"], train["u_500"].sel(time=test["time"]))


def test_coloured_noise_and_ar1_statistics():
    rng = np.random.default_rng(3)
    fields = coloured_noise(rng, 64, power_law_filter(128, 3.0, 2.0))
    assert fields.dtype == np.float32 and 0.9 < fields.std() < 1.05
    spectrum = _radial_spectrum(fields.astype(np.float64))
    slope = np.polyfit(np.log(np.arange(8, 40)), np.log(spectrum[8:40]), 1)[0]
    assert -3.3 < slope < -2.6
    series = ar1_filter(rng.standard_normal((20000, 2)), 0.75)
    assert abs(np.corrcoef(series[1:, 0], series[:-1, 0])[0, 1] - 0.75) < 0.03
    assert abs(series.std() - 1.0) < 0.05


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="unknown domain 'XX'"):
        generate_domain(tmp_path, "XX")
    with pytest.raises(ValueError, match="years must be an integer in 1..20"):
        generate_domain(tmp_path, "SA", years=0)
    with pytest.raises(ValueError, match="phi must be in"):
        ar1_filter(np.zeros((3, 2)), 1.0)
