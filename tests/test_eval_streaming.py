"""Streaming accumulators: merging two halves equals one pass, and equals the one-shot functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ml_benchmark_spategan.evaluation import diagnostics as D
from ml_benchmark_spategan.evaluation import ensemble as E
from ml_benchmark_spategan.evaluation import spectra as S
from ml_benchmark_spategan.evaluation import streaming as ST


def data(n_time=30, ny=16, nx=16, m=3, seed=0):
    rng = np.random.default_rng(seed)
    coords = {"time": pd.date_range("2001-01-01", periods=n_time), "lat": np.arange(ny) * 0.1,
              "lon": np.arange(nx) * 0.1}
    gamma = lambda *s: np.where(rng.random(s) < 0.5, 0.0, rng.gamma(1, 3, s))  # noqa: E731
    obs = xr.DataArray(gamma(n_time, ny, nx), dims=("time", "lat", "lon"), coords=coords)
    ens = xr.DataArray(gamma(n_time, m, ny, nx) + 0.01, dims=("time", "member", "lat", "lon"), coords=coords)
    return obs, ens


def one_pass_and_halves(make, obs, pred):
    whole = make()
    whole.update(obs, pred)
    first, second = make(), make()
    first.update(obs.isel(time=slice(0, 11)), pred.isel(time=slice(0, 11)))
    second.update(obs.isel(time=slice(11, None)), pred.isel(time=slice(11, None)))
    return whole.compute(), first.merge(second).compute()


@pytest.mark.parametrize("kind", ["benchmark", "corrected"])
def test_mean_spectrum(kind):
    obs, ens = data()
    whole, merged = one_pass_and_halves(lambda: ST.MeanSpectrum(kind, dx_km=12.5), obs, ens)
    xr.testing.assert_allclose(whole, merged, rtol=1e-12)
    p0, p1 = (D.psd(obs, ens) if kind == "benchmark" else S.psd_corrected(obs, ens, dx_km=12.5))
    np.testing.assert_allclose(whole.PSD_x0.values, p0.values, rtol=1e-12)
    np.testing.assert_allclose(whole.PSD_x1.values, p1.values, rtol=1e-12)
    assert float(whole.ralsd) == pytest.approx(D.ralsd(p0, p1), rel=1e-10)


@pytest.mark.parametrize("fair", [False, True])
def test_crps(fair):
    obs, ens = data()
    whole, merged = one_pass_and_halves(lambda: ST.CRPS(fair=fair), obs, ens)
    xr.testing.assert_allclose(whole, merged, rtol=1e-12)
    np.testing.assert_allclose(whole.values, E.crps(obs, ens, fair=fair, dim="time").values, rtol=1e-12)
    assert whole.dims == ("lat", "lon") and np.allclose(whole.lat, obs.lat)


def test_fss():
    obs, ens = data()
    make = lambda: ST.FSS([0.5, 4.0], [1, 5])  # noqa: E731
    whole, merged = one_pass_and_halves(make, obs, ens)
    xr.testing.assert_allclose(whole, merged, rtol=1e-12)
    np.testing.assert_allclose(whole.values, E.fss(obs, ens, [0.5, 4.0], [1, 5]).values, rtol=1e-12)
    perfect = ST.FSS([0.5], [3])
    perfect.update(obs.values, obs.values)
    assert perfect.compute().item() == 1.0


def test_rank_histogram_without_ties():
    obs, ens = data()
    obs = obs + 0.001  # ensemble values are never equal to observations
    whole, merged = one_pass_and_halves(ST.RankHistogram, obs, ens)
    xr.testing.assert_identical(whole, merged)
    xr.testing.assert_identical(whole, E.rank_histogram(obs, ens.transpose("member", ...)))


@pytest.mark.parametrize("members", [False, True])
def test_moments(members):
    obs, ens = data()
    pred = ens if members else ens.isel(member=0, drop=True)
    pred = pred.where(pred < 9)  # some NaNs
    whole, merged = one_pass_and_halves(ST.Moments, obs, pred)
    xr.testing.assert_allclose(whole, merged, rtol=1e-10)
    valid_obs = obs.where(pred.notnull())
    if members:
        ref_rmse = np.sqrt(((pred - obs) ** 2).mean(["time", "member"]))
        ref_std = pred.std(["time", "member"])
    else:
        ref_rmse = D.rmse(obs, pred, dim="time")
        ref_std = pred.std("time")
    np.testing.assert_allclose(whole.rmse.values, ref_rmse.values, rtol=1e-10)
    np.testing.assert_allclose(whole.std_pred.values, ref_std.values, rtol=1e-10)
    if not members:
        np.testing.assert_allclose(whole.std_true.values, valid_obs.std("time").values, rtol=1e-10)
        np.testing.assert_allclose(whole.bias.values, (pred.mean("time") - valid_obs.mean("time")).values, rtol=1e-9)
    perfect = ST.Moments()
    perfect.update(obs.values, obs.values)
    assert np.all(perfect.compute().rmse.values == 0.0)


def test_errors():
    obs, ens = data()
    crps = ST.CRPS()
    with pytest.raises(ValueError, match="needs a member axis"):
        crps.update(obs.values, obs.values)
    with pytest.raises(ValueError, match=r"disagree in time or space"):
        crps.update(obs.values[:5], ens.values)
    with pytest.raises(ValueError, match=r"expected shape \(time, ny, nx\), got \(4,\)"):
        crps.update(np.zeros(4), ens.values)
    with pytest.raises(ValueError, match="cannot merge FSS"):
        ST.FSS([1.0], [3]).merge(ST.FSS([2.0], [3]))
    with pytest.raises(ValueError, match="unknown spectrum kind 'fft'"):
        ST.MeanSpectrum("fft")


def test_spread_skill_streams_the_one_formula_with_the_correction():
    obs, ens = data(m=4)
    obs[3, 2, 5] = np.nan  # NaN observation and NaN member: both points skipped
    ens[7, 1, 0, 0] = np.nan
    whole, merged = one_pass_and_halves(ST.SpreadSkill, obs, ens)
    assert merged == pytest.approx(whole, rel=1e-12)
    valid = obs.notnull() & ens.notnull().all("member")
    reference = float(E.spread_skill_ratio(obs.where(valid), ens.where(valid)))
    assert whole == pytest.approx(reference, rel=1e-10)
    # brute force: sqrt((m + 1)/m * mean unbiased member variance) / RMSE of the ensemble mean
    x, y, ok = ens.transpose("member", ...).values, obs.values, valid.values
    var, err2 = x.var(0, ddof=1)[ok], (x.mean(0) - y)[ok] ** 2
    assert whole == pytest.approx(np.sqrt(5 / 4 * var.mean()) / np.sqrt(err2.mean()), rel=1e-10)
    with pytest.raises(ValueError, match="SpreadSkill: y_pred needs 2\\+ members"):
        ST.SpreadSkill().update(obs, ens.isel(member=slice(0, 1)))
    three = ST.SpreadSkill()
    three.update(obs, ens.isel(member=slice(0, 3)))
    with pytest.raises(ValueError, match="cannot merge SpreadSkill of 4 members into one of 3"):
        three.merge(ST.SpreadSkill().merge(_updated(obs, ens)))
    assert np.isnan(ST.SpreadSkill().compute())


def _updated(obs, ens) -> ST.SpreadSkill:
    acc = ST.SpreadSkill()
    acc.update(obs, ens)
    return acc
