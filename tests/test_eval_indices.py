"""Indices against plain numpy/pandas loop references of the benchmark definitions, plus known cases."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ml_benchmark_spategan.evaluation import indices as I
from ml_benchmark_spategan.evaluation._common import check_same_coords, filter_season, season_code

SEASON_MONTHS = {None: range(1, 13), "winter": (12, 1, 2), "summer": (6, 7, 8), "DJF": (12, 1, 2)}


def synthetic(seed: int = 0, members: int = 0) -> xr.Dataset:
    """3 years x 3 x 4 grid: tasmax (K, around 300) and pr (mm/day, many zeros), a few NaNs."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2001-01-01", "2003-12-31", freq="D")
    shape = (len(time), 3, 4) if not members else (len(time), 3, 4, members)
    dims = ("time", "lat", "lon") if not members else ("time", "lat", "lon", "member")
    tas = 300.0 + 4 * np.sin(2 * np.pi * np.arange(len(time)) / 365)[:, None, None] \
        .reshape((-1,) + (1,) * (len(shape) - 1)) + rng.normal(0, 2, shape)
    pr = np.where(rng.random(shape) < 0.5, 0.0, rng.gamma(0.8, 4.0, shape))
    for arr in (tas, pr):
        arr[rng.integers(0, len(time), 30), 1, 2] = np.nan  # scattered NaN days in one cell
    pr[:, 0, 0] = np.nan  # an all-NaN cell
    coords = {"time": time, "lat": [1.0, 2.0, 3.0], "lon": [10.0, 11.0, 12.0, 13.0]}
    return xr.Dataset({"tasmax": (dims, tas), "pr": (dims, pr)}, coords=coords)


# --- loop references (benchmark definitions) -----------------------------------------------------------
def _series(ds, var, season, i, j, k=None):
    v = ds[var].values[:, i, j] if k is None else ds[var].values[:, i, j, k]
    months = ds.time.dt.month.values
    keep = np.isin(months, SEASON_MONTHS[season])
    return v[keep], ds.time.dt.year.values[keep]


def _longest(flags):
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def ref_index(name, v, years, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_year = [v[years == y] for y in np.unique(years)]
        if name in ("su", "cdd", "cwd") and not np.isfinite(v).any():
            return np.nan  # a masked cell (NaN on every day) has no index (the benchmark would give 0)
        if name == "mean":
            return np.nanmean(v)
        if name == "quantile":
            return np.nanquantile(v, kw["q"]) if np.isfinite(v).any() else np.nan
        if name == "su":
            return np.mean([np.sum(np.nan_to_num(y, nan=-np.inf) > kw.get("threshold", 300.0)) for y in per_year])
        if name in ("txx", "rx1day"):
            return np.nanmean([np.nanmax(y) for y in per_year])
        if name == "txn":
            return np.nanmean([np.nanmin(y) for y in per_year])
        if name == "sdii":
            wet = v[v >= 1.0]
            return wet.mean() if wet.size else np.nan
        if name == "cdd":
            return np.mean([_longest([d < 1.0 for d in y]) for y in per_year])
        if name == "cwd":
            return np.mean([_longest([d >= 1.0 for d in y]) for y in per_year])
        if name == "lag1_corr":
            s = pd.Series(v)
            return s.corr(s.shift(1))
        if name == "interannual_var":
            return np.std([np.nanmean(y) for y in per_year])
    raise AssertionError(name)


CASES = [
    ("mean", "tasmax", {}), ("quantile", "tasmax", {"q": 0.9}), ("su", "tasmax", {}),
    ("su", "tasmax", {"threshold": 298.15}), ("txx", "tasmax", {}), ("txn", "tasmax", {}),
    ("rx1day", "pr", {}), ("sdii", "pr", {}), ("cdd", "pr", {}), ("cwd", "pr", {}),
    ("lag1_corr", "tasmax", {}), ("interannual_var", "tasmax", {}),
]


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
@pytest.mark.parametrize("season", [None, "winter", "summer"])
@pytest.mark.parametrize("name,var,kw", CASES, ids=[f"{c[0]}{'_' + str(c[2]) if c[2] else ''}" for c in CASES])
def test_index_matches_loop_reference(name, var, kw, season, chunked):
    ds = synthetic()
    if chunked:
        ds = ds.chunk({"time": 400, "lat": 2})
    got = I.INDICES[name](ds, var, season=season, **kw)
    if chunked:
        assert got.chunks is not None
    got = got.compute()
    assert got.dims == ("lat", "lon")
    for i in range(3):
        for j in range(4):
            v, years = _series(ds.compute(), var, season, i, j)
            np.testing.assert_allclose(got.values[i, j], ref_index(name, v, years, **kw), rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name} at ({i},{j})")


def test_index_per_member():
    ds = synthetic(members=2)
    for name, var, kw in CASES:
        got = I.INDICES[name](ds, var, **kw)
        assert set(got.dims) == {"lat", "lon", "member"}, name
        for k in range(2):
            v, years = _series(ds, var, None, 2, 3, k)
            np.testing.assert_allclose(got.sel(member=k).values[2, 3], ref_index(name, v, years, **kw), rtol=1e-10)
    assert I.ensemble_mean_index(got).dims == ("lat", "lon")


def test_quantile_equals_xarray_and_keeps_coordinate():
    ds = synthetic()
    got = I.quantile(ds["tasmax"], q=0.98)
    np.testing.assert_allclose(got.values, ds["tasmax"].quantile(0.98, dim="time").values, rtol=1e-12)
    assert float(got["quantile"]) == 0.98


# --- spells: hand-made series -----------------------------------------------------------------------------
def _one_point(values, start="2001-01-01", calendar=None):
    n = len(values)
    if calendar:
        time = xr.date_range(start, periods=n, freq="D", calendar=calendar, use_cftime=True)
    else:
        time = pd.date_range(start, periods=n, freq="D")
    return xr.DataArray(np.asarray(values, float)[:, None, None], dims=("time", "lat", "lon"), coords={"time": time})


@pytest.mark.parametrize("calendar", [None, "noleap"])
def test_seasonal_spell_joining_quirk_and_corrected(calendar):
    da = _one_point(np.full(365, 5.0), calendar=calendar)
    month = da.time.dt.month.values
    da[(month <= 2) | (month == 12)] = 0.0  # dry Jan-Feb (59 days) and dry Dec (31 days)
    assert I.cdd(da, season="winter").item() == 90.0  # benchmark: joins across Mar-Nov
    assert I.cdd(da, season="winter", spells_by_season=True).item() == 59.0
    assert I.cdd(da).item() == 59.0
    assert I.cwd(da).item() == 275.0


def test_spells_cut_at_year_end_and_broken_by_nan():
    vals = np.full(730, 5.0)
    vals[355:375] = 0.0  # 10 dry days in Dec 2001, 10 in Jan 2002
    da = _one_point(vals)
    assert I.cdd(da).item() == 10.0
    vals[360] = np.nan  # NaN is neither dry nor wet
    vals[400:430] = 0.0  # 30 dry days in 2002
    assert I.cdd(_one_point(vals)).values.item() == (5.0 + 30.0) / 2
    assert I.longest_runs(np.array([1, 1, 0, 1, 1, 1], bool), np.array([1, 0, 0, 0, 1, 0], bool),
                          np.array([0, 4])).tolist() == [2, 2]


def test_su_counts_per_year_and_nan_not_hot():
    vals = np.full(730, 290.0)
    vals[:10] = 301.0  # 10 hot days in year 1
    vals[400:406] = 300.0  # not hot: strict '>'
    vals[406:410] = np.nan
    assert I.su(_one_point(vals)).item() == 5.0
    assert I.su(_one_point(vals), threshold=299.0).item() == 8.0


# --- seasons and coordinates ------------------------------------------------------------------------------
def test_season_names():
    da = synthetic()["tasmax"]
    assert season_code("summer") == "JJA" and season_code("austral_summer") == "DJF"
    djf = filter_season(da, "DJF")
    xr.testing.assert_identical(djf, filter_season(da, "winter"))
    xr.testing.assert_identical(djf, filter_season(da, "austral_summer"))
    assert set(filter_season(da, "summer").time.dt.month.values) == {6, 7, 8}
    with pytest.raises(ValueError, match="unknown season 'sumer'"):
        filter_season(da, "sumer")
    # mean/quantile with a season work here (the benchmark raises TypeError)
    np.testing.assert_allclose(I.mean(da, season="winter"), djf.mean("time"))


def test_dataset_needs_var_and_errors_name_it():
    ds = synthetic()
    with pytest.raises(ValueError, match="'var' is required"):
        I.mean(ds)
    with pytest.raises(KeyError, match="'tas' not in dataset"):
        I.mean(ds, "tas")
    with pytest.raises(ValueError, match="q must lie in"):
        I.quantile(ds, "pr", q=98)


def test_check_same_coords():
    ds = synthetic()
    shifted = ds.assign_coords(lat=(ds.lat + np.float32(1e-5)))
    check_same_coords(ds, ds)
    with pytest.raises(ValueError, match=r"dimension 'lat': coordinates differ \(max \|x1 - x0\| = 1e-05"):
        check_same_coords(ds, shifted)
    with pytest.raises(ValueError, match="dimension 'time': sizes differ"):
        check_same_coords(ds, ds.isel(time=slice(1, None)))
