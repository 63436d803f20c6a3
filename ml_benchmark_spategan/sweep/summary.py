"""The result of a sweep, written into the sweep folder by each worker when it stops (and by ``--summary``):

* ``best_config.yaml``: the best trial's full configuration; ``training_v2.py --config best_config.yaml``
  trains it as it is (add ``--set training.epochs=N`` for a longer run);
* ``trials.csv``: one row per trial (state, objective, epochs, run folder, parameters, error);
* ``optimization_history.png``, ``learning_curves.png``, ``param_importances.png`` (the last once two
  trials have completed).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path

import optuna
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from ml_benchmark_spategan.config.loader import dump_config
from ml_benchmark_spategan.sweep.space import trial_config
from ml_benchmark_spategan.sweep.study import requeued_numbers
from ml_benchmark_spategan.sweep.trial import Sweep, logger
from ml_benchmark_spategan.visualization.sweep import (
    plot_learning_curves,
    plot_optimization_history,
    plot_param_importances,
)


def _state(trial: FrozenTrial, requeued: set[int]) -> str:
    if trial.state == TrialState.FAIL and trial.number in requeued:
        return "requeued"
    return trial.state.name.lower()


def _replace(path: Path, write) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_trials_csv(sw: Sweep, trials: list[FrozenTrial], path: Path) -> Path:
    requeued = requeued_numbers(trials)
    params = list(sw.space.distributions)
    header = ["trial", "state", f"{sw.metric} [{sw.unit}]", "epochs_reported", "pruned_at_epoch", "duration_s",
              "retry_of", "run_dir", "error"] + params
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for t in trials:
        state = _state(t, requeued)
        duration = t.duration.total_seconds() if t.duration else ""
        error = t.user_attrs.get("error") or (t.user_attrs.get("lost") if t.state == TrialState.FAIL else "") or ""
        pruned_at = t.last_step if t.state == TrialState.PRUNED else ""
        writer.writerow([t.number, state, "" if t.value is None else t.value, len(t.intermediate_values), pruned_at,
                         duration, t.system_attrs.get("failed_trial", ""), t.user_attrs.get("run_dir", ""),
                         error] + [t.params.get(p, "") for p in params])
    return _replace(path, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8"))


def write_best_config(sw: Sweep, best: FrozenTrial, path: Path) -> Path:
    cfg = trial_config(sw.base, best.params, sw.metric, sw.direction, f"trial {best.number}")
    header = (f"Best trial of sweep study {sw.study.study_name!r}: trial {best.number}, "
              f"{sw.metric} = {best.value:.6g} {sw.unit} ({sw.direction}).\n"
              f"Run folder: {best.user_attrs.get('run_dir', '?')}\n"
              "Parameters: " + ", ".join(f"{k}={v!r}" for k, v in best.params.items()) + "\n"
              "Train it:  python training_v2.py --config best_config.yaml [--set training.epochs=N]")
    return _replace(path, lambda tmp: dump_config(cfg, tmp, header=header))


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    return _replace(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def _history_figure(sw: Sweep, trials: list[FrozenTrial], path: Path) -> Path:
    shown = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
             and t.number not in requeued_numbers(trials)]
    fig = Figure(figsize=(7, 4.2))
    plot_optimization_history(fig.add_subplot(), [t.number for t in shown],
                              [float("nan") if t.value is None else t.value for t in shown],
                              [t.state.name.lower() for t in shown], sw.metric, sw.unit, sw.direction)
    return _save(fig, path)


def _curves_figure(sw: Sweep, trials: list[FrozenTrial], path: Path) -> Path:
    curves = []
    for t in trials:
        steps = sorted(t.intermediate_values)
        curves.append((t.number, steps, [t.intermediate_values[s] for s in steps], t.state.name.lower()))
    fig = Figure(figsize=(7, 4.2))
    plot_learning_curves(fig.add_subplot(), curves, sw.metric, sw.unit)
    return _save(fig, path)


def _importance_figure(sw: Sweep, path: Path) -> Path | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            importances = optuna.importance.get_param_importances(
                sw.study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError) as err:  # too few completed trials, or no parameter varied
        logger().info("no importance plot yet: %s", err)
        return None
    if not importances:
        return None
    fig = Figure(figsize=(7, 1.2 + 0.45 * len(importances)))
    plot_param_importances(fig.add_subplot(), list(importances), list(importances.values()), "PED-ANOVA")
    return _save(fig, path)


def write_summary(sw: Sweep) -> dict[str, Path]:
    """Write best_config.yaml, trials.csv and the figures; returns {name: path} of what was written."""
    trials = sw.study.get_trials()
    out = {"trials.csv": write_trials_csv(sw, trials, sw.folder / "trials.csv")}
    if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
        out["optimization_history.png"] = _history_figure(sw, trials, sw.folder / "optimization_history.png")
    if any(t.intermediate_values for t in trials):
        out["learning_curves.png"] = _curves_figure(sw, trials, sw.folder / "learning_curves.png")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        out["best_config.yaml"] = write_best_config(sw, sw.study.best_trial, sw.folder / "best_config.yaml")
    if len(complete) >= 2 and sw.space.distributions:
        importance = _importance_figure(sw, sw.folder / "param_importances.png")
        if importance is not None:
            out["param_importances.png"] = importance
    return out
