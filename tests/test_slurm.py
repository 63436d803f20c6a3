"""SLURM job scripts in a simulated SLURM environment: stub ``srun`` / ``scontrol`` on PATH.

The stub ``srun`` drops its own options, sets the task variables of a 1-task step, records its PID and
execs the command (so a signal to that PID reaches the training process, as ``--signal=USR1@300`` does);
the stub ``scontrol`` records its arguments. A fake training command (an executable script that records
its arguments and exits with ``$FAKE_STATUS``) tests the exit-status logic; real tiny CPU runs test the
whole path: a finished run, and a run stopped by SIGUSR1 that is requeued and then resumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ml_benchmark_spategan.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "slurm"
SCRIPTS = sorted(SLURM.glob("*.sbatch"))
JOB_ID = "1234"

SRUN_STUB = """#!/bin/bash
printf '%s\\n' "$*" >> "$STUB_DIR/srun.log"
while [[ $# -gt 0 && "$1" == -* ]]; do shift; done
export SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 SLURM_STEP_ID=0 SLURM_STEP_NUM_TASKS=1
echo $$ > "$STUB_DIR/task.pid"
exec "$@"
"""
SCONTROL_STUB = """#!/bin/bash
printf '%s\\n' "$*" >> "$STUB_DIR/scontrol.log"
"""
FAKE_TRAIN = """#!/bin/bash
printf '%s\\n' "$@" > "$STUB_DIR/args.txt"
if [[ -n "${FAKE_TERM_PARENT:-}" ]]; then kill -TERM "$PPID"; fi
exit "${FAKE_STATUS:-0}"
"""


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def sim(tmp_path):
    """Environment of a batch script of job 1234 on one node, with stubs on PATH; returns a helper."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    _executable(stubs / "srun", SRUN_STUB)
    _executable(stubs / "scontrol", SCONTROL_STUB)
    fake = _executable(tmp_path / "fake_train.sh", FAKE_TRAIN)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLURM_") and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update({
        "PATH": f"{stubs}{os.pathsep}{env['PATH']}", "STUB_DIR": str(tmp_path), "SLURM_JOB_ID": JOB_ID,
        "SLURM_NTASKS": "1", "SLURM_JOB_NODELIST": "localhost", "SLURM_SUBMIT_DIR": str(ROOT),
        "SLURM_CPUS_PER_TASK": "1", "LOG_DIR": str(tmp_path / "logs"), "RUN_ROOT": str(tmp_path / "runs"),
        "VENV": sys.prefix, "TRAIN_CMD": str(fake), "EVAL_CMD": str(fake),
    })
    return _Sim(tmp_path, env)


class _Sim:
    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp, self.env = tmp, env

    def run(self, script: str, *args: str, timeout: float = 60, **env) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SLURM / script), *args], env={**self.env, **env}, cwd=self.tmp,
                              capture_output=True, text=True, timeout=timeout)

    def record(self, name: str) -> list[str]:
        path = self.tmp / name
        return path.read_text().splitlines() if path.exists() else []


# --- scripts as text -------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert "set -euo pipefail" in text
    assert "$?" not in text.replace("|| status=$?", "")  # statuses are captured without pipes, once


def test_training_scripts_ask_for_requeue_and_the_signal_on_the_tasks():
    for name in ("train.sbatch", "sweep.sbatch", "sweep_list.sbatch"):
        directives = [line.split(None, 1)[1] for line in (SLURM / name).read_text().splitlines()
                      if line.startswith("#SBATCH")]
        for wanted in ("--requeue", "--open-mode=append", "--signal=USR1@300", "--gres=gpu:1", "--ntasks-per-node=1"):
            assert wanted in directives, (name, wanted)
        # "B:USR1" would signal the batch shell only, never the python tasks.
        assert not any("B:" in d for d in directives), name


# --- train.sbatch with a fake training command -----------------------------------------------------
def test_train_passes_config_overrides_run_dir_and_resume(sim):
    result = sim.run("train.sbatch", "--set", "c=3", SET_ARGS="--set a=1 --set b=2")
    assert result.returncode == 0, result.stderr
    run_dir = str(sim.tmp / "runs" / f"slurm_{JOB_ID}")
    assert sim.record("args.txt") == ["--config", "config.yml", "--set", "a=1", "--set", "b=2", "--set", "c=3",
                                      "--run-dir", run_dir, "--resume", "auto"]
    assert len(sim.record("srun.log")) == 1  # launched through srun, once
    assert sim.record("scontrol.log") == []
    assert (sim.tmp / "logs").is_dir()


def test_exit_75_requeues_the_job_and_exits_0(sim):
    result = sim.run("train.sbatch", FAKE_STATUS="75")
    assert result.returncode == 0, result.stderr
    assert sim.record("scontrol.log") == [f"requeue {JOB_ID}"]
    assert "requeueing job 1234" in result.stdout


def test_failure_is_passed_on_without_requeue(sim):
    result = sim.run("train.sbatch", FAKE_STATUS="2")
    assert result.returncode == 2
    assert sim.record("scontrol.log") == []
    assert "training failed with exit status 2" in result.stderr


def test_requeues_stop_after_max_requeues(sim):
    result = sim.run("train.sbatch", FAKE_STATUS="75", SLURM_RESTART_COUNT="3", MAX_REQUEUES="3")
    assert result.returncode == 75
    assert sim.record("scontrol.log") == []
    assert "already restarted 3 times" in result.stderr


def test_sigterm_to_the_batch_shell_leaves_the_requeue_to_slurm(sim):
    # Preemption / scancel: SLURM sends SIGTERM to the batch shell as well as to the tasks.
    result = sim.run("train.sbatch", FAKE_STATUS="75", FAKE_TERM_PARENT="1")
    assert result.returncode == 0, result.stderr
    assert sim.record("scontrol.log") == []
    assert "batch shell got SIGTERM" in result.stderr and "not requeueing" in result.stdout


def test_outside_a_job_the_script_refuses(sim):
    env = {k: v for k, v in sim.env.items() if k != "SLURM_JOB_ID"}
    result = subprocess.run(["bash", str(SLURM / "train.sbatch")], env=env, cwd=sim.tmp, capture_output=True, text=True)
    assert result.returncode != 0 and "not inside a SLURM job" in result.stderr
    assert sim.record("args.txt") == []


# --- sweep_list.sbatch (a fixed list of runs) ----------------------------------------------------------
SWEEP = "# header\n\n--set a=1\n  # indented comment\n--set a=2 --set b=x\r\n\n--set a=3\n"


def test_sweep_task_runs_its_entry_in_its_own_folder(sim):
    sweep = sim.tmp / "sweep.txt"
    sweep.write_text(SWEEP)
    env = {"SWEEP_FILE": str(sweep), "SLURM_ARRAY_JOB_ID": "777", "SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_ID": "779"}
    result = sim.run("sweep_list.sbatch", SET_ARGS="--set common=0", FAKE_STATUS="75", **env)
    assert result.returncode == 0, result.stderr
    assert sim.record("args.txt") == ["--config", "config.yml", "--set", "common=0", "--set", "a=2", "--set", "b=x",
                                      "--run-dir", str(sim.tmp / "runs" / "sweep_777" / "task_1"), "--resume", "auto"]
    assert sim.record("scontrol.log") == ["requeue 779"]  # the array task's own job id


def test_sweep_task_out_of_range(sim):
    sweep = sim.tmp / "sweep.txt"
    sweep.write_text(SWEEP)
    result = sim.run("sweep_list.sbatch", SWEEP_FILE=str(sweep), SLURM_ARRAY_JOB_ID="777", SLURM_ARRAY_TASK_ID="3")
    assert result.returncode == 2
    assert "has 3 entries (0..2); array task 3 is out of range" in result.stderr
    assert sim.record("args.txt") == []


def test_example_sweep_matches_the_array_and_the_config_schema():
    lines = [line for line in (SLURM / "sweeps" / "example.txt").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert f"#SBATCH --array=0-{len(lines) - 1}" in (SLURM / "sweep_list.sbatch").read_text()
    for line in lines:
        words = line.split()
        assert words[0::2] == ["--set"] * (len(words) // 2) and len(words) % 2 == 0, line
        cfg = load_config(ROOT / "config.yml", words[1::2])  # every key exists and every value validates
        assert cfg is not None


# --- sweep.sbatch (Optuna workers) ----------------------------------------------------------------------
def test_sweep_workers_join_one_study_named_after_the_array(sim):
    env = {"SLURM_ARRAY_JOB_ID": "777", "SLURM_ARRAY_TASK_ID": "2", "SLURM_JOB_ID": "779", "SWEEP_CMD": str(sim.tmp / "fake_train.sh")}
    result = sim.run("sweep.sbatch", "--summary", SET_ARGS="--set a=1", TRIALS="30", **env)
    assert result.returncode == 0, result.stderr
    sweep_dir = str(sim.tmp / "runs" / "sweeps" / "gan_777")
    assert sim.record("args.txt") == ["--config", "config.yml", "--set", "a=1", "--space", "slurm/sweeps/gan.yml",
                                      "--study", "gan_777", "--sweep-dir", sweep_dir, "--worker-index", "2",
                                      "--trials", "30", "--summary"]
    assert len(sim.record("srun.log")) == 1 and sim.record("scontrol.log") == []


def test_sweep_worker_stopped_is_requeued_and_a_failure_passed_on(sim):
    env = {"SLURM_ARRAY_JOB_ID": "777", "SLURM_ARRAY_TASK_ID": "0", "SLURM_JOB_ID": "778", "SWEEP_CMD": str(sim.tmp / "fake_train.sh")}
    result = sim.run("sweep.sbatch", FAKE_STATUS="75", STUDY="mine", STORAGE="sqlite:///s.db", **env)
    assert result.returncode == 0, result.stderr
    assert sim.record("scontrol.log") == ["requeue 778"]
    args = sim.record("args.txt")
    assert args[args.index("--study") + 1] == "mine" and args[args.index("--storage") + 1] == "sqlite:///s.db"
    result = sim.run("sweep.sbatch", FAKE_STATUS="2", **env)
    assert result.returncode == 2 and sim.record("scontrol.log") == ["requeue 778"]
    result = sim.run("sweep.sbatch", SPACE="nowhere.yml", **env)
    assert result.returncode == 2 and "search-space file nowhere.yml not found" in result.stderr


# --- evaluate.sbatch --------------------------------------------------------------------------------------
def test_evaluate_passes_run_and_options(sim):
    run_dir = sim.tmp / "runs" / "r1"
    run_dir.mkdir(parents=True)
    result = sim.run("evaluate.sbatch", str(run_dir), "--no-plots", SPLIT="test")
    assert result.returncode == 0, result.stderr
    assert sim.record("args.txt") == [str(run_dir), "--checkpoint", "best", "--split", "test", "--members", "10",
                                      "--no-plots"]
    result = sim.run("evaluate.sbatch", FAKE_STATUS="3", RUN_DIR=str(run_dir), CHECKPOINT="last")
    assert result.returncode == 3 and sim.record("args.txt")[:3] == [str(run_dir), "--checkpoint", "last"]


def test_evaluate_needs_an_existing_run_folder(sim):
    result = sim.run("evaluate.sbatch")
    assert result.returncode == 2 and "usage: sbatch slurm/evaluate.sbatch RUN_DIR" in result.stderr
    result = sim.run("evaluate.sbatch", str(sim.tmp / "missing"))
    assert result.returncode == 2 and "not found" in result.stderr


# --- real training runs ---------------------------------------------------------------------------------
def _resume_auto_supported() -> bool:
    result = subprocess.run([sys.executable, str(ROOT / "training_v2.py"), "--help"], capture_output=True, text=True,
                            cwd=ROOT)
    return "--resume" in result.stdout and "auto" in result.stdout


def _tiny_set_args(data_root: Path, epochs: int) -> str:
    sets = {
        "data.root": data_root, "data.domain": "NZ", "data.train_years": "[1961]", "data.val_years": "[1962]",
        "model.generator.filters": 8, "model.generator.upsample_channels": "[8,8,8]", "model.generator.n_coarse_blocks": 1,
        "model.discriminator.hr_channels": "[8,8,8,8,8]", "model.discriminator.lr_channels": "[8,8]",
        "training.epochs": epochs, "training.max_steps_per_epoch": 2, "training.batch_size": 4,
        "training.val_members": 2, "training.schedule.warmup_epochs": 1, "logging.progress_bar": "false",
        "logging.plot_every_epochs": 0, "logging.diagnostics_every_epochs": 100, "device": "cpu",
    }
    return " ".join(f"--set {k}={v}" for k, v in sets.items())


@pytest.fixture
def real_sim(sim, cordex_root):
    if not _resume_auto_supported():
        pytest.skip("training_v2.py does not offer --resume auto yet")
    sim.env.pop("TRAIN_CMD")  # the default: python training_v2.py
    sim.env["SET_ARGS"] = _tiny_set_args(cordex_root, epochs=1)
    return sim


def _run_and_signal(sim: _Sim, after_line: str, timeout: float = 300) -> tuple[int, str]:
    """Start train.sbatch; send SIGUSR1 to the training task once ``after_line`` is printed."""
    proc = subprocess.Popen(["bash", str(SLURM / "train.sbatch")], env=sim.env, cwd=sim.tmp, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []

    def watch():
        sent = False
        for line in proc.stdout:
            lines.append(line)
            if not sent and after_line in line:
                os.kill(int((sim.tmp / "task.pid").read_text()), signal.SIGUSR1)
                sent = True

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    proc.wait(timeout=timeout)
    reader.join(10)
    return proc.returncode, "".join(lines)


def test_real_run_stopped_by_sigusr1_is_requeued_then_resumed_to_the_end(real_sim):
    """Job 1234 gets SIGUSR1 (as before its time limit) -> last.pt, exit 75, requeue, script exit 0; the
    requeued job (same id, same run folder) resumes and finishes with exit 0 and no further requeue."""
    real_sim.env["SET_ARGS"] = real_sim.env["SET_ARGS"].replace("training.epochs=1", "training.epochs=2")
    status, output = _run_and_signal(real_sim, "run folder:")
    assert status == 0, output[-3000:]
    assert real_sim.record("scontrol.log") == [f"requeue {JOB_ID}"]
    run_dir = real_sim.tmp / "runs" / f"slurm_{JOB_ID}"
    assert f"--run-dir {run_dir} --resume auto" in real_sim.record("srun.log")[0]
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert not (run_dir / "checkpoints" / "final_generator.pt").exists()  # stopped before the end
    assert "SIGUSR1" in (run_dir / "training.log").read_text()

    result = real_sim.run("train.sbatch", timeout=300, SLURM_RESTART_COUNT="1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert real_sim.record("scontrol.log") == [f"requeue {JOB_ID}"]  # no second requeue
    log = (run_dir / "training.log").read_text()
    assert "resumed" in log and "epoch 2/2" in log
    for name in ("last.pt", "best.pt", "final_generator.pt", "final_discriminator.pt"):
        assert (run_dir / "checkpoints" / name).is_file(), name
