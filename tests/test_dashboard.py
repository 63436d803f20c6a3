"""The dashboard in a real browser: a tiny training process runs in the background, the dashboard serves
its runs folder on a free local port, headless Chromium (selenium) watches the step count advance, presses
Stop and sees "stopped" with a checkpoint; the resumed run finishes. The live page's screenshot is written
to ``test-artifacts/dashboard_live.png`` (or ``$TEST_ARTIFACTS``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import daily_times, predictor_dataset, target_dataset, write

from ml_benchmark_spategan.monitor.status import read_status

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))
TRAIN_DAYS, BATCH = 48, 2  # 24 small steps per epoch
RUN = "live"

# All text of the page, through Panel's shadow roots (style and script text left out).
PAGE_TEXT = """
function walk(n, out) {
  if (n.shadowRoot) walk(n.shadowRoot, out);
  for (const c of n.childNodes) {
    if (c.nodeType === 3) out.push(c.textContent);
    else if ((c.nodeType === 1 && !['STYLE', 'SCRIPT'].includes(c.tagName)) || c.nodeType === 11) walk(c, out);
  }
  return out;
}
return walk(document.body, []).join(' ');
"""
# The first <button> whose text is arguments[0], through shadow roots.
FIND_BUTTON = """
function find(n, label) {
  if (n.shadowRoot) { const r = find(n.shadowRoot, label); if (r) return r; }
  for (const c of n.children || []) {
    if (c.tagName === 'BUTTON' && c.textContent.trim() === label) return c;
    const r = find(c, label); if (r) return r;
  }
  return null;
}
return find(document.body, arguments[0]);
"""


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dashboard extra's tests need it)")
    pytest.importorskip("panel", reason="Panel is not installed: pip install -e '.[dashboard]'")
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("no Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1750"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(folder: Path) -> Path:
    times = sorted([*daily_times("1990-01-01", TRAIN_DAYS), *daily_times("1991-01-01", 8)])
    pred = write(predictor_dataset(times, shape=(8, 8)), folder / "pred.nc")
    target = write(target_dataset(times, shape=(32, 32)), folder / "target.nc")
    tree = {
        "data": {"source": "files", "train_years": [1990], "val_years": [1991], "use_orography": False,
                 "files": {"predictor_files": [str(pred)], "target_file": str(target)}},
        "model": {"generator": {"filters": 8, "upsample_channels": [8, 8], "n_coarse_blocks": 1},
                  "discriminator": {"hr_channels": [8, 8], "lr_channels": [8]}},
        "training": {"epochs": 50, "batch_size": BATCH, "val_members": 2, "schedule": {"warmup_epochs": 0}},
        "logging": {"progress_bar": False, "plot_every_epochs": 1, "checkpoint_every_epochs": 0},
        "runtime": {"num_threads": 1}, "device": "cpu",
    }
    path = folder / "tiny.yml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _wait_for(predicate, timeout: float, what: str, poll: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _http_ok(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def _step(text: str) -> int | None:
    match = re.search(r"step\s+(\d+)/(\d+)", text)
    return int(match.group(1)) if match else None


def test_live_page_watch_stop_and_resume(tmp_path):
    browser = _browser()
    runs = tmp_path / "runs"
    runs.mkdir()
    config, run_dir, port = _config(tmp_path), runs / RUN, _free_port()
    train_cmd = [sys.executable, str(ROOT / "training_v2.py"), "--config", str(config)]
    trainer = subprocess.Popen([*train_cmd, "--run-dir", str(run_dir)], cwd=ROOT, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dashboard = subprocess.Popen([sys.executable, "-m", "ml_benchmark_spategan.dashboard", str(runs), "--port", str(port),
                                  "--refresh", "1"], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _http_ok(url + "/"), 60, "the dashboard to serve")
        _wait_for(lambda: (run_dir / "sample_plots" / "epoch_001.png").exists(), 90, "the first epoch's sample maps")
        browser.get(f"{url}/run?run={RUN}")
        text = lambda: browser.execute_script(PAGE_TEXT)  # noqa: E731
        first = _wait_for(lambda: _step(text()), 30, "a step count on the page")
        later = _wait_for(lambda: (s := _step(text())) and s > first and s, 30, "the step count to advance")
        assert "training" in text() and "samples/s" in text() and "val/rmse" in text()
        time.sleep(1.5)  # the sample map image arrives with a refresh
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard_live.png"))

        _wait_for(lambda: browser.execute_script(FIND_BUTTON, "Stop"), 10, "the Stop button").click()
        assert trainer.wait(timeout=60) == 0, trainer.stderr.read()[-2000:]
        _wait_for(lambda: "stopped" in text(), 20, 'state "stopped" on the page')
        status = read_status(run_dir)
        # the stop lands at the next step boundary: the step the page last showed, or a later one
        assert status["state"] == "stopped" and status["step"] >= later
        assert (run_dir / "checkpoints" / "last.pt").is_file() and not (run_dir / "STOP").exists()
        log = (run_dir / "training.log").read_text()
        assert "stop request" in log and "not a requeue" in log

        epochs = status["epoch"]  # finish the epoch it was stopped in
        resumed = subprocess.run([*train_cmd, "--resume", str(run_dir), "--set", f"training.epochs={epochs}"], cwd=ROOT,
                                 env=_env(), capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        history = json.loads((run_dir / "history.json").read_text())
        assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
        assert read_status(run_dir)["state"] == "finished"
        _wait_for(lambda: "finished" in text(), 20, 'state "finished" on the page')
        assert _step(text()) == epochs * TRAIN_DAYS // BATCH
    finally:
        browser.quit()
        for proc in (trainer, dashboard):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


# --- Start: the launcher behind the button ---------------------------------------------------------------
def test_overrides_are_parsed_one_per_line():
    from ml_benchmark_spategan.monitor.dashboard.launch import parse_overrides

    text = "training.epochs=3\n\n# a comment\n--set data.domain=NZ\n  model.name = unet \n"
    assert parse_overrides(text) == ["training.epochs=3", "data.domain=NZ", "model.name = unet"]
    with pytest.raises(ValueError, match="'training.epochs 3': expected key.path=value"):
        parse_overrides("training.epochs 3")


def test_start_refuses_a_bad_config_and_creates_nothing(tmp_path):
    from ml_benchmark_spategan.monitor.dashboard.launch import start

    runs = tmp_path / "runs"
    runs.mkdir()
    done = start(ROOT, runs, str(ROOT / "config.yml"), ["training.epochz=3"], use_sbatch=False)
    assert not done.ok and "training.epochz" in done.message and list(runs.iterdir()) == []
    assert not start(ROOT, runs, str(tmp_path / "missing.yml"), [], use_sbatch=False).ok


def test_start_submits_with_sbatch_when_asked(tmp_path, monkeypatch):
    """A stand-in sbatch on PATH records its arguments and environment exports."""
    from ml_benchmark_spategan.monitor.dashboard import launch

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "sbatch_args.txt"
    fake = bin_dir / "sbatch"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\necho "Submitted batch job 4242"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(launch, "check", lambda repo, config, overrides: None)  # the dry run is tested above
    repo = tmp_path / "repo"
    (repo / "slurm").mkdir(parents=True)
    (repo / "config.yml").write_text("{}\n")
    done = launch.start(repo, tmp_path / "runs", "config.yml", ["training.epochs=3"])
    assert done.ok and "Submitted batch job 4242" in done.message
    args = record.read_text().splitlines()
    assert args == [f"--export=ALL,CONFIG=config.yml,RUN_DIR={done.run_dir}", "slurm/train.sbatch",
                    "--set", "training.epochs=3"]
    assert done.run_dir.parent == (tmp_path / "runs").resolve() and (repo / "logs").is_dir()


def test_start_spawns_a_local_run(tmp_path, monkeypatch):
    """Without sbatch: a detached training_v2.py process into a new run folder of the runs root (here a
    stand-in script that records its arguments)."""
    from ml_benchmark_spategan.monitor.dashboard import launch

    monkeypatch.setattr(launch, "check", lambda repo, config, overrides: None)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.yml").write_text("{}\n")
    (repo / "training_v2.py").write_text("import json, sys; print(json.dumps(sys.argv[1:]))\n")
    done = launch.start(repo, tmp_path / "runs", "config.yml", ["training.epochs=3"], use_sbatch=False)
    assert done.ok
    log = tmp_path / "runs" / ".launch" / f"{done.run_dir.name}.log"
    _wait_for(lambda: log.is_file() and log.read_text().strip(), 30, "the launched process's output")
    assert json.loads(log.read_text()) == ["--config", "config.yml", "--set", "training.epochs=3",
                                           "--run-dir", str(done.run_dir)]
    launch.reap()


# --- what the pages read ---------------------------------------------------------------------------------
def test_page_readers(tmp_path):
    pytest.importorskip("panel", reason="Panel is not installed: pip install -e '.[dashboard]'")
    from ml_benchmark_spategan.monitor.dashboard import folder as rf
    from ml_benchmark_spategan.monitor.dashboard.app import facts_html, runs_frame

    run = tmp_path / "runs" / "20260101_000000_abc123"
    (run / "evaluation" / "val").mkdir(parents=True)
    (run / "evaluation" / "val" / "summary.md").write_text("| score | value |\n|---|---|\n| rmse | 1.5 |\n")
    (run / "evaluation" / "val" / "psd.png").write_bytes(b"png")
    (run / "metrics.csv").write_text("epoch,train/g/loss,val/rmse,note\n1,2.0,,a\n2,1.5,3.25,b\n")
    (run / "training.log").write_text("".join(f"line {i}\n" for i in range(100)))
    status = {"run": run.name, "state": "training", "epoch": 2, "epochs": 10, "step": 30, "steps_total": 150,
              "samples_per_s": 12.5, "eta_s": 3725, "best": 3.25, "best_metric": "val/rmse", "best_epoch": 2,
              "heartbeat": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
    (run / "status.json").write_text(json.dumps(status))
    assert rf.run_folder(tmp_path / "runs", run.name) == run
    assert rf.run_folder(tmp_path / "runs", "../runs") is None and rf.run_folder(tmp_path / "runs", "nope") is None
    columns = rf.metrics(run)
    assert columns["epoch"] == [1.0, 2.0] and columns["val/rmse"][1] == 3.25 and "note" not in columns
    assert rf.log_tail(run, lines=3).splitlines() == ["line 97", "line 98", "line 99"]
    assert rf.evaluations(run) == {"val": {"summary": (run / "evaluation/val/summary.md").read_text(),
                                           "figures": [run / "evaluation/val/psd.png"]}}
    frame = runs_frame(tmp_path / "runs")
    assert frame.iloc[0]["state"] == "training" and frame.iloc[0]["step"] == "30/150"
    assert frame.iloc[0]["eta"] == "01:02:05" and frame.iloc[0]["progress"] == "20%"
    assert f'href="run?run={run.name}"' in frame.iloc[0]["run"]
    facts = facts_html(read_status(run))
    assert "val/rmse=3.25 @2" in facts and "12.5" in facts and "state-training" in facts
