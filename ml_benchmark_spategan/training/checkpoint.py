"""Checkpoints: atomic writes, validated reads, RNG state capture.

A checkpoint is a plain dict of ``state_dict``s and small Python values (never pickled modules), written
to ``<name>.tmp``, flushed with ``fsync`` and moved into place with ``os.replace``: a crash or ``kill -9``
during a write leaves the previous file intact.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from ml_benchmark_spategan.config.loader import ConfigError, config_from_dict, config_to_dict

FORMAT_VERSION = 1
# Config entries that must agree between a checkpoint and the run that loads it.
COMPATIBILITY_KEYS = (
    "data.domain",
    "data.experiment",
    "data.target_variable",
    "data.source",
    "data.files.predictor_files",
    "data.files.predictor_variables",
    "data.files.target_file",
    "data.files.target_variable",
    "data.files.target_units",
    "data.files.predictor_grid",
    "data.target_kind",
    "data.use_orography",
    "model.name",
    "model.base",
    "model.generator",
    "model.discriminator",
    "model.unet",
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, truncated, or does not fit the run's configuration."""


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (tmp file, fsync, rename). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write checkpoint {path}: {err.strerror or err}") from err
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every filesystem allows opening a directory.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # fsync on a directory is unsupported on some filesystems; the rename already happened
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; raise :class:`CheckpointError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {err}); "
            "use another checkpoint of the run (last.pt, best.pt or checkpoint_epoch_NNN.pt)"
        ) from err
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a checkpoint of this pipeline (format_version {FORMAT_VERSION} expected)")
    return state


def _lookup(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _completed(saved: dict) -> dict:
    """``saved`` as the full config it stands for (unchanged if it does not validate: the keys then differ)."""
    try:
        return config_to_dict(config_from_dict(saved))
    except ConfigError:
        return saved


def check_compatible(state: dict, config: dict, path: str | Path) -> None:
    """Refuse a checkpoint whose model/data identity differs from ``config`` (both as plain dicts).

    Both are completed first (keys a stored config predates take their legacy value or default, as when it
    is loaded), so a key added to the schema later is not a difference."""
    saved, config = _completed(state.get("config", {})), _completed(config)
    problems = [
        f"{key}: checkpoint has {_lookup(saved, key)!r}, this run has {_lookup(config, key)!r}"
        for key in COMPATIBILITY_KEYS
        if _lookup(saved, key) != _lookup(config, key)
    ]
    if problems:
        raise CheckpointError(f"checkpoint {path} does not match this run's configuration:\n  " + "\n  ".join(problems))


def capture_rng_state() -> dict:
    """RNG states of python, numpy, torch (CPU) and every CUDA device."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
