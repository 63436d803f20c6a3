"""The interpolation baseline's fit (``model.name: bilinear``) against brute-force per-month statistics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from conftest import byo_config

from ml_benchmark_spategan.config.schema import NormalizationConfig
from ml_benchmark_spategan.cordex import PREDICTOR_UNITS, PREDICTOR_VARIABLES
from ml_benchmark_spategan.dataloader import DataError, fit_normalizers, open_training_data, split_data
from ml_benchmark_spategan.dataloader.baseline_fit import (
    MAX_TEMPERATURE_GAIN,
    fit_bilinear_baseline,
    matching_predictor,
    month_of_doy,
)
from ml_benchmark_spategan.model.baselines import BilinearBaseline
from ml_benchmark_spategan.variables import CORDEX_TARGETS, VariableInfo

VARIABLES = ["t850", "z500", "q850", "u850"]


@pytest.fixture(scope="module")
def tg_train(byo_layouts):
    cfg = byo_config([byo_layouts["predictor_glob"]], byo_layouts["tg"], variables=VARIABLES,
                     train_years=["2000-2001"], val_years=["2002"])
    cfg = dataclasses.replace(cfg, files=dataclasses.replace(cfg.files, target_variable="tg"))
    train, val = split_data(open_training_data(cfg), cfg)
    return train, val


def test_matching_predictor_by_kind():
    cordex = {v: VariableInfo.from_attrs(v, {"units": PREDICTOR_UNITS[v.split("_")[0]]}) for v in PREDICTOR_VARIABLES}
    assert matching_predictor("auto", CORDEX_TARGETS["tasmax"], cordex) == "t_850"
    assert matching_predictor("auto", CORDEX_TARGETS["pr"], cordex) is None  # no precipitation predictor
    assert matching_predictor("none", CORDEX_TARGETS["tasmax"], cordex) is None
    assert matching_predictor("z_500", CORDEX_TARGETS["tasmax"], cordex) == "z_500"
    era = {"tp": VariableInfo("tp", "precipitation", "m"), "t2m": VariableInfo("t2m", "temperature", "K"),
           "t_500": VariableInfo("t_500", "temperature", "K")}
    assert matching_predictor("auto", VariableInfo("tg", "temperature", "degC"), era) == "t2m"  # near-surface first
    assert matching_predictor("auto", VariableInfo("rr", "precipitation", "mm"), era) == "tp"
    with pytest.raises(DataError, match="model.bilinear_predictor: predictor 'x' not among"):
        matching_predictor("x", CORDEX_TARGETS["pr"], cordex)
    assert month_of_doy()[[0, 1, 31, 32, 59, 60, 365, 366]].tolist() == [12, 0, 0, 1, 1, 2, 11, 11]


def _brute_force_cell(train, i: int, j: int, month: int) -> tuple[float, float]:
    """(gain, offset) of a temperature target at cell (i, j) in ``month`` (1-based), from xarray's interp."""
    lat, lon = float(train.target["lat"][i]), float(train.target["lon"][j])
    p = train.predictors.sel(channel="t850").interp(lat=lat, lon=lon).values.astype(np.float64)
    t = train.target.isel(lat=i, lon=j).values.astype(np.float64)
    # months of a 365-day year by day of year (the documented mapping: 29 Feb 2000 counts as March)
    sel = (month_of_doy()[pd.DatetimeIndex(train.time).day_of_year] == month - 1) & np.isfinite(t)
    gain = min(t[sel].std() / p[sel].std(), MAX_TEMPERATURE_GAIN)
    return gain, t[sel].mean() - gain * p[sel].mean()


def test_fit_matches_brute_force_monthly_statistics(tg_train):
    train, _ = tg_train
    fit = fit_bilinear_baseline(train)
    assert fit.predictor == "t850" and "mean and variance correction" in fit.description
    for i, j, month in ((0, 0, 1), (5, 7, 2), (11, 3, 12)):
        gain, offset = _brute_force_cell(train, i, j, month)
        assert fit.gain[month - 1, i, j] == pytest.approx(gain, rel=1e-4)
        assert fit.offset[month - 1, i, j] == pytest.approx(offset, rel=1e-4, abs=1e-3)
    # a summer month has no training day: it uses the all-days correction (row 12)
    np.testing.assert_array_equal(fit.gain[6], fit.gain[12])
    # climatology path: gain 0, offset = the per-cell monthly mean
    clim = fit_bilinear_baseline(train, "none")
    t = train.target.values.astype(np.float64)
    jan = month_of_doy()[pd.DatetimeIndex(train.time).day_of_year] == 0
    assert clim.predictor is None and not clim.gain.any()
    land = np.isfinite(t).any(axis=0)
    np.testing.assert_allclose(clim.offset[0][land], np.nanmean(t[jan][:, land], axis=0), rtol=1e-5)
    assert np.isfinite(clim.offset).all()  # never-valid (sea) cells get the domain mean, not NaN


def test_baseline_beats_climatology_on_validation(tg_train):
    """The fitted baseline through the model: physical output equals the fit's formula, and its RMSE on the
    validation winter is below that of the training climatology (the predictor carries the weather)."""
    train, val = tg_train
    norms = fit_normalizers(train, NormalizationConfig())
    fit = fit_bilinear_baseline(train)
    model = BilinearBaseline(train.predictors.shape[2:], train.target.shape[1:])
    model.load_fit(fit, norms.predictors.params(), norms.target.params())
    x = torch.from_numpy(norms.predictors.transform(val.predictors).values)
    doy = torch.from_numpy(val.predictors["time"].dt.dayofyear.values.astype(np.int64))
    with torch.no_grad():
        normalised = model(x, doy=doy)
    from ml_benchmark_spategan.dataloader.torch_bridge import TorchNormalizer

    y = TorchNormalizer.from_normalizer(norms.target).inverse(normalised)[:, 0].numpy()
    land = np.isfinite(train.target.values).any(axis=0)
    truth = val.target.values[:, land]
    clim = np.nanmean(train.target.values[:, land], axis=0)
    rmse = np.sqrt(np.nanmean((y[:, land] - truth) ** 2))
    rmse_clim = np.sqrt(np.nanmean((clim - truth) ** 2))
    assert rmse < 0.5 * rmse_clim, (rmse, rmse_clim)
    # the first validation day by hand: gain * interpolated physical t850 + offset (month row)
    month = month_of_doy()[int(doy[0])]
    p = xr.DataArray(val.predictors.sel(channel="t850").values[0], dims=("lat", "lon"),
                     coords={"lat": val.predictors["lat"], "lon": val.predictors["lon"]})
    points = p.interp(lat=val.target["lat"], lon=val.target["lon"]).values
    np.testing.assert_allclose(y[0], fit.gain[month] * points + fit.offset[month], rtol=1e-4, atol=1e-3)
