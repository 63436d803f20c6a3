"""Bring-your-own data as scientists have it (issue 10): per-variable predictor files on two grids, free
target names, kinds and units, held-out test years; values against brute-force references."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import GRID_A, GRID_B, byo_config, daily_times, predictor_dataset, target_dataset, write

from ml_benchmark_spategan.config.schema import NormalizationConfig
from ml_benchmark_spategan.dataloader import (
    DataError,
    fit_normalizers,
    held_out_split,
    open_training_data,
    split_data,
)
from ml_benchmark_spategan.dataloader.blocks import BlockReader
from ml_benchmark_spategan.dataloader.regrid import axis_weights
from ml_benchmark_spategan.dataloader.torch_bridge import TorchNormalizer, make_eval_loader
from ml_benchmark_spategan.variables import (
    UnitError,
    VariableInfo,
    convert,
    infer_kind,
    mm_per_day_factor,
)

VARIABLES = ["t850", "z500", "q850", "u850"]
SPLIT = {"train_years": ["2000-2001"], "val_years": ["2002"]}


def layout_config(layouts, target: str, **kw):
    cfg = byo_config([layouts["predictor_glob"]], layouts[target], variables=VARIABLES, **SPLIT)
    files = dataclasses.replace(cfg.files, target_variable={"tg": "tg", "rotated": "tasmax", "pr_flux": "pr"}[target],
                                **{k: v for k, v in kw.items() if k in ("predictor_grid", "target_units")})
    return dataclasses.replace(cfg, files=files, test_years=("2003",),
                               **{k: v for k, v in kw.items() if k in ("target_kind",)})


@pytest.fixture(scope="module")
def tg_data(byo_layouts):
    return open_training_data(layout_config(byo_layouts, "tg"))


def _brute_force_bilinear(path, name, lat, lon) -> np.ndarray:
    """xarray's own linear interpolation after moving longitudes to -180..180 and sorting."""
    with xr.open_dataset(path) as ds:
        da = ds[name].isel(level=0).load()
    da = da.assign_coords(longitude=((da["longitude"] + 180.0) % 360.0) - 180.0).sortby(["latitude", "longitude"])
    return da.interp(latitude=lat, longitude=lon).values


# --- predictors from many files ----------------------------------------------------------------------
def test_per_variable_files_on_two_grids_are_combined(byo_layouts, tg_data):
    data = tg_data
    assert data.predictors.dims == ("time", "channel", "lat", "lon")
    assert data.predictors.shape == (len(byo_layouts["times"]), 4, 6, 8) and data.channels == tuple(VARIABLES)
    np.testing.assert_array_equal(data.time, byo_layouts["times"])
    # t850 comes from two files (split by years), unchanged
    parts = [xr.open_dataset(p)["t850"].values for p in sorted(byo_layouts["predictors"]) if "t850" in str(p)]
    np.testing.assert_array_equal(data.predictors.sel(channel="t850").values, np.concatenate(parts))
    # q850 / u850: bilinear from grid B (descending lat, 0..360 lon, a size-1 level) onto grid A
    qu = [p for p in byo_layouts["predictors"] if "qu850" in str(p)][0]
    for name in ("q850", "u850"):
        expected = _brute_force_bilinear(qu, name, GRID_A["lat"], GRID_A["lon"])
        np.testing.assert_allclose(data.predictors.sel(channel=name).values, expected, rtol=1e-5, atol=1e-6)
    assert [s.regrid is not None for s in data.origin.sources] == [False, False, True, True]
    regridded = [n for n in data.notes if "regridded" in n]
    assert len(regridded) == 2 and "'q850'" in regridded[0] and "5x7" in regridded[0] and "6x8" in regridded[0]


def test_block_reader_and_loaders_read_the_same_values(byo_layouts, tg_data):
    data = tg_data
    reader = BlockReader(data.origin)
    try:
        x, y = reader.read(np.arange(0, 150))
    finally:
        reader.close()
    np.testing.assert_array_equal(x, data.predictors.values[:150])  # bit-identical regridding
    np.testing.assert_array_equal(y, data.target.values[:150])
    train, _ = split_data(data, layout_config(byo_layouts, "tg"))
    norms = fit_normalizers(train, NormalizationConfig())
    lc = dataclasses.replace(data_loader_cfg(), block_days=32, chunk_days=32)
    batches = {mode: {int(t): b["x_lr"][i].numpy() for b in make_eval_loader(
        train, norms, dataclasses.replace(lc, mode=mode), 16) for i, t in enumerate(b["time_index"])}
        for mode in ("memory", "streaming")}
    assert len(batches["memory"]) == train.n_days
    assert batches["memory"].keys() == batches["streaming"].keys()
    for t, x_mem in batches["memory"].items():
        np.testing.assert_array_equal(x_mem, batches["streaming"][t])


def data_loader_cfg():
    from ml_benchmark_spategan.config.schema import LoaderConfig

    return LoaderConfig()


def test_predictor_grid_option_and_doy(byo_layouts):
    data = open_training_data(layout_config(byo_layouts, "tg", predictor_grid="q850"))
    assert data.predictors.dims == ("time", "channel", "latitude", "longitude")
    assert data.predictors.shape[2:] == (5, 7)
    assert [s.regrid is not None for s in data.origin.sources] == [True, True, False, False]
    np.testing.assert_array_equal(data.predictors["latitude"].values, GRID_B["latitude"])
    # t850 onto grid B: brute force with xarray interp (grid A covers grid B within half a cell: edges clamp)
    with xr.open_mfdataset(sorted(p for p in byo_layouts["predictors"] if "t850" in str(p))) as ds:
        t = ds["t850"].load()
    lon = ((GRID_B["longitude"] + 180.0) % 360.0) - 180.0
    expected = t.interp(lat=np.clip(GRID_B["latitude"], 40, 50), lon=np.clip(lon, 0, 14)).values
    np.testing.assert_allclose(data.predictors.sel(channel="t850").values, expected, rtol=1e-6)
    train, _ = split_data(data, layout_config(byo_layouts, "tg"))
    loader = make_eval_loader(train, fit_normalizers(train, NormalizationConfig()), data_loader_cfg(), 64)
    batch = next(iter(loader))
    expected_doy = pd.DatetimeIndex(train.time[:64]).day_of_year.values
    np.testing.assert_array_equal(batch["doy"].numpy(), expected_doy)


def test_axis_weights_wrap_descending_and_coverage():
    w = axis_weights([350.0, 355.0, 0.0, 5.0], [-7.5, 2.5], longitude=True)  # 0..360 source crossing 0
    values = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose((1 - w.w) * values[w.lo] + w.w * values[w.hi], [1.5, 3.5])
    w = axis_weights([50.0, 45.0, 40.0], [41.0, 49.0])  # descending source
    np.testing.assert_allclose((1 - w.w) * np.array([5.0, 4.5, 4.0])[w.lo] + w.w * np.array([5.0, 4.5, 4.0])[w.hi],
                               [4.1, 4.9])
    with pytest.raises(DataError, match="do not overlap"):
        axis_weights([0.0, 1.0, 2.0], [10.0, 11.0], what="predictor 'x'")
    with pytest.raises(DataError, match="does not cover"):
        axis_weights([0.0, 1.0, 2.0], [1.0, 4.0], what="predictor 'x'")


def _variant_layout(tmp_path, layouts, edit):
    """Copies of the layout's predictor files with ``edit(name, ds) -> ds`` applied to each."""
    out = []
    for path in layouts["predictors"]:
        with xr.open_dataset(path) as ds:
            out.append(write(edit(path.name, ds.load()), tmp_path / path.name))
    return out


def test_errors_name_the_variable_and_file(tmp_path, byo_layouts):
    def drop_day(name, ds):
        return ds.isel(time=np.r_[0:40, 41:ds.sizes["time"]]) if "z500" in name else ds

    def far_grid(name, ds):
        return ds.assign_coords(latitude=ds["latitude"] - 30.0) if "qu850" in name else ds

    def narrow_grid(name, ds):
        return ds.isel(latitude=slice(1, 4)) if "qu850" in name else ds

    def overlap(name, ds):
        return ds.isel(time=slice(0, 200)) if name == "era5_t850_2002-2003.nc" else ds

    cases = {
        "drop": (drop_day, r"predictor 'z500' \(.*era5_z500.nc\) lacks time step 2000-02-10"),
        "far": (far_grid, r"predictor 'q850' \(.*era5_qu850.nc\) onto the grid of 't850'.*do not overlap"),
        "narrow": (narrow_grid, r"predictor 'q850' \(.*era5_qu850.nc\).*does not cover"),
    }
    for key, (edit, pattern) in cases.items():
        folder = tmp_path / key
        files = _variant_layout(folder, byo_layouts, edit)
        cfg = byo_config([str(f) for f in files], byo_layouts["tg"], variables=VARIABLES)
        cfg = dataclasses.replace(cfg, files=dataclasses.replace(cfg.files, target_variable="tg"))
        with pytest.raises(DataError, match=pattern):
            open_training_data(cfg)
    t850 = [p for p in byo_layouts["predictors"] if "t850" in p.name]
    with xr.open_dataset(t850[0]) as a, xr.open_dataset(t850[1]) as b:
        clash = xr.concat([a.isel(time=[-1]), b], dim="time").load()
    bad = write(clash, tmp_path / "clash" / t850[1].name)
    cfg = byo_config([str(t850[0]), str(bad)], byo_layouts["tg"], variables=["t850"])
    cfg = dataclasses.replace(cfg, files=dataclasses.replace(cfg.files, target_variable="tg"))
    with pytest.raises(DataError, match=r"predictor 't850' in .*era5_t850_2000-2001.nc.*must increase strictly"):
        open_training_data(cfg)
    with pytest.raises(DataError, match=r"data.files.predictor_grid: 'q_850' is not one of the predictor"):
        open_training_data(layout_config(byo_layouts, "tg", predictor_grid="q_850"))


def test_chunked_open_raises_no_warning(tmp_path):
    times = daily_times("1990-01-01", 300)
    ds = predictor_dataset(times, shape=(4, 4))
    enc = {v: {"chunksizes": (100, 4, 4), "zlib": True} for v in ds.data_vars}
    path = tmp_path / "chunked.nc"
    ds.to_netcdf(path, encoding=enc)
    write(target_dataset(times, shape=(8, 8)), tmp_path / "t.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = open_training_data(byo_config([path], tmp_path / "t.nc"))
    assert data.predictors.chunks[0][0] == 100  # the stored chunk (the multiple nearest chunk_days=128)


# --- kinds and units -----------------------------------------------------------------------------------
def test_kinds_from_cf_metadata_units_and_names(byo_layouts, tg_data):
    assert tg_data.info == VariableInfo("tg", "temperature", "degC", "air_temperature", "daily mean temperature", "mean")
    assert tg_data.predictor_info["t850"].kind == "temperature" and tg_data.predictor_info["q850"].kind == "generic"
    rotated = open_training_data(layout_config(byo_layouts, "rotated"))
    assert (rotated.info.kind, rotated.info.units, rotated.info.statistic) == ("temperature", "K", "max")
    assert "rotated_pole" in rotated.target.coords  # the grid mapping travels with the target
    flux = open_training_data(layout_config(byo_layouts, "pr_flux"))
    assert (flux.info.kind, flux.info.units) == ("precipitation", "kg m-2 s-1")
    forced = open_training_data(layout_config(byo_layouts, "pr_flux", target_kind="generic", target_units="mm/s"))
    assert (forced.info.kind, forced.info.units) == ("generic", "mm/s")
    assert infer_kind("rr", units="mm") == "precipitation" and infer_kind("orog", units="m") == "generic"
    assert infer_kind("x", standard_name="lwe_precipitation_rate") == "precipitation"
    assert infer_kind("tg", units="") == "temperature" and infer_kind("t_850", units="K") == "temperature"


def test_unit_conversions_of_thresholds():
    assert convert(25.0, "degC", "K") == pytest.approx(298.15)
    assert convert(300.0, "K", "°C") == pytest.approx(26.85)
    assert convert(77.0, "degF", "degC") == pytest.approx(25.0)
    assert convert(1.0, "mm/day", "kg m-2 s-1") == pytest.approx(1 / 86400)
    assert convert(1.0, "mm/day", "kg m**-2 s**-1") == pytest.approx(1 / 86400)
    assert convert(1.0, "mm day-1", "m") == pytest.approx(1e-3)
    assert convert(24.0, "mm/day", "mm/h") == pytest.approx(1.0)
    assert mm_per_day_factor("kg.m-2.s-1") == 86400.0 and mm_per_day_factor("furlongs") == 1.0
    with pytest.raises(UnitError, match="cannot convert 'K'"):
        convert(1.0, "K", "mm/day")
    with pytest.raises(UnitError, match="unknown units 'furlongs'"):
        convert(1.0, "furlongs", "mm/day")


def test_flux_precipitation_normalised_in_mm_per_day(byo_layouts):
    data = open_training_data(layout_config(byo_layouts, "pr_flux"))
    train, _ = split_data(data, layout_config(byo_layouts, "pr_flux"))
    norm = fit_normalizers(train, NormalizationConfig()).target
    assert norm.method == "log1p_standardize" and norm.log1p_scale == 86400.0 and norm.nonnegative
    logs = np.log1p(train.target.values.astype(np.float64) * 86400.0)
    assert float(norm.stats["mean"]) == pytest.approx(np.nanmean(logs), rel=1e-6)
    assert float(norm.stats["std"]) == pytest.approx(np.nanstd(logs), rel=1e-6)
    back = TorchNormalizer.from_normalizer(norm).inverse(
        TorchNormalizer.from_normalizer(norm).transform(__import__("torch").from_numpy(train.target.values[:5])))
    np.testing.assert_allclose(back.numpy(), train.target.values[:5], rtol=2e-4, atol=1e-9)
    assert float(norm.inverse(xr.DataArray(np.full((1, 1, 1), -50.0, np.float32))).min()) == 0.0
    # standardize_global for a precipitation kind still comes back non-negative
    glob = fit_normalizers(train, NormalizationConfig(target="standardize_global")).target
    assert glob.nonnegative and float(glob.inverse(xr.DataArray(np.full((1, 1, 1), -50.0, np.float32))).min()) == 0.0


# --- held-out test years -------------------------------------------------------------------------------
def test_test_years_are_held_out(byo_layouts, tg_data):
    cfg = layout_config(byo_layouts, "tg")
    test = held_out_split(tg_data, cfg)
    assert set(pd.DatetimeIndex(test.time).year) == {2003} and test.n_days == 31 + 28 + 31
    with pytest.raises(DataError, match=r"data.test_years and data.val_years overlap in 2002"):
        held_out_split(tg_data, dataclasses.replace(cfg, test_years=("2002-2003",)))
    with pytest.raises(DataError, match=r"data.test_years is empty"):
        held_out_split(tg_data, dataclasses.replace(cfg, test_years=()))
    cordex_like = dataclasses.replace(cfg, source="cordex", train_years=(), val_years=(), test_years=("1970",))
    with pytest.raises(DataError, match=r"data.train_years \(the experiment's default; set it explicitly\) overlap"):
        split_data(tg_data, cordex_like)
