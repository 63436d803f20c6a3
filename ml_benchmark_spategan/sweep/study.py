"""The Optuna study behind a sweep: storage, joining, heartbeats, lost trials and the trial budget.

Storage: a journal file (``<sweep folder>/journal.log``, Optuna's ``JournalFileBackend`` with the
``O_EXCL`` open lock, safe on NFSv3+ for any number of workers) unless ``--storage`` gives an Optuna RDB
URL (``sqlite:///...``, ``postgresql://...``) or another journal file path.

Lost workers. Optuna's own heartbeat works with RDB storages only (``JournalStorage`` does not implement
it), so the sweep keeps its own, the same way for every storage: a running trial records the time as the
system attribute ``heartbeat`` every ``workers.heartbeat_seconds``, and names its worker (host, pid and
the process start time) in the user attribute ``worker``. Before a worker takes a trial it fails every
running trial whose worker is gone -- a dead process on the same host at once, otherwise after
``workers.grace_seconds`` without a heartbeat -- and re-queues it with Optuna's
``RetryHeartbeatStaleTrialCallback`` (up to ``workers.max_retries`` times); the retry resumes the trial's
run folder from its ``last.pt``. A worker whose trial was declared lost while it still ran notices at its
next heartbeat and drops the trial. A worker stopped by SIGTERM/SIGUSR1 fails and re-queues its own
trial the same way before it exits.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from ml_benchmark_spategan.config.loader import ConfigError
from ml_benchmark_spategan.sweep.space import Space

JOURNAL_NAME = "journal.log"
_LOCK_GRACE_SECONDS = 30  # a lock file left by a killed worker is broken after this long


def is_rdb_url(storage: str) -> bool:
    return "://" in storage


def open_storage(storage: str) -> optuna.storages.BaseStorage:
    """An Optuna storage: an RDB URL, or a journal file path (created with its folder if missing)."""
    if is_rdb_url(storage):
        try:
            return optuna.storages.RDBStorage(storage)
        except Exception as err:  # SQLAlchemy raises many types (bad URL, driver missing, unreachable)
            raise ConfigError([f"--storage {storage}: cannot open ({type(err).__name__}: {err})"]) from err
    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = JournalFileOpenLock(str(path), grace_period=_LOCK_GRACE_SECONDS)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


@contextlib.contextmanager
def budget_lock(storage: str) -> Iterator[None]:
    """Serialises 'count the trials, then ask for one' among journal-file workers (an RDB storage has no
    shared file: there two workers starting at the same moment can run one trial more than asked)."""
    if is_rdb_url(storage):
        yield
        return
    lock = JournalFileOpenLock(str(Path(storage).with_name(Path(storage).name + ".ask")),
                               grace_period=_LOCK_GRACE_SECONDS)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def open_study(storage: optuna.storages.BaseStorage, name: str, space: Space, direction: str, metric: str,
               base: dict, sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """Create the study, or join it; a study made with another space, objective or base config is refused."""
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    identity = {"space": space.as_dict(), "metric": metric, "base_config": base}
    stored = study.user_attrs
    if not stored:
        for key, value in identity.items():
            study.set_user_attr(key, value)
        return study
    differ = [key for key in identity if stored.get(key) != identity[key]]
    if study.direction.name.lower() != direction:
        differ.append("direction")
    if differ:
        raise ConfigError([f"study {name!r} exists with another {', '.join(differ)}; use the same --config/--set and "
                           "--space as its other workers, or another --study name"])
    return study


# --- which worker owns a trial ----------------------------------------------------------------------------
def _process_start(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot) or None; tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_identity(trial_number: int) -> dict:
    info = {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid()),
            "trial": trial_number}
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        if var in os.environ:
            info[var.lower()] = os.environ[var]
    return info


def _worker_alive_here(worker: dict) -> bool | None:
    """True/False for a worker of this host, None when it runs elsewhere (then only heartbeats tell)."""
    if worker.get("host") != socket.gethostname():
        return None
    pid = worker.get("pid")
    if not isinstance(pid, int):
        return None
    start = _process_start(pid)
    return start is not None and (worker.get("start") is None or start == worker.get("start"))


def _last_sign_of_life(trial: FrozenTrial) -> float:
    times = [trial.datetime_start.timestamp()] if trial.datetime_start else []
    beat = trial.system_attrs.get("heartbeat")
    if isinstance(beat, list) and len(beat) == 2 and beat[0] == trial.number:
        times.append(float(beat[1]))
    return max(times, default=0.0)


def lost_reason(trial: FrozenTrial, grace_seconds: float, now: float | None = None) -> str | None:
    """Why running ``trial`` is lost, or None while its worker may still be at it."""
    worker = trial.user_attrs.get("worker", {})
    if isinstance(worker, dict) and worker.get("trial") == trial.number:  # not a stale copy from a retried trial
        alive = _worker_alive_here(worker)
        if alive is False:
            return f"worker process {worker.get('pid')} on {worker.get('host')} is gone"
    silent = (now or time.time()) - _last_sign_of_life(trial)
    if silent > grace_seconds:
        return f"no heartbeat for {silent:.0f} s (grace {grace_seconds:g} s)"
    return None


def fail_and_requeue(study: optuna.Study, trial_id: int, reason: str, max_retries: int) -> FrozenTrial | None:
    """Fail running trial ``trial_id`` with ``reason`` and re-queue its parameters; None when another
    worker finished or failed it first."""
    storage = study._storage  # noqa: SLF001 - Optuna's documented way to act on a trial by id
    try:
        storage.set_trial_user_attr(trial_id, "lost", reason)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    failed = storage.get_trial(trial_id)
    with warnings.catch_warnings():  # "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=max_retries)(study, failed)
    return failed


def fail_lost_trials(study: optuna.Study, grace_seconds: float, max_retries: int) -> list[tuple[int, str]]:
    """Fail and re-queue every running trial whose worker is gone; [(trial number, reason)]."""
    lost = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = lost_reason(trial, grace_seconds)
        if reason and fail_and_requeue(study, trial._trial_id, reason, max_retries) is not None:  # noqa: SLF001
            lost.append((trial.number, reason))
    return lost


def requeued_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that were re-queued (their retry stands for them)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def budget_used(trials: list[FrozenTrial]) -> int:
    """Trials that count towards ``--trials``: all but failed ones that were re-queued."""
    requeued = requeued_numbers(trials)
    return sum(1 for t in trials if not (t.state == TrialState.FAIL and t.number in requeued))


def should_ask(study: optuna.Study, n_trials: int) -> bool:
    """Whether this worker takes another trial: a re-queued one waits, or the budget is not used up."""
    trials = study.get_trials(deepcopy=False)
    return any(t.state == TrialState.WAITING for t in trials) or budget_used(trials) < n_trials


class Heartbeat:
    """Records ``heartbeat`` on a running trial from a thread; ``lost`` turns true when the storage says
    the trial was finished by someone else (another worker declared it lost)."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval_seconds: float):
        self._storage, self._trial = study._storage, trial  # noqa: SLF001
        self._interval = interval_seconds
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-trial-{trial.number}", daemon=True)

    def beat(self) -> None:
        try:
            self._storage.set_trial_system_attr(self._trial._trial_id, "heartbeat",  # noqa: SLF001
                                                [self._trial.number, time.time()])
        except optuna.exceptions.UpdateFinishedTrialError:
            self.lost = True

    def _run(self) -> None:
        while not self._stop.wait(self._interval) and not self.lost:
            self.beat()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
