"""Torch bridge: batch contents, streaming == in memory, workers and ranks without duplicates, epochs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import byo_config, daily_times, predictor_dataset, target_dataset, write

from ml_benchmark_spategan.config.schema import LoaderConfig, NormalizationConfig
from ml_benchmark_spategan.dataloader import fit_normalizer, fit_normalizers, open_training_data, split_data
from ml_benchmark_spategan.dataloader.torch_bridge import (
    TorchNormalizer,
    choose_mode,
    make_eval_loader,
    make_train_loader,
    static_hr,
)


@pytest.fixture(scope="module")
def split(byo_files):
    """Train = 1990 + 1992 (a gap in the file positions), val = 1991; normalisers fitted on train."""
    pred, target = byo_files
    cfg = byo_config([pred], target, train_years=["1990", "1992"], val_years=["1991"], chunk_days=64,
                     block_days=64)
    train, val = split_data(open_training_data(cfg), cfg)
    return train, val, fit_normalizers(train, NormalizationConfig()), cfg.loader


def _collect(loader) -> dict[int, dict]:
    out = {}
    for batch in loader:
        for i, t in enumerate(batch["time_index"].tolist()):
            assert t not in out, f"sample {t} yielded twice"
            out[t] = {k: batch[k][i] for k in ("x_lr", "y_hr", "mask", "time")}
    return out


def _loader_cfg(base: LoaderConfig, **kw) -> LoaderConfig:
    return dataclasses.replace(base, **kw)


def test_batch_contents_match_files(split, byo_files):
    train, _, norms, lc = split
    loader = make_eval_loader(train, norms, _loader_cfg(lc, mode="memory"), batch_size=50)
    assert loader.mode == "memory" and len(loader) == 15  # 731 days / 50
    batch = next(iter(loader))
    assert batch["x_lr"].shape == (50, 15, 11, 13) and batch["x_lr"].dtype == torch.float32
    assert batch["y_hr"].shape == (50, 1, 75, 90) and batch["mask"].dtype == torch.bool
    assert batch["time_index"].dtype == torch.int64 and batch["time_index"].tolist() == list(range(50))
    np.testing.assert_array_equal(batch["time"], train.time[:50])
    with xr.open_dataset(byo_files[1]) as ds:
        raw = ds["pr"].values[:50]
    assert not batch["mask"][:, 0, 3, 4].any() and not batch["mask"][:, 0, 70, 88].any()
    assert (batch["y_hr"][:, 0, 3, 4] == 0).all() and batch["mask"][:, 0, 5, 5].all()
    expected = np.nan_to_num(norms.target.transform(xr.DataArray(raw)).values, nan=0.0)
    np.testing.assert_allclose(batch["y_hr"][:, 0].numpy(), expected, rtol=1e-6, atol=1e-6)
    raw, expected = raw[:, 5:60], expected[:, 5:60]  # rows without NaN cells
    tn = TorchNormalizer.from_normalizer(norms.target)
    back = tn.inverse(batch["y_hr"])[:, 0, 5:60].numpy()
    np.testing.assert_allclose(back, raw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tn.transform(torch.from_numpy(raw[:, None]))[:, 0].numpy(), expected,
                               rtol=1e-6, atol=1e-6)
    x = norms.predictors.transform(train.predictors.isel(time=slice(0, 50))).values
    np.testing.assert_allclose(batch["x_lr"].numpy(), x, rtol=1e-6, atol=1e-6)


def test_streaming_equals_memory(split):
    train, _, norms, lc = split
    mem = _collect(make_train_loader(train, norms, _loader_cfg(lc, mode="memory"), 32, seed=1, drop_last=False))
    stream_loader = make_train_loader(train, norms, _loader_cfg(lc, mode="streaming"), 32, seed=1, drop_last=False)
    assert stream_loader.mode == "streaming"
    stream = _collect(stream_loader)
    assert sorted(mem) == sorted(stream) == list(range(train.n_days))
    for t in mem:
        for k in ("x_lr", "y_hr", "mask"):
            assert torch.equal(mem[t][k], stream[t][k]), (t, k)
        assert mem[t]["time"] == stream[t]["time"] == train.time[t]


@pytest.mark.parametrize("mode", ["memory", "streaming"])
def test_epochs_reshuffle_deterministically(split, mode):
    train, _, norms, lc = split
    loader = make_train_loader(train, norms, _loader_cfg(lc, mode=mode), 32, seed=3)
    order = [b["time_index"].tolist() for b in loader]
    assert len(order) == len(loader) == train.n_days // 32
    assert [b["time_index"].tolist() for b in loader] == order
    loader.set_epoch(1)
    assert [b["time_index"].tolist() for b in loader] != order
    flat = sum(order, [])
    assert len(set(flat)) == len(flat) and flat != sorted(flat)


def test_two_workers_every_sample_once(split):
    train, val, norms, lc = split
    cfg = _loader_cfg(lc, mode="streaming", num_workers=2)
    train_loader = make_train_loader(train, norms, cfg, 32, seed=0, drop_last=False)
    seen = _collect(train_loader)
    assert sorted(seen) == list(range(train.n_days)) and len(train_loader) == 24  # 12 blocks -> 6 per worker
    mixed = make_train_loader(train, norms, cfg, 32, seed=0, drop_last=False, mix_blocks=2)
    assert sorted(_collect(mixed)) == list(range(train.n_days))
    eval_loader = make_eval_loader(val, norms, cfg, 40)
    batches = [b["time_index"].tolist() for b in eval_loader]
    assert len(batches) == len(eval_loader) == 10
    assert sum(batches, []) == list(range(val.n_days))  # sequential, exactly once


@pytest.mark.parametrize("mode", ["memory", "streaming"])
def test_rank_sharding_no_duplicates(split, mode):
    train, val, norms, lc = split
    cfg = _loader_cfg(lc, mode=mode)
    loaders = [make_train_loader(train, norms, cfg, 16, seed=0, rank=r, world_size=3) for r in range(3)]
    lens = [len(loader) for loader in loaders]
    shards = [_collect(loader) for loader in loaders]
    assert len(set(lens)) == 1  # ranks stay in step
    keys = [set(s) for s in shards]
    assert all(len(s) == lens[0] * 16 for s in keys)
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    evals = [_collect(make_eval_loader(val, norms, cfg, 16, rank=r, world_size=3)) for r in range(3)]
    assert sorted(k for e in evals for k in e) == list(range(val.n_days))


def test_static_hr_and_auto_mode(tmp_path, split):
    times = daily_times("2000-01-01", 20)
    tds = target_dataset(times, shape=(9, 6))
    write(predictor_dataset(times, shape=(3, 3)), tmp_path / "p.nc")
    write(tds, tmp_path / "t.nc")
    orog = (tds["pr"].isel(time=0, drop=True) * 100).rename("orog")
    orog[0, 0] = np.nan
    write(orog.to_dataset(), tmp_path / "o.nc")
    data = open_training_data(byo_config([tmp_path / "p.nc"], tmp_path / "t.nc", orography=tmp_path / "o.nc"))
    norm = fit_normalizer("standardize_global", data.orography, "static")
    s = static_hr(data, norm)
    assert s.shape == (1, 1, 9, 6) and s.dtype == torch.float32 and s[0, 0, 0, 0] == 0
    o = orog.values.astype(np.float64)
    expected = (o - np.nanmean(o)) / np.nanstd(o)
    np.testing.assert_allclose(s[0, 0].numpy()[1:], expected[1:], rtol=1e-5, atol=1e-6)
    assert static_hr(split[0], None) is None
    train = split[0]
    assert choose_mode(train, LoaderConfig(memory_budget_gb=1.0)) == "memory"
    assert choose_mode(train, LoaderConfig(memory_budget_gb=0.001)) == "streaming"
