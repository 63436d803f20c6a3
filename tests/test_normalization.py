"""Normalisation: round trips of every method, statistics against numpy, train-only fitting, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import byo_config

from ml_benchmark_spategan.config.schema import NORMALIZATION_METHODS, NormalizationConfig
from ml_benchmark_spategan.dataloader import (
    DataError,
    Normalizer,
    Normalizers,
    fit_normalizer,
    fit_normalizers,
    open_training_data,
    resolve_method,
    split_data,
)
from ml_benchmark_spategan.dataloader.normalization import apply_params


def _predictors(chunked: bool) -> xr.DataArray:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 3, 4, 5)) * np.array([50.0, 2.0, 1e-3])[None, :, None, None]
    values += np.array([5700.0, 270.0, 5e-3])[None, :, None, None]
    values[:, 1, 2, 3] = 280.0  # a constant grid point: zero variance
    da = xr.DataArray(values.astype(np.float32), dims=("time", "channel", "lat", "lon"),
                      coords={"channel": ["z_500", "t_850", "q_850"], "lat": np.arange(4.0), "lon": np.arange(5.0)})
    return da.chunk({"time": 16}) if chunked else da


def _pr(chunked: bool) -> xr.DataArray:
    rng = np.random.default_rng(1)
    values = (rng.gamma(0.4, 6.0, size=(60, 6, 7)) * (rng.random((60, 6, 7)) > 0.3)).astype(np.float32)
    values[:, 0, 0] = np.nan  # a masked cell
    da = xr.DataArray(values, dims=("time", "y", "x"), name="pr")
    return da.chunk({"time": 16}) if chunked else da


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("method", NORMALIZATION_METHODS)
def test_round_trip_every_method(method, chunked):
    for da, role in ((_predictors(chunked), "predictors"), (_pr(chunked), "target")):
        if method.startswith("log1p") and role == "predictors":
            continue
        norm = fit_normalizer(method, da, role)
        y = norm.transform(da)
        assert y.dtype == np.float32 and np.isfinite(y.values[np.isfinite(da.values)]).all()
        back = norm.inverse(y).values
        scale = np.nanmax(np.abs(da.values))  # float32 rounding relative to the field's magnitude
        np.testing.assert_allclose(back, da.values, rtol=1e-5, atol=1e-6 * scale)
        np.testing.assert_array_equal(np.isnan(back), np.isnan(da.values))
        params = norm.params()
        np.testing.assert_allclose(apply_params(da.values, params), y.values, rtol=1e-6, atol=1e-6)


def test_statistics_against_numpy_and_guard():
    da = _predictors(True)
    x = da.values.astype(np.float64)
    norm = fit_normalizer("standardize_pointwise", da, "predictors")
    std = x.std(axis=0)
    std[std < 1e-6] = 1.0  # the constant point
    np.testing.assert_allclose(norm.stats["mean"].values, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.stats["std"].values, std, rtol=1e-10)
    assert norm.stats["std"].values[1, 2, 3] == 1.0
    assert norm.params()["shift"].shape == (3, 4, 5)
    glob = fit_normalizer("standardize_global", da, "predictors")
    np.testing.assert_allclose(glob.stats["mean"].values, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(glob.stats["std"].values, x.std(axis=(0, 2, 3)), rtol=1e-10)
    assert glob.params()["scale"].shape == (3, 1, 1)
    mm = fit_normalizer("minmax_11", da, "predictors")
    y = mm.transform(da).values
    np.testing.assert_allclose(y.min(axis=(0, 2, 3)), -1, atol=1e-5)  # float32 rounding of z ~ 5700
    np.testing.assert_allclose(y.max(axis=(0, 2, 3)), 1, atol=1e-5)
    pr = _pr(True)
    lg = fit_normalizer("auto", pr, "target")
    assert lg.method == "log1p_standardize" and lg.params()["shift"].shape == (1, 1, 1)
    logs = np.log1p(pr.values.astype(np.float64))
    np.testing.assert_allclose(lg.stats["mean"].values, np.nanmean(logs), rtol=1e-10)
    np.testing.assert_allclose(lg.stats["std"].values, np.nanstd(logs), rtol=1e-10)
    pw = fit_normalizer("standardize_pointwise", pr, "target")
    assert pw.params()["shift"].shape == (1, 6, 7) and pw.stats["std"].values[0, 0] == 1.0


def test_inverse_of_arbitrary_values_is_non_negative_for_pr():
    norm = fit_normalizer("auto", _pr(False), "target")
    y = xr.DataArray(np.linspace(-50, 5, 101, dtype=np.float32), dims=("time",))
    assert float(norm.inverse(y).min()) >= 0.0
    assert resolve_method("auto", "target", "tasmax") == "standardize_global"
    with pytest.raises(ValueError, match="'auto' is for the target only"):
        resolve_method("auto", "predictors")


def test_save_load_round_trip(tmp_path):
    da = _predictors(False)
    norms = Normalizers(fit_normalizer("standardize_pointwise", da, "predictors"),
                        fit_normalizer("auto", _pr(False), "target"))
    norms.save(tmp_path / "norm")
    loaded = Normalizers.load(tmp_path / "norm")
    assert loaded.static is None and loaded.target.method == "log1p_standardize"
    for a, b in ((norms.predictors, loaded.predictors), (norms.target, loaded.target)):
        assert (a.method, a.role, a.dims) == (b.method, b.role, b.dims)
        xr.testing.assert_identical(a.stats, b.stats)
        np.testing.assert_array_equal(a.transform(da if a.role == "predictors" else _pr(False)).values,
                                      b.transform(da if b.role == "predictors" else _pr(False)).values)
    with pytest.raises(DataError, match="normaliser file not found"):
        Normalizer.load(tmp_path / "none.nc")


def test_transform_refuses_other_coordinates():
    da = _predictors(False)
    norm = fit_normalizer("standardize_pointwise", da, "predictors")
    with pytest.raises(DataError, match="coordinates differ from the data it was fitted on"):
        norm.transform(da.assign_coords(lat=da["lat"] + 0.5))


def test_fitted_on_train_split_only(byo_files):
    pred, target = byo_files
    cfg = byo_config([pred], target, train_years=["1990-1991"], val_years=["1992"])
    train, _ = split_data(open_training_data(cfg), cfg)
    norms = fit_normalizers(train, NormalizationConfig())
    with xr.open_dataset(pred) as ds:
        z = ds["z_700"].values[:730].astype(np.float64)  # 1990-1991 = the first 730 days
    np.testing.assert_allclose(norms.predictors.stats["mean"].sel(channel="z_700").values, z.mean(0), rtol=1e-12)
    np.testing.assert_allclose(norms.predictors.stats["std"].sel(channel="z_700").values, z.std(0), rtol=1e-10)
    with xr.open_dataset(target) as ds:
        pr = np.log1p(ds["pr"].values[:730].astype(np.float64))
    np.testing.assert_allclose(norms.target.stats["mean"].values, np.nanmean(pr), rtol=1e-10)
