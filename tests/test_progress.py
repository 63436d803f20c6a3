"""utils.progress: a tqdm bar on a terminal, log lines every N % off a terminal or under SLURM, nothing when off."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from ml_benchmark_spategan.utils import progress
from ml_benchmark_spategan.utils.progress import Progress, format_seconds, progress_mode, track


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _terminal(monkeypatch) -> _Terminal:
    """stderr replaced by a fake terminal (inside the test: pytest re-captures stderr between phases)."""
    stream = _Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return stream


@pytest.fixture
def clock(monkeypatch):
    """A fake perf_counter advanced by hand: 2 s per item in the tests below."""
    now = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    return now


def test_modes(monkeypatch):
    _terminal(monkeypatch)
    assert progress_mode() == "bar"
    assert progress_mode(enabled=False) == "off"
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert progress_mode() == "log"  # SLURM output is a file even when srun --pty gives a TTY
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_mode() == "log"


def test_log_lines_every_ten_percent_with_eta(monkeypatch, caplog, clock):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    log = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        with Progress(20, "validation", unit="batches", logger=log) as bar:
            for _ in range(20):
                clock[0] += 2.0
                bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "validation: 10% (2/20 batches), 4 s elapsed, ETA 36 s"
    assert lines[4] == "validation: 50% (10/20 batches), 20 s elapsed, ETA 20 s"
    assert lines[-1] == "validation: 100% (20/20 batches), 40 s elapsed"  # no ETA when done
    assert sys.stderr.getvalue() == ""  # no bar characters in a log file


def test_log_lines_coarse_steps_and_resumed_start(monkeypatch, caplog, clock):
    """Updates larger than the step log once; a resumed count (initial) is not in the rate."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with caplog.at_level(logging.INFO, logger=progress.LOG.name):
        bar = Progress(10, "epoch 2/3", unit="steps", initial=5, every_percent=25)
        clock[0] += 10.0
        bar.update(3)  # 50 % -> 80 %: crosses 75 % once
        clock[0] += 5.0
        bar.update(2)
    assert [r.getMessage() for r in caplog.records] == [
        "epoch 2/3: 80% (8/10 steps), 10 s elapsed, ETA 7 s",
        "epoch 2/3: 100% (10/10 steps), 15 s elapsed",
    ]


def test_bar_on_terminal_and_nothing_when_off(monkeypatch, caplog):
    terminal = _terminal(monkeypatch)
    with caplog.at_level(logging.INFO):
        items = list(track(range(7), "predicting", unit="batches"))
        assert items == list(range(7))
        out = terminal.getvalue()  # tqdm redraws at most every 0.1 s: the first frame at least, with the ETA slot
        assert out.startswith("\rpredicting:") and "/7 [00:00<" in out and "batches/s]" in out
        assert caplog.records == []  # the bar replaces the log lines
        terminal.seek(0)
        terminal.truncate()
        assert list(track(iter([1, 2]), "off", total=2, enabled=False)) == [1, 2]
    assert terminal.getvalue() == "" and caplog.records == []


def test_format_seconds_and_bad_step():
    assert [format_seconds(s) for s in (0.4, 42, 185, 7620, float("nan"))] == ["0 s", "42 s", "3 min 05 s",
                                                                                 "2 h 07 min", "?"]
    with pytest.raises(ValueError, match="every_percent must be in"):
        Progress(5, "x", every_percent=0)
