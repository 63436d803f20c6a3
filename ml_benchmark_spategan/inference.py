"""Load a trained run and predict ensembles as xarray (the model -> xarray crossing).

``load_run`` rebuilds the models from a checkpoint's geometry and config, and the normalisers from the
run folder; ``predict_ensemble`` turns lazily opened predictors into a ``(member, time, row, col)``
DataArray in physical units on the target grid's exact coordinates, with the predictors' own times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ml_benchmark_spategan.config.loader import config_from_dict
from ml_benchmark_spategan.config.schema import Config
from ml_benchmark_spategan.dataloader.normalization import Normalizers
from ml_benchmark_spategan.dataloader.torch_bridge import TorchNormalizer
from ml_benchmark_spategan.model.registry import ModelBundle
from ml_benchmark_spategan.training.checkpoint import CheckpointError, load_checkpoint
from ml_benchmark_spategan.training.session import build_models


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: Config
    geometry: dict
    bundle: ModelBundle
    normalizers: Normalizers
    checkpoint: str
    epoch: int
    device: torch.device


def checkpoint_path(run_dir: str | Path, which: str) -> Path:
    """``best``, ``last``, ``final`` or ``epoch_N`` -> the checkpoint file of a run folder."""
    folder = Path(run_dir) / "checkpoints"
    if which in ("best", "last"):
        return folder / f"{which}.pt"
    if which == "final":
        return folder / "final_generator.pt"
    if which.startswith("epoch_") and which[6:].isdigit():
        return folder / f"checkpoint_epoch_{int(which[6:]):03d}.pt"
    raise CheckpointError(f"--checkpoint {which!r}: expected best, last, final or epoch_N")


def load_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a run's generator (and discriminator) from a checkpoint, plus its normalisers."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir} is not a run folder (no config.yaml)")
    path = checkpoint_path(run_dir, which)
    if which == "best" and not path.is_file():
        path = checkpoint_path(run_dir, "last")  # a run whose metric never improved has no best.pt
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    device = torch.device(device)
    bundle = build_models(cfg, state["geometry"], device)
    bundle.generator.load_state_dict(state["generator"])
    if bundle.discriminator is not None and state.get("discriminator") is not None:
        bundle.discriminator.load_state_dict(state["discriminator"])
    normalizers = Normalizers.load(run_dir / "normalization")
    return LoadedRun(run_dir, cfg, state["geometry"], bundle, normalizers, path.name, int(state["epoch"]), device)


def _static(run: LoadedRun, orography: xr.DataArray | None) -> torch.Tensor | None:
    if not run.geometry["static_channels"]:
        return None
    if orography is None:
        raise CheckpointError("this run was trained with orography; pass the static field to predict")
    values = run.normalizers.static.transform(orography).values.astype(np.float32)
    return torch.from_numpy(values).reshape(1, 1, *values.shape[-2:]).to(run.device)


@torch.no_grad()
def predict_array(run: LoadedRun, x_norm: np.ndarray, members: int, batch_size: int,
                  static_hr: torch.Tensor | None) -> np.ndarray:
    """Normalised predictors (T, C, h, w) -> physical ensemble (members, T, H, W) float32."""
    generator = run.bundle.generator.eval()
    inverse = TorchNormalizer.from_normalizer(run.normalizers.target, device=run.device)
    out = np.empty((members, x_norm.shape[0], *run.geometry["out_shape"]), dtype=np.float32)
    for start in range(0, x_norm.shape[0], batch_size):
        x = torch.from_numpy(x_norm[start:start + batch_size]).to(run.device)
        samples = generator.sample(x, members, static_hr=static_hr)  # (B, M, H, W), normalised
        phys = inverse.inverse(samples.float())
        out[:, start:start + x.shape[0]] = phys.permute(1, 0, 2, 3).cpu().numpy()
    return out


def predict_ensemble(run: LoadedRun, predictors: xr.DataArray, target_like: xr.DataArray, members: int,
                     batch_size: int = 64, orography: xr.DataArray | None = None) -> xr.DataArray:
    """Ensemble prediction ``(member, time, row, col)`` in physical units.

    ``predictors``: (time, channel, lat, lon) in the run's channel order; ``target_like``: any DataArray
    on the target grid (its spatial coordinates, including 2-D lat/lon, are copied exactly).
    """
    names = list(run.geometry["predictor_names"])
    if [str(c) for c in predictors["channel"].values] != names:
        raise CheckpointError(f"predictor channels {list(predictors['channel'].values)} differ from the run's {names}")
    x_norm = run.normalizers.predictors.transform(predictors).values.astype(np.float32)
    values = predict_array(run, x_norm, members, batch_size, _static(run, orography))
    row, col = target_like.dims[-2:]
    spatial = {k: v for k, v in target_like.coords.items() if set(v.dims) <= {row, col}}
    da = xr.DataArray(values, dims=("member", "time", row, col),
                      coords={"member": np.arange(members), "time": predictors["time"].values, **spatial},
                      name=run.geometry["target_variable"])
    return da
