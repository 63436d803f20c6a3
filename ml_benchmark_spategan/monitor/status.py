"""``<run>/status.json``: what a run is doing now, written by the trainer, read by the status table and the
dashboard.

The trainer rewrites the file (atomically) on every state change and from a heartbeat thread every
:data:`HEARTBEAT_SECONDS`, also while it validates or writes checkpoints. Readers trust a run's own state
unless its heartbeat is stale: then a run on this host whose pid is gone reads as ``lost``; a run on
another host (a compute node seen from a login node) reads as ``lost`` once the heartbeat is older than
:data:`LOST_ELSEWHERE_SECONDS`, since its pid cannot be checked from here.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ml_benchmark_spategan.monitor.files import STATUS_FILE, write_json_atomic

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 60.0  # a heartbeat older than this is stale
LOST_ELSEWHERE_SECONDS = 600.0
ACTIVE_STATES = ("starting", "training", "validating", "evaluating")
FINAL_STATES = ("finished", "failed", "stopped", "requeued", "lost")


def iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return _dt.datetime.fromtimestamp(stamp, _dt.timezone.utc).isoformat(timespec="seconds")


class StatusFile:
    """The trainer's side: fields in memory, written on state changes and by a heartbeat thread.

    ``snapshot`` (called at each write) adds fields computed on demand (progress, ETA, samples/s).
    """

    def __init__(self, run_dir: Path, snapshot: Callable[[], dict] | None = None,
                 interval: float = HEARTBEAT_SECONDS) -> None:
        self.path = Path(run_dir) / STATUS_FILE
        self.interval = interval
        self._snapshot = snapshot or dict
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.fields: dict = {
            "run": Path(run_dir).name, "state": "starting", "error": None, "host": socket.gethostname(),
            "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "started": iso(time.time()),
        }

    @property
    def state(self) -> str:
        return self.fields["state"]

    def set_state(self, state: str, **fields) -> None:
        """Change the state (and any fields) and write at once."""
        self.fields.update(fields, state=state)
        self.write()

    def write(self) -> None:
        with self._lock:
            now = time.time()
            data = {**self.fields, **self._snapshot(), "heartbeat": now, "heartbeat_iso": iso(now)}
            write_json_atomic(self.path, data)

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="status-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._wake.wait(self.interval):
            try:
                self.write()
            except OSError:  # a full or flaky filesystem must not kill the run; the next beat retries
                pass

    def close(self) -> None:
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@contextmanager
def evaluating(run_dir: str | Path, label: str) -> Iterator[None]:
    """State ``evaluating`` (with a heartbeat) while an evaluation of a run that is not training runs; the
    run's own state afterwards, with ``last_evaluation``. A run without status.json is left alone."""
    path = Path(run_dir) / STATUS_FILE
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        before = None
    if before is None or effective_state(before) in ACTIVE_STATES:  # none, or a live trainer owns the file
        yield
        return
    status = StatusFile(Path(run_dir))
    status.fields = {**before, **{k: status.fields[k] for k in ("host", "pid", "slurm_job_id")}, "evaluation": label}
    status.set_state("evaluating")
    status.start_heartbeat()
    try:
        yield
    finally:
        status.close()
        status.fields = {**before, "last_evaluation": label, "last_evaluation_time": iso(time.time())}
        status.write()


# --- the readers' side ------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def effective_state(status: dict, now: float | None = None) -> str:
    """The state to show: the file's, or ``lost`` for an active run that stopped beating (see module doc)."""
    state = status.get("state", "unknown")
    if state not in ACTIVE_STATES:
        return state
    age = (now or time.time()) - float(status.get("heartbeat") or 0.0)
    if age <= STALE_SECONDS:
        return state
    if status.get("host") == socket.gethostname():
        return state if _pid_alive(int(status.get("pid") or 0)) else "lost"
    return "lost" if age > LOST_ELSEWHERE_SECONDS else state


def read_status(run_dir: str | Path, now: float | None = None) -> dict | None:
    """``status.json`` of a run with ``state`` made effective (the file's own in ``reported_state``);
    None for a folder without one (a run from before status files, or not a run)."""
    path = Path(run_dir) / STATUS_FILE
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError) as err:
        return {"run": Path(run_dir).name, "state": "unreadable", "error": f"{path}: {err}"}
    status["reported_state"] = status.get("state")
    status["state"] = effective_state(status, now)
    status["folder"] = str(Path(run_dir))
    return status


def scan_runs(root: str | Path) -> list[dict]:
    """Statuses of the run folders directly under ``root`` (or of ``root`` itself if it is a run), newest first."""
    root = Path(root)
    if (root / STATUS_FILE).is_file():
        folders = [root]
    else:
        folders = sorted((p for p in root.iterdir() if p.is_dir()), reverse=True) if root.is_dir() else []
    found = [read_status(folder) for folder in folders]
    return [s for s in found if s is not None]
