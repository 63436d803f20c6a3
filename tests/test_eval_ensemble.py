"""Ensemble scores against brute-force formulas and known cases."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ml_benchmark_spategan.evaluation import ensemble as E


def obs_ens(n_time=20, ny=6, nx=7, m=4, seed=0, zeros=False):
    rng = np.random.default_rng(seed)
    coords = {"time": pd.date_range("2001-01-01", periods=n_time), "lat": np.arange(ny), "lon": np.arange(nx)}
    draw = (lambda *s: np.where(rng.random(s) < 0.6, 0.0, rng.gamma(1, 3, s))) if zeros else (lambda *s: rng.normal(size=s))
    obs = xr.DataArray(draw(n_time, ny, nx), dims=("time", "lat", "lon"), coords=coords)
    ens = xr.DataArray(draw(m, n_time, ny, nx), dims=("member", "time", "lat", "lon"), coords=coords)
    return obs, ens


def crps_pairwise(y, x, fair):
    m = len(x)
    pairs = sum(abs(a - b) for a, b in itertools.product(x, x))
    return np.mean(np.abs(x - y)) - pairs / (2 * m * (m - 1 if fair else m))


@pytest.mark.parametrize("m", [1, 2, 5, 13])
@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_crps_brute_force(m, chunked):
    obs, ens = obs_ens(n_time=5, ny=3, nx=4, m=m)
    if chunked:
        obs, ens = obs.chunk({"time": 2}), ens.chunk({"time": 2, "member": 1})
    for fair in ([False, True] if m > 1 else [False]):
        got = E.crps(obs, ens, fair=fair).compute()
        ref = np.array([crps_pairwise(obs.values[t, i, j], ens.values[:, t, i, j], fair)
                        for t in range(5) for i in range(3) for j in range(4)]).reshape(5, 3, 4)
        np.testing.assert_allclose(got.transpose("time", "lat", "lon").values, ref, rtol=1e-12, atol=1e-14)
    if m == 1:
        np.testing.assert_allclose(E.crps(obs, ens, dim="time").values,
                                   np.abs(obs.values - ens.values[0]).mean(0), rtol=1e-12)
        with pytest.raises(ValueError, match="fair CRPS needs at least 2 members"):
            E.crps(obs, ens, fair=True).compute()


def test_crps_perfect_and_nan():
    obs, ens = obs_ens(m=3)
    perfect = xr.concat([obs] * 3, "member")
    assert float(E.crps(obs, perfect).max()) == 0.0
    ens[0, 0, 0, 0] = np.nan
    assert np.isnan(E.crps(obs, ens).values[0, 0, 0])
    with pytest.raises(ValueError, match="no 'member' dimension"):
        E.crps(obs, obs)


def test_rank_histogram_brute_force_without_ties():
    obs, ens = obs_ens(m=4)
    got = E.rank_histogram(obs, ens)
    ranks = (ens.values < obs.values[None]).sum(0)
    np.testing.assert_array_equal(got.values, np.bincount(ranks.ravel(), minlength=5))
    assert got.dims == ("rank",) and got["rank"].values.tolist() == [0, 1, 2, 3, 4]


def test_rank_histogram_ties_random_and_seeded():
    obs, ens = obs_ens(n_time=200, m=4, zeros=True)
    obs[:] = 0.0
    ens[:] = 0.0  # every point a 5-way tie: ranks uniform on 0..4
    h = E.rank_histogram(obs, ens, seed=3)
    n = obs.size
    assert h.sum() == n and np.all(np.abs(h.values - n / 5) < 0.05 * n / 5)
    xr.testing.assert_identical(h, E.rank_histogram(obs.chunk({"time": 7}), ens.chunk({"time": 7}), seed=3))
    assert not np.array_equal(h.values, E.rank_histogram(obs, ens, seed=4).values)


def test_spread_skill_reliable_ensemble():
    obs, ens = obs_ens(n_time=2000, ny=5, nx=5, m=3, seed=1)
    ratio = float(E.spread_skill_ratio(obs, ens))
    assert ratio == pytest.approx(1.0, abs=0.02)
    raw = float(E.spread_skill_ratio(obs, ens, correction=False))
    assert raw == pytest.approx(np.sqrt(3 / 4), abs=0.02)
    m = E.spread_skill_ratio(obs, ens, dim="time")
    assert m.dims == ("lat", "lon")


def fss_brute(o, f, thr, s):
    """Loop over windows (zero padding) for odd s, summed over time."""
    r = s // 2
    num = den = 0.0
    for t in range(o.shape[0]):
        eo = np.pad(o[t] >= thr, r).astype(float)
        ef = np.pad(f[t] >= thr, r).astype(float)
        for i in range(o.shape[1]):
            for j in range(o.shape[2]):
                fo = eo[i:i + s, j:j + s].mean()
                ff = ef[i:i + s, j:j + s].mean()
                num += (fo - ff) ** 2
                den += fo**2 + ff**2
    return 1 - num / den


def test_fss_brute_force_perfect_and_members():
    obs, ens = obs_ens(n_time=4, ny=9, nx=8, zeros=True, m=2)
    pred = ens.isel(member=0, drop=True)
    got = E.fss(obs, pred, [0.5, 3.0], [1, 3, 5])
    assert got.dims == ("threshold", "scale")
    for a, thr in enumerate([0.5, 3.0]):
        for b, s in enumerate([1, 3, 5]):
            assert got.values[a, b] == pytest.approx(fss_brute(obs.values, pred.values, thr, s), rel=1e-6)  # float32
    assert np.all(E.fss(obs, obs, [0.5, 3.0], [1, 3]).values == 1.0)
    per_member = E.fss(obs, ens, [0.5], [3])
    assert per_member.dims == ("threshold", "scale", "member")
    assert per_member.values[0, 0, 0] == pytest.approx(got.values[0, 1], rel=1e-6)
    assert np.isnan(E.fss(obs, pred, [1e9], [3]).values).all()  # no event anywhere


def test_fss_disjoint_events_zero_at_grid_scale():
    obs = xr.DataArray(np.zeros((1, 8, 8)), dims=("time", "y", "x"))
    pred = obs.copy()
    obs[0, 2, 2] = 1.0
    pred[0, 5, 5] = 1.0
    out = E.fss(obs, pred, [0.5], [1, 9])
    assert out.values[0, 0] == 0.0 and out.values[0, 1] > 0.0
