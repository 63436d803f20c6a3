"""Graceful stop on SIGTERM / SIGUSR1 (SLURM sends one before the time limit with ``--signal``).

The handler only records the signal; the training loop looks at the flag after each step, writes
``last.pt`` and raises :class:`Preempted`, which ``training_v2.py`` turns into exit status
:data:`REQUEUE_EXIT_CODE` so the job script can ``scontrol requeue`` the job. A second signal while the
checkpoint is being written changes nothing (the flag is already set; the write is atomic anyway).

A stop request file (``<run>/STOP``, :mod:`ml_benchmark_spategan.monitor.files`) sets the flag too (one
``stat`` per step, negligible next to a training step); that stop is not a requeue: :class:`StopRequested`,
exit 0.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

REQUEUE_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(RuntimeError):
    """Training stopped on a signal after saving ``last.pt``; resume with ``--resume``."""

    exit_code = REQUEUE_EXIT_CODE


class StopRequested(Preempted):
    """Training stopped on a stop request file after saving ``last.pt``: a deliberate stop, not a requeue."""

    exit_code = 0


class StopFlag:
    """Records the first stop signal received while installed, or a stop request file once seen."""

    def __init__(self, stop_file: str | Path | None = None) -> None:
        self.signum: int | None = None
        self.stop_file = Path(stop_file) if stop_file else None
        self.file_seen = False
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        if self.signum is not None:
            return signal.Signals(self.signum).name
        return f"stop request {self.stop_file}" if self.file_seen else ""

    def __bool__(self) -> bool:
        return self.signum is not None or self._file_requested()

    def _file_requested(self) -> bool:
        if not self.file_seen and self.stop_file is not None:
            self.file_seen = self.stop_file.exists()
        return self.file_seen

    def classify(self, stopped: Preempted) -> Preempted:
        """``stopped`` as :class:`StopRequested` when no signal arrived here (a stop file asked; under DDP
        the rank that saw it made every rank stop); unchanged otherwise."""
        if self.signum is None and not isinstance(stopped, StopRequested):
            return StopRequested(str(stopped))
        return stopped

    def consume_file(self) -> None:
        """Remove the honoured stop request, so that ``--resume`` runs on."""
        if self.file_seen and self.stop_file is not None:
            self.stop_file.unlink(missing_ok=True)

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def install(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():  # handlers can only live in the main thread
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
