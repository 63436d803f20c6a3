"""data.target_coarsen: NaN-aware block means of the target, its mask and the static field, identical on the
lazy path, the in-memory and the streaming loaders; errors for grids not divisible by the factor."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import byo_config, daily_times, predictor_dataset, target_dataset, write

from ml_benchmark_spategan.config.schema import DataConfig, NormalizationConfig
from ml_benchmark_spategan.dataloader import fit_normalizers, open_training_data, split_data
from ml_benchmark_spategan.dataloader.coarsen import block_mean
from ml_benchmark_spategan.dataloader.errors import DataError
from ml_benchmark_spategan.dataloader.torch_bridge import make_train_loader, static_hr


def brute_block_mean(values: np.ndarray, f: int) -> np.ndarray:
    """Loop over coarse cells: mean of the finite fine cells, NaN if none."""
    n, h, w = values.shape
    out = np.full((n, h // f, w // f), np.nan)
    for t in range(n):
        for i in range(h // f):
            for j in range(w // f):
                block = values[t, i * f:(i + 1) * f, j * f:(j + 1) * f]
                finite = block[np.isfinite(block)]
                if finite.size:
                    out[t, i, j] = finite.sum() / finite.size
    return out


def test_block_mean_matches_brute_force():
    rng = np.random.default_rng(0)
    values = rng.gamma(0.5, 4.0, size=(3, 6, 9)).astype(np.float32)
    values[0, :3, :3] = np.nan  # a whole coarse cell NaN on day 0
    values[1, 0, 0] = np.nan  # one fine cell of a coarse cell NaN
    got = block_mean(values, 3)
    assert got.shape == (3, 2, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, brute_block_mean(values, 3), rtol=1e-6, equal_nan=True)
    assert np.isnan(got[0, 0, 0]) and np.isfinite(got[1, 0, 0])
    assert got[1, 0, 0] == pytest.approx(np.nanmean(values[1, :3, :3].astype(np.float64)), rel=1e-6)
    assert block_mean(values, 1) is values


@pytest.fixture(scope="module")
def coarse_files(tmp_path_factory):
    """2 years of predictors and a 12x18 target with NaN cells: (0, 0) and (0, 1) in one 2x2 block (partly
    NaN), the whole block rows 10-11 x cols 16-17 (all NaN); an orography on the target grid."""
    tmp = tmp_path_factory.mktemp("coarsen")
    times = daily_times("1990-01-01", 730)
    pred = write(predictor_dataset(times, shape=(6, 9)), tmp / "pred.nc")
    nan = [(0, 0), (0, 1), (10, 16), (10, 17), (11, 16), (11, 17)]
    target = write(target_dataset(times, shape=(12, 18), nan_cells=nan), tmp / "target.nc")
    orog = xr.Dataset({"orog": (("lat", "lon"), np.arange(12 * 18, dtype=np.float32).reshape(12, 18))},
                      coords={"lat": np.arange(12, dtype=np.float32), "lon": np.arange(18, dtype=np.float32) * 0.5})
    return pred, target, write(orog, tmp / "orog.nc")


def _cfg(files, factor: int, **loader) -> DataConfig:
    pred, target, orog = files
    cfg = byo_config([pred], target, train_years=["1990"], val_years=["1991"], orography=orog, chunk_days=64,
                     block_days=64, **loader)
    return dataclasses.replace(cfg, target_coarsen=factor)


def test_lazy_target_mask_and_orography(coarse_files):
    data = open_training_data(_cfg(coarse_files, 2))
    with xr.open_dataset(coarse_files[1]) as ds:
        raw = ds["pr"].values
    assert data.target.shape == (730, 6, 9) and data.target.dtype == np.float32
    np.testing.assert_allclose(data.target.values, brute_block_mean(raw, 2), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(data.target["lon"].values, np.arange(9) + 0.25)  # coordinates averaged
    expected_mask = np.ones((6, 9), bool)
    expected_mask[5, 8] = False  # only the all-NaN block is invalid; the partly NaN block keeps its mean
    np.testing.assert_array_equal(data.mask.values, expected_mask)
    orog = np.arange(12 * 18, dtype=np.float64).reshape(12, 18)
    np.testing.assert_allclose(data.orography.values, brute_block_mean(orog[None], 2)[0], rtol=1e-6)
    assert int(data.valid_count[0]) == 6 * 9 - 1


@pytest.mark.parametrize("mode", ["memory", "streaming"])
def test_loaders_read_the_coarse_target(coarse_files, mode):
    cfg = _cfg(coarse_files, 2, mode=mode)
    train, _ = split_data(open_training_data(cfg), cfg)
    norms = fit_normalizers(train, NormalizationConfig())
    loader = make_train_loader(train, norms, cfg.loader, 16, seed=0, drop_last=False)
    assert loader.mode == mode
    lazy = norms.target.transform(train.target).values
    for batch in loader:
        assert batch["y_hr"].shape[1:] == (1, 6, 9)
        rows = batch["time_index"].numpy()
        expected = lazy[rows]
        np.testing.assert_array_equal(batch["mask"][:, 0].numpy(), np.isfinite(expected))
        np.testing.assert_allclose(batch["y_hr"][:, 0].numpy(), np.nan_to_num(expected, nan=0.0), rtol=1e-6,
                                   atol=1e-6)
    assert static_hr(train, norms.static).shape == (1, 1, 6, 9)


def test_streaming_equals_memory(coarse_files):
    out = {}
    for mode in ("memory", "streaming"):
        cfg = _cfg(coarse_files, 2, mode=mode)
        train, _ = split_data(open_training_data(cfg), cfg)
        norms = fit_normalizers(train, NormalizationConfig())
        out[mode] = {int(t): batch["y_hr"][i] for batch in make_train_loader(train, norms, cfg.loader, 16, seed=3,
                                                                           drop_last=False)
                     for i, t in enumerate(batch["time_index"])}
    assert sorted(out["memory"]) == sorted(out["streaming"])
    assert all(torch.equal(out["memory"][t], out["streaming"][t]) for t in out["memory"])


def test_grid_not_divisible_is_an_error(coarse_files):
    with pytest.raises(DataError, match=r"data.target_coarsen=5.*\(12, 18\).*not divisible"):
        open_training_data(_cfg(coarse_files, 5))
