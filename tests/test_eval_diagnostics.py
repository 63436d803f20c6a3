"""Diagnostics and spectra against brute-force references of the benchmark definitions and known cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr

from ml_benchmark_spategan.evaluation import diagnostics as D
from ml_benchmark_spategan.evaluation import spectra as S


def pair(n_time=60, ny=16, nx=16, members=0, seed=0):
    rng = np.random.default_rng(seed)
    time = pd.date_range("2001-01-01", periods=n_time, freq="D")
    coords = {"time": time, "lat": np.arange(ny, dtype=np.float32), "lon": np.arange(nx, dtype=np.float32)}
    x0 = xr.DataArray(rng.gamma(1.0, 3.0, (n_time, ny, nx)), dims=("time", "lat", "lon"), coords=coords, name="pr")
    if members:
        x1 = x0.expand_dims(member=members).copy(data=rng.gamma(1.0, 3.0, (members, n_time, ny, nx)))
    else:
        x1 = x0 + rng.normal(0, 1, x0.shape)
    return x0, x1.rename("pr")


def maybe_chunk(da, chunked):
    return da.chunk({"time": 25, "lat": 8}) if chunked else da


# --- RMSE / biases -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_rmse_values(chunked):
    x0, x1 = pair()
    a0, a1 = maybe_chunk(x0, chunked), maybe_chunk(x1, chunked)
    d = x1.values - x0.values
    np.testing.assert_allclose(D.rmse(a0, a1).values, np.sqrt(np.mean(d**2)), rtol=1e-12)
    np.testing.assert_allclose(D.rmse(a0, a1, dim="time").values, np.sqrt(np.mean(d**2, axis=0)), rtol=1e-12)
    np.testing.assert_allclose(D.rmse_score(a0, a1).values, np.sqrt(np.mean(d**2, axis=0)).mean(), rtol=1e-12)
    assert D.rmse(a0, a0).values == 0.0
    ds0, ds1 = x0.to_dataset(), x1.to_dataset()
    np.testing.assert_allclose(D.rmse(ds0, ds1, "pr", season="winter").values,
                               np.sqrt(np.mean(d[:59] ** 2)), rtol=1e-12)  # the 59 January-February days


def test_rmse_inner_join_quirk_and_strict():
    x0, x1 = pair()
    lat32 = (x0.lat.astype(np.float64) * 0.1).astype(np.float32)
    x0 = x0.assign_coords(lat=x0.lat.astype(np.float64) * 0.1)
    x1 = x1.assign_coords(lat=lat32)
    kept = int(np.sum(x0.lat.values == lat32.values))
    assert 0 < kept < 16
    assert D.rmse(x0, x1, dim="time").sizes["lat"] == kept  # silent drop, as the benchmark
    with pytest.raises(ValueError, match=r"dimension 'lat': coordinates differ"):
        D.rmse(x0, x1, strict=True)


def test_bias_ratio_and_one_number():
    x0, x1 = pair()
    b = D.bias_index(x0, x1, "mean", season="winter")
    np.testing.assert_allclose(b.values, x1.values[:59].mean(0) - x0.values[:59].mean(0), rtol=1e-10)
    rel = D.bias_index(x0, x1, "mean", relative=True)
    np.testing.assert_allclose(rel.values, (x1.values.mean(0) - x0.values.mean(0)) / x0.values.mean(0), rtol=1e-10)
    np.testing.assert_allclose(D.ratio_index(x0, x1, "sdii").values - 1.0,
                               D.bias_index(x0, x1, "sdii", relative=True).values, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(D.spatial_mean_abs(b).item(), np.abs(b.values).mean(), rtol=1e-12)
    assert D.bias_index(x0, x0, "cdd").max().item() == 0.0
    with pytest.raises(ValueError, match="unknown index 'cddd'"):
        D.bias_index(x0, x1, "cddd")


def test_bias_multivariable_correlation():
    x0, x1 = pair()
    ds0 = xr.Dataset({"pr": x0, "tasmax": 300 + 0.5 * x0 + x1})
    ds1 = xr.Dataset({"pr": x1, "tasmax": 300 - x1})
    out = D.bias_multivariable_correlation(ds0, ds1, "tasmax", "pr")
    ref0 = [[np.corrcoef(ds0.tasmax.values[:, i, j], ds0.pr.values[:, i, j])[0, 1] for j in range(16)] for i in range(16)]
    np.testing.assert_allclose(out.correlation_x0.values, ref0, rtol=1e-10)
    np.testing.assert_allclose(out.correlation_x1.values, -1.0, rtol=1e-12)
    np.testing.assert_allclose(out.correlation_bias.values, -1.0 - np.asarray(ref0), rtol=1e-10)


# --- spectra ----------------------------------------------------------------------------------------------
def ref_radial_average(a):
    """The benchmark's radial average, written as a plain loop over pixels."""
    ny, nx = a.shape
    cy, cx = (ny - 1) / 2.0, (nx - 1) / 2.0
    sums, counts = {}, {}
    for r in range(ny):
        for c in range(nx):
            b = int(np.hypot(c - cx, r - cy))
            sums[b] = sums.get(b, 0.0) + a[r, c]
            counts[b] = counts.get(b, 0) + 1
    return np.array([sums.get(b, 0.0) / max(counts.get(b, 0), 1) for b in range(max(sums) + 1)])


def ref_psd(values):
    vals = np.nan_to_num(values, nan=0.0)
    profiles = [ref_radial_average(np.abs(np.fft.fftshift(np.fft.fft2(f))) ** 2) for f in vals]
    return np.mean(profiles, axis=0)


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_psd_matches_benchmark_loop(chunked):
    x0, x1 = pair(n_time=12)
    x1 = x1.where(x1 > 0)  # NaN -> 0 policy
    p0, p1 = D.psd(maybe_chunk(x0, chunked), maybe_chunk(x1, chunked))
    assert p0.dims == ("wavenumber",) and p0.sizes["wavenumber"] == 11 and "wavenumber" not in p0.coords
    assert (p0.name, p1.name) == ("PSD_x0", "PSD_x1")
    np.testing.assert_allclose(p0.values, ref_psd(x0.values), rtol=1e-10)
    np.testing.assert_allclose(p1.values, ref_psd(x1.values), rtol=1e-10)


def test_psd_128_has_90_bins_and_matches_reference():
    x0, _ = pair(n_time=2, ny=128, nx=128)
    p = S.power_spectrum(x0)
    assert p.sizes["wavenumber"] == 90
    np.testing.assert_allclose(p.values, ref_psd(x0.values), rtol=1e-10)
    rect, _ = pair(n_time=2, ny=12, nx=20)
    np.testing.assert_allclose(S.power_spectrum(rect).values, ref_psd(rect.values), rtol=1e-10)


def test_psd_members_pooled():
    x0, x1 = pair(n_time=5, members=3)
    ref = ref_psd(x1.values.reshape(-1, 16, 16))
    np.testing.assert_allclose(S.power_spectrum(x1).values, ref, rtol=1e-10)


def sine_field(k=8, n=128, n_time=3):
    x = np.arange(n)
    field = np.sin(2 * np.pi * k * x / n)[None, :] * np.ones((n, 1))
    return xr.DataArray(np.repeat(field[None], n_time, 0), dims=("time", "y", "x"),
                        coords={"time": pd.date_range("2001-01-01", periods=n_time)})


def test_planted_sine_peaks_at_its_wavenumber():
    da = sine_field(k=8)
    bench = S.power_spectrum(da).values
    assert int(np.argmax(bench)) in (7, 8)  # offset centre splits +/-k between int(7.5) and int(8.5)
    corr = S.power_spectrum(da, kind="corrected", dx_km=12.5)
    assert corr.sizes["wavenumber"] == 65
    peak = corr.isel(wavenumber=int(np.argmax(corr.values)))
    assert float(peak.wavenumber) == 8 / 128
    assert float(peak.wavelength_km) == pytest.approx(128 / 8 * 12.5)
    assert float(peak.wavenumber_per_km) == pytest.approx(8 / 128 / 12.5)
    np.testing.assert_allclose(np.delete(corr.values, 8), 0.0, atol=1e-12 * corr.values.max())


def test_ralsd_known_values():
    assert D.ralsd(np.array([1.0, 10.0, 100.0]), np.array([10.0, 10.0, 10.0])) == pytest.approx(200 / 3)
    x0, x1 = pair()
    p0, _ = D.psd(x0, x1)
    assert D.ralsd(p0, p0) == 0.0
    assert S.ralsd_rms(x0, x0) == 0.0
    # doubling the field multiplies every power by 4: -6.02 dB in every bin and field
    assert S.ralsd_rms(x0, 2 * x0) == pytest.approx(20 * np.log10(2), rel=1e-10)
    assert S.ralsd_rms(x0, 2 * x0, kind="benchmark", min_bin=0) == pytest.approx(20 * np.log10(2), rel=1e-10)
    assert D.ralsd(p0, 4 * p0) == pytest.approx((10 * np.log10(4)) ** 2, rel=1e-10)


def test_ralsd_rms_brute_force_with_members():
    x0, x1 = pair(n_time=4, members=2)
    got = S.ralsd_rms(x0, x1, kind="benchmark", min_bin=1)
    vals = []
    for t in range(4):
        r0 = ref_radial_average(np.abs(np.fft.fftshift(np.fft.fft2(x0.values[t]))) ** 2)[1:]
        for m in range(2):
            r1 = ref_radial_average(np.abs(np.fft.fftshift(np.fft.fft2(x1.values[m, t]))) ** 2)[1:]
            vals.append(np.sqrt(np.mean((10 * np.log10(r0 / r1)) ** 2)))
    assert got == pytest.approx(np.mean(vals), rel=1e-10)


# --- Wasserstein ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_wasserstein_per_point_equals_scipy(chunked):
    x0, x1 = pair(n_time=40, ny=5, nx=6)
    x1[3, 2, 2] = np.nan
    got = D.wasserstein_distance(maybe_chunk(x0, chunked), maybe_chunk(x1, chunked), spatial=True).compute()
    assert got.dims == ("lat", "lon") and "time" not in got.coords
    v1 = x1.values  # NaN values are left out of the sample (the benchmark would count them as 0)
    ref = [[scipy.stats.wasserstein_distance(x0.values[:, i, j], v1[:, i, j][~np.isnan(v1[:, i, j])])
            for j in range(6)] for i in range(5)]
    np.testing.assert_allclose(got.values, ref, rtol=1e-10)
    assert D.wasserstein_distance(x0, x0, spatial=True).max().item() == 0.0


def test_wasserstein_members_pooled_and_unequal_sizes():
    x0, x1 = pair(n_time=30, ny=3, nx=4, members=3)
    got = D.wasserstein_distance(x0, x1, spatial=True)
    ref = [[scipy.stats.wasserstein_distance(x0.values[:, i, j], x1.values[:, :, i, j].ravel()) for j in range(4)]
           for i in range(3)]
    np.testing.assert_allclose(got.values, ref, rtol=1e-10)
    u, v = np.sort(np.random.default_rng(1).normal(size=7)), np.sort(np.random.default_rng(2).normal(size=11))
    assert D.w1_sorted(u, v) == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=1e-12)


def test_wasserstein_scalar_equals_scipy():
    x0, x1 = pair(n_time=20)
    x1[0, 0, 0] = np.nan
    got = D.wasserstein_distance(x0.to_dataset(), x1.to_dataset(), "pr", season="winter")
    assert isinstance(got, float)
    v1 = x1.values.ravel()
    ref = scipy.stats.wasserstein_distance(x0.values.ravel(), v1[~np.isnan(v1)])
    assert got == pytest.approx(ref, rel=1e-10)
