"""Random fields with prescribed spatial spectra, and AR(1) processes in time.

A field of shape (n, n) with power spectral density ``P(k) ∝ (k² + k0²)^(-beta/2)`` (k in cycles per
domain) is made by colouring complex white noise in the spectral domain and inverse-transforming:

    x = irfft2( A(k) · (a + i b) · n / √2 ),     a, b iid, mean 0, variance 1,     A(k) = (k² + k0²)^(-beta/4),

with ``A`` rescaled so that ``(1/n²) Σ_k A(k)² = 1`` over the full spectrum, which gives ``var(x) ≈ 1``.
Batches of fields are drawn at once (leading ``batch`` axis), in float32, with scipy's pocketfft on
all cores. Drawing with the batch axis first keeps a prefix property: the first ``m`` fields of a
batch of ``M`` equal a batch of ``m`` drawn from the same generator state.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft
import scipy.signal

_WORKERS = os.cpu_count() or 1
_FFT_BATCH = 32


def wavenumber_grid(n: int) -> np.ndarray:
    """Radial wavenumber |k| (cycles per domain) on the rfft2 half-plane, shape (n, n // 2 + 1)."""
    ky = np.fft.fftfreq(n) * n
    kx = np.fft.rfftfreq(n) * n
    return np.hypot(ky[:, None], kx[None, :])


def _normalise(amplitude: np.ndarray, n: int) -> np.ndarray:
    # Full-spectrum energy: the rfft half-plane counts twice except columns kx = 0 and kx = n/2.
    weight = np.full(amplitude.shape, 2.0)
    weight[:, 0] = 1.0
    if n % 2 == 0:
        weight[:, -1] = 1.0
    energy = float(np.sum(weight * amplitude**2)) / n**2
    return (amplitude / np.sqrt(energy)).astype(np.float32)


def power_law_filter(n: int, beta: float, k0: float = 1.0) -> np.ndarray:
    """Amplitude filter for PSD ∝ (k² + k0²)^(-beta/2); the mean (k = 0) is removed; unit variance.

    Returns float32 (n, n // 2 + 1), to multiply rfft2 coefficients.
    """
    k = wavenumber_grid(n)
    amplitude = (k**2 + k0**2) ** (-beta / 4.0)
    amplitude[0, 0] = 0.0
    return _normalise(amplitude, n)


def gaussian_filter(n: int, k_cut: float) -> np.ndarray:
    """Amplitude filter for a smooth large-scale field, PSD ∝ k² exp(-(k / k_cut)²), mean removed.

    Peaks at ``k = k_cut`` cycles per domain; float32 (n, n // 2 + 1), unit variance.
    """
    k = wavenumber_grid(n)
    amplitude = k * np.exp(-0.5 * (k / k_cut) ** 2)
    return _normalise(amplitude, n)


def coloured_noise(rng: np.random.Generator, batch: int, filt: np.ndarray) -> np.ndarray:
    """``batch`` independent unit-variance random fields with amplitude filter ``filt``.

    ``filt``: (n, n // 2 + 1) from :func:`power_law_filter` / :func:`gaussian_filter`.
    Returns float32 (batch, n, n). The real and imaginary parts of the spectral coefficients are
    uniform with unit variance (4x cheaper to draw than normals); each output value sums thousands
    of them, so the fields are Gaussian for all practical purposes (central limit theorem).
    """
    n = filt.shape[0]
    white = rng.random((batch,) + filt.shape + (2,), dtype=np.float32)
    white -= np.float32(0.5)
    spec = white.view(np.complex64)[..., 0]
    spec *= filt * np.float32(np.sqrt(12.0) * n / np.sqrt(2.0))
    out = np.empty((batch, n, n), dtype=np.float32)
    for start in range(0, batch, _FFT_BATCH):  # small batches stay in cache: ~2x faster
        stop = min(start + _FFT_BATCH, batch)
        out[start:stop] = scipy.fft.irfft2(spec[start:stop], s=(n, n), workers=_WORKERS, overwrite_x=True)
    return out


def ar1_filter(innovations: np.ndarray, phi: float, burn_in: int = 0) -> np.ndarray:
    """AR(1) along axis 0: ``x_t = phi x_(t-1) + sqrt(1 - phi²) e_t``, stationary unit variance.

    ``innovations``: (time, ...) unit-variance noise; the first ``burn_in`` steps are dropped.
    The process starts from ``x_0 = e_0`` (already stationary). Returns float32 (time - burn_in, ...).
    """
    if not 0.0 <= phi < 1.0:
        raise ValueError(f"AR(1) coefficient phi must be in [0, 1), got {phi}")
    scale = np.sqrt(1.0 - phi**2)
    x = scipy.signal.lfilter([scale], [1.0, -phi], innovations, axis=0)
    # lfilter starts from rest (x_0 = scale e_0); add the missing stationary start term for all t.
    t = np.arange(innovations.shape[0]).reshape((-1,) + (1,) * (innovations.ndim - 1))
    x += (1.0 - scale) * innovations[:1] * phi**t
    return x[burn_in:].astype(np.float32)
