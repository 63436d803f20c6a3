"""The trainer's live reporting: one object the training schedule calls at a few points.

:class:`Monitor` does nothing (every rank but 0 under DDP); :class:`RunMonitor` keeps ``status.json`` and the
TensorBoard log of a run. Times are measured in this process: seconds per training step over the steps
done so far, and the end-of-epoch work (validation, plots, checkpoints) separately for epochs with and
without validation; the ETA is the remaining steps and end-of-epoch work at those rates.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from pathlib import Path

from ml_benchmark_spategan.monitor.files import stop_file
from ml_benchmark_spategan.monitor.status import StatusFile, iso
from ml_benchmark_spategan.monitor.tensorboard import TensorBoardLog, flat_hparams

RATE_WINDOW = 50  # training steps in the samples/s window (their durations; end-of-epoch work left out)


class Monitor:
    """The no-op monitor (and the interface the training schedule calls)."""

    def attach(self, session, resumed: bool) -> None: ...
    def epoch_started(self, session) -> None: ...
    def step(self, session) -> None: ...
    def epoch_trained(self, session) -> None: ...
    def epoch_logged(self, session, row: dict) -> None: ...
    def checkpointed(self, session, path: Path) -> None: ...
    def finished(self, session) -> None: ...
    def ended(self, state: str, error: str | None = None) -> None: ...


def _validation_due(cfg, epoch: int, last: int) -> bool:
    every = cfg.logging.diagnostics_every_epochs
    return (epoch + 1) % every == 0 or epoch + 1 == last


class RunMonitor(Monitor):
    def __init__(self, run_dir: Path, logger: logging.Logger | None = None, interval: float | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.logger = logger or logging.getLogger("ml_benchmark_spategan")
        kwargs = {} if interval is None else {"interval": interval}
        self.status = StatusFile(self.run_dir, self._progress, **kwargs)
        self.tb: TensorBoardLog | None = None
        self.session = None
        self.train_seconds, self.train_steps = 0.0, 0
        self.end_seconds = {True: [], False: []}  # end-of-epoch work, by "validation ran"
        self._recent: collections.deque[float] = collections.deque(maxlen=RATE_WINDOW)
        self._t_prev: float | None = None
        self._t_epoch_end: float | None = None
        self._epoch_had_val = False
        self._epoch_number = 0  # 1-based epoch being trained or validated (or the last one, once finished)
        _clear_old_stop_file(self.run_dir, self.logger)
        self.status.set_state("starting")
        self.status.start_heartbeat()

    # --- schedule hooks ------------------------------------------------------------------------------
    def attach(self, session, resumed: bool) -> None:
        self.session = session
        self._epoch_number = min(session.epoch + 1, self._last_epoch(session))
        self.tb = _open_tensorboard(self.run_dir, session.global_step if resumed else None, self.logger)
        if self.tb is not None and not resumed:
            from ml_benchmark_spategan.config.loader import config_to_dict

            self.tb.config(config_to_dict(session.cfg))
        self.status.fields.update(self._totals(session))

    def epoch_started(self, session) -> None:
        now = time.perf_counter()
        if self._t_epoch_end is not None:
            self.end_seconds[self._epoch_had_val].append(now - self._t_epoch_end)
            self._t_epoch_end = None
        self._t_prev = now
        self._epoch_number = session.epoch + 1
        self.status.set_state("training")

    def step(self, session) -> None:
        now = time.perf_counter()
        if self._t_prev is not None:
            self.train_seconds += now - self._t_prev
            self.train_steps += 1
            self._recent.append(now - self._t_prev)
        self._t_prev = now
        if self.tb is not None and session.global_step % RATE_WINDOW == 0 and self.samples_per_s():
            self.tb.scalar("time/samples_per_s", self.samples_per_s(), session.global_step)

    def epoch_trained(self, session) -> None:
        self._t_epoch_end = time.perf_counter()
        self._t_prev = None
        self._epoch_had_val = _validation_due(session.cfg, session.epoch, self._last_epoch(session))
        if self._epoch_had_val:
            self.status.set_state("validating")

    def epoch_logged(self, session, row: dict) -> None:
        """The epoch's scalars and figures, before its checkpoint (a resume purges what comes after)."""
        if self.tb is None:
            return
        step = session.global_step
        self.tb.scalars(row, step)
        epoch = row["epoch"]
        self.tb.image("samples", self.run_dir / "sample_plots" / f"epoch_{epoch:03d}.png", step)
        self.tb.image("diagnostics", self.run_dir / f"diagnostics_epoch_{epoch:03d}.png", step)
        self.tb.flush()

    def checkpointed(self, session, path: Path) -> None:
        self.status.fields.update(last_checkpoint=str(path), last_checkpoint_time=iso(time.time()),
                                  **self._best(session))

    def finished(self, session) -> None:
        if self.tb is None:
            return
        from ml_benchmark_spategan.config.loader import config_to_dict

        last = session.history[-1] if session.history else {}
        metrics = {f"final/{k}": v for k, v in last.items() if k.startswith("val/")}
        metrics[f"best/{session.best_metric}"] = session.best
        self.tb.hparams(flat_hparams(config_to_dict(session.cfg)), metrics)

    def ended(self, state: str, error: str | None = None) -> None:
        self.status.close()
        self.status.set_state(state, error=error, ended=iso(time.time()))
        if self.tb is not None:
            self.tb.close()

    # --- derived fields ------------------------------------------------------------------------------
    @staticmethod
    def _last_epoch(session) -> int:
        return 1 if session.bundle.kind == "fixed" else session.cfg.training.epochs

    def _totals(self, session) -> dict:
        cap = session.cfg.training.max_steps_per_epoch
        per_epoch = min(len(session.train_loader), cap) if cap else len(session.train_loader)
        if session.bundle.kind == "fixed":
            per_epoch = 0
        epochs = self._last_epoch(session)
        return {"epochs": epochs, "steps_per_epoch": per_epoch, "steps_total": epochs * per_epoch,
                "batch_size": session.cfg.training.batch_size, "world_size": session.dist.world_size,
                "best_metric": session.best_metric, "model": session.cfg.model.name}

    def samples_per_s(self) -> float | None:
        if not self._recent or self.session is None:
            return None
        span = sum(self._recent)
        batch = self.session.cfg.training.batch_size * self.session.dist.world_size
        return len(self._recent) * batch / span if span > 0 else None

    def _best(self, session) -> dict:
        metric = session.best_metric
        epochs = [r["epoch"] for r in session.history if session.best is not None and r.get(metric) == session.best]
        return {"best": session.best, "best_epoch": epochs[-1] if epochs else None}

    def _eta(self, session) -> float | None:
        """Seconds to the end of the run, from this process's measured rates (None before the first step)."""
        if self.train_steps == 0:
            return None
        fields = self.status.fields
        steps_left = max(fields["steps_total"] - session.global_step, 0)
        seconds = steps_left * self.train_seconds / self.train_steps
        last = self._last_epoch(session)
        current = session.epoch if self.status.state == "training" else session.epoch + 1
        for epoch in range(current, last):
            done = self.end_seconds[_validation_due(session.cfg, epoch, last)]
            seconds += sum(done) / len(done) if done else 0.0
        return seconds

    def _progress(self) -> dict:
        session = self.session
        if session is None:
            return {}
        eta = self._eta(session)
        rate = self.samples_per_s()
        return {"epoch": self._epoch_number, "epochs_done": len(session.history),
                "epoch_step": session.epoch_step, "step": session.global_step,
                "samples_per_s": None if rate is None or not math.isfinite(rate) else round(rate, 3),
                "eta_s": None if eta is None else round(eta, 1),
                "eta_time": None if eta is None else iso(time.time() + eta),
                "stop_requested": stop_file(self.run_dir).exists()}


def _open_tensorboard(run_dir: Path, resumed_step: int | None, logger) -> TensorBoardLog | None:
    try:
        return TensorBoardLog(run_dir, resumed_step)
    except ImportError as err:  # torch.utils.tensorboard without the tensorboard package
        logger.warning("no TensorBoard event files: %s (pip install tensorboard)", err)
        return None


def _clear_old_stop_file(run_dir: Path, logger) -> None:
    """A stop request left from before this process started (e.g. the one that stopped the run it resumes)."""
    path = stop_file(run_dir)
    if path.exists():
        path.unlink(missing_ok=True)
        logger.info("removed an old stop request %s (written before this process started)", path)
