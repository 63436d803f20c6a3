"""The training run as a short schedule of helper calls (nanoGPT style).

``train`` validates everything that can be checked without a run folder (config, data files, split,
device), then creates the folder and runs epochs: train -> validate -> plot -> checkpoint -> history.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ml_benchmark_spategan.config.loader import ConfigError, config_to_dict, dump_config
from ml_benchmark_spategan.config.schema import Config
from ml_benchmark_spategan.dataloader.mask import save_target_mask, training_mask
from ml_benchmark_spategan.dataloader.normalization import Normalizers
from ml_benchmark_spategan.dataloader.reader import open_training_data
from ml_benchmark_spategan.dataloader.split import split_data, subsample_days
from ml_benchmark_spategan.monitor.files import stop_file
from ml_benchmark_spategan.monitor.trainer import Monitor, RunMonitor
from ml_benchmark_spategan.training import artifacts, distributed
from ml_benchmark_spategan.training.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from ml_benchmark_spategan.training.history import write_history
from ml_benchmark_spategan.training.loop import stop_requested, train_epoch
from ml_benchmark_spategan.training.rundir import (
    RunDirError,
    close_logging,
    create_run_dir,
    resolve_device,
    setup_logging,
)
from ml_benchmark_spategan.training.session import (
    Session,
    build_models,
    build_session,
    load_session_state,
    model_geometry,
    normalization_params,
    session_state,
)
from ml_benchmark_spategan.training.signals import Preempted, StopFlag, StopRequested
from ml_benchmark_spategan.training.validation import validate
from ml_benchmark_spategan.utils.threads import apply_num_threads

#: Called as ``hook(session, row)`` after each epoch's files are written (rank 0 only; ``row`` is the epoch's
#: history row). A hook may raise to end the run early (the sweep's pruner does); the run folder is then
#: consistent up to that epoch and resumable. Raising is for single-process runs: under DDP the other ranks
#: would wait at the next barrier.
EpochEndHook = Callable[[Session, dict], None]


def seed_everything(seed: int, deterministic: bool) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Set both ways: several runs in one process (a sweep worker) must not inherit the previous run's mode.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # Static shapes: let cuDNN pick the fastest convolution algorithms unless bitwise reproducibility is asked for.
    torch.backends.cudnn.benchmark = not deterministic


def _resume_state(cfg: Config, run_dir, resume) -> tuple[Path | None, dict | None]:
    """(folder, checkpoint) to continue, or (folder or None, None) for a fresh start. Changes nothing."""
    if resume is None:
        return (Path(run_dir) if run_dir else None), None
    if str(resume) == "auto":
        if not run_dir:
            raise RunDirError("--resume auto needs --run-dir (the run folder a requeued job continues)")
        last = Path(run_dir) / "checkpoints" / "last.pt"
        return Path(run_dir), (_load_compatible(cfg, last) if last.is_file() else None)
    folder = Path(resume)
    if not folder.is_dir():
        raise RunDirError(f"--resume {folder}: run folder does not exist")
    return folder, _load_compatible(cfg, folder / "checkpoints" / "last.pt")


def _load_compatible(cfg: Config, path: Path) -> dict:
    state = load_checkpoint(path)
    check_compatible(state, config_to_dict(cfg), path)
    if state["epoch"] > cfg.training.epochs:
        raise ConfigError([f"training.epochs: {cfg.training.epochs} is fewer than the {state['epoch']} epochs "
                           f"{path.parent.parent} has already completed; give more to extend the run"])
    return state


def train(cfg: Config, run_dir: str | Path | None = None, resume: str | Path | None = None,
          epoch_end: Sequence[EpochEndHook] = ()) -> Path:
    """Train a model as configured (or continue a run); return the run folder.

    Everything that can fail on bad input (device, data files, split, checkpoint) is checked before the
    run folder is created or changed. Under torchrun/srun every process runs this; rank 0 alone writes.
    ``epoch_end`` hooks: see :data:`EpochEndHook`. Rank 0 keeps ``status.json`` and ``tensorboard/``
    (:mod:`ml_benchmark_spategan.monitor`); a ``STOP`` file in the run folder stops the run like a signal,
    but as :class:`StopRequested` (state "stopped", exit 0).
    """
    threads = apply_num_threads(cfg.runtime.num_threads)
    device = resolve_device(cfg.device, cfg.on_missing_gpu)
    data = open_training_data(cfg.data)
    train_data, val_data = split_data(data, cfg.data)
    val_data = subsample_days(val_data, cfg.training.val_days)  # evaluate.py scores the full split
    _check_model_builds(cfg, train_data)
    folder, state = _resume_state(cfg, run_dir, resume)
    dist = distributed.setup(device)
    stop = StopFlag().install()
    monitor = Monitor()
    try:
        folder = _shared_run_dir(cfg, folder, state, resume, dist)
        logger = setup_logging(folder if dist.main else None, console=dist.main)
        monitor = RunMonitor(folder, logger) if dist.main else monitor
        stop.stop_file = stop_file(folder)
        session = _start_session(cfg, folder, state, dist, train_data, val_data, logger)
        monitor.attach(session, resumed=state is not None)
        logger.info("runtime: %d CPU thread(s) for torch and dask (runtime.num_threads=%d)", threads,
                    cfg.runtime.num_threads)
        fit(session, stop, epoch_end, monitor)
        monitor.ended("finished")
    except BaseException as err:
        monitor.ended(*_end_state(err))
        raise
    finally:
        stop.uninstall()
        close_logging()
        distributed.cleanup()
    return folder


def _end_state(err: BaseException) -> tuple[str, str | None]:
    if isinstance(err, StopRequested):
        return "stopped", None
    if isinstance(err, Preempted):
        return "requeued", str(err)
    return "failed", f"{type(err).__name__}: {err}"


def _check_model_builds(cfg: Config, train_data) -> None:
    """Build the model once on the CPU so that a setting only the builder can check (e.g. a
    ``model.bilinear_predictor`` absent from the predictors) fails before the run folder exists."""
    geometry = model_geometry(train_data, train_data.orography is not None)
    try:
        build_models(cfg.model, geometry, torch.device("cpu"))
    except ValueError as err:
        raise ConfigError([str(err)]) from err


def _shared_run_dir(cfg: Config, folder, state, resume, dist) -> Path:
    """Rank 0 creates the run folder (unless resuming); every rank gets its path (or rank 0's error)."""
    outcome: tuple[Path | None, str | None] = (folder, None)
    if state is None and dist.main:
        try:
            outcome = (create_run_dir(cfg.run.root, cfg.run.name, explicit=folder,
                                      allow_unfinished=resume is not None), None)
        except RunDirError as err:
            outcome = (None, str(err))
    folder, error = distributed.broadcast_object(outcome, dist)
    if error:
        raise RunDirError(error)
    return folder


def _start_session(cfg, folder, state, dist, train_data, val_data, logger) -> Session:
    seed_everything(distributed.rank_seed(cfg.training.seed, dist.rank), cfg.training.deterministic)
    if state is None:
        if dist.main:
            logger.info("run folder: %s", folder)
            dump_config(cfg, folder / "config.yaml")
            save_target_mask(folder / "normalization", training_mask(train_data), train_data.info)
        session = build_session(cfg, train_data, val_data, dist.device, folder, logger, dist=dist)
        if dist.main:
            session.normalizers.save(folder / "normalization")
        _log_start(session, train_data, val_data)
        return session
    normalizers = Normalizers.load(folder / "normalization")
    session = build_session(cfg, train_data, val_data, dist.device, folder, logger, normalizers=normalizers,
                            dist=dist)
    load_session_state(session, state)
    if dist.main:  # the run's config with the changes allowed on resume (e.g. more epochs)
        dump_config(cfg, folder / "config.yaml")
    if dist.rank:  # the checkpoint holds rank 0's RNG state; other ranks keep distinct streams
        seed_everything(distributed.rank_seed(cfg.training.seed + session.global_step, dist.rank),
                        cfg.training.deterministic)
    logger.info("resumed %s at epoch %d, step %d of the epoch (global step %d)", folder, session.epoch + 1,
                session.epoch_step, session.global_step)
    return session


def _data_label(cfg: Config, data) -> str:
    """``ALPS ESD_pseudo_reality pr`` or, for your own files, ``files tg_obs.nc:tg``."""
    if cfg.data.source == "cordex":
        return f"{cfg.data.domain} {cfg.data.experiment} {data.target_variable}"
    return f"files {Path(cfg.data.files.target_file).name}:{data.target_variable}"


def _log_start(session: Session, train_data, val_data) -> None:
    log, g = session.logger, session.bundle.generator
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in session.bundle.discriminator.parameters()) if session.bundle.discriminator else 0
    info = train_data.info
    log.info("data: %s (%s, %s) | train %d days, val %d days | predictors %s -> target %s",
             _data_label(session.cfg, train_data), info.kind, info.units or "no units",
             train_data.target.sizes["time"], val_data.target.sizes["time"],
             tuple(train_data.predictors.shape[1:]), tuple(train_data.target.shape[1:]))
    for note in train_data.notes:
        log.info("data: %s", note)
    log.info("model: %s (%s) | generator %.2f M params | discriminator %.2f M params | device %s | precision %s",
             session.cfg.model.name, session.bundle.kind, n_g / 1e6, n_d / 1e6, session.device,
             session.settings.precision)


def _epochs_to_run(session: Session) -> range:
    # A fixed baseline (bilinear) has nothing to train: one evaluation pass fills the run folder.
    last = 1 if session.bundle.kind == "fixed" else session.cfg.training.epochs
    return range(session.epoch, last)


def fit(session: Session, stop: StopFlag | None = None, epoch_end: Sequence[EpochEndHook] = (),
        monitor: Monitor | None = None) -> None:
    """The epoch schedule; each epoch ends with a complete, consistent run folder (written by rank 0),
    then the ``epoch_end`` hooks run (rank 0). ``monitor`` hears of every step and epoch (rank 0)."""
    main = session.dist.main
    monitor = monitor or Monitor()
    for epoch in _epochs_to_run(session):
        session.epoch = epoch
        row = {"epoch": epoch + 1}
        monitor.epoch_started(session)
        if session.bundle.kind != "fixed":
            try:
                row.update(train_epoch(session, stop, step_end=(monitor.step,)))
            except Preempted as stopped:
                stopped = stop.classify(stopped)
                _save_preempted(session, stopped, stop, monitor)
                raise stopped from None
        row.update(_learning_rates(session))
        monitor.epoch_trained(session)
        if main:
            row.update(_validate_if_due(session, epoch))
        for scheduler in session.schedulers.values():
            scheduler.step()
        session.history.append(row)
        session.epoch = epoch + 1
        if main:
            _log_epoch(session, row)
            monitor.epoch_logged(session, row)
            _save_checkpoints(session, row, epoch)
            monitor.checkpointed(session, session.run_dir / "checkpoints" / "last.pt")
            write_history(session.run_dir, session.history)
            artifacts.plot_history(session)
            artifacts.write_report(session)
            for hook in epoch_end:
                hook(session, row)
        distributed.barrier()
        if stop is not None and session.epoch < _epochs_to_run(session).stop and stop_requested(session, stop):
            stopped = stop.classify(Preempted(f"{stop.name or 'stop signal'} received after epoch {session.epoch}"))
            session.logger.warning("%s; exit %d%s", stopped, stopped.exit_code, _why_exit(stopped))
            if main:
                stop.consume_file()
            raise stopped
    if main:
        _save_final(session)
        monitor.finished(session)
        session.logger.info("done: %s", session.run_dir)
    distributed.barrier()


def _why_exit(stopped: Preempted) -> str:
    return " (stop requested; not a requeue)" if isinstance(stopped, StopRequested) else " so the job can be requeued"


def _save_preempted(session: Session, stopped: Preempted, stop: StopFlag, monitor: Monitor) -> None:
    if session.dist.main:
        path = session.run_dir / "checkpoints" / "last.pt"
        save_checkpoint(path, session_state(session))
        monitor.checkpointed(session, path)
        stop.consume_file()
        session.logger.warning("%s; wrote checkpoints/last.pt; exit %d%s", stopped, stopped.exit_code,
                               _why_exit(stopped))
    distributed.barrier()


def _learning_rates(session: Session) -> dict[str, float]:
    return {f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in session.optimizers.items()}


def _is_last(session: Session, epoch: int) -> bool:
    return epoch + 1 == _epochs_to_run(session).stop


def _validate_if_due(session: Session, epoch: int) -> dict[str, float]:
    log_cfg = session.cfg.logging
    if not ((epoch + 1) % log_cfg.diagnostics_every_epochs == 0 or _is_last(session, epoch)):
        return {}
    result = validate(session)
    artifacts.plot_diagnostics(session, result, epoch)
    if log_cfg.plot_every_epochs and ((epoch + 1) % log_cfg.plot_every_epochs == 0 or _is_last(session, epoch)):
        artifacts.plot_sample(session, result, epoch)
    return result.scalars


def _log_epoch(session: Session, row: dict) -> None:
    keys = ["train/g/loss", "train/d/loss", "val/loss_mse", "val/rmse", "val/crps", "val/ralsd", "time/epoch_seconds"]
    parts = [f"{k}={row[k]:.4g}" for k in keys if isinstance(row.get(k), float)]
    if session.bundle.kind == "fixed":  # nothing trained: one evaluation pass, not "epoch 1/20"
        session.logger.info("%s (no training): %s", session.cfg.model.name, " ".join(parts))
        return
    session.logger.info("epoch %d/%d %s", row["epoch"], _epochs_to_run(session).stop, " ".join(parts))


def _improved(session: Session, value: float | None) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if session.best is None:
        return True
    return value < session.best if session.cfg.logging.best_mode == "min" else value > session.best


def _save_checkpoints(session: Session, row: dict, epoch: int) -> None:
    folder = session.run_dir / "checkpoints"
    metric = session.best_metric
    improved = _improved(session, row.get(metric))
    if improved:
        session.best = row[metric]
    state = session_state(session)
    save_checkpoint(folder / "last.pt", state)
    every = session.cfg.logging.checkpoint_every_epochs
    if every and (epoch + 1) % every == 0:
        save_checkpoint(folder / f"checkpoint_epoch_{epoch + 1:03d}.pt", state)
    if improved:
        save_checkpoint(folder / "best.pt", state)
        session.logger.info("new best %s=%.5g at epoch %d", metric, session.best, epoch + 1)


def _save_final(session: Session) -> None:
    folder = session.run_dir / "checkpoints"
    common = {"config": session_state(session)["config"], "geometry": session.geometry, "epoch": session.epoch,
              "normalization": normalization_params(session.normalizers)}
    ema = None if session.ema is None else session.ema.state_dict()
    save_checkpoint(folder / "final_generator.pt",
                    {**common, "generator": session.bundle.generator.state_dict(), "generator_ema": ema})
    if session.bundle.discriminator is not None:
        save_checkpoint(folder / "final_discriminator.pt",
                        {**common, "discriminator": session.bundle.discriminator.state_dict()})

