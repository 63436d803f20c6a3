"""One training epoch: batches -> ``train_gan_step`` (or the regression step) with a progress bar.

Step results stay on the device as detached tensors and are summed there; they are read back to the host
once per epoch, so the step itself never waits for the GPU.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import torch

from ml_benchmark_spategan.model.baselines import train_regression_step
from ml_benchmark_spategan.model.spagan2d import train_gan_step
from ml_benchmark_spategan.training.distributed import any_rank, reduce_mean
from ml_benchmark_spategan.training.session import Session
from ml_benchmark_spategan.training.signals import Preempted, StopFlag
from ml_benchmark_spategan.utils.progress import Progress


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN/Inf (training.nonfinite_loss: stop)."""


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _step(session: Session, batch: dict) -> dict[str, torch.Tensor]:
    models = session.trainables
    if session.bundle.kind == "gan":
        stats = train_gan_step(
            batch, models["g"], models["d"], session.optimizers["g"], session.optimizers["d"],
            session.settings, scalers=session.scalers, static_hr=session.static_hr,
        )
        if session.ema is not None:
            session.ema.update(session.bundle.generator)
        return stats
    scaler = session.scalers["g"] if session.scalers else None
    return train_regression_step(batch, models["g"], session.optimizers["g"], session.settings, scaler=scaler,
                                 static_hr=session.static_hr)


def _steps_this_epoch(session: Session) -> int:
    cap = session.cfg.training.max_steps_per_epoch
    n = len(session.train_loader)
    return min(n, cap) if cap else n


def _snapshot(session: Session) -> dict:
    """Model and optimiser state to roll back to when a step is skipped for a non-finite loss.

    The optimiser state is part of it: a NaN gradient poisons Adam's moment estimates, and every later
    update would then be NaN even with the weights restored.
    """
    state = {"g": {k: v.clone() for k, v in session.bundle.generator.state_dict().items()}}
    if session.bundle.discriminator is not None:
        state["d"] = {k: v.clone() for k, v in session.bundle.discriminator.state_dict().items()}
    state["optimizers"] = {name: copy.deepcopy(opt.state_dict()) for name, opt in session.optimizers.items()}
    if session.ema is not None:
        state["ema"] = copy.deepcopy(session.ema.state_dict())
    return state


def _nonfinite(stats: dict[str, torch.Tensor]) -> list[str]:
    """Names of non-finite loss entries (one host sync for the whole dict).

    Only losses count: an infinite ``*/grad_norm`` is how an fp16 GradScaler overflow shows (the scaler
    skips that update and lowers its scale), not a diverged run.
    """
    keys = [k for k in stats if k.split("/")[-1].startswith("loss")]
    if not keys:
        return []
    flags = torch.stack([torch.as_tensor(stats[k]).float().cpu() for k in keys]).isfinite()
    return [k for k, ok in zip(keys, flags.tolist(), strict=True) if not ok]


def _stop(session: Session, names: list[str]) -> None:
    raise NonFiniteLossError(
        f"non-finite loss ({', '.join(names)}) in epoch {session.epoch + 1} near step {session.global_step}; "
        "the run stops and no model is saved as best (set training.nonfinite_loss: skip to skip such steps)"
    )


def _rollback(session: Session, snapshot: dict, names: list[str]) -> None:
    session.logger.warning("non-finite loss (%s) at step %d: step skipped, weights rolled back",
                           ", ".join(names), session.global_step + 1)
    session.bundle.generator.load_state_dict(snapshot["g"])
    if "d" in snapshot:
        session.bundle.discriminator.load_state_dict(snapshot["d"])
    for name, opt in session.optimizers.items():
        opt.load_state_dict(snapshot["optimizers"][name])
    if "ema" in snapshot:
        session.ema.load_state_dict(snapshot["ema"])


CHECK_EVERY_STEPS = 20  # in stop mode, look for NaN/Inf in the running sums this often (one sync each time)


def _restore_partial(session: Session) -> tuple[dict, int, int, float]:
    """Running sums of an epoch interrupted by a signal (empty for a fresh epoch)."""
    partial = session.partial or {}
    sums = {k: v.to(session.device) for k, v in partial.get("sums", {}).items()}
    return sums, partial.get("done", 0), partial.get("skipped", 0), partial.get("seconds", 0.0)


def train_epoch(session: Session, stop: StopFlag | None = None,
                step_end: Sequence[Callable[[Session], None]] = ()) -> dict[str, float]:
    """Run (the rest of) one epoch; return the epoch means of the step statistics plus timing.

    Batches before ``session.epoch_step`` were done before an interruption: the loader's order is a pure
    function of (seed, epoch), so skipping them continues exactly where the run stopped. When ``stop`` is
    set after a step, the running sums are kept in ``session.partial`` and :class:`Preempted` is raised.
    ``step_end`` hooks run after every step (the monitor's heartbeat counters; they must be cheap).
    """
    session.train_loader.set_epoch(session.epoch)
    n_steps = _steps_this_epoch(session)
    skip_mode = session.cfg.training.nonfinite_loss == "skip"
    sums, done, skipped, seconds_before = _restore_partial(session)
    start = time.perf_counter()
    bar = Progress(n_steps, f"epoch {session.epoch + 1}/{session.cfg.training.epochs}", unit="steps",
                   initial=session.epoch_step, enabled=session.cfg.logging.progress_bar and session.dist.main,
                   logger=session.logger)
    for k, batch in enumerate(session.train_loader):
        if k >= n_steps:
            break
        if k < session.epoch_step:
            continue
        snapshot = _snapshot(session) if skip_mode else None
        stats = _step(session, _to_device(batch, session.device))
        bad = _nonfinite(stats) if skip_mode else []
        if skip_mode and session.dist.distributed and any_rank(bool(bad), session.dist) and not bad:
            bad = ["(another rank)"]  # every rank skips the same step
        if bad:
            _rollback(session, snapshot, bad)
            skipped += 1
        else:
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
            done += 1
        session.global_step += 1
        session.epoch_step = k + 1
        bar.update(1)
        for hook in step_end:
            hook(session)
        if not skip_mode and (done % CHECK_EVERY_STEPS == 0 or done == n_steps):
            _check_sums(session, sums)
        if stop is not None and stop_requested(session, stop) and session.epoch_step < n_steps:
            seconds = seconds_before + time.perf_counter() - start
            session.partial = {"sums": {k: v.detach().cpu() for k, v in sums.items()}, "done": done,
                               "skipped": skipped, "seconds": seconds}
            bar.close()
            raise Preempted(f"{stop.name} received: stopped after step {session.epoch_step}/{n_steps} "
                            f"of epoch {session.epoch + 1}")
    bar.close()
    elapsed = seconds_before + time.perf_counter() - start
    session.epoch_step, session.partial = 0, None
    means = {f"train/{key}": float(value) / max(done, 1) for key, value in sums.items()}
    if session.dist.distributed:  # the logged losses are the mean over ranks
        means = reduce_mean(means, session.dist)
    samples = (done + skipped) * session.cfg.training.batch_size
    means.update({"train/steps": done, "train/skipped_steps": skipped, "time/epoch_seconds": elapsed,
                  "time/samples_per_second": samples / elapsed if elapsed > 0 else math.nan})
    return means


def _check_sums(session: Session, sums: dict[str, torch.Tensor]) -> None:
    """Stop (on every rank together) when a running sum is NaN/Inf on any rank.

    Called at the same step on every rank; a rank that raised alone would leave the others blocked in
    their next collective.
    """
    bad = _nonfinite(sums)
    if session.dist.distributed and any_rank(bool(bad), session.dist) and not bad:
        bad = ["(another rank)"]
    if bad:
        _stop(session, bad)


def stop_requested(session: Session, stop: StopFlag) -> bool:
    """Whether any process received a stop signal (all ranks must stop at the same step)."""
    if session.dist.distributed:
        return any_rank(bool(stop), session.dist)
    return bool(stop)
