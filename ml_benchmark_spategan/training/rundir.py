"""Run folders (``runs/YYYYMMDD_HHMMSS_<id>/``), the run log, and device selection."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import secrets
import sys
import warnings
from pathlib import Path

import torch

LOGGER_NAME = "ml_benchmark_spategan"


class RunDirError(RuntimeError):
    """The run folder cannot be created or written."""


def check_writable(folder: Path) -> None:
    """Raise :class:`RunDirError` unless ``folder`` (or its nearest existing parent) is writable."""
    probe = Path(folder).resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(f"run folder root {folder} is not writable (checked {probe}); set run.root to a writable folder")


def run_dir_name(name: str = "", now: _dt.datetime | None = None) -> str:
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d_%H%M%S")
    suffix = f"_{name}" if name else ""
    return f"{stamp}_{secrets.token_hex(3)}{suffix}"


def create_run_dir(root: str | Path, name: str = "", explicit: str | Path | None = None,
                   allow_unfinished: bool = False) -> Path:
    """Create a fresh run folder (``explicit`` if given, else a timestamped one under ``root``).

    ``allow_unfinished`` (``--resume auto``): an existing folder without ``checkpoints/last.pt`` (a job
    that died before its first checkpoint) is started afresh.
    """
    folder = Path(explicit) if explicit else Path(root) / run_dir_name(name)
    check_writable(folder.parent)
    if folder.exists() and not folder.is_dir():
        raise RunDirError(f"run folder {folder} exists and is not a folder")
    unfinished = allow_unfinished and not (folder / "checkpoints" / "last.pt").exists()
    if folder.exists() and any(folder.iterdir()) and not unfinished:
        raise RunDirError(f"run folder {folder} already exists and is not empty; use --resume {folder} to continue it")
    try:
        for sub in ("checkpoints", "sample_plots", "normalization"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot create run folder {folder}: {err.strerror or err}") from err
    return folder


def setup_logging(run_dir: Path | None, *, console: bool = True) -> logging.Logger:
    """Logger writing the same lines to the console and to ``run_dir/training.log``."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = []
    if console:
        handlers.append(logging.StreamHandler(sys.stdout))
    if run_dir is not None:
        handlers.append(logging.FileHandler(Path(run_dir) / "training.log", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def close_logging() -> None:
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def resolve_device(device: str, on_missing_gpu: str) -> torch.device:
    """``auto`` -> CUDA if available else CPU; an absent requested GPU falls back (warning) or fails."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise RunDirError(f"device: {device!r} is not a device name (expected auto, cpu, cuda or cuda:N)") from err
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        message = f"device: {device!r} requested but {torch.cuda.device_count()} CUDA device(s) are available"
        if on_missing_gpu == "error":
            raise RunDirError(message + " (on_missing_gpu: error)")
        warnings.warn(message + "; falling back to CPU (on_missing_gpu: fallback)", stacklevel=2)
        return torch.device("cpu")
    return dev
