"""Load a trained run and predict ensembles as xarray (the model -> xarray crossing).

``load_run`` rebuilds the models from a checkpoint's geometry and config, and the normalisers, the target
mask and the target's metadata from the run folder; ``predict_ensemble`` turns lazily opened predictors
into a ``(member, time, row, col)`` DataArray in the target's physical units (carried unchanged, as
``units``) on the target grid's exact coordinates, with the predictors' own times, NaN in the cells that
were NaN on every training day.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ml_benchmark_spategan.config.loader import config_from_dict
from ml_benchmark_spategan.config.schema import Config
from ml_benchmark_spategan.dataloader.mask import load_target_mask
from ml_benchmark_spategan.dataloader.normalization import Normalizers
from ml_benchmark_spategan.dataloader.torch_bridge import TorchNormalizer
from ml_benchmark_spategan.model.baselines import sample_members
from ml_benchmark_spategan.model.registry import ModelBundle
from ml_benchmark_spategan.training.checkpoint import CheckpointError, load_checkpoint
from ml_benchmark_spategan.training.session import build_models
from ml_benchmark_spategan.utils.memory import keep_freed_memory
from ml_benchmark_spategan.utils.progress import track
from ml_benchmark_spategan.variables import VariableInfo, default_info


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
    mask: xr.DataArray | None = None  # (row, col) True where the target was valid on some training day
    info: VariableInfo | None = None  # the target's kind, units and CF names
    weights: str = "trained"  # the generator's weights: "ema" (G_ema of the checkpoint) or "trained"

    @property
    def target(self) -> VariableInfo:
        """The target's :class:`VariableInfo` (from the name for runs that did not record it)."""
        return self.info or default_info(self.geometry["target_variable"])


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


def load_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu",
             use_ema: bool = True) -> LoadedRun:
    """Rebuild a run's generator (and discriminator) from a checkpoint, plus its normalisers.

    The generator gets the checkpoint's G_ema weights when it has them (``training.ema``) and ``use_ema``,
    else the trained weights; ``LoadedRun.weights`` says which."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir} is not a run folder (no config.yaml)")
    path = checkpoint_path(run_dir, which)
    if which == "best" and not path.is_file():
        path = checkpoint_path(run_dir, "last")  # a run whose metric never improved has no best.pt
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    device = torch.device(device)
    bundle = build_models(cfg.model, state["geometry"], device)
    weights = "ema" if use_ema and state.get("generator_ema") else "trained"
    bundle.generator.load_state_dict(state["generator_ema"]["module"] if weights == "ema" else state["generator"])
    if bundle.discriminator is not None and state.get("discriminator") is not None:
        bundle.discriminator.load_state_dict(state["discriminator"])
    normalizers = Normalizers.load(run_dir / "normalization")
    saved = load_target_mask(run_dir / "normalization")
    mask = saved[0] if saved else None
    info = VariableInfo.from_dict(state["geometry"]["target"]) if "target" in state["geometry"] else \
        (saved[1] if saved else None)
    return LoadedRun(run_dir, cfg, state["geometry"], bundle, normalizers, path.name, int(state["epoch"]), device,
                     mask, info, weights)


def _static(run: LoadedRun, orography: xr.DataArray | None) -> torch.Tensor | None:
    if not run.geometry["static_channels"]:
        return None
    if orography is None:
        raise CheckpointError("this run was trained with orography; pass the static field to predict")
    values = run.normalizers.static.transform(orography).values.astype(np.float32)
    return torch.from_numpy(values).reshape(1, 1, *values.shape[-2:]).to(run.device)


@torch.inference_mode()
def predict_array(run: LoadedRun, x_norm: np.ndarray, members: int, batch_size: int,
                  static_hr: torch.Tensor | None, doy: np.ndarray | None = None, progress: str = "") -> np.ndarray:
    """Normalised predictors (T, C, h, w) -> physical ensemble (members, T, H, W) float32.

    ``doy`` (T,) day of year, for generators that take it (:func:`~.model.baselines.sample_members`).
    All members of a batch of days come from one forward pass; the output is allocated once and each
    batch is copied straight into its slice (no per-batch host arrays); freed memory is kept for reuse
    (:func:`~.utils.memory.keep_freed_memory`), so batches do not page-fault their buffers in again.
    ``progress``: a description shows progress with an ETA (:mod:`.utils.progress`); empty = none."""
    keep_freed_memory()
    generator = run.bundle.generator.eval()
    inverse = TorchNormalizer.from_normalizer(run.normalizers.target, device=run.device)
    out = np.empty((members, x_norm.shape[0], *run.geometry["out_shape"]), dtype=np.float32)
    out_t = torch.from_numpy(out)  # shares memory with ``out``
    starts = range(0, x_norm.shape[0], batch_size)
    for start in track(starts, progress, unit="batches", enabled=bool(progress)):
        x = torch.from_numpy(x_norm[start:start + batch_size]).to(run.device)
        day = None if doy is None else torch.from_numpy(np.asarray(doy[start:start + batch_size])).to(run.device)
        samples = sample_members(generator, x, members, static_hr, day)  # (B, M, H, W), normalised
        phys = inverse.inverse(samples.float())
        out_t[:, start:start + x.shape[0]].copy_(phys.permute(1, 0, 2, 3))
    return out


def predict_ensemble(run: LoadedRun, predictors: xr.DataArray, target_like: xr.DataArray, members: int,
                     batch_size: int = 64, orography: xr.DataArray | None = None, progress: str = "") -> xr.DataArray:
    """Ensemble prediction ``(member, time, row, col)`` in physical units.

    ``predictors``: (time, channel, lat, lon) in the run's channel order; ``target_like``: any DataArray
    on the target grid (its spatial coordinates, including 2-D lat/lon, are copied exactly). ``progress``:
    as in :func:`predict_array`.
    """
    names = list(run.geometry["predictor_names"])
    if [str(c) for c in predictors["channel"].values] != names:
        raise CheckpointError(f"predictor channels {list(predictors['channel'].values)} differ from the run's {names}")
    x_norm = run.normalizers.predictors.transform(predictors).values.astype(np.float32)
    doy = np.asarray(predictors["time"].dt.dayofyear.values, dtype=np.int64)
    values = predict_array(run, x_norm, members, batch_size, _static(run, orography), doy, progress)
    if run.mask is not None and not bool(run.mask.all()):
        values[..., ~run.mask.values] = np.nan  # in place: cells never valid in training
    row, col = target_like.dims[-2:]
    spatial = {k: v for k, v in target_like.coords.items() if set(v.dims) <= {row, col}}
    da = xr.DataArray(values, dims=("member", "time", row, col),
                      coords={"member": np.arange(members), "time": predictors["time"].values, **spatial},
                      name=run.geometry["target_variable"])
    da.attrs = prediction_attrs(run, target_like)
    return da


def prediction_attrs(run: LoadedRun, target_like: xr.DataArray | None = None) -> dict:
    """CF attributes of a prediction: the target's units (unchanged), names and grid mapping."""
    info = run.target
    attrs = {"units": info.units, "long_name": info.long_name or f"predicted {info.name}"}
    if info.standard_name:
        attrs["standard_name"] = info.standard_name
    mapping = str((target_like.attrs if target_like is not None else {}).get("grid_mapping", "") or "")
    if mapping and target_like is not None and mapping in target_like.coords:
        attrs["grid_mapping"] = mapping
    return attrs
