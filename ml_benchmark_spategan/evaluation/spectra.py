"""Radially averaged power spectra and the RALSD score: the benchmark's definitions and corrected variants.

Benchmark ``psd`` (reproduced exactly): NaN -> 0; 2-D FFT over the two spatial dims; ``fftshift``; power
``|F|^2`` (no mean removal, window or normalisation); per-field radial average with the centre at
``((nx-1)/2, (ny-1)/2)`` and bins ``int(hypot(col - cx, row - cy))`` (90 bins for 128x128, 11 for 16x16);
each bin is the mean of its pixels; profiles averaged over fields. The true DC after ``fftshift`` sits at
``(ny//2, nx//2)``, so the benchmark's bin 0 mixes DC with 3 low-frequency pixels and bins >= N/2 are
corner frequencies beyond Nyquist. The output dim ``wavenumber`` has no coordinate values.

Corrected ``psd_corrected`` (opt-in): bins centred on the true DC, radius ``hypot(fx, fy)`` in cycles per
grid length (``fx = fftfreq(nx)``), bin width ``1/max(nx, ny)`` (rounded to the nearest bin), bins beyond
Nyquist (0.5 cycles per grid length) dropped: 65 bins for 128x128, coordinate ``wavenumber`` in cycles
per grid length plus ``wavenumber_per_km`` and ``wavelength_km`` when a grid spacing is given.

Implementation: ``rfft2`` (half plane; the other half follows from Hermitian symmetry of real fields) and a
fixed (half-plane pixel x bin) weight matrix, so each field's profile is one matrix product; fields are
processed in chunks (numpy) or per dask block. The time-mean spectrum of in-memory data sums the power
over fields first and bins once (the radial average is linear). Results are computed (in memory) even for
dask input.

Member policy: spectra are pooled, i.e. averaged over every non-spatial dim (time and member);
``ralsd_rms`` scores each (time, member) field against the reference field of the same time.
NaN policy: NaN -> 0 before the FFT (as the benchmark).
"""

from __future__ import annotations

import dask
import numpy as np
import scipy.fft
import xarray as xr

from ml_benchmark_spategan.spectral_bins import bin_weights

from ._common import TIME, filter_season, select_var, spatial_dims

WAVENUMBER = "wavenumber"
_FRAMES_PER_CHUNK = 256


def frame_profiles(fields: np.ndarray, kind: str = "benchmark") -> np.ndarray:
    """Radial power profile of each 2-D field: (..., ny, nx) -> (..., nbins), float64; NaN -> 0."""
    *lead, ny, nx = fields.shape
    weights = bin_weights(ny, nx, kind)
    flat = fields.reshape(-1, ny, nx)
    out = np.empty((flat.shape[0], weights.shape[1]))
    for start in range(0, flat.shape[0], _FRAMES_PER_CHUNK):
        block = np.nan_to_num(np.array(flat[start:start + _FRAMES_PER_CHUNK], dtype=np.float64), nan=0.0, copy=False)
        spec = scipy.fft.rfft2(block, axes=(-2, -1), workers=_fft_workers())
        power = spec.real**2 + spec.imag**2
        out[start:start + block.shape[0]] = power.reshape(block.shape[0], -1) @ weights
    return out.reshape(*lead, weights.shape[1])


def _fft_workers() -> int:
    """Threads of the FFT: the evaluation's thread setting (``runtime.num_threads``, applied to dask's
    pool by ``apply_num_threads``), else all CPUs."""
    return dask.config.get("num_workers", None) or -1


def mean_profile(fields: np.ndarray, kind: str = "benchmark") -> np.ndarray:
    """Radial power profile averaged over all fields: (..., ny, nx) -> (nbins,), float64; NaN -> 0.

    The radial average is linear, so the mean of the per-field profiles equals the profile of the mean
    power: the power is summed over fields (in chunks, float64) and binned once. The FFT runs in the
    input's precision (float32 fields: a float32 FFT, as numpy's ``fft2`` in the benchmark code; the
    profile then agrees with a float64 FFT to ~1e-7 relative).
    """
    *_, ny, nx = fields.shape
    flat = fields.reshape(-1, ny, nx)
    dtype = np.float32 if flat.dtype == np.float32 else np.float64
    total = np.zeros((ny, 2 * (nx // 2 + 1)))
    for start in range(0, flat.shape[0], _FRAMES_PER_CHUNK):
        block = np.array(flat[start:start + _FRAMES_PER_CHUNK], dtype=dtype)
        if np.isnan(block.min()):
            np.nan_to_num(block, nan=0.0, copy=False)
        spec = scipy.fft.rfft2(block, axes=(-2, -1), workers=_fft_workers(), overwrite_x=True)
        parts = spec.view(dtype)  # (real, imag) interleaved along the last axis
        total += np.einsum("tij,tij->ij", parts, parts, dtype=np.float64)
    power = total[:, 0::2] + total[:, 1::2]
    return power.reshape(-1) @ bin_weights(ny, nx, kind) / max(flat.shape[0], 1)


def profiles(da: xr.DataArray, kind: str = "benchmark") -> xr.DataArray:
    """Per-field radial profiles of ``da``: spatial dims replaced by ``wavenumber`` (lazy for dask input)."""
    ydim, xdim = spatial_dims(da, "profiles")
    ny, nx = da.sizes[ydim], da.sizes[xdim]
    nbins = bin_weights(ny, nx, kind).shape[1]
    if da.chunks is not None:
        da = da.chunk({ydim: -1, xdim: -1})
    return xr.apply_ufunc(
        frame_profiles, da, kwargs={"kind": kind},
        input_core_dims=[[ydim, xdim]], output_core_dims=[[WAVENUMBER]],
        dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {WAVENUMBER: nbins}},
    )


def wavenumber_coords(ny: int, nx: int, dx_km: float | None = None) -> dict[str, tuple[str, np.ndarray]]:
    """Coordinates of the corrected bins: cycles per grid length (and per km, wavelength in km if ``dx_km``)."""
    nbins = bin_weights(ny, nx, "corrected").shape[1]
    k = np.arange(nbins) / max(nx, ny)
    coords = {WAVENUMBER: (WAVENUMBER, k)}
    if dx_km is not None:
        wavelength = np.full(nbins, np.inf)
        wavelength[1:] = dx_km / k[1:]
        coords["wavenumber_per_km"] = (WAVENUMBER, k / dx_km)
        coords["wavelength_km"] = (WAVENUMBER, wavelength)
    return coords


def power_spectrum(x, var: str | None = None, season: str | None = None, kind: str = "benchmark",
                   dx_km: float | None = None) -> xr.DataArray:
    """Radially averaged power spectrum averaged over all fields (time and member pooled), computed.

    dims: (wavenumber,). ``kind="benchmark"``: no coordinate values (as the benchmark);
    ``kind="corrected"``: coordinates from :func:`wavenumber_coords`.
    """
    da = filter_season(select_var(x, var, "power_spectrum"), season)
    if da.chunks is None:
        ydim, xdim = spatial_dims(da, "power_spectrum")
        mean = mean_profile(np.asarray(da.transpose(..., ydim, xdim).values), kind)
    else:
        prof = profiles(da, kind)
        mean = prof.mean([d for d in prof.dims if d != WAVENUMBER]).compute().values
    out = xr.DataArray(mean, dims=[WAVENUMBER])
    if kind == "corrected":
        ydim, xdim = spatial_dims(da)
        out = out.assign_coords(wavenumber_coords(da.sizes[ydim], da.sizes[xdim], dx_km))
    return out


def psd(x0, x1, var: str | None = None, season: str | None = None) -> tuple[xr.DataArray, xr.DataArray]:
    """The benchmark's PSD pair ``(PSD_x0, PSD_x1)``, dims (wavenumber,) without coordinates.

    Each input is processed on its own values (no coordinate alignment, as the benchmark).
    """
    return (power_spectrum(x0, var, season).rename("PSD_x0"), power_spectrum(x1, var, season).rename("PSD_x1"))


def psd_corrected(x0, x1, var: str | None = None, season: str | None = None,
                  dx_km: float | None = None) -> tuple[xr.DataArray, xr.DataArray]:
    """Corrected PSD pair: true-DC centring, Nyquist cut, wavenumber coordinates (see module docstring)."""
    kw = {"kind": "corrected", "dx_km": dx_km}
    return (power_spectrum(x0, var, season, **kw).rename("PSD_x0"),
            power_spectrum(x1, var, season, **kw).rename("PSD_x1"))


def ralsd(psd_x0: xr.DataArray, psd_x1: xr.DataArray) -> float:
    """The benchmark's RALSD: ``mean_k [10 log10(P0_k / max(P1_k, 1e-30))]^2`` in dB^2, on time-mean spectra.

    No square root (Harris et al. 2022 take one; see :func:`ralsd_rms`). All bins weigh equally; only P1 is
    floored, so a zero bin in P0 gives inf (as the benchmark).
    """
    p0, p1 = np.asarray(psd_x0, dtype=np.float64), np.asarray(psd_x1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(p0 / np.maximum(p1, 1e-30))
    return float(np.mean(db**2))


def ralsd_rms(x0, x1, var: str | None = None, season: str | None = None, kind: str = "corrected",
              min_bin: int = 1, floor: float = 1e-30) -> float:
    """Corrected RALSD (Harris et al. 2022): RMS over bins of the dB difference per field, then the mean over fields.

    ``sqrt(mean_k [10 log10(max(P0_k, floor) / max(P1_k, floor))]^2)`` on each field's (unaveraged) profile,
    x1 fields (time[, member]) against the x0 field of the same time; averaged over time and member.
    ``min_bin=1`` leaves the DC bin out (the mean level is scored by the bias metrics). Units: dB.
    """
    a0 = filter_season(select_var(x0, var, "ralsd_rms"), season)
    a1 = filter_season(select_var(x1, var, "ralsd_rms"), season)
    if a0.sizes[TIME] != a1.sizes[TIME]:
        raise ValueError(f"ralsd_rms: time sizes differ (x0 {a0.sizes[TIME]}, x1 {a1.sizes[TIME]})")
    p0 = profiles(a0, kind).isel({WAVENUMBER: slice(min_bin, None)})
    p1 = profiles(a1, kind).isel({WAVENUMBER: slice(min_bin, None)})
    p0 = p0.assign_coords({TIME: a1[TIME].values})
    db = 10.0 * np.log10(np.maximum(p0, floor) / np.maximum(p1, floor))
    rms = np.sqrt((db**2).mean(WAVENUMBER))
    return float(rms.mean().compute())
