"""A sweep worker: check everything, join the study, run trials one after another until the budget is used.

Any number of workers (processes, SLURM array tasks) run this on one study. Each trial is an ordinary
run trained in this process; between trials the process is returned to a clean state (run logging
closed, no process group, CUDA cache emptied, every RNG re-seeded by the next run).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

from ml_benchmark_spategan.config.loader import ConfigError, dump_config
from ml_benchmark_spategan.config.schema import Config
from ml_benchmark_spategan.sweep.space import Space, base_identity, metric_unit, resolve_objective
from ml_benchmark_spategan.sweep.study import (
    budget_lock,
    fail_lost_trials,
    open_storage,
    open_study,
    should_ask,
)
from ml_benchmark_spategan.sweep.summary import write_summary
from ml_benchmark_spategan.sweep.trial import Sweep, claim, logger, run_trial
from ml_benchmark_spategan.training import distributed
from ml_benchmark_spategan.training.signals import Preempted, StopFlag


@dataclass(frozen=True)
class WorkerOptions:
    study: str
    folder: Path
    storage: str
    n_trials: int
    worker_index: int = 0


def setup_logging() -> logging.Logger:
    log = logger()
    log.setLevel(logging.INFO)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s sweep %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
    log.propagate = False
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return log


def model_kind(cfg: Config) -> str:
    """Open the data and build the model once on the CPU (bad data or model settings fail here, before any
    file is written); returns the registry's kind (gan, regression, fixed)."""
    from ml_benchmark_spategan.dataloader.reader import open_training_data
    from ml_benchmark_spategan.dataloader.split import split_data
    from ml_benchmark_spategan.training.session import build_models, model_geometry

    _, world, _ = distributed.env_info()
    if world > 1:
        raise ConfigError([f"a sweep worker is one process, found {world} (srun/torchrun tasks); "
                           "run more workers (array tasks) instead"])
    train_data, _ = split_data(open_training_data(cfg.data), cfg.data)
    geometry = model_geometry(train_data, train_data.orography is not None)
    try:
        return build_models(cfg.model, geometry, torch.device("cpu")).kind
    except ValueError as err:
        raise ConfigError([str(err)]) from err


def _sampler(space: Space, worker_index: int) -> optuna.samplers.BaseSampler:
    spec = space.spec.sampler
    seed = spec.seed + worker_index
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials)


def _pruner(space: Space, base: Config) -> optuna.pruners.BasePruner:
    spec = space.spec.pruner
    if spec.name == "median":
        # Steps are epoch numbers (1, 2, ...): epochs 1..warmup_epochs are never pruned.
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_epochs + 1)
    if spec.name == "hyperband":
        max_epochs = "auto" if "training.epochs" in space.distributions else base.training.epochs
        return optuna.pruners.HyperbandPruner(min_resource=max(1, spec.warmup_epochs), max_resource=max_epochs,
                                              reduction_factor=spec.reduction_factor)
    return optuna.pruners.NopPruner()


def _claim_folder(opts: WorkerOptions) -> None:
    """Create the sweep folder, or check that it belongs to this study (trial folders are named by number)."""
    marker = opts.folder / "study.json"
    mine = {"study": opts.study, "storage": opts.storage}
    if marker.is_file():
        theirs = json.loads(marker.read_text())
        if theirs != mine:
            raise ConfigError([f"sweep folder {opts.folder} belongs to study {theirs.get('study')!r} in "
                               f"{theirs.get('storage')}; use another --sweep-dir (or that study)"])
        return
    if opts.folder.is_dir() and any(opts.folder.iterdir()):
        raise ConfigError([f"sweep folder {opts.folder} exists and is not a sweep folder; use another --sweep-dir"])
    opts.folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(mine) + "\n", encoding="utf-8")


def prepare(base: Config, space: Space, opts: WorkerOptions) -> Sweep:
    """Checks that need the data, then the sweep folder and the study (created or joined)."""
    metric, direction = resolve_objective(space.spec.objective, model_kind(base))
    _claim_folder(opts)
    if not (opts.folder / "base_config.yaml").exists():
        dump_config(base, opts.folder / "base_config.yaml", header="Base configuration of the sweep's trials.")
        (opts.folder / "space.yml").write_text(space.path.read_text(encoding="utf-8"), encoding="utf-8")
    study = open_study(open_storage(opts.storage), opts.study, space, direction, metric, base_identity(base),
                       _sampler(space, opts.worker_index), _pruner(space, base))
    unit = metric_unit(metric, base.data.target_variable)
    return Sweep(study=study, space=space, base=base, metric=metric, direction=direction, unit=unit,
                 folder=opts.folder, n_trials=opts.n_trials)


def _next_trial(sw: Sweep, storage: str) -> optuna.Trial | None:
    """Under the budget lock: fail lost trials, then take a re-queued or new trial (None: budget used)."""
    workers = sw.space.spec.workers
    with budget_lock(storage):
        for number, reason in fail_lost_trials(sw.study, workers.grace_seconds, workers.max_retries):
            logger().warning("trial %d lost (%s): failed and re-queued", number, reason)
        if not should_ask(sw.study, sw.n_trials):
            return None
        trial = sw.study.ask(sw.space.distributions)
        claim(sw, trial)
    return trial


def _resident_mib() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _clean_state() -> None:
    """What one run may leave behind that the next must not see (the memory figures show leaks in the log)."""
    gc.collect()
    text = f"resident memory {_resident_mib():.0f} MiB"
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        text += f", CUDA memory allocated {torch.cuda.memory_allocated() / 2**20:.1f} MiB"
    logger().info("after the trial: %s", text)
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized()), "process group leaked"


def run_worker(sw: Sweep, storage: str) -> int:
    """Run trials until the study's budget is used; exit status 0, or 75 when a stop signal ended it
    (the trial in progress is re-queued; a SLURM job script requeues the worker)."""
    stop = StopFlag().install()  # between trials; during one, the run's own handler takes the signal
    n_run = 0
    try:
        while not stop:
            trial = _next_trial(sw, storage)
            if trial is None:
                break
            try:
                run_trial(sw, trial)
            except Preempted:
                return Preempted.exit_code
            finally:
                _clean_state()
            n_run += 1
    finally:
        stop.uninstall()
        written = write_summary(sw)
        logger().info("worker ran %d trial(s); summary: %s", n_run, ", ".join(str(p) for p in written.values()))
    if stop:
        logger().warning("%s received between trials; exit %d so the job can be requeued", stop.name,
                         Preempted.exit_code)
        return Preempted.exit_code
    return 0

