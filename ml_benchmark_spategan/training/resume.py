"""What ``--resume`` continues: the run folder, checked first, and the run's own resolved ``config.yaml``.

A run is continued with the configuration it was started with (``RUN/config.yaml``, which holds every
``--set`` override of the original command). A ``--config`` file or ``--set`` overrides given with
``--resume`` are requests to *change* that configuration, and only keys in :data:`RESUMABLE_KEYS` may
change: they affect how long the run goes on, what it logs, or where it reads and runs, never what is
trained. Anything else is refused naming the key, before anything is read from or written to the run.

No torch import here: a bad folder or key fails in a fraction of a second.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ml_benchmark_spategan.config.loader import ConfigError, config_to_dict, load_config
from ml_benchmark_spategan.config.schema import Config

#: Keys that may differ from the run's config.yaml on resume. ``training.epochs`` extends (or shortens, down
#: to the epochs already done) a run; the others change logging cadence, the data location (the same
#: files moved, e.g. to node-local scratch), the device or the CPU threads (a requeued job may land elsewhere).
RESUMABLE_KEYS = (
    "training.epochs",
    "logging.plot_every_epochs",
    "logging.diagnostics_every_epochs",
    "logging.checkpoint_every_epochs",
    "logging.progress_bar",
    "logging.sample_day",
    "data.root",
    "data.loader.num_workers",
    "data.loader.memory_budget_gb",
    "run.root",
    "run.name",
    "device",
    "on_missing_gpu",
    "runtime.num_threads",
)


class ResumeError(RuntimeError):
    """The folder given to ``--resume`` is not a run folder that can be continued."""


def check_run_folder(folder: str | os.PathLike) -> Path:
    """``folder`` if it is a run folder with its config and ``checkpoints/last.pt``; else ResumeError."""
    folder = Path(folder)
    if not folder.exists():
        raise ResumeError(f"--resume {folder}: run folder does not exist")
    if not folder.is_dir():
        raise ResumeError(f"--resume {folder}: not a folder")
    if not (folder / "config.yaml").is_file():
        raise ResumeError(f"--resume {folder}: no config.yaml in the folder (not a run folder of this pipeline?)")
    if not (folder / "checkpoints" / "last.pt").is_file():
        raise ResumeError(f"--resume {folder}: no checkpoints/last.pt (the run stopped before its first epoch "
                          f"ended); start it again with --run-dir {folder} --resume auto")
    return folder


def folder_to_resume(resume: str | None, run_dir: str | None) -> Path | None:
    """The run folder that ``--resume RESUME [--run-dir RUN_DIR]`` continues (checked), or None for a
    fresh run (no ``--resume``, or ``auto`` with no ``RUN_DIR/checkpoints/last.pt`` yet)."""
    if resume is None:
        return None
    if resume == "auto":
        if not run_dir:
            raise ResumeError("--resume auto needs --run-dir (the run folder a requeued job continues)")
        return check_run_folder(run_dir) if (Path(run_dir) / "checkpoints" / "last.pt").is_file() else None
    folder = check_run_folder(resume)
    if run_dir and Path(run_dir).resolve() != folder.resolve():
        raise ResumeError(f"--run-dir {run_dir} and --resume {resume} name different folders")
    return folder


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def changed_keys(before: Config, after: Config) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (before, after)} for every leaf that differs."""
    old, new = _flatten(config_to_dict(before)), _flatten(config_to_dict(after))
    return {key: (old[key], new[key]) for key in old if old[key] != new[key]}


def _origin(key: str, config_path, overrides: Sequence[str]) -> str:
    for arg in overrides:
        if arg.partition("=")[0].strip() == key:
            return f"--set {arg}"
    return f"--config {config_path}" if config_path is not None else "the request"


def resume_config(folder: str | os.PathLike, config_path: str | os.PathLike | None = None,
                  overrides: Sequence[str] = ()) -> Config:
    """The configuration to continue ``folder`` with: its own ``config.yaml`` with the requested safe changes.

    Without ``config_path`` the ``overrides`` apply to the run's config.yaml; with it, the file plus
    overrides is the request and every key where it differs from the run's config counts as a change.
    Raises :class:`ConfigError` naming each key that may not change.
    """
    saved_path = Path(folder) / "config.yaml"
    saved = load_config(saved_path, stored=True)
    requested = load_config(config_path, overrides) if config_path is not None else \
        load_config(saved_path, overrides, stored=True)
    refused = {k: v for k, v in changed_keys(saved, requested).items() if k not in RESUMABLE_KEYS}
    if not refused:
        return requested
    hint = "drop --config to continue with the run's own config" if config_path is not None else \
        "start a new run to change it"
    problems = [
        f"{key}: cannot change when resuming {folder} (the run has {old!r}, {_origin(key, config_path, overrides)} "
        f"asks for {new!r}); {hint}"
        for key, (old, new) in refused.items()
    ]
    problems.append(f"keys that may change on resume: {', '.join(RESUMABLE_KEYS)}")
    raise ConfigError(problems)
