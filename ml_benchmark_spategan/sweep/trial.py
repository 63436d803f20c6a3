"""One trial: an ordinary training run in ``<sweep folder>/trials/trial_NNNN/`` with the sampled parameters.

The run folder holds what every run holds (config.yaml, log, metrics, checkpoints, plots) plus
``trial.json``: study, trial number(s), parameters, state (running, complete, pruned, failed, requeued),
objective value and, for a pruned trial, the epoch it was stopped after. A re-queued trial (its worker
died or was preempted) continues the same folder from ``checkpoints/last.pt``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ml_benchmark_spategan.config.schema import Config
from ml_benchmark_spategan.sweep.space import Space, trial_config
from ml_benchmark_spategan.sweep.study import Heartbeat, fail_and_requeue, worker_identity
from ml_benchmark_spategan.training.run import train
from ml_benchmark_spategan.training.signals import Preempted

LOGGER_NAME = "ml_benchmark_spategan_sweep"  # not a child of the training logger, which each run resets


class TrialLost(RuntimeError):
    """Another worker declared this trial lost (no heartbeat for too long) and re-queued it."""


@dataclass
class Sweep:
    """What every trial of a worker shares."""

    study: optuna.Study
    space: Space
    base: Config
    metric: str
    direction: str
    unit: str
    folder: Path
    n_trials: int


def logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def mark_run_folder(folder: Path, **fields: Any) -> None:
    """Update ``folder/trial.json`` (the run folder's link to its study and trial)."""
    path = folder / "trial.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(fields)
    _write_json(path, data)


class EpochReporter:
    """Epoch-end hook of a trial: report the objective of each validated epoch, prune when the pruner says.

    Epochs of a resumed run that the trial has not reported yet (a re-queued trial) are reported first.
    """

    def __init__(self, trial: optuna.Trial, metric: str, heartbeat: Heartbeat, pruner: str):
        self.trial, self.metric, self.heartbeat, self.pruner = trial, metric, heartbeat, pruner
        self.reported: set[int] = set()
        self.pruned_at: int | None = None

    def __call__(self, session, row: dict) -> None:
        if self.heartbeat.lost:
            raise TrialLost(f"trial {self.trial.number} was declared lost by another worker and re-queued")
        for past in session.history:
            value = past.get(self.metric)
            if past["epoch"] not in self.reported and isinstance(value, (int, float)):
                self.trial.report(float(value), past["epoch"])
                self.reported.add(past["epoch"])
        if self.metric in row and self.trial.should_prune():
            self.pruned_at = row["epoch"]
            session.logger.warning("trial %d pruned after epoch %d: %s=%.5g (%s pruner)", self.trial.number,
                                   row["epoch"], self.metric, row[self.metric], self.pruner)
            raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")


def best_value(history: list[dict], metric: str, direction: str) -> float | None:
    """Best finite ``metric`` over the epochs of a run (what best.pt holds), or None."""
    values = [float(h[metric]) for h in history if isinstance(h.get(metric), (int, float)) and math.isfinite(h[metric])]
    if not values:
        return None
    return min(values) if direction == "minimize" else max(values)


def _run_folder(sw: Sweep, trial: optuna.Trial) -> tuple[Path, list[int]]:
    """The trial's run folder and the trial numbers that used it (a retry continues its original's)."""
    frozen = sw.study._storage.get_trial(trial._trial_id)  # noqa: SLF001
    history = list(frozen.system_attrs.get("retry_history", []))
    previous = frozen.user_attrs.get("run_dir")
    if history and previous:
        return Path(previous), history + [trial.number]
    return sw.folder / "trials" / f"trial_{trial.number:04d}", [trial.number]


def claim(sw: Sweep, trial: optuna.Trial) -> None:
    """Name this worker as the trial's owner and record a first heartbeat (before any other worker looks)."""
    trial.set_user_attr("worker", worker_identity(trial.number))
    sw.study._storage.set_trial_system_attr(trial._trial_id, "heartbeat", [trial.number, time.time()])  # noqa: SLF001


def run_trial(sw: Sweep, trial: optuna.Trial) -> str:
    """Train trial ``trial`` and tell the study how it ended; returns the state's name.

    A failure of the trial itself (a sampled configuration the model rejects, a NaN loss, out of memory)
    is recorded as a failed trial and the worker goes on. A stop signal re-queues the trial and re-raises.
    """
    log = logger()
    folder, numbers = _run_folder(sw, trial)
    folder.mkdir(parents=True, exist_ok=True)
    trial.set_user_attr("run_dir", str(folder))
    mark_run_folder(folder, study=sw.study.study_name, trial=trial.number, trials=numbers, params=trial.params,
                    metric=sw.metric, direction=sw.direction, state="running", value=None, pruned_at_epoch=None,
                    error=None)
    log.info("trial %d: %s -> %s", trial.number, _params_text(trial.params), folder)
    with Heartbeat(sw.study, trial, sw.space.spec.workers.heartbeat_seconds) as heartbeat:
        reporter = EpochReporter(trial, sw.metric, heartbeat, sw.space.spec.pruner.name)
        try:
            cfg = trial_config(sw.base, trial.params, sw.metric, sw.direction, f"trial {trial.number}")
            train(cfg, run_dir=folder, resume="auto", epoch_end=[reporter])
        except optuna.TrialPruned:
            return _tell(sw, trial, folder, TrialState.PRUNED, pruned_at_epoch=reporter.pruned_at)
        except TrialLost as err:
            log.warning("%s; dropping it", err)
            mark_run_folder(folder, state="requeued", error=str(err))
            return "LOST"
        except (Preempted, KeyboardInterrupt) as err:
            reason = f"worker stopped ({err or type(err).__name__})"
            fail_and_requeue(sw.study, trial._trial_id, reason, sw.space.spec.workers.max_retries)  # noqa: SLF001
            mark_run_folder(folder, state="requeued", error=reason)
            log.warning("trial %d: %s; re-queued", trial.number, reason)
            raise
        except Exception as err:  # noqa: BLE001 - a failure of one trial (NaN loss, OOM, ...) is recorded; the study goes on
            log.exception("trial %d failed", trial.number)
            return _tell(sw, trial, folder, TrialState.FAIL, error=f"{type(err).__name__}: {err}")
    history = json.loads((folder / "history.json").read_text())
    value = best_value(history, sw.metric, sw.direction)
    if value is None:
        return _tell(sw, trial, folder, TrialState.FAIL, error=f"no finite {sw.metric} in any validated epoch")
    return _tell(sw, trial, folder, TrialState.COMPLETE, value=value)


def _tell(sw: Sweep, trial: optuna.Trial, folder: Path, state: TrialState, value: float | None = None,
          error: str | None = None, pruned_at_epoch: int | None = None) -> str:
    try:
        if error:
            trial.set_user_attr("error", error[:2000])
        frozen = sw.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        logger().warning("trial %d was declared lost by another worker meanwhile; its result is dropped "
                         "(the re-queued copy runs it again)", trial.number)
        return "LOST"
    mark_run_folder(folder, state=state.name.lower(), value=frozen.value, error=error, pruned_at_epoch=pruned_at_epoch)
    shown = "" if frozen.value is None else f" {sw.metric}={frozen.value:.5g} {sw.unit}"
    logger().info("trial %d %s%s%s", trial.number, state.name.lower(), shown, f" ({error})" if error else "")
    return state.name


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
