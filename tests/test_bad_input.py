"""The bad-input matrix: each case exits non-zero through ``training_v2.main`` with a message naming the
offending key/file/variable, creates no run folder and changes no existing file."""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import daily_times, predictor_dataset, target_dataset, write

from ml_benchmark_spategan.cordex import PREDICTOR_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("training_v2", ROOT / "training_v2.py")
training_v2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(training_v2)

TINY = ["model.generator.filters=8", "model.generator.upsample_channels=[8,8,8]", "model.generator.n_coarse_blocks=1",
        "model.discriminator.hr_channels=[8,8,8,8,8]", "model.discriminator.lr_channels=[8,8]",
        "training.epochs=1", "training.max_steps_per_epoch=1", "training.batch_size=4", "training.val_members=2",
        "logging.progress_bar=false", "device=cpu", "train_years=[1990]", "val_years=[1991]"]


def byo_sets(pred: Path, target: Path, runs: Path, *extra: str) -> list[str]:
    sets = [s if not s.startswith(("train_years", "val_years")) else f"data.{s}" for s in TINY]
    sets += ["data.source=files", f"data.files.predictor_files=[{pred}]", f"data.files.target_file={target}",
             "data.use_orography=false", f"run.root={runs}", *extra]
    return sets


def run_cli(sets: list[str], *args: str) -> int:
    argv = ["--config", str(ROOT / "config.yml"), *args]
    for s in sets:
        argv += ["--set", s]
    return training_v2.main(argv)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    times = daily_times("1990-01-01", 730)
    good_pred = write(predictor_dataset(times, shape=(8, 8)), d / "pred.nc")
    good_target = write(target_dataset(times, shape=(32, 32)), d / "target.nc")
    return d, good_pred, good_target


def _variant(d: Path, name: str, ds) -> Path:
    return write(ds, d / name)


def data_cases(d: Path, pred: Path, target: Path) -> dict[str, tuple[list[str], str]]:
    times = daily_times("1990-01-01", 730)
    nan_pred = predictor_dataset(times, shape=(8, 8))
    nan_pred["t_850"][100, 2, 3] = np.nan
    inf_pred = predictor_dataset(times, shape=(8, 8))
    inf_pred["q_500"][5, 0, 0] = np.inf
    no_z = predictor_dataset(times, shape=(8, 8), variables=[v for v in PREDICTOR_VARIABLES if v != "z_500"])
    wrong_dims = target_dataset(times, shape=(32, 32)).expand_dims(level=[1]).transpose("time", "level", "lat", "lon")
    shifted = target_dataset(daily_times("1990-01-01", 730, hour=0), shape=(32, 32))
    nan_val = target_dataset(times, shape=(32, 32))
    nan_val["pr"][365:] = np.nan
    no_t = predictor_dataset(times, shape=(8, 8), variables=[v for v in PREDICTOR_VARIABLES if v != "t_850"])
    only_t = predictor_dataset(times, shape=(8, 8), variables=["t_850"])
    far_t = only_t.assign_coords(lat=only_t["lat"] + 60.0)
    gappy_t = only_t.isel(time=np.r_[0:99, 100:730])
    split_files = lambda name, ds: f"data.files.predictor_files=[{_variant(d, 'no_t.nc', no_t)}, {_variant(d, name, ds)}]"  # noqa: E731
    corrupt = d / "corrupt.nc"
    corrupt.write_bytes(b"CDF\x02 this is not a netcdf file" * 50)
    return {
        "missing data root": (["data.source=cordex", f"data.root={d / 'no_such_root'}"], "no_such_root"),
        "missing predictor file": ([f"data.files.predictor_files=[{d / 'nope_pred.nc'}]"], "nope_pred.nc"),
        "missing target file": ([f"data.files.target_file={d / 'nope_target.nc'}"], "nope_target.nc"),
        "missing predictor variable": ([f"data.files.predictor_files=[{_variant(d, 'no_z.nc', no_z)}]"],
                                       r"z_500(.|\n)*z_850"),
        "target variable absent": (["data.files.target_variable=tas"], r"'tas'(.|\n)*pr"),
        "wrong dims": ([f"data.files.target_file={_variant(d, 'dims.nc', wrong_dims)}"], "level"),
        "time mismatch": ([f"data.files.target_file={_variant(d, 'shift.nc', shifted)}"], "time"),
        "NaN in predictors": ([f"data.files.predictor_files=[{_variant(d, 'nan.nc', nan_pred)}]"], "t_850"),
        "Inf in predictors": ([f"data.files.predictor_files=[{_variant(d, 'inf.nc', inf_pred)}]"], "q_500"),
        "all-NaN target split": ([f"data.files.target_file={_variant(d, 'nanval.nc', nan_val)}"], "NaN"),
        "corrupt NetCDF": ([f"data.files.target_file={corrupt}"], "corrupt.nc"),
        "split years outside the data": (["data.val_years=[2050]"], "2050"),
        "predictor grids do not overlap": ([split_files("far_t.nc", far_t)],
                                           r"predictor 't_850' \(.*far_t.nc\) onto the grid of 'z_850'.*do not overlap"),
        "predictor lacks a time step": ([split_files("gappy_t.nc", gappy_t)],
                                        r"predictor 't_850' \(.*gappy_t.nc\) lacks time step 1990-04-10"),
        "test years overlap training": (["data.test_years=[1990]"], r"data.test_years and data.train_years overlap in 1990"),
    }


CONFIG_CASES = {
    "unknown key": (["training.optimizer_g.learnig_rate=0.1"], "did you mean 'learning_rate'"),
    "wrong type": (["training.batch_size=abc"], "training.batch_size"),
    "negative learning rate": (["training.optimizer_g.learning_rate=-0.001"], r"must be > 0"),
    "batch size 0": (["training.batch_size=0"], r"training.batch_size: must be >= 1"),
    "bad choice": (["data.domain=EUR"], "ALPS"),
    "bad target kind": (["data.target_kind=rain"], r"data.target_kind: 'rain' is not one of .*'precipitation'"),
    # checked by the model builder against the data's predictor names, still before the run folder exists
    "unknown bilinear predictor": (["model.name=bilinear", "model.bilinear_predictor=t_1000"],
                                   r"model.bilinear_predictor: predictor 't_1000' not among"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_errors(case, files, tmp_path, capsys):
    d, pred, target = files
    extra, pattern = CONFIG_CASES[case]
    runs = tmp_path / "runs"
    assert run_cli(byo_sets(pred, target, runs, *extra)) == 2
    err = capsys.readouterr().err
    assert "config error" in err
    assert pytest.importorskip("re").search(pattern, err), err
    assert not runs.exists()


@pytest.mark.parametrize("case", ["missing data root", "missing predictor file", "missing target file",
                                  "missing predictor variable", "target variable absent", "wrong dims",
                                  "time mismatch", "NaN in predictors", "Inf in predictors",
                                  "all-NaN target split", "corrupt NetCDF", "split years outside the data",
                                  "predictor grids do not overlap", "predictor lacks a time step",
                                  "test years overlap training"])
def test_data_errors(case, files, tmp_path, capsys):
    import re

    d, pred, target = files
    extra, pattern = data_cases(d, pred, target)[case]
    runs = tmp_path / "runs"
    before = snapshot(d)
    assert run_cli(byo_sets(pred, target, runs, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(pattern, err), err
    assert not runs.exists()
    assert snapshot(d) == before


@pytest.fixture(scope="module")
def finished_run(files, tmp_path_factory):
    d, pred, target = files
    runs = tmp_path_factory.mktemp("runs")
    assert run_cli(byo_sets(pred, target, runs)) == 0
    (run,) = runs.iterdir()
    return run


def test_checkpoint_cases(finished_run, files, tmp_path, capsys):
    d, pred, target = files
    sets = byo_sets(pred, target, tmp_path / "runs")
    # a checkpoint of another configuration
    before = snapshot(finished_run)
    assert run_cli(sets + ["model.generator.filters=16"], "--resume", str(finished_run)) == 2
    assert "model.generator" in capsys.readouterr().err
    # a truncated checkpoint
    last = finished_run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])
    before = snapshot(finished_run)
    assert run_cli(sets, "--resume", str(finished_run)) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert snapshot(finished_run) == before
    last.write_bytes(data)
    # --resume of a folder that does not exist
    assert run_cli(sets, "--resume", str(tmp_path / "missing_run")) == 2
    assert "run folder does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_run_dir_not_writable(files, tmp_path, capsys):
    d, pred, target = files
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert run_cli(byo_sets(pred, target, blocker / "runs")) == 2
    assert "not writable" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_requested_but_absent(files, tmp_path, capsys):
    d, pred, target = files
    runs = tmp_path / "runs"
    assert run_cli(byo_sets(pred, target, runs, "device=cuda", "on_missing_gpu=error")) == 2
    assert "device: 'cuda' requested" in capsys.readouterr().err
    assert not runs.exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli(byo_sets(pred, target, runs, "device=cuda", "training.max_steps_per_epoch=1")) == 0
    assert any("falling back to CPU" in str(w.message) for w in caught)
