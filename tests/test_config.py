"""The config loader: defaults, YAML + --set overrides, validation messages, round trips, command line."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ml_benchmark_spategan.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    describe_config,
    dump_config,
    load_config,
)
from ml_benchmark_spategan.config.__main__ import main as config_main
from ml_benchmark_spategan.config.loader import resolve_best_metric

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str, name: str = "cfg.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _leaf_paths(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in d.items():
        path = f"{prefix}.{key}" if prefix else key
        out |= _leaf_paths(value, path) if isinstance(value, dict) else {path}
    return out


# --- defaults and config.yml -------------------------------------------------------------------------
def test_defaults_load_from_nothing_and_from_an_empty_file(tmp_path):
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.training.optimizer_d.name == "adamw" and cfg.training.optimizer_d.learning_rate == 5e-4
    assert load_config(_write(tmp_path, "")) == Config()
    assert load_config(_write(tmp_path, "data:\nlogging:\n")) == Config()  # sections with every key commented out


def test_config_yml_is_the_complete_default_experiment():
    path = REPO / "config.yml"
    cfg = load_config(path)
    assert cfg == Config()
    assert (cfg.data.target_variable, cfg.data.domain, cfg.data.experiment) == ("pr", "ALPS", "ESD_pseudo_reality")
    assert cfg.training.epochs == 20
    raw = yaml.safe_load(path.read_text())
    assert _leaf_paths(raw) == _leaf_paths(config_to_dict(Config())), "config.yml must spell out every key"


def test_stored_configs_without_later_keys_rebuild_their_old_models(tmp_path):
    """A run folder's config.yaml (or a checkpoint's config) written before model.base existed rebuilds the
    model it trained (no baseline); a user's config without the key gets today's default."""
    from ml_benchmark_spategan.config.loader import config_from_dict

    old = config_to_dict(Config())
    del old["model"]["base"], old["training"]["loss"]["spectral_weight"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    assert load_config(path, stored=True).model.base == "none"
    assert config_from_dict(old).model.base == "none"
    assert config_from_dict(old).training.loss.spectral_weight == 0.0  # the objective those runs trained with
    assert load_config(path).model.base == Config().model.base == "auto"
    assert "base" not in old["model"]  # the caller's mapping is left as it was


def test_yaml_values_merge_over_defaults(tmp_path):
    path = _write(tmp_path, "data:\n  domain: NZ\n  val_years: [1980]\ntraining:\n  optimizer_g:\n    learning_rate: 2e-4\n")
    cfg = load_config(path)
    assert cfg.data.domain == "NZ"
    assert cfg.data.val_years == ("1980",)  # a year YAML read as int is taken as its string
    assert cfg.training.optimizer_g.learning_rate == 2e-4  # exponent notation without a dot is a float
    assert cfg.training.optimizer_g.beta2 == 0.999 and cfg.data.experiment == "ESD_pseudo_reality"


# --- unknown keys, types, choices, bounds, years -----------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dta:\n  domain: NZ\n", "dta: unknown key; did you mean 'data'?"),
        ("data:\n  domian: NZ\n", "data.domian: unknown key; did you mean 'domain'?"),
        ("training:\n  optimizer_g:\n    learnig_rate: 0.1\n", "training.optimizer_g.learnig_rate: unknown key; did you mean 'learning_rate'?"),
        ("data:\n  loader:\n    chunk_day: 3\n", "data.loader.chunk_day: unknown key; did you mean 'chunk_days'?"),
        ("run:\n  zzz: 1\n", "run.zzz: unknown key; allowed keys: root, name"),
    ],
)
def test_unknown_keys_are_named_by_dotted_path_with_a_suggestion(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert info.value.problems == (message,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("training:\n  batch_size: '32'\n", "training.batch_size: expected int, got str '32'"),
        ("training:\n  epochs: true\n", "training.epochs: expected int, got bool True"),
        ("training:\n  epochs: 2.5\n", "training.epochs: expected int, got float 2.5"),
        ("data:\n  use_orography: 1\n", "data.use_orography: expected bool, got int 1"),
        ("data:\n  domain: {a: 1}\n", "data.domain: expected str, got a mapping {'a': 1}"),
        ("data:\n  loader: [1, 2]\n", "data.loader: expected a mapping (section), got a list [1, 2]"),
        ("data:\n  train_years: 1961-1974\n", "data.train_years: expected a list of str, got str '1961-1974'"),
        ("model:\n  generator:\n    upsample_channels: [64, x]\n", "model.generator.upsample_channels[1]: expected int, got str 'x'"),
        ("training:\n  loss:\n    l1_weight: .nan\n", "training.loss.l1_weight: expected a finite number, got nan"),
        ("[1, 2]\n", "the top level must be a mapping of sections, got a list [1, 2]"),
    ],
)
def test_wrong_types_name_key_expected_type_and_value(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert info.value.problems[0].endswith(message)
    assert len(info.value.problems) == 1


def test_ints_are_accepted_for_floats_and_lists_become_tuples(tmp_path):
    cfg = load_config(_write(tmp_path, "training:\n  loss:\n    mse_weight: 2\nmodel:\n  generator:\n    upsample_channels: [8, 4]\n"))
    assert cfg.training.loss.mse_weight == 2.0 and isinstance(cfg.training.loss.mse_weight, float)
    assert cfg.model.generator.upsample_channels == (8, 4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.domain=EU", "data.domain: 'EU' is not one of the allowed values: 'ALPS', 'NZ', 'SA'"),
        ("data.domain=nz", "data.domain: 'nz' is not one of the allowed values: 'ALPS', 'NZ', 'SA'; did you mean 'NZ'?"),
        ("training.precision=double", "training.precision: 'double' is not one of the allowed values: 'auto', 'fp32', 'bf16', 'fp16'"),
        ("training.optimizer_g.learning_rate=-0.001", "training.optimizer_g.learning_rate: must be > 0, got -0.001"),
        ("training.optimizer_g.learning_rate=0", "training.optimizer_g.learning_rate: must be > 0, got 0.0"),
        ("training.batch_size=0", "training.batch_size: must be >= 1, got 0"),
        ("model.generator.dropout=1.5", "model.generator.dropout: must be <= 1, got 1.5"),
        ("training.schedule.decay_gamma=0", "training.schedule.decay_gamma: must be > 0, got 0.0"),
        ("model.discriminator.hr_channels=[8, 0]", "model.discriminator.hr_channels[1]: must be >= 1, got 0"),
        ("model.generator.working_grid=[16]", "model.generator.working_grid: expected [] or [h, w], got [16]"),
        ("device=gpu", "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        ("logging.best_metric=rmse", "logging.best_metric: must be auto or a logged metric name starting with 'val/' or 'train/', got 'rmse'"),
    ],
)
def test_choices_bounds_and_patterns(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert info.value.problems == (f"{message} (from --set {override})",)


def test_values_on_the_bounds_are_accepted():
    cfg = load_config(None, ["model.generator.dropout=1", "training.loss.l1_weight=0", "training.batch_size=1", "device=cuda:1"])
    assert (cfg.model.generator.dropout, cfg.training.loss.l1_weight, cfg.training.batch_size) == (1.0, 0.0, 1)
    assert load_config(None, ["logging.best_metric=train/g/loss_adv"]).logging.best_metric == "train/g/loss_adv"
    assert load_config(None, []).logging.best_metric == "auto"
    assert [resolve_best_metric("auto", kind) for kind in ("gan", "regression", "fixed")] == \
        ["val/crps", "val/rmse", "val/rmse"]
    assert resolve_best_metric("val/corr", "gan") == "val/corr"
    with pytest.raises(ConfigError, match=r"logging.best_mode: must be 'min' with logging.best_metric: auto"):
        load_config(None, ["logging.best_mode=max"])
    with pytest.raises(ConfigError, match=r"logging.best_metric: 'val/rmsee' is not a validation metric; did you mean 'val/rmse'"):
        load_config(None, ["logging.best_metric=val/rmsee"])


@pytest.mark.parametrize(
    ("years", "message"),
    [
        ("[1961-74]", "data.train_years[0]: expected a year 'YYYY' or a range 'YYYY-YYYY', got '1961-74'"),
        ("[1975-1961]", "data.train_years[0]: year range '1975-1961' starts after it ends"),
        ("[1961, 'abcd']", "data.train_years[1]: expected a year 'YYYY' or a range 'YYYY-YYYY', got 'abcd'"),
        ("[1961 - 1974]", "data.train_years[0]: expected a year 'YYYY' or a range 'YYYY-YYYY', got '1961 - 1974'"),
    ],
)
def test_bad_year_strings(years, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"data.train_years={years}"])
    assert info.value.problems[0].startswith(message)


def test_files_source_requires_target_and_predictor_files():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.source=files"])
    assert [p.split(":")[0] for p in info.value.problems] == ["data.files.target_file", "data.files.predictor_files"]
    cfg = load_config(None, ["data.source=files", "data.files.target_file=y.nc", "data.files.predictor_files=[x1.nc, 'x*.nc']"])
    assert cfg.data.files.predictor_files == ("x1.nc", "x*.nc")


def test_all_problems_are_reported_together(tmp_path):
    path = _write(tmp_path, "data:\n  domian: NZ\n  domain: EU\ntraining:\n  batch_size: 0\n  epochs: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["training.optimizer_g.learning_rate=-1"])
    problems = info.value.problems
    assert len(problems) == 5
    assert str(info.value) == "\n".join(problems)
    assert {p.split(":")[0] for p in problems} == {
        "data.domian", "data.domain", "training.batch_size", "training.epochs", "training.optimizer_g.learning_rate"
    }


# --- files and YAML syntax ---------------------------------------------------------------------------
def test_missing_file_and_yaml_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yml"):
        load_config(tmp_path / "nope.yml")
    path = _write(tmp_path, "data:\n  domain: NZ\n  root: [a\n")
    with pytest.raises(ConfigError, match=r"cfg\.yml, line 4, column 1: invalid YAML"):
        load_config(path)
    path = _write(tmp_path, "training:\n  epochs: 3\n  epochs: 4\n")
    with pytest.raises(ConfigError, match=r"cfg\.yml, line 3, column 3: invalid YAML: duplicate key 'epochs' \(first given on line 2\)"):
        load_config(path)


# --- --set overrides ---------------------------------------------------------------------------------
def test_set_coerces_values_by_yaml_and_schema(tmp_path):
    path = _write(tmp_path, "training:\n  epochs: 7\n")
    cfg = load_config(path, [
        "training.epochs=3",  # int, over the file's value
        "training.optimizer_g.learning_rate=1e-4",  # float in exponent notation
        "training.loss.mse_weight=2",  # int to a float field
        "data.use_orography=false",  # bool
        "data.train_years=[1961-1974, 1975-1980]",  # list of strings
        "data.domain=NZ",  # string
        "run.name=001",  # a string field keeps the text as typed
        "training.optimizer_d.name=adam",  # nested path; siblings keep the FIELD default (lr 5e-4, not the class 1e-4)
        "data.loader={mode: memory}",  # a mapping merges into its section
    ])
    assert cfg.training.epochs == 3
    assert cfg.training.optimizer_g.learning_rate == 1e-4
    assert cfg.training.loss.mse_weight == 2.0
    assert cfg.data.use_orography is False
    assert cfg.data.train_years == ("1961-1974", "1975-1980")
    assert cfg.data.domain == "NZ" and cfg.run.name == "001"
    assert cfg.training.optimizer_d == dataclasses.replace(Config().training.optimizer_d, name="adam")
    assert cfg.data.loader == dataclasses.replace(Config().data.loader, mode="memory")
    assert load_config(None, ["run.name="]).run.name == ""


def test_set_errors():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["training.epoch=3", "training.epochs=null", "noequals", "data.train_years=[1961"])
    problems = info.value.problems
    assert problems[0] == "--set: 'noequals': expected KEY.PATH=VALUE, e.g. training.epochs=3"
    assert problems[1].startswith("--set data.train_years=[1961, line 1, column 6: invalid YAML")
    assert "training.epoch: unknown key; did you mean 'epochs'? (from --set training.epoch=3)" in problems
    assert "training.epochs: expected int, got null (from --set training.epochs=null)" in problems
    assert len(problems) == 4


# --- round trips and the reference -------------------------------------------------------------------
def test_yaml_and_dict_round_trips(tmp_path):
    cfg = load_config(None, [
        "data.train_years=[1961-1970, 1972]", "data.val_years=['1980']", "run.name=1e5", "data.root=yes",
        "data.files.orography_variable='a: #b'", "training.optimizer_g.learning_rate=3.5e-7", "device=cuda:0",
        "model.generator.working_grid=[16, 16]", "training.deterministic=true", "data.normalization.min_std=0",
    ])
    assert cfg.run.name == "1e5" and cfg.data.root == "yes"
    for comments in (True, False):
        path = dump_config(cfg, tmp_path / f"c{comments}.yml", comments=comments, header="run config\nline two")
        assert load_config(path) == cfg
    assert not list(tmp_path.glob("*.tmp"))
    as_dict = config_to_dict(cfg)
    assert as_dict["data"]["train_years"] == ["1961-1970", "1972"]
    assert as_dict["model"]["generator"]["upsample_channels"] == [96, 64, 32]
    assert config_from_dict(as_dict) == cfg
    assert config_from_dict(yaml.safe_load(config_to_yaml(cfg))) == cfg
    with pytest.raises(ConfigError, match=r"^training\.epochs: must be >= 1, got 0$"):
        config_from_dict({"training": {"epochs": 0}})


def test_reference_lists_every_key_and_matches_the_committed_file():
    text = describe_config()
    for path in _leaf_paths(config_to_dict(Config())):
        assert f"| `{path}` |" in text, path
    assert "| `training.optimizer_g.learning_rate` | float | `0.001` | > 0 | peak learning rate |" in text
    assert "| `data.domain` | str | `ALPS` | one of ALPS, NZ, SA | CORDEX ML-Bench domain |" in text
    committed = REPO / "docs" / "config_reference.md"
    assert committed.read_text(encoding="utf-8") == text, "regenerate: python -m ml_benchmark_spategan.config --reference > docs/config_reference.md"


def test_config_module_check(tmp_path, capsys):
    assert config_main(["--check", str(REPO / "config.yml"), "--set", "training.epochs=3"]) == 0
    assert config_main(["--check", str(_write(tmp_path, "training:\n  epochs: 0\n"))]) == 2
    assert "config error:\ntraining.epochs: must be >= 1, got 0" in capsys.readouterr().err


# --- training_v2.py ----------------------------------------------------------------------------------
def _run_training(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, str(REPO / "training_v2.py"), "--config", str(REPO / "config.yml"), *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_training_dry_run_prints_the_resolved_config_and_creates_nothing(tmp_path):
    result = _run_training(tmp_path, "--dry-run", "--set", "training.epochs=3", "--set", "data.domain=NZ")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["training"]["epochs"] == 3 and printed["data"]["domain"] == "NZ"
    assert config_from_dict(printed) == load_config(REPO / "config.yml", ["training.epochs=3", "data.domain=NZ"])
    assert list(tmp_path.iterdir()) == []


def test_training_bad_key_exits_2_with_the_message_and_creates_nothing(tmp_path):
    result = _run_training(tmp_path, "--set", "training.epoch=3", "--set", "run.root=runs_here")
    assert result.returncode == 2
    assert result.stderr == "config error:\ntraining.epoch: unknown key; did you mean 'epochs'? (from --set training.epoch=3)\n"
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert list(tmp_path.iterdir()) == []
