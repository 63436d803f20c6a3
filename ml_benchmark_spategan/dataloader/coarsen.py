"""Block-averaging of the target grid (``data.target_coarsen``), for quick experiments on a coarser target.

A coarse cell is the mean of the ``factor x factor`` fine cells it covers, over the fine cells that are
finite: NaN cells are skipped, and a coarse cell is NaN only when ALL its fine cells are NaN on that day.
(A coastal cell therefore keeps the mean of its land cells instead of vanishing: the "any NaN" rule would
shrink a land-only target by a ring of cells per coast.) Both grid sizes must be divisible by the factor.

One reduction (:func:`nanmean_axes`) serves the lazy xarray path (masks, statistics, evaluation truth) and
the numpy block reader of the torch bridge, so both give bit-identical values. 2-D coordinates (ALPS
lat/lon) are averaged the same way (they have no NaN).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ml_benchmark_spategan.dataloader.errors import DataError


def nanmean_axes(x, axis: tuple[int, ...]):
    """Mean over ``axis`` of the finite values (float64 sums, float32 result); NaN where none is finite.
    Works on numpy and dask arrays."""
    finite = np.isfinite(x)
    total = np.where(finite, x, 0.0).astype(np.float64).sum(axis=axis)
    count = finite.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def check_factor(shape: tuple[int, int], factor: int, what: str) -> None:
    """DataError unless both sizes of ``shape`` are divisible by ``factor`` (>= 1)."""
    if int(factor) < 1:
        raise DataError(f"data.target_coarsen: expected an integer >= 1, found {factor}")
    if any(int(n) % int(factor) for n in shape):
        raise DataError(f"data.target_coarsen={factor}: the grid of {what} is {tuple(int(n) for n in shape)}, "
                        f"not divisible by {factor} (choose a factor dividing both sizes)")


def block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """(..., H, W) -> (..., H/factor, W/factor) NaN-aware block means (see the module docstring)."""
    if factor == 1:
        return values
    *lead, h, w = values.shape
    check_factor((h, w), factor, "the target block")
    blocks = values.reshape(*lead, h // factor, factor, w // factor, factor)
    return nanmean_axes(blocks, axis=(len(lead) + 1, len(lead) + 3))


def coarsen_field(da: xr.DataArray, factor: int, what: str) -> xr.DataArray:
    """A (..., row, col) DataArray block-averaged over its last two dims (lazy for dask inputs)."""
    if factor == 1:
        return da
    row, col = da.dims[-2:]
    check_factor((da.sizes[row], da.sizes[col]), factor, what)
    out = da.coarsen({row: factor, col: factor}, coord_func=_coord_mean).reduce(nanmean_axes)
    return out.astype(np.float32).assign_attrs(da.attrs).rename(da.name)


def _coord_mean(x, axis):
    return np.asarray(x, dtype=np.float64).mean(axis=axis)
