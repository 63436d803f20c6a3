"""Masked cells (NaN on every day, e.g. sea) are left out of every spatial mean of the evaluation report:
scores against brute-force land-only references (issue 10, finding 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr

from ml_benchmark_spategan.evaluation import diagnostics, report
from ml_benchmark_spategan.variables import VariableInfo


def _masked_pair(days: int = 730, shape=(6, 7), seed: int = 3):
    """A tasmax-like truth in degC with a NaN 'sea' block and a two-member prediction (member 0 biased)."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2001-01-01", periods=days, freq="D").values
    season = 10.0 * np.sin(2 * np.pi * np.arange(days) / 365.25)[:, None, None]
    truth = 18.0 + season + 4.0 * rng.standard_normal((days, *shape))
    sea = np.zeros(shape, bool)
    sea[:2, 4:] = True
    truth[:, sea] = np.nan
    coords = {"time": time, "lat": np.arange(shape[0], dtype=float), "lon": np.arange(shape[1], dtype=float)}
    t = xr.DataArray(truth.astype(np.float32), dims=("time", "lat", "lon"), coords=coords)
    members = np.stack([truth + 1.5 + rng.standard_normal(truth.shape), truth - 0.5 * rng.standard_normal(truth.shape)])
    p = xr.DataArray(members.astype(np.float32), dims=("member", "time", "lat", "lon"),
                     coords={"member": [0, 1], **coords})
    return t, p, sea


def test_spatial_means_skip_masked_cells():
    truth, pred, sea = _masked_pair()
    info = VariableInfo("tasmax", "temperature", "degC", statistic="max")
    rep = report.compute_report(truth, pred, "tasmax", info=info, full=False)
    land = np.argwhere(~sea)
    t, m0 = truth.values, pred.values[0]
    w_cells = [scipy.stats.wasserstein_distance(t[:, i, j], m0[:, i, j]) for i, j in land]
    assert rep.scores["wasserstein_map/member0"] == pytest.approx(np.mean(w_cells), rel=1e-9)
    pooled = scipy.stats.wasserstein_distance(t[:, ~sea].ravel(), m0[:, ~sea].ravel())
    assert rep.scores["wasserstein/member0"] == pytest.approx(pooled, rel=1e-9)
    rmse_cells = [np.sqrt(np.mean((m0[:, i, j] - t[:, i, j]) ** 2)) for i, j in land]
    assert rep.scores["rmse/member0"] == pytest.approx(np.mean(rmse_cells), rel=1e-6)
    years = pd.DatetimeIndex(truth["time"].values).year

    def su(x):  # ETCCDI SU: days above 25 degC per year, mean over years
        return np.mean([np.sum(x[years == y] > 25.0) for y in np.unique(years)])

    su_bias = [abs(su(m0[:, i, j]) - su(t[:, i, j])) for i, j in land]
    assert rep.scores["bias_su/member0"] == pytest.approx(np.mean(su_bias), rel=1e-9)
    for name in ("wasserstein (member 0)", "bias of su (member 0)", "rmse (member 0)"):
        assert np.isnan(rep.maps[name].values[sea]).all() and np.isfinite(rep.maps[name].values[~sea]).all(), name
    # the benchmark's NaN -> 0 would have averaged the sea as distance 0: a smaller, wrong number
    benchmark_like = np.mean(w_cells + [0.0] * int(sea.sum()))
    assert rep.scores["wasserstein_map/member0"] > benchmark_like * 1.1


def test_index_thresholds_follow_the_units():
    truth, pred, _ = _masked_pair(days=365)
    kelvin = truth + 273.15
    celsius_su = diagnostics.bias_index(truth, pred, "su", threshold=25.0)
    specs = {s.key: dict(s.kwargs) for s in report.index_specs(VariableInfo("tx", "temperature", "K", statistic="max"))}
    assert specs["su"]["threshold"] == pytest.approx(298.15)
    kelvin_su = diagnostics.bias_index(kelvin, pred + 273.15, "su", **specs["su"])
    np.testing.assert_allclose(kelvin_su.values, celsius_su.values)
    cordex = {s.key: dict(s.kwargs) for s in report.index_specs(VariableInfo("tasmax", "temperature", "K",
                                                                             statistic="max"), benchmark=True)}
    assert cordex["su"]["threshold"] == 300.0
    flux = {s.key: dict(s.kwargs) for s in report.index_specs(VariableInfo("pr", "precipitation", "kg m-2 s-1"))}
    assert flux["sdii"]["wet_threshold"] == pytest.approx(1 / 86400)
    unknown = [s.key for s in report.index_specs(VariableInfo("rr", "precipitation", ""))]
    assert unknown == ["mean", "rx1day"]  # no wet-day threshold without units
