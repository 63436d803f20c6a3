"""Per-epoch metric history: ``metrics.csv`` and ``history.json`` (one row per epoch)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_history(run_dir: Path, rows: list[dict]) -> None:
    """Rewrite ``metrics.csv`` and ``history.json`` from all rows (columns = union of keys, in order seen)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    json_rows = [{k: _json_value(v) for k, v in row.items()} for row in rows]
    _atomic_write_text(run_dir / "history.json", json.dumps(json_rows, indent=1) + "\n")
    tmp = run_dir / "metrics.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    os.replace(tmp, run_dir / "metrics.csv")


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_value(value):
    return repr(value) if isinstance(value, float) else value


def series(rows: list[dict], key: str) -> list[float]:
    """Values of ``key`` over epochs (NaN where an epoch did not record it)."""
    return [float(r[key]) if r.get(key) is not None else math.nan for r in rows]
