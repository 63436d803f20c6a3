"""Progress with an ETA for every long loop: a tqdm bar on a terminal, log lines elsewhere.

* On a terminal (stderr is a TTY) and outside SLURM: a tqdm bar with rate and ETA.
* Not a TTY (redirected to a file, CI, a pipe) or under SLURM (``SLURM_JOB_ID`` set): no bar (its carriage
  returns would fill the log) but one log line each time another ``every_percent`` % is done, with the
  elapsed time and the ETA, e.g. ``validation: 40% (8/20 batches), 12 s elapsed, ETA 18 s``.
* ``enabled=False``: nothing at all.

Usage::

    for batch in track(loader, total=len(loader), desc="validation", unit="batch", logger=log):
        ...
    with Progress(total=n, desc="epoch 1/3", unit="step") as bar:
        ...; bar.update()
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator

#: Default step of the log lines that replace the bar off a terminal.
EVERY_PERCENT = 10
LOG = logging.getLogger("ml_benchmark_spategan.progress")


def progress_mode(enabled: bool = True) -> str:
    """``"bar"`` (tqdm: a terminal outside SLURM), ``"log"`` (log lines every N %) or ``"off"``."""
    if not enabled:
        return "off"
    if os.environ.get("SLURM_JOB_ID"):
        return "log"
    stream = sys.stderr
    return "bar" if stream is not None and hasattr(stream, "isatty") and stream.isatty() else "log"


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``; ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Counts ``update(n)`` calls towards ``total`` and shows them as a bar or as log lines (see module).

    ``initial``: already done (e.g. a resumed epoch); the ETA uses only the work done by this object.
    ``logger``: where the log lines go (default ``ml_benchmark_spategan.progress``).
    """

    def __init__(self, total: int, desc: str, *, unit: str = "it", initial: int = 0, enabled: bool = True,
                 logger: logging.Logger | None = None, every_percent: float = EVERY_PERCENT):
        if every_percent <= 0 or every_percent > 100:
            raise ValueError(f"progress: every_percent must be in (0, 100], got {every_percent}")
        self.total, self.desc, self.unit = max(int(total), 0), desc, unit
        self.done = self._start_done = int(initial)
        self.mode = progress_mode(enabled)
        self.logger = logger or LOG
        self.every = float(every_percent)
        self._next_percent = self._percent_step(self.done)
        self._start = time.perf_counter()
        self._bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=self.done, desc=desc, unit=unit, leave=False,
                             dynamic_ncols=True)

    def _percent_step(self, done: int) -> float:
        """The next multiple of ``every`` % above the share ``done``."""
        percent = 100.0 * done / self.total if self.total else 100.0
        return (math.floor(percent / self.every + 1e-9) + 1) * self.every

    def eta_seconds(self) -> float:
        """Seconds left at the rate of this object's work so far (NaN before the first update)."""
        elapsed, work = time.perf_counter() - self._start, self.done - self._start_done
        return elapsed / work * (self.total - self.done) if work > 0 else math.nan

    def message(self) -> str:
        percent = 100.0 * self.done / self.total if self.total else 100.0
        elapsed = time.perf_counter() - self._start
        text = f"{self.desc}: {percent:.0f}% ({self.done}/{self.total} {self.unit}), {format_seconds(elapsed)} elapsed"
        return text + (f", ETA {format_seconds(self.eta_seconds())}" if self.done < self.total else "")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "log" and self.total and 100.0 * self.done / self.total >= self._next_percent - 1e-9:
            self.logger.info(self.message())
            self._next_percent = self._percent_step(self.done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(iterable: Iterable, desc: str, *, total: int | None = None, **kwargs) -> Iterator:
    """Yield the items of ``iterable`` and count each one (``total`` default: ``len(iterable)``); keyword
    arguments as for :class:`Progress`."""
    if total is None:
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update()
