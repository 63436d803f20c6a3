"""--resume RUN: the folder is checked before anything else, the run continues from its own config.yaml,
and --config/--set may change only the keys that are safe to change on resume (bad input: exit 2, a message
naming the folder or key, nothing changed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_sweep import as_overrides, tiny_base_dict

from ml_benchmark_spategan.config import load_config
from ml_benchmark_spategan.training.resume import RESUMABLE_KEYS
from ml_benchmark_spategan.training.run import train

ROOT = Path(__file__).resolve().parents[1]


def _main(*argv: str) -> int:
    import training_v2

    return training_v2.main(list(argv))


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory) -> list[str]:
    """--set overrides of a tiny 1-epoch run (bring-your-own 32x32 data, ~0.01 M parameters)."""
    tree = tiny_base_dict(tmp_path_factory.mktemp("resume_data"))
    tree["training"]["epochs"] = 1
    return as_overrides(tree)


@pytest.fixture(scope="module")
def finished_run(tiny_sets):
    """A 1-epoch run made from config.yml with --set overrides only."""
    return train(load_config(ROOT / "config.yml", tiny_sets))


@pytest.fixture
def run_copy(finished_run, tmp_path):
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_missing_folder_is_reported_before_the_config_is_read(tmp_path, capsys):
    """The shipped config's data years would fail (no data here): the folder is named first."""
    missing = tmp_path / "runs" / "missing"
    assert _main("--config", str(ROOT / "config.yml"), "--resume", str(missing)) == 2
    err = capsys.readouterr().err
    assert f"--resume {missing}: run folder does not exist" in err and "years" not in err
    assert not (tmp_path / "runs").exists()


def test_folder_without_checkpoint_or_config(tmp_path, capsys):
    folder = tmp_path / "half"
    folder.mkdir()
    assert _main("--resume", str(folder)) == 2
    assert "no config.yaml in the folder" in capsys.readouterr().err
    (folder / "config.yaml").write_text("training:\n  epochs: 2\n")
    assert _main("--resume", str(folder)) == 2
    err = capsys.readouterr().err
    assert "no checkpoints/last.pt" in err and f"--run-dir {folder} --resume auto" in err
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml"]


def test_run_made_with_overrides_resumes_from_its_own_config_and_extends(run_copy, capsys):
    """No override retyped: the tiny model of the run (not config.yml's 96 filters) is continued for a
    second epoch; config.yaml records the new epoch count."""
    assert _main("--resume", str(run_copy), "--set", "training.epochs=2") == 0, capsys.readouterr().err
    history = json.loads((run_copy / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert "resumed" in (run_copy / "training.log").read_text()
    cfg = load_config(run_copy / "config.yaml")
    assert cfg.training.epochs == 2 and cfg.model.generator.filters == 8
    # shortening below the epochs already done is refused, nothing changed
    before = _snapshot(run_copy)
    assert _main("--resume", str(run_copy), "--set", "training.epochs=1") == 2
    assert "training.epochs: 1 is fewer than the 2 epochs" in capsys.readouterr().err
    assert _snapshot(run_copy) == before


@pytest.mark.parametrize("args, key", [
    (["--set", "training.optimizer_g.learning_rate=0.1"], "training.optimizer_g.learning_rate"),
    (["--set", "model.generator.filters=16"], "model.generator.filters"),
    (["--set", "logging.best_metric=val/crps"], "logging.best_metric"),
    (["--config", str(ROOT / "config.yml")], "model.generator.filters"),
])
def test_unsafe_changes_are_refused_naming_the_key(run_copy, capsys, args, key):
    before = _snapshot(run_copy)
    assert _main("--resume", str(run_copy), *args) == 2
    err = capsys.readouterr().err
    assert f"{key}: cannot change when resuming {run_copy}" in err
    assert "keys that may change on resume: training.epochs" in err
    if "--config" in args:  # every differing key is named, with the way out
        assert "data.source" in err and "model.generator.n_coarse_blocks" in err and "drop --config" in err
    assert _snapshot(run_copy) == before


def test_dry_run_shows_the_resumed_config(run_copy, capsys):
    assert _main("--resume", str(run_copy), "--set", "training.epochs=5", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "epochs: 5" in out and "filters: 8" in out
    assert load_config(run_copy / "config.yaml").training.epochs == 1  # a dry run changes nothing


def test_run_dir_naming_another_folder_is_refused(run_copy, tmp_path, capsys):
    assert _main("--resume", str(run_copy), "--run-dir", str(tmp_path / "other")) == 2
    assert "name different folders" in capsys.readouterr().err


def test_resume_auto_with_the_original_arguments_continues(run_copy, tiny_sets, capsys):
    """What a requeued SLURM job does: the same --config/--set as the first start (here with more epochs)."""
    sets = [s if not s.startswith("training.epochs=") else "training.epochs=2" for s in tiny_sets]
    args = ["--config", str(ROOT / "config.yml"), "--run-dir", str(run_copy), "--resume", "auto"]
    assert _main(*args, *sum((["--set", s] for s in sets), [])) == 0, capsys.readouterr().err
    assert [h["epoch"] for h in json.loads((run_copy / "history.json").read_text())] == [1, 2]
    assert "resumed" in (run_copy / "training.log").read_text()


def test_resumable_keys_exist_in_the_schema():
    from ml_benchmark_spategan.config.loader import _field_type

    for key in RESUMABLE_KEYS:
        assert _field_type(key.split(".")) is not None, key
