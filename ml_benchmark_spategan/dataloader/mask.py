"""The target's validity mask of a run: cells NaN on every training day (e.g. sea in gridded observations)
are invalid, and every prediction written from the run is NaN there.

The mask is saved in the run folder (``normalization/target_mask.nc``) with the target's metadata (kind,
units, CF names), which prediction files and evaluation reuse.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from ml_benchmark_spategan.dataloader.errors import DataError
from ml_benchmark_spategan.variables import VariableInfo

MASK_FILE = "target_mask.nc"


def training_mask(train) -> xr.DataArray:
    """(row, col) bool: True where the target of the split ``train`` is finite on at least one day."""
    return np.isfinite(train.target).any("time").compute().rename("valid")


def save_target_mask(folder: str | Path, mask: xr.DataArray, info: VariableInfo) -> Path:
    """Write ``mask`` (int8 1/0) and ``info`` (as attributes) to ``folder/target_mask.nc`` atomically."""
    path = Path(folder) / MASK_FILE
    ds = mask.astype(np.int8).to_dataset(name="valid")
    ds.attrs = {f"target_{k}": str(v) for k, v in info.to_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    ds.to_netcdf(tmp)
    os.replace(tmp, path)
    return path


def load_target_mask(folder: str | Path) -> tuple[xr.DataArray, VariableInfo] | None:
    """(mask (row, col) bool, target info) written by :func:`save_target_mask`, or None (older runs)."""
    path = Path(folder) / MASK_FILE
    if not path.is_file():
        return None
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read the run's target mask ({err})") from err
    info = VariableInfo.from_dict({k.removeprefix("target_"): v for k, v in ds.attrs.items()})
    return ds["valid"].astype(bool), info
