"""The monitor's files in a run folder and how they are written (atomically: a reader on a shared
filesystem sees the old file or the new one, never half of one)."""

from __future__ import annotations

import json
import os
from pathlib import Path

STATUS_FILE = "status.json"
STOP_FILE = "STOP"  # its presence asks the trainer to checkpoint at the next step and exit with "stopped"
TENSORBOARD_DIR = "tensorboard"


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def request_stop(run_dir: str | Path, reason: str = "stop requested") -> Path:
    """Write ``<run>/STOP``: the trainer checkpoints after its next step and exits 0 with state "stopped"."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder {folder} does not exist")
    path = folder / STOP_FILE
    tmp = folder / f".{STOP_FILE}.tmp"
    tmp.write_text(reason + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def stop_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / STOP_FILE
