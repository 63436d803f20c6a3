"""The radial bins of power spectra (numpy only, shared by evaluation's scores and the models' spectral loss).

See :mod:`ml_benchmark_spategan.evaluation.spectra` for the benchmark's definition of the bins and the
corrected variant.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["bin_weights"]


@lru_cache(maxsize=16)
def bin_weights(ny: int, nx: int, kind: str) -> np.ndarray:
    """Matrix W (ny*(nx//2+1), nbins): profile = |rfft2|^2 flattened @ W (radial mean per bin).

    ``kind`` is ``"benchmark"`` (offset centre, int(hypot) bins) or ``"corrected"`` (true DC, Nyquist cut).
    """
    ky, kx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    if kind == "benchmark":
        row, col = (ky + ny // 2) % ny, (kx + nx // 2) % nx  # position after fftshift
        bins = np.hypot(col - (nx - 1) / 2.0, row - (ny - 1) / 2.0).astype(np.int32)
    elif kind == "corrected":
        step = 1.0 / max(nx, ny)
        freq = np.hypot(np.fft.fftfreq(nx)[kx], np.fft.fftfreq(ny)[ky])
        bins = np.rint(freq / step).astype(np.int32)
        bins[bins > int(np.floor(0.5 / step + 1e-9))] = -1  # beyond Nyquist
    else:
        raise ValueError(f"unknown spectrum kind {kind!r}; expected 'benchmark' or 'corrected'")
    nxh = nx // 2 + 1
    mirror = kx > nx // 2  # full-plane pixels not stored by rfft2: use their Hermitian partner
    hy = np.where(mirror, (-ky) % ny, ky)
    hx = np.where(mirror, (nx - kx) % nx, kx)
    keep = bins >= 0
    nbins = int(bins.max()) + 1
    counts = np.bincount(bins[keep], minlength=nbins)
    weights = np.zeros((ny * nxh, nbins))
    np.add.at(weights, ((hy * nxh + hx)[keep], bins[keep]), 1.0 / np.maximum(counts[bins[keep]], 1))
    weights.setflags(write=False)
    return weights
