"""Reader, bring-your-own data, year splits and every bad-input error of the data layer."""

from __future__ import annotations

import dataclasses

import cftime
import numpy as np
import pytest
import torch
import xarray as xr
from conftest import byo_config, daily_times, predictor_dataset, target_dataset, winter_times, write

from ml_benchmark_spategan import cordex
from ml_benchmark_spategan.config.schema import DataConfig, LoaderConfig, NormalizationConfig
from ml_benchmark_spategan.cordex import (
    PREDICTOR_VARIABLES,
    static_fields_path,
    target_coords,
    train_predictor_path,
    train_target_path,
)
from ml_benchmark_spategan.dataloader import (
    DataError,
    check_same_grid,
    fit_normalizers,
    open_predictors,
    open_training_data,
    parse_years,
    select_years,
    split_data,
)
from ml_benchmark_spategan.dataloader.split import format_years, subsample_days
from ml_benchmark_spategan.dataloader.torch_bridge import TorchNormalizer, make_eval_loader


# --- bring your own -----------------------------------------------------------------------------------
def test_byo_odd_grid_channels_by_name_and_mask(byo_files):
    pred, target = byo_files
    data = open_training_data(byo_config([pred], target))
    assert data.predictors.dims == ("time", "channel", "lat", "lon")
    assert data.predictors.shape == (1096, 15, 11, 13) and data.predictors.dtype == np.float32
    assert data.channels == PREDICTOR_VARIABLES  # canonical although the file stores them reversed
    with xr.open_dataset(pred) as ds:
        for name in ("z_850", "q_500", "v_500"):
            np.testing.assert_array_equal(data.predictors.sel(channel=name).isel(time=slice(0, 9)).values,
                                          ds[name].isel(time=slice(0, 9)).values)
    assert data.target.dims == ("time", "lat", "lon") and data.target.shape == (1096, 75, 90)
    assert data.target.dtype == np.float32 and data.predictors.chunks[0][0] == 128
    assert not data.mask[3, 4] and not data.mask[70, 88] and int(data.mask.sum()) == 75 * 90 - 2
    np.testing.assert_array_equal(data.valid_count.values, 75 * 90 - 2)
    np.testing.assert_array_equal(data.time, daily_times("1990-01-01", 1096))


def test_byo_any_dim_names_multi_file_glob_and_orography(tmp_path):
    times = daily_times("2000-01-01", 40)
    dims = ("rlat", "rlon")
    write(predictor_dataset(times[:20], shape=(5, 7), dims=dims), tmp_path / "p_a.nc")
    write(predictor_dataset(times[20:], shape=(5, 7), dims=dims, seed=3), tmp_path / "p_b.nc")
    tds = target_dataset(times, shape=(9, 6), dims=("south_north", "west_east"))
    write(tds, tmp_path / "t.nc")
    orog = tds["pr"].isel(time=0, drop=True).rename("orog").to_dataset()
    write(orog, tmp_path / "o.nc")
    cfg = byo_config([str(tmp_path / "p_*.nc")], tmp_path / "t.nc", orography=tmp_path / "o.nc")
    data = open_training_data(cfg)
    assert data.predictors.dims == ("time", "channel", "rlat", "rlon") and data.n_days == 40
    assert data.spatial_dims == ("south_north", "west_east") and data.domain == "files"
    np.testing.assert_array_equal(data.orography.values, orog["orog"].values)
    assert all(s.file_lengths == (20, 20) for s in data.origin.sources)


def test_byo_gappy_winter_only_and_noleap_calendar(tmp_path):
    times = winter_times([1990, 1991, 1992])
    write(predictor_dataset(times, shape=(4, 4)), tmp_path / "p.nc")
    write(target_dataset(times, shape=(8, 8)), tmp_path / "t.nc")
    cfg = byo_config([tmp_path / "p.nc"], tmp_path / "t.nc", train_years=["1990-1991"], val_years=["1992"])
    train, val = split_data(open_training_data(cfg), cfg)
    assert train.n_days == 2 * (31 + 28 + 31) and val.n_days == 31 + 29 + 31  # 1992 is a leap year
    assert set(val.predictors["time"].dt.month.values) == {1, 2, 12}

    noleap = np.array([cftime.DatetimeNoLeap(1999, 1, 1, 12) + np.timedelta64(i, "D").item() for i in range(400)])
    write(predictor_dataset(noleap, shape=(4, 4)), tmp_path / "pn.nc")
    write(target_dataset(noleap, shape=(8, 8)), tmp_path / "tn.nc")
    data = open_training_data(byo_config([tmp_path / "pn.nc"], tmp_path / "tn.nc"))
    assert isinstance(data.time[0], cftime.DatetimeNoLeap) and data.time[-1] == noleap[-1]


def test_nan_only_on_some_days_kept_and_counted(tmp_path):
    times = daily_times("1990-01-01", 30)
    tds = target_dataset(times, shape=(6, 6))
    tds["pr"][5:8, 2, 2] = np.nan
    write(predictor_dataset(times, shape=(3, 3)), tmp_path / "p.nc")
    write(tds, tmp_path / "t.nc")
    data = open_training_data(byo_config([tmp_path / "p.nc"], tmp_path / "t.nc"))
    assert not data.mask[2, 2] and int(data.mask.sum()) == 35
    np.testing.assert_array_equal(data.valid_count.values, [36] * 5 + [35] * 3 + [36] * 22)


# --- splits --------------------------------------------------------------------------------------------
def test_parse_and_format_years():
    assert parse_years(("1961-1964", "1980", 1990)) == {1961, 1962, 1963, 1964, 1980, 1990}
    assert format_years({1961, 1962, 1963, 1980}) == "1961-1963, 1980"
    with pytest.raises(DataError, match="bad year specification '61-64'"):
        parse_years(["61-64"])
    with pytest.raises(DataError, match="last year is before the first"):
        parse_years(["1970-1960"])


def test_select_years_values(byo_files):
    pred, target = byo_files
    data = open_training_data(byo_config([pred], target))
    sub = select_years(data, {1991})
    assert sub.n_days == 365 and str(sub.time[0])[:10] == "1991-01-01"
    np.testing.assert_array_equal(sub.target.values, data.target.values[365:730])
    np.testing.assert_array_equal(sub.origin.positions, np.arange(365, 730))


# --- errors --------------------------------------------------------------------------------------------
def test_error_missing_file(tmp_path, byo_files):
    pred, target = byo_files
    with pytest.raises(DataError, match=r"nope\.nc: file not found"):
        open_training_data(byo_config([tmp_path / "nope.nc"], target))
    with pytest.raises(DataError, match=r"pattern .*x_\*\.nc' matches no file"):
        open_training_data(byo_config([str(tmp_path / "x_*.nc")], target))
    cfg = DataConfig(root=str(tmp_path / "empty"), domain="SA")
    with pytest.raises(DataError, match=r"ACCESS-CM2_1961-1980\.nc: file not found .*CORDEX ML-Bench layout"):
        open_training_data(cfg)


def test_error_missing_variable_lists_present(tmp_path, byo_files):
    pred, target = byo_files
    with pytest.raises(DataError, match=r"predictor variable\(s\) \['t_300'\] not found; the file holds \[.*'q_500'"):
        open_predictors(pred, ["z_850", "t_300"])
    with pytest.raises(DataError, match=r"target variable 'tasmax' not found; the file holds \['pr'\]"):
        open_training_data(byo_config([pred], target, target_variable="tasmax"))


def test_error_wrong_dims(tmp_path):
    times = daily_times("1990-01-01", 10)
    ds = predictor_dataset(times, shape=(4, 4))
    ds["z_850"] = ds["z_850"].expand_dims(level=[850], axis=1)
    write(ds, tmp_path / "p.nc")
    with pytest.raises(DataError, match=r"variable 'z_850' has dims \('time', 'level', 'lat', 'lon'\); expected"):
        open_predictors(tmp_path / "p.nc")
    write(predictor_dataset(times, shape=(4, 4), dims=("y", "x")), tmp_path / "q.nc")
    with pytest.raises(DataError, match=r"dims \('time', 'y', 'x'\); expected \(time, lat, lon\)"):
        open_predictors(tmp_path / "q.nc")


def test_error_mismatched_grid(tmp_path, byo_files):
    pred, target = byo_files
    a = open_predictors(pred)
    b = a.assign_coords(lat=a["lat"].values + 1e-6)
    with pytest.raises(DataError, match=r"test vs train: coordinate 'lat' differs"):
        check_same_grid(b, a, "test vs train")
    with pytest.raises(DataError, match=r"dimension 'lat' has size 10 vs 11"):
        check_same_grid(a.isel(lat=slice(0, 10)), a, "test vs train")
    times = daily_times("1990-01-01", 1096)
    orog = target_dataset(times[:1], shape=(75, 91))["pr"].isel(time=0, drop=True).rename("orog")
    write(orog.to_dataset(), tmp_path / "o.nc")
    with pytest.raises(DataError, match=r"o\.nc:orog vs the target grid: dimension 'lon' has size 91 vs 90"):
        open_training_data(byo_config([pred], target, orography=tmp_path / "o.nc"))


def test_error_time_mismatch_12_hours(tmp_path):
    write(predictor_dataset(daily_times("1990-01-01", 20, hour=0), shape=(3, 3)), tmp_path / "p.nc")
    write(target_dataset(daily_times("1990-01-01", 20, hour=12), shape=(4, 4)), tmp_path / "t.nc")
    with pytest.raises(DataError, match=r"predictors .*p\.nc has 20 stamps .*target .*t\.nc has 20 .*first mismatch "
                                        r"at index 0: 1990-01-01T00:00:00.* vs 1990-01-01T12:00:00"):
        open_training_data(byo_config([tmp_path / "p.nc"], tmp_path / "t.nc"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_error_nonfinite_predictors(tmp_path, bad):
    times = daily_times("1990-01-01", 20)
    ds = predictor_dataset(times, shape=(3, 3))
    ds["q_700"][7, 1, 2] = bad
    ds["q_700"][9, 0, 0] = bad
    write(ds, tmp_path / "p.nc")
    with pytest.raises(DataError, match=r"non-finite .* in predictor variable\(s\) \['q_700'\]: first at time "
                                        r"1990-01-08T12:00.* \(index 7\); 2 of 20 days"):
        open_predictors(tmp_path / "p.nc")


def test_error_empty_split_and_years_outside(byo_files):
    pred, target = byo_files
    data = open_training_data(byo_config([pred], target))
    with pytest.raises(DataError, match="empty split"):
        select_years(data, set())
    cfg = byo_config([pred], target, train_years=["1989-1990"], val_years=["1992"])
    with pytest.raises(DataError, match=r"training split .*years 1989 \(of those asked: 1989-1990\) are not in the "
                                        r"data; the data holds years 1990-1992"):
        split_data(data, cfg)
    with pytest.raises(DataError, match="set data.train_years and data.val_years explicitly"):
        split_data(data, byo_config([pred], target))
    with pytest.raises(DataError, match="overlap in 1991"):
        split_data(data, byo_config([pred], target, train_years=["1990-1991"], val_years=["1991-1992"]))


def test_subsample_days_fixed_and_evenly_spaced(byo_files):
    """training.val_days: the same evenly spaced days every time, first and last included; 0 = all."""
    pred, target = byo_files
    cfg = byo_config([pred], target, train_years=["1990-1991"], val_years=["1992"])
    _, val = split_data(open_training_data(cfg), cfg)
    n = val.predictors.sizes["time"]
    sub = subsample_days(val, 7)
    expected = [round(i * (n - 1) / 6) for i in range(7)]
    np.testing.assert_array_equal(sub.predictors["time"].values, val.predictors["time"].values[expected])
    np.testing.assert_array_equal(sub.target["time"].values, val.target["time"].values[expected])
    np.testing.assert_array_equal(sub.target.values, val.target.values[expected])
    np.testing.assert_array_equal(sub.valid_count.values, val.valid_count.values[expected])
    assert subsample_days(val, 0) is val and subsample_days(val, n + 5) is val


def test_error_corrupt_file(tmp_path, byo_files):
    pred, target = byo_files
    bad = tmp_path / "corrupt.nc"
    bad.write_bytes(b"CDF\x01 this is not a netcdf file" * 10)
    with pytest.raises(DataError, match=r"corrupt\.nc: cannot read the file as NetCDF"):
        open_training_data(byo_config([pred], bad))
    half = tmp_path / "half.nc"
    half.write_bytes(pred.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"half\.nc: cannot read the file as NetCDF"):
        open_predictors(half)


def test_error_all_nan_target(tmp_path):
    times = daily_times("1990-01-01", 730)
    tds = target_dataset(times, shape=(4, 4))
    tds["pr"][365:] = np.nan
    write(predictor_dataset(times, shape=(3, 3)), tmp_path / "p.nc")
    write(tds, tmp_path / "t.nc")
    cfg = byo_config([tmp_path / "p.nc"], tmp_path / "t.nc", train_years=["1990"], val_years=["1991"])
    data = open_training_data(cfg)
    with pytest.raises(DataError, match=r"validation split .*target 'pr' is NaN everywhere in years 1991"):
        split_data(data, cfg)
    tds["pr"][:] = np.nan
    write(tds, tmp_path / "t2.nc")
    with pytest.raises(DataError, match=r"t2\.nc: target variable 'pr' is NaN everywhere"):
        open_training_data(byo_config([tmp_path / "p.nc"], tmp_path / "t2.nc"))


# --- CORDEX layout (synthetic domains) -------------------------------------------------------------------
def _cordex_cfg(root, domain, variable="pr", **kw) -> DataConfig:
    return DataConfig(root=str(root), domain=domain, target_variable=variable, **kw)


@pytest.mark.parametrize("domain", ["ALPS", "NZ", "SA"])
def test_cordex_domain_opens(cordex_root, domain):
    data = open_training_data(_cordex_cfg(cordex_root, domain, "tasmax"))
    grid = target_coords(domain)
    rows = ("y", "x") if domain == "ALPS" else ("lat", "lon")
    assert data.spatial_dims == rows and data.target.dims == ("time", *rows)
    assert data.target.shape[1:] == (128, 128) and data.predictors.shape[1:] == (15, 16, 16)
    np.testing.assert_array_equal(data.target[rows[0]].values, grid[rows[0]])
    if domain == "ALPS":
        np.testing.assert_allclose(data.target["lat"].values, grid["lat"], atol=1e-8)
    assert data.orography is not None and data.orography.dims == rows
    assert data.channels == PREDICTOR_VARIABLES
    with xr.open_dataset(train_predictor_path(cordex_root, domain, "ESD_pseudo_reality")) as ds:
        for name in ("t_500", "q_850", "z_700"):
            np.testing.assert_array_equal(data.predictors.sel(channel=name).values[:5],
                                          ds[name].transpose("time", "lat", "lon").values[:5])
        assert "time_bnds" not in data.target.coords
    hours = {"ALPS": 12, "NZ": 0, "SA": 12}[domain]
    assert data.predictors["time"].dt.hour.values[0] == hours
    assert data.n_days == 730  # 1961-1962 hold no leap day (ALPS keeps leap days, NZ/SA drop them)


def test_cordex_alps_orientation(cordex_root, tmp_path):
    """A bright cell planted at (y 10, x 100) in a copy of the ALPS target comes out at [.., 10, 100]."""
    import shutil

    root = tmp_path / "root"
    exp = "ESD_pseudo_reality"
    for f in (train_predictor_path, train_target_path, static_fields_path):
        dst = f(root, "ALPS", exp)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f(cordex_root, "ALPS", exp), dst)
    path = train_target_path(root, "ALPS", exp)
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds["pr"].loc[{"y": ds["y"][10], "x": ds["x"][100]}] = 1000.0
    path.unlink()
    ds.to_netcdf(path)
    data = open_training_data(_cordex_cfg(root, "ALPS"))
    assert np.all(data.target.values[:, 10, 100] == 1000.0)
    assert data.target.values[:, 100, 10].max() < 1000.0
    train = select_years(data, {1961})
    norms = fit_normalizers(train, NormalizationConfig())
    batch = next(iter(make_eval_loader(train, norms, LoaderConfig(mode="streaming"), batch_size=4)))
    y = batch["y_hr"][:, 0]
    assert torch.equal(y.flatten(1).argmax(1), torch.full((4,), 10 * 128 + 100))
    np.testing.assert_allclose(TorchNormalizer.from_normalizer(norms.target).inverse(y)[:, 10, 100], 1000.0, rtol=1e-5)


def test_cordex_sa_cftime_test_predictors_and_grid(cordex_root):
    train = open_training_data(_cordex_cfg(cordex_root, "SA"))
    for kind in ("perfect", "imperfect"):
        path = cordex.test_predictor_path(cordex_root, "SA", "historical", kind, "NorESM2-MM")
        test = open_predictors(path, chunk_days=64)
        assert isinstance(test["time"].values[0], cftime.DatetimeNoLeap)
        assert tuple(test["channel"].values) == PREDICTOR_VARIABLES
        check_same_grid(test, train.predictors, f"{path} vs training predictors")
        with xr.open_dataset(path) as ds:
            np.testing.assert_array_equal(test.sel(channel="u_700").values[:3], ds["u_700"].values[:3])


def test_cordex_default_split_errors_clearly_on_short_data(cordex_root):
    data = open_training_data(_cordex_cfg(cordex_root, "NZ", use_orography=False))
    assert data.orography is None
    with pytest.raises(DataError, match=r"years 1963-1974 \(of those asked: 1961-1974\) are not in the data; "
                                        r"the data holds years 1961-1962"):
        split_data(data, _cordex_cfg(cordex_root, "NZ"))
    cfg = dataclasses.replace(_cordex_cfg(cordex_root, "NZ"), train_years=("1961",), val_years=("1962",))
    train, val = split_data(data, cfg)
    assert train.n_days == val.n_days == 365
