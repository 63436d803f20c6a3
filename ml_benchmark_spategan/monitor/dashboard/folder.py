"""What the dashboard reads from a run folder (plain files; no Panel, no torch)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

LOG_FILE = "training.log"
_RUN_NAME = re.compile(r"^[\w.\-]+$")


def run_folder(root: Path, name: str) -> Path | None:
    """``root/name`` when ``name`` is a plain folder name of an existing folder (never a path out of root)."""
    if not name or not _RUN_NAME.match(name) or name in (".", ".."):
        return None
    folder = Path(root) / name
    return folder if folder.is_dir() else None


def metrics(folder: Path) -> dict[str, list[float]]:
    """metrics.csv as columns of floats (NaN where an epoch has no value); {} before the first epoch."""
    path = folder / "metrics.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for name in rows[0] if rows else []:
        try:
            columns[name] = [float(r[name]) if r.get(name) not in ("", None) else math.nan for r in rows]
        except ValueError:
            continue
    return columns


def log_tail(folder: Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    path = folder / LOG_FILE
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(size - max_bytes, 0))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def latest(folder: Path, pattern: str) -> Path | None:
    """The newest file matching ``pattern`` by name (epoch numbers are zero-padded)."""
    found = sorted(folder.glob(pattern))
    return found[-1] if found else None


def evaluations(folder: Path) -> dict[str, dict]:
    """``evaluation/<label>/``: its summary.md text and PNG paths, by label."""
    out: dict[str, dict] = {}
    root = folder / "evaluation"
    for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        summary = sub / "summary.md"
        out[sub.name] = {"summary": summary.read_text(encoding="utf-8") if summary.is_file() else "",
                         "figures": sorted(sub.glob("*.png"))}
    return out


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""
