"""The Start button: a new training run from a config file and ``--set`` overrides, as a background
process on this machine, or ``sbatch slurm/train.sbatch`` when ``sbatch`` is on PATH.

The overrides are checked first with ``training_v2.py --dry-run`` (nothing created), so a typo shows up
on the page instead of in a job's log.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LAUNCH_LOGS = ".launch"  # under the runs root: console output of runs started here
_children: list[subprocess.Popen] = []


@dataclass(frozen=True)
class Launch:
    ok: bool
    message: str
    run_dir: Path | None = None


def parse_overrides(text: str) -> list[str]:
    """One ``key.path=value`` per line (blank lines and ``#`` comments skipped; a leading ``--set`` allowed)."""
    out = []
    for raw in text.splitlines():
        line = raw.strip().removeprefix("--set").strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"override {line!r}: expected key.path=value")
        out.append(line)
    return out


def new_run_name(now: _dt.datetime | None = None) -> str:
    return f"{(now or _dt.datetime.now()).strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(3)}"


def _set_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def check(repo: Path, config: str, overrides: list[str]) -> str | None:
    """The error of ``training_v2.py --dry-run`` for these arguments (None when the config is valid)."""
    cmd = [sys.executable, str(repo / "training_v2.py"), "--config", config, *_set_args(overrides), "--dry-run"]
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=120)
    return None if result.returncode == 0 else (result.stderr.strip() or f"exit status {result.returncode}")


def start(repo: Path, runs_root: Path, config: str, overrides: list[str], use_sbatch: bool | None = None) -> Launch:
    """Check, then start a run in ``runs_root/<new name>``: sbatch if asked (default: when on PATH), else a
    detached local process whose console output goes to ``runs_root/.launch/<name>.log``."""
    if not config or not (repo / config).is_file() and not Path(config).is_file():
        return Launch(False, f"config file {config!r} not found (relative to {repo})")
    error = check(repo, config, overrides)
    if error:
        return Launch(False, error)
    run_dir = Path(runs_root).resolve() / new_run_name()
    sbatch = shutil.which("sbatch") if use_sbatch is not False else None
    if use_sbatch and not sbatch:
        return Launch(False, "sbatch is not on PATH")
    if sbatch:
        return _submit(sbatch, repo, config, overrides, run_dir)
    return _spawn(repo, config, overrides, run_dir)


def _spawn(repo: Path, config: str, overrides: list[str], run_dir: Path) -> Launch:
    logs = run_dir.parent / LAUNCH_LOGS
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{run_dir.name}.log"
    cmd = [sys.executable, str(repo / "training_v2.py"), "--config", config, *_set_args(overrides),
           "--run-dir", str(run_dir)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=repo, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # survives the dashboard; not killed by its Ctrl-C
    _children.append(proc)
    return Launch(True, f"started pid {proc.pid}: {' '.join(cmd)} (console output: {log})", run_dir)


def _submit(sbatch: str, repo: Path, config: str, overrides: list[str], run_dir: Path) -> Launch:
    (repo / "logs").mkdir(exist_ok=True)  # the job script's --output folder
    env = f"ALL,CONFIG={config},RUN_DIR={run_dir}"
    cmd = [sbatch, f"--export={env}", "slurm/train.sbatch", *_set_args(overrides)]
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        return Launch(False, f"sbatch failed ({result.returncode}): {result.stderr.strip()}")
    return Launch(True, f"{result.stdout.strip()} ({' '.join(cmd)})", run_dir)


def reap() -> None:
    """Collect finished children (a zombie would still look alive to the 'lost' check)."""
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def default_repo() -> Path:
    """The checkout holding training_v2.py: the one this package lives in, else the current folder."""
    here = Path(__file__).resolve().parents[3]
    return here if (here / "training_v2.py").is_file() else Path(os.getcwd())
