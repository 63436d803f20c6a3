"""The search-space file: which config keys to tune over which ranges, the objective, pruner and sampler.

```yaml
trials: 40                                  # trials in the study, all workers together (--trials overrides)
objective: {metric: auto, direction: auto}  # auto: val/crps for generative models, val/rmse otherwise
pruner: {name: median, startup_trials: 5, warmup_epochs: 2}
params:
  training.optimizer_g.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
  training.n_critic: {type: int, low: 1, high: 5}
  training.loss.adversarial_loss: {type: categorical, choices: [bce, hinge]}
```

Everything is checked before a trial runs or a file is written: unknown sections and fields (with a
suggestion), every parameter key against the config schema with the same messages as ``--set`` (the
bounds and each choice are applied to the base config and validated), ``low <= high``, log scales with
``low > 0``, and a metric the training loop logs.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from ml_benchmark_spategan.config.loader import (
    VALIDATION_METRICS,
    ConfigError,
    apply_values,
    build_section,
    config_to_dict,
    field_type,
    read_yaml_file,
    resolve_best_metric,
    suggest,
)
from ml_benchmark_spategan.config.schema import Config, _f
from ml_benchmark_spategan.cordex import TARGET_UNITS

#: Better direction of each validation metric (val/std_ratio and val/spread_skill are best at 1: no direction).
METRIC_DIRECTIONS = {
    "val/rmse": "minimize", "val/bias_mean": "minimize", "val/bias_q95": "minimize", "val/bias_q98": "minimize",
    "val/corr": "maximize", "val/crps": "minimize", "val/ralsd": "minimize", "val/loss_l1": "minimize",
    "val/loss_mse": "minimize",
}
#: Keys the sweep sets itself: every trial selects best.pt by the objective.
MANAGED_KEYS = ("logging.best_metric", "logging.best_mode")
PARAM_TYPES = ("float", "int", "categorical")
_PARAM_FIELDS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
                 "categorical": ("type", "choices")}


@dataclass(frozen=True)
class ObjectiveSpec:
    metric: str = _f("auto", "validation metric to optimise (the best epoch of each trial counts); auto = val/crps for generative models, val/rmse otherwise")
    direction: str = _f("auto", "auto = from the metric (val/corr is maximised, errors minimised)", choices=("auto", "minimize", "maximize"))


@dataclass(frozen=True)
class PrunerSpec:
    name: str = _f("median", "stop unpromising trials early on the per-epoch metric", choices=("median", "hyperband", "none"))
    startup_trials: int = _f(5, "median: completed trials before any trial is pruned", min=0)
    warmup_epochs: int = _f(1, "epochs of every trial that are never pruned (hyperband: its minimum resource)", min=0)
    reduction_factor: int = _f(3, "hyperband: keep 1 in reduction_factor trials at each rung", min=2)


@dataclass(frozen=True)
class SamplerSpec:
    name: str = _f("tpe", "tpe = Optuna's Tree-structured Parzen Estimator; random", choices=("tpe", "random"))
    seed: int = _f(0, "sampler seed; worker k of an array uses seed + k so that workers draw different points", min=0)
    startup_trials: int = _f(10, "tpe: random trials before the model-based search starts", min=0)


@dataclass(frozen=True)
class WorkerSpec:
    heartbeat_seconds: int = _f(60, "a running trial records a heartbeat this often", min=1)
    grace_seconds: int = _f(600, "a running trial without a heartbeat for this long is declared lost (failed, re-queued)", min=1)
    max_retries: int = _f(2, "times a lost or preempted trial is re-queued (it resumes from its last checkpoint)", min=0)


@dataclass(frozen=True)
class SweepSpec:
    trials: int = _f(20, "trials in the study, all workers together (--trials overrides)", min=1)
    objective: ObjectiveSpec = _f(ObjectiveSpec, "what is optimised", factory=True)
    pruner: PrunerSpec = _f(PrunerSpec, "early stopping of trials", factory=True)
    sampler: SamplerSpec = _f(SamplerSpec, "how points are drawn", factory=True)
    workers: WorkerSpec = _f(WorkerSpec, "heartbeats and re-queueing of trials whose worker died", factory=True)


@dataclass(frozen=True)
class Space:
    """A validated search space: the spec, the Optuna distributions by dotted key, and the file it came from."""

    spec: SweepSpec
    distributions: dict[str, optuna.distributions.BaseDistribution]
    path: Path

    def as_dict(self) -> dict[str, Any]:
        """Plain data that identifies the study (stored in it; a worker with another space is refused)."""
        return {"spec": dataclasses.asdict(self.spec),
                "params": {k: optuna.distributions.distribution_to_json(d) for k, d in self.distributions.items()}}


def _hint(word: str, allowed) -> str:
    return suggest(word, allowed) or "; allowed: " + ", ".join(allowed)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range_problems(key: str, kind: str, raw: Mapping) -> list[str]:
    problems = []
    for name in ("low", "high"):
        if name not in raw:
            problems.append(f"{key}: {kind} parameter needs '{name}'")
        elif not _number(raw[name]) or (kind == "int" and not isinstance(raw[name], int)):
            problems.append(f"{key}: {name} must be {'an integer' if kind == 'int' else 'a finite number'}, got {raw[name]!r}")
    if problems:
        return problems
    low, high, log, step = raw["low"], raw["high"], raw.get("log", False), raw.get("step")
    if low > high:
        problems.append(f"{key}: low ({low!r}) is greater than high ({high!r})")
    if not isinstance(log, bool):
        problems.append(f"{key}: log must be true or false, got {log!r}")
    elif log and low <= 0:
        problems.append(f"{key}: a log scale needs low > 0, got low={low!r}")
    if step is not None:
        if not _number(step) or step <= 0 or (kind == "int" and not isinstance(step, int)):
            problems.append(f"{key}: step must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}")
        elif log and not (kind == "int" and step == 1):
            problems.append(f"{key}: log and step cannot be combined")
    schema_type = field_type(key)
    if kind == "float" and schema_type is int:
        problems.append(f"{key}: is an integer key; use type: int")
    return problems


def _distribution(kind: str, raw: Mapping) -> optuna.distributions.BaseDistribution:
    if kind == "categorical":
        return optuna.distributions.CategoricalDistribution(list(raw["choices"]))
    low, high, log, step = raw["low"], raw["high"], raw.get("log", False), raw.get("step")
    if kind == "int":
        return optuna.distributions.IntDistribution(low, high, log=log, step=step or 1)
    return optuna.distributions.FloatDistribution(float(low), float(high), log=log,
                                                  step=None if step is None else float(step))


def _categorical_problems(key: str, raw: Mapping) -> list[str]:
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        return [f"{key}: categorical parameter needs a non-empty list 'choices', got {choices!r}"]
    problems = [f"{key}: choices must be numbers, strings, booleans or null (Optuna stores no lists), got {c!r}"
                for c in choices if not (c is None or isinstance(c, (bool, int, float, str)))]
    if len({repr(c) for c in choices}) != len(choices):
        problems.append(f"{key}: choices repeat a value: {choices!r}")
    return problems


def _param_problems(key: str, raw: Any, base: Config, origin: str) -> list[str]:
    """Problems of one parameter entry; the values it can take are applied to ``base`` and validated."""
    if not isinstance(raw, Mapping):
        return [f"{key}: expected a mapping such as {{type: float, low: 0.1, high: 1.0}}, got {raw!r}"]
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        return [f"{key}: type {kind!r} is not a parameter type{_hint(str(kind), PARAM_TYPES)}"]
    problems = [f"{key}.{name}: unknown field{_hint(str(name), _PARAM_FIELDS[kind])}"
                for name in raw if name not in _PARAM_FIELDS[kind]]
    problems += _categorical_problems(key, raw) if kind == "categorical" else _range_problems(key, kind, raw)
    if problems:
        return problems
    values = list(raw["choices"]) if kind == "categorical" else [raw["low"], raw["high"]]
    for value in values:
        try:
            apply_values(base, {key: value}, origin)
        except ConfigError as err:
            problems += [p for p in err.problems if p not in problems]
    return problems


def _check_top_level(raw: Any, origin: str) -> tuple[dict, Any, list[str]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return {}, {}, [f"{origin}: the top level must be a mapping, got {type(raw).__name__}"]
    names = [f.name for f in dataclasses.fields(SweepSpec)] + ["params"]
    problems = [f"{key}: unknown key{_hint(str(key), names)} (in {origin})" for key in raw if key not in names]
    rest = {k: v for k, v in raw.items() if k in names and k != "params"}
    params = raw.get("params")
    if not isinstance(params, Mapping) or not params:
        problems.append(f"params: a mapping of dotted config keys to ranges is required (in {origin})")
        params = {}
    return rest, params, problems


def load_space(path: str | os.PathLike, base: Config) -> Space:
    """Read and validate the search space at ``path`` against ``base`` (the config every trial starts from).

    Raises :class:`ConfigError` listing every problem, each naming the key.
    """
    path = Path(path)
    origin = f"params in {path}"
    rest, params, problems = _check_top_level(read_yaml_file(path, what="search space file"), str(path))
    spec, spec_problems = build_section(SweepSpec(), rest)
    problems += [f"{p} (in {path})" for p in spec_problems]
    distributions = {}
    for key, raw in params.items():
        key = str(key)
        if key in MANAGED_KEYS:
            problems.append(f"{key}: set by the sweep from objective.metric/direction; it cannot be a parameter (in {path})")
            continue
        found = _param_problems(key, raw, base, origin)
        problems += found
        if not found:
            distributions[key] = _distribution(raw["type"], raw)
    problems += _objective_problems(spec.objective, path)
    if problems:
        raise ConfigError(problems)
    return Space(spec=spec, distributions=distributions, path=path)


def _objective_problems(objective: ObjectiveSpec, path: Path) -> list[str]:
    metric = objective.metric
    if metric == "auto":
        return []
    if metric not in VALIDATION_METRICS:
        return [f"objective.metric: {metric!r} is not a validation metric{_hint(metric, VALIDATION_METRICS)} (in {path})"]
    if objective.direction == "auto" and metric not in METRIC_DIRECTIONS:
        return [f"objective.metric: {metric} is best at 1, not at an end of its range; set objective.direction "
                f"(or optimise another metric) (in {path})"]
    return []


def resolve_objective(objective: ObjectiveSpec, model_kind: str) -> tuple[str, str]:
    """(metric, direction) with ``auto`` resolved; ``model_kind`` is the registry's gan/regression/fixed."""
    metric = resolve_best_metric(objective.metric, model_kind)
    direction = METRIC_DIRECTIONS[metric] if objective.direction == "auto" else objective.direction
    return metric, direction


def metric_unit(metric: str, target_variable: str) -> str:
    """Unit of a validation metric for ``target_variable`` (``1`` for dimensionless ones)."""
    if metric in ("val/rmse", "val/bias_mean", "val/bias_q95", "val/bias_q98", "val/crps"):
        return TARGET_UNITS[target_variable]
    if metric == "val/ralsd":
        return "dB²"
    if metric in ("val/loss_l1", "val/loss_mse"):
        return "normalised units"
    return "1"


def trial_config(base: Config, params: Mapping[str, Any], metric: str, direction: str, origin: str) -> Config:
    """The configuration of one trial: ``base`` with the sampled ``params``; best.pt selected by the objective."""
    values = dict(params)
    values.update({"logging.best_metric": metric, "logging.best_mode": "min" if direction == "minimize" else "max"})
    return apply_values(base, values, origin)


def base_identity(cfg: Config) -> dict[str, Any]:
    """The base config as plain data without the keys each worker may set for itself (data location,
    device, loader workers, run folder root): what must agree between the workers of one study."""
    tree = config_to_dict(cfg)
    for key in WORKER_LOCAL_KEYS:
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node.pop(leaf, None)
    return tree


#: Keys that may differ between workers of one study (they change where or how fast a trial runs, not what).
WORKER_LOCAL_KEYS = ("data.root", "data.loader.num_workers", "data.loader.memory_budget_gb", "run.root",
                     "run.name", "device", "on_missing_gpu", "logging.progress_bar")
