"""Graceful stop on SIGTERM / SIGUSR1 (SLURM sends one before the time limit with ``--signal``).

The handler only records the signal; the training loop looks at the flag after each step, writes
``last.pt`` and raises :class:`Preempted`, which ``training_v2.py`` turns into exit status
:data:`REQUEUE_EXIT_CODE` so the job script can ``scontrol requeue`` the job. A second signal while the
checkpoint is being written changes nothing (the flag is already set; the write is atomic anyway).
"""

from __future__ import annotations

import signal
import threading

REQUEUE_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(RuntimeError):
    """Training stopped on a signal after saving ``last.pt``; resume with ``--resume``."""

    exit_code = REQUEUE_EXIT_CODE


class StopFlag:
    """Records the first stop signal received while installed."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def __bool__(self) -> bool:
        return self.signum is not None

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
