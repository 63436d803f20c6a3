"""The status table: one row of display strings per run (the status command and the dashboard's run list)."""

from __future__ import annotations

import time

COLUMNS = ("run", "state", "epoch", "step", "progress", "samples/s", "eta", "best", "heartbeat", "where")


def duration(seconds: float | None) -> str:
    """``1d 02:03:04`` / ``02:03:04`` / ``-``."""
    if seconds is None:
        return "-"
    seconds = int(round(max(seconds, 0.0)))
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def progress_fraction(status: dict) -> float | None:
    total = status.get("steps_total")
    if not total:
        return 1.0 if status.get("state") == "finished" else None
    return min(float(status.get("step") or 0) / float(total), 1.0)


def _best(status: dict) -> str:
    if status.get("best") is None:
        return "-"
    return f"{status.get('best_metric', 'best')}={status['best']:.4g} @{status.get('best_epoch')}"


def _where(status: dict) -> str:
    job = f" job {status['slurm_job_id']}" if status.get("slurm_job_id") else ""
    return f"{status.get('host', '?')}:{status.get('pid', '?')}{job}"


def status_row(status: dict, now: float | None = None) -> dict[str, str]:
    now = now or time.time()
    frac = progress_fraction(status)
    active = status.get("state") in ("starting", "training", "validating", "evaluating")
    rate = status.get("samples_per_s")
    state = status.get("state", "?")
    if status.get("error") and state == "failed":
        state = f"failed: {status['error']}"[:80]
    return {
        "run": status.get("run", "?"),
        "state": state,
        "epoch": f"{status.get('epoch', 0)}/{status.get('epochs', '?')}",
        "step": f"{status.get('step', 0)}/{status.get('steps_total', '?')}",
        "progress": "-" if frac is None else f"{100 * frac:.0f}%",
        "samples/s": "-" if rate is None or not active else f"{rate:.1f}",
        "eta": duration(status.get("eta_s")) if active else "-",
        "best": _best(status),
        "heartbeat": duration(now - float(status["heartbeat"])) + " ago" if status.get("heartbeat") else "-",
        "where": _where(status),
    }


def format_table(rows: list[dict[str, str]], columns=COLUMNS) -> str:
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)
