"""Optuna sweeps: search-space validation, trials as run folders, pruning, failures, concurrent workers on one
journal file, a worker killed with SIGKILL mid-trial, best_config.yaml.

Trials are tiny SpaGANs on a bring-your-own dataset of 48 days (8x8 predictors -> 32x32 target) so that a
trial takes seconds on a CPU.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import optuna
import pytest
import yaml
from conftest import daily_times, predictor_dataset, target_dataset, write
from optuna.trial import TrialState

from ml_benchmark_spategan.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def tiny_base_dict(folder: Path) -> dict:
    """Config of a tiny run: 32 training days (1990), 16 validation days (1991), 8x8 predictors -> 32x32
    target, a SpaGAN of ~0.01 M parameters; the NetCDF files are written into ``folder``."""
    times = np.concatenate([daily_times("1990-01-01", 32), daily_times("1991-01-01", 16)])
    pred = write(predictor_dataset(times, shape=(8, 8)), folder / "pred.nc")
    target = write(target_dataset(times, shape=(32, 32)), folder / "target.nc")
    return {
        "data": {"source": "files", "train_years": [1990], "val_years": [1991], "use_orography": False,
                 "files": {"predictor_files": [str(pred)], "target_file": str(target)}},
        "model": {"generator": {"filters": 8, "upsample_channels": [8, 8], "n_coarse_blocks": 1},
                  "discriminator": {"hr_channels": [8, 8], "lr_channels": [8]}},
        "training": {"epochs": 2, "max_steps_per_epoch": 2, "batch_size": 8, "val_members": 2,
                     "schedule": {"warmup_epochs": 0}},
        "logging": {"progress_bar": False, "plot_every_epochs": 0, "checkpoint_every_epochs": 0},
        "device": "cpu", "run": {"root": str(folder / "runs")},
    }


def as_overrides(tree: dict, prefix: str = "") -> list[str]:
    """``tree`` as ``--set`` arguments (key.path=value, value in YAML flow style)."""
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += as_overrides(value, f"{path}.")
        else:
            out.append(f"{path}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix(chr(10) + '...')}")
    return out


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sweep_data")
    path = folder / "base.yml"
    path.write_text(yaml.safe_dump(tiny_base_dict(folder)))
    return path


def _space(tmp_path: Path, params: dict, **top) -> Path:
    path = tmp_path / "space.yml"
    path.write_text(yaml.safe_dump({**top, "params": params}))
    return path


def _sweep_main(*argv: str) -> int:
    from ml_benchmark_spategan.sweep.__main__ import main

    return main(list(argv))


def _load_study(folder: Path, name: str) -> optuna.Study:
    from ml_benchmark_spategan.sweep.study import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(str(folder / "journal.log")))


LR = "training.optimizer_g.learning_rate"


# --- the search space --------------------------------------------------------------------------------------
BAD_SPACES = [
    ({"training.optimizer_g.learnig_rate": {"type": "float", "low": 1e-5, "high": 1e-3}},
     "training.optimizer_g.learnig_rate: unknown key; did you mean 'learning_rate'?"),
    ({LR: {"type": "float", "low": 1e-2, "high": 1e-3}}, f"{LR}: low (0.01) is greater than high (0.001)"),
    ({LR: {"type": "float", "low": 0.0, "high": 1e-3, "log": True}}, f"{LR}: a log scale needs low > 0, got low=0.0"),
    ({"training.n_critic": {"type": "int", "low": -1, "high": 3, "log": True}},
     "training.n_critic: a log scale needs low > 0, got low=-1"),
    ({"model.generator.dropout": {"type": "float", "low": 0.1, "high": 1.5}},
     "model.generator.dropout: must be <= 1, got 1.5 (from params in"),
    ({"training.loss.adversarial_loss": {"type": "categorical", "choices": ["bce", "hinj"]}},
     "training.loss.adversarial_loss: 'hinj' is not one of the allowed values: 'bce', 'hinge'; did you mean 'hinge'?"),
    ({LR: {"type": "flaot", "low": 1e-5, "high": 1e-3}}, f"{LR}: type 'flaot' is not a parameter type; did you mean 'float'?"),
    ({LR: {"type": "float", "low": 1e-5, "hihg": 1e-3}}, f"{LR}.hihg: unknown field; did you mean 'high'?"),
    ({"training.n_critic": {"type": "float", "low": 1, "high": 3}}, "training.n_critic: is an integer key; use type: int"),
    ({"logging.best_metric": {"type": "categorical", "choices": ["val/rmse"]}}, "logging.best_metric: set by the sweep"),
    ({}, "params: a mapping of dotted config keys to ranges is required"),
]


@pytest.mark.parametrize("params, message", BAD_SPACES, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD_SPACES)])
def test_bad_search_space_is_refused_naming_the_key(tmp_path, params, message):
    from ml_benchmark_spategan.sweep.space import load_space

    with pytest.raises(ConfigError) as info:
        load_space(_space(tmp_path, params), load_config(ROOT / "config.yml"))
    assert any(message in problem for problem in info.value.problems), info.value.problems


def test_unknown_key_reads_as_the_set_error(tmp_path):
    from ml_benchmark_spategan.sweep.space import load_space

    key = "training.optimizer_g.learnig_rate"
    with pytest.raises(ConfigError) as from_set:
        load_config(ROOT / "config.yml", [f"{key}=0.001"])
    space = _space(tmp_path, {key: {"type": "float", "low": 1e-5, "high": 1e-3}})
    with pytest.raises(ConfigError) as from_space:
        load_space(space, load_config(ROOT / "config.yml"))
    assert from_set.value.problems[0].split(" (from ")[0] == from_space.value.problems[0].split(" (from ")[0]
    assert from_space.value.problems[0].endswith(f"(from params in {space})")


@pytest.mark.parametrize("top, message", [
    ({"prunner": {"name": "median"}}, "prunner: unknown key; did you mean 'pruner'?"),
    ({"pruner": {"name": "medain"}}, "pruner.name: 'medain' is not one of the allowed values"),
    ({"objective": {"metric": "val/crsp"}}, "objective.metric: 'val/crsp' is not a validation metric; did you mean 'val/crps'?"),
    ({"objective": {"metric": "val/std_ratio"}}, "objective.metric: val/std_ratio is best at 1"),
    ({"trials": 0}, "trials: must be >= 1, got 0"),
])
def test_bad_study_settings_are_refused(tmp_path, top, message):
    from ml_benchmark_spategan.sweep.space import load_space

    space = _space(tmp_path, {LR: {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}}, **top)
    with pytest.raises(ConfigError) as info:
        load_space(space, load_config(ROOT / "config.yml"))
    assert any(message in p for p in info.value.problems), info.value.problems


def test_cli_bad_space_fails_before_anything_is_created(tmp_path, capsys):
    space = _space(tmp_path, {LR: {"type": "float", "low": 1e-2, "high": 1e-3}})
    runs = tmp_path / "runs"
    assert _sweep_main("--config", str(ROOT / "config.yml"), "--set", f"run.root={runs}", "--space", str(space)) == 2
    assert f"{LR}: low (0.01) is greater than high (0.001)" in capsys.readouterr().err
    assert not runs.exists()


def test_shipped_space_files_validate():
    from ml_benchmark_spategan.sweep.space import load_space

    for path in sorted((ROOT / "slurm" / "sweeps").glob("*.yml")):
        space = load_space(path, load_config(ROOT / "config.yml"))
        assert space.distributions, path


def test_objective_and_units():
    from ml_benchmark_spategan.sweep.space import ObjectiveSpec, metric_unit, resolve_objective

    assert resolve_objective(ObjectiveSpec(), "gan") == ("val/crps", "minimize")
    assert resolve_objective(ObjectiveSpec(), "regression") == ("val/rmse", "minimize")
    assert resolve_objective(ObjectiveSpec(metric="val/corr"), "gan") == ("val/corr", "maximize")
    assert metric_unit("val/crps", "pr") == "mm/day" and metric_unit("val/rmse", "tasmax") == "K"
    assert metric_unit("val/ralsd", "pr") == "dB²" and metric_unit("val/corr", "pr") == "1"


# --- one worker in this process: pruning, a failed trial, the summary ------------------------------------
@pytest.fixture(scope="module")
def pruned_study(tiny_base, tmp_path_factory):
    """Three planted trials: a sensible learning rate (completes), lr = 1 (pruned after epoch 1 by the median
    pruner), and one whose loss turns NaN (fails; the study goes on)."""
    import ml_benchmark_spategan.training.loop as loop
    from ml_benchmark_spategan.sweep.space import load_space
    from ml_benchmark_spategan.sweep.worker import WorkerOptions, prepare, run_worker, setup_logging

    tmp = tmp_path_factory.mktemp("pruned")
    space = _space(tmp, {LR: {"type": "float", "low": 1e-5, "high": 2.0, "log": True}}, trials=3,
                   pruner={"name": "median", "startup_trials": 1, "warmup_epochs": 0})
    base = load_config(tiny_base)
    opts = WorkerOptions(study="planted", folder=tmp / "sweep", storage=str(tmp / "sweep" / "journal.log"), n_trials=3)
    setup_logging()
    sweep = prepare(base, load_space(space, base), opts)
    for lr in (3e-4, 1.0, 2e-4):
        sweep.study.enqueue_trial({LR: lr})
    real_step = loop._step

    def nan_for_lr_2e4(session, batch):
        out = real_step(session, batch)
        if session.cfg.training.optimizer_g.learning_rate == 2e-4:
            out = {**out, "g/loss": out["g/loss"] * float("nan")}
        return out

    loop._step = nan_for_lr_2e4
    try:
        status = run_worker(sweep, opts.storage)
    finally:
        loop._step = real_step
    return status, sweep


def test_planted_bad_configuration_is_pruned_and_its_folder_marked(pruned_study):
    status, sweep = pruned_study
    assert status == 0
    trials = sweep.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    good, bad, failed = trials
    assert bad.params[LR] == 1.0 and bad.last_step == 1
    assert bad.intermediate_values[1] > good.intermediate_values[1]  # worse than the median (of one) at epoch 1
    folder = Path(bad.user_attrs["run_dir"])
    assert folder == sweep.folder / "trials" / "trial_0001"
    mark = json.loads((folder / "trial.json").read_text())
    assert (mark["state"], mark["pruned_at_epoch"], mark["trial"]) == ("pruned", 1, 1)
    assert [h["epoch"] for h in json.loads((folder / "history.json").read_text())] == [1]  # epoch 2 never ran
    assert "trial 1 pruned after epoch 1" in (folder / "training.log").read_text()
    assert not (folder / "checkpoints" / "final_generator.pt").exists()


def test_failed_trial_is_recorded_and_the_study_goes_on(pruned_study):
    _, sweep = pruned_study
    failed = sweep.study.trials[2]
    assert "NonFiniteLossError" in failed.user_attrs["error"]
    mark = json.loads((Path(failed.user_attrs["run_dir"]) / "trial.json").read_text())
    assert mark["state"] == "fail" and "non-finite loss" in mark["error"]


def test_objective_is_the_best_epoch_of_the_completed_trial(pruned_study):
    _, sweep = pruned_study
    good = sweep.study.trials[0]
    history = json.loads((Path(good.user_attrs["run_dir"]) / "history.json").read_text())
    assert good.value == min(h["val/crps"] for h in history)
    assert good.intermediate_values == {h["epoch"]: h["val/crps"] for h in history}


def test_best_config_round_trips_through_the_loader_and_training_cli(pruned_study, capsys):
    import training_v2

    _, sweep = pruned_study
    best = sweep.folder / "best_config.yaml"
    cfg = load_config(best)
    assert cfg == load_config(sweep.folder / "trials" / "trial_0000" / "config.yaml")
    assert cfg.training.optimizer_g.learning_rate == 3e-4
    assert (cfg.logging.best_metric, cfg.logging.best_mode) == ("val/crps", "min")
    assert training_v2.main(["--config", str(best), "--dry-run"]) == 0
    assert load_config(None, []) != cfg  # a real configuration, not the defaults
    capsys.readouterr()


def test_trials_csv_and_figures(pruned_study):
    _, sweep = pruned_study
    rows = list(csv.DictReader(open(sweep.folder / "trials.csv")))
    assert [(r["trial"], r["state"]) for r in rows] == [("0", "complete"), ("1", "pruned"), ("2", "fail")]
    assert float(rows[0]["val/crps [mm/day]"]) == pytest.approx(sweep.study.trials[0].value)
    assert rows[1]["pruned_at_epoch"] == "1" and float(rows[1][LR]) == 1.0
    assert "NonFiniteLossError" in rows[2]["error"]
    for name in ("optimization_history.png", "learning_curves.png"):
        image = mpimg.imread(sweep.folder / name)[..., :3]
        assert image.shape[0] > 300 and image.std() > 0.05, name


def test_plot_axes_carry_the_metric_unit():
    from matplotlib.figure import Figure

    from ml_benchmark_spategan.visualization.sweep import (
        plot_learning_curves,
        plot_optimization_history,
        plot_param_importances,
    )

    ax = plot_optimization_history(Figure().add_subplot(), [0, 1, 2, 3], [2.0, 1.5, np.nan, 1.8],
                                   ["complete", "complete", "fail", "pruned"], "val/crps", "mm/day", "minimize")
    assert ax.get_ylabel() == "val/crps (mm/day)" and ax.get_xlabel() == "trial number"
    best = [line for line in ax.get_lines() if line.get_label() == "best so far"][0]
    assert list(best.get_ydata()) == [2.0, 1.5, 1.5] and list(best.get_xdata()) == [0, 1, 3]
    ax = plot_learning_curves(Figure().add_subplot(), [(0, [1, 2], [2.0, 1.9], "complete")], "val/rmse", "K")
    assert ax.get_ylabel() == "val/rmse (K)" and ax.get_xlabel() == "epoch"
    ax = plot_param_importances(Figure().add_subplot(), ["a", "b"], [0.25, 0.75], "PED-ANOVA")
    assert "fraction" in ax.get_xlabel() and [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]


# --- worker processes ---------------------------------------------------------------------------------------
def _worker(base: Path, space: Path, folder: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "ml_benchmark_spategan.sweep", "--config", str(base), "--space", str(space),
            "--study", "s", "--sweep-dir", str(folder), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_workers_share_one_journal_study(tiny_base, tmp_path):
    """4 trials, 2 concurrent workers: trial numbers 0..3 once each, every trial complete with its own folder."""
    space = _space(tmp_path, {LR: {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}}, trials=4,
                   pruner={"name": "none"})
    folder = tmp_path / "sweep"
    workers = [_worker(tiny_base, space, folder, "--set", "training.epochs=1", "--worker-index", str(k))
               for k in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    trials = _load_study(folder, "s").get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.params[LR] for t in trials}) == 4  # different seeds per worker: no point drawn twice
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) == 2  # both workers ran trials
    for t in trials:
        mark = json.loads((folder / "trials" / f"trial_{t.number:04d}" / "trial.json").read_text())
        assert (mark["trial"], mark["state"]) == (t.number, "complete")
    assert (folder / "best_config.yaml").is_file() and (folder / "param_importances.png").is_file()


def test_worker_killed_mid_trial_then_a_new_worker_completes_the_study(tiny_base, tmp_path):
    """SIGKILL after the trial's first epoch: the next worker fails the orphaned trial, re-queues it, and the
    retry resumes the same run folder from last.pt to the end."""
    space = _space(tmp_path, {LR: {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}}, trials=1)
    folder = tmp_path / "sweep"
    first = _worker(tiny_base, space, folder)
    last = folder / "trials" / "trial_0000" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert _load_study(folder, "s").trials[0].state == TrialState.RUNNING  # orphaned

    second = _worker(tiny_base, space, folder)
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output[-3000:]
    assert "trial 0 lost (worker process" in output
    lost, retry = _load_study(folder, "s").get_trials()
    assert lost.state == TrialState.FAIL and "is gone" in lost.user_attrs["lost"]
    assert retry.state == TrialState.COMPLETE and retry.system_attrs["failed_trial"] == 0
    assert retry.params == lost.params
    run = folder / "trials" / "trial_0000"
    assert retry.user_attrs["run_dir"] == str(run)
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2]
    assert "resumed" in (run / "training.log").read_text()
    assert json.loads((run / "trial.json").read_text())["trials"] == [0, 1]
    rows = list(csv.DictReader(open(folder / "trials.csv")))
    assert [(r["trial"], r["state"], r["retry_of"]) for r in rows] == [("0", "requeued", ""), ("1", "complete", "0")]


def test_a_worker_with_another_space_cannot_join(tiny_base, tmp_path, capsys, pruned_study):
    _, sweep = pruned_study
    space = _space(tmp_path, {LR: {"type": "float", "low": 1e-6, "high": 1e-3, "log": True}})
    status = _sweep_main("--config", str(tiny_base), "--space", str(space), "--study", "planted",
                         "--sweep-dir", str(sweep.folder), "--summary")
    assert status == 2
    assert "study 'planted' exists with another space" in capsys.readouterr().err


def test_stop_signal_requeues_the_trial_and_a_later_worker_resumes_it_mid_epoch(tiny_base, tmp_path):
    """SIGUSR1 in the middle of a trial's first epoch (SLURM's warning before the time limit): the worker
    saves last.pt, fails and re-queues its trial and returns 75; the next worker continues the same folder
    from the interrupted step."""
    import ml_benchmark_spategan.training.loop as loop
    from ml_benchmark_spategan.sweep.space import load_space
    from ml_benchmark_spategan.sweep.worker import WorkerOptions, prepare, run_worker, setup_logging

    space = _space(tmp_path, {LR: {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}}, trials=1)
    base = load_config(tiny_base, ["training.epochs=1"])
    opts = WorkerOptions(study="s", folder=tmp_path / "sweep", storage=str(tmp_path / "sweep" / "journal.log"), n_trials=1)
    setup_logging()
    real_step, calls = loop._step, {"n": 0}

    def step_then_signal(session, batch):
        out = real_step(session, batch)
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
        return out

    loop._step = step_then_signal
    try:
        assert run_worker(prepare(base, load_space(space, base), opts), opts.storage) == 75
    finally:
        loop._step = real_step
    sweep = prepare(base, load_space(space, base), opts)
    stopped, waiting = sweep.study.get_trials()
    assert stopped.state == TrialState.FAIL and "worker stopped" in stopped.user_attrs["lost"]
    assert waiting.state == TrialState.WAITING and waiting.params == stopped.params
    run = Path(stopped.user_attrs["run_dir"])
    assert json.loads((run / "trial.json").read_text())["state"] == "requeued"
    assert run_worker(sweep, opts.storage) == 0
    retry = sweep.study.trials[1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["run_dir"] == str(run)
    assert "resumed" in (run / "training.log").read_text() and "step 1 of the epoch" in (run / "training.log").read_text()
    assert json.loads((run / "history.json").read_text())[0]["train/steps"] == 2


def _running(number: int, worker: dict, started_ago: float, beat_ago: float | None):
    import datetime as dt

    now = dt.datetime.now()
    system = {} if beat_ago is None else {"heartbeat": [number, time.time() - beat_ago]}
    return optuna.trial.FrozenTrial(number=number, trial_id=number, state=TrialState.RUNNING, value=None, values=None,
                                    datetime_start=now - dt.timedelta(seconds=started_ago), datetime_complete=None,
                                    params={}, distributions={}, user_attrs={"worker": worker}, system_attrs=system,
                                    intermediate_values={})


def test_lost_trials_are_told_by_process_or_heartbeat():
    import socket

    from ml_benchmark_spategan.sweep.study import lost_reason, worker_identity

    me = worker_identity(3)
    dead = {**me, "pid": 2**22 + 12345}  # above the default pid_max: no such process
    elsewhere = {"host": "node-that-is-not-this-one", "pid": 1, "trial": 3}
    assert lost_reason(_running(3, me, 10_000, 10_000), grace_seconds=600) is not None  # silent too long
    assert lost_reason(_running(3, me, 10_000, 5), grace_seconds=600) is None  # alive here and beating
    assert "is gone" in lost_reason(_running(3, dead, 1, 1), grace_seconds=600)
    assert lost_reason(_running(3, elsewhere, 10_000, 30), grace_seconds=600) is None
    assert "no heartbeat for" in lost_reason(_running(3, elsewhere, 10_000, 700), grace_seconds=600)
    assert lost_reason(_running(4, dead, 1, None), grace_seconds=600) is None  # a retry's copied attrs: not its worker
    assert me["host"] == socket.gethostname()


def test_heartbeat_notices_a_trial_finished_by_someone_else():
    from ml_benchmark_spategan.sweep.study import Heartbeat, budget_used, fail_and_requeue, should_ask

    study = optuna.create_study()
    trial = study.ask()
    heartbeat = Heartbeat(study, trial, interval_seconds=3600)
    heartbeat.beat()
    assert not heartbeat.lost and study.trials[0].system_attrs["heartbeat"][0] == 0
    fail_and_requeue(study, trial._trial_id, "test", max_retries=1)
    heartbeat.beat()
    assert heartbeat.lost
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert budget_used(trials) == 1 and should_ask(study, 1)  # the re-queued copy stands for the failed trial


def test_sweep_folder_of_another_study_is_refused(tiny_base, tmp_path, capsys, pruned_study):
    _, sweep = pruned_study
    space = _space(tmp_path, {LR: {"type": "float", "low": 1e-5, "high": 2.0, "log": True}})
    assert _sweep_main("--config", str(tiny_base), "--space", str(space), "--study", "other",
                       "--sweep-dir", str(sweep.folder)) == 2
    assert f"sweep folder {sweep.folder} belongs to study 'planted'" in capsys.readouterr().err
    assert [t.number for t in sweep.study.get_trials()] == [0, 1, 2]
