"""data.oversampling: per-day statistics and weights against brute force, sampled frequencies that follow the
weights (chi-square), the same draws in memory and streaming, every epoch a pure function of (seed, epoch)."""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr
from conftest import byo_config

from ml_benchmark_spategan.config.schema import NormalizationConfig, OversamplingConfig
from ml_benchmark_spategan.dataloader import fit_normalizers, open_training_data, split_data
from ml_benchmark_spategan.dataloader.oversampling import (
    day_statistic,
    epoch_counts,
    rank_quantiles,
    sampling_weights,
    summary_line,
    write_weights,
)
from ml_benchmark_spategan.dataloader.torch_bridge import make_train_loader


def _target(values: np.ndarray, start="2000-01-01") -> xr.DataArray:
    times = pd.date_range(start, periods=values.shape[0], freq="D").values
    return xr.DataArray(values, dims=("time", "y", "x"), coords={"time": times})


def test_day_statistics_match_brute_force():
    rng = np.random.default_rng(0)
    values = rng.gamma(0.5, 4.0, size=(70, 5, 6)).astype(np.float32)
    values[:, 0, 0] = np.nan
    values[3, 2, :] = np.nan
    da = _target(values, "2000-01-20")
    mean = [np.nanmean(values[t].astype(np.float64)) for t in range(70)]
    p99 = [np.quantile(values[t][np.isfinite(values[t])].astype(np.float64), 0.99) for t in range(70)]
    np.testing.assert_allclose(day_statistic(da, "domain_mean"), mean, rtol=1e-6)
    np.testing.assert_allclose(day_statistic(da, "p99"), p99, rtol=1e-6)
    np.testing.assert_allclose(day_statistic(da.chunk({"time": 16}), "p99"), p99, rtol=1e-6)  # dask
    months = pd.DatetimeIndex(da["time"].values).month
    heat = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cell (0, 0) is NaN on every day
        for t in range(70):
            clim = np.nanmean(values[months == months[t]].astype(np.float64), axis=0)
            heat.append(np.nanmean(values[t] - clim))
    np.testing.assert_allclose(day_statistic(da, "heat"), heat, rtol=1e-5, atol=1e-6)


def test_rank_and_value_weights():
    stat = np.array([3.0, 1.0, 2.0, 2.0, 10.0])
    np.testing.assert_allclose(rank_quantiles(stat), [0.75, 0.0, 0.375, 0.375, 1.0])  # ties share ranks 1, 2
    p = sampling_weights(stat, OversamplingConfig(statistic="p99", strength=2.0, cap=100.0))
    w = 1 + 2.0 * np.array([0.75, 0.0, 0.375, 0.375, 1.0])
    np.testing.assert_allclose(p, w / w.sum())
    p = sampling_weights(stat, OversamplingConfig(statistic="p99", weighting="value", strength=1.0, cap=100.0))
    w = 1 + (stat - 1.0) / (stat.mean() - 1.0)
    np.testing.assert_allclose(p, w / w.sum())
    capped = sampling_weights(stat, OversamplingConfig(statistic="p99", weighting="value", strength=1.0, cap=1.5))
    w = np.minimum(w, 1.5 * np.median(w))
    np.testing.assert_allclose(capped, w / w.sum())
    assert capped.max() / np.median(capped) == pytest.approx(1.5)
    uniform = sampling_weights(stat, OversamplingConfig(statistic="p99", strength=0.0))
    np.testing.assert_allclose(uniform, 0.2)


def test_sampled_frequencies_follow_the_weights():
    stat = np.random.default_rng(1).gamma(0.7, 3.0, size=50)
    p = sampling_weights(stat, OversamplingConfig(statistic="domain_mean", weighting="value", strength=3.0))
    counts = sum(epoch_counts(p, seed=7, epoch=e) for e in range(400))  # 20000 draws
    assert counts.sum() == 400 * 50
    chi2 = scipy.stats.chisquare(counts, counts.sum() * p)
    assert chi2.pvalue > 1e-3, chi2
    np.testing.assert_array_equal(epoch_counts(p, 7, 3), epoch_counts(p, 7, 3))  # pure function of (seed, epoch)
    assert not np.array_equal(epoch_counts(p, 7, 3), epoch_counts(p, 7, 4))
    # the extreme days are drawn more often: the top decile of the statistic against the bottom one
    top, bottom = np.argsort(stat)[-5:], np.argsort(stat)[:5]
    assert counts[top].sum() > 2 * counts[bottom].sum()


@pytest.fixture(scope="module")
def split(byo_files):
    pred, target = byo_files
    cfg = byo_config([pred], target, train_years=["1990", "1992"], val_years=["1991"], chunk_days=64,
                     block_days=64)
    train, _ = split_data(open_training_data(cfg), cfg)
    return train, fit_normalizers(train, NormalizationConfig()), cfg.loader


def _epoch_draws(loader, epoch: int) -> Counter:
    loader.set_epoch(epoch)
    return Counter(t for batch in loader for t in batch["time_index"].tolist())


@pytest.mark.parametrize("mode", ["memory", "streaming"])
def test_loaders_draw_the_epoch_counts(split, mode):
    train, norms, lc = split
    stat = day_statistic(train.target, "p99")
    p = sampling_weights(stat, OversamplingConfig(statistic="p99", strength=4.0))
    loader = make_train_loader(train, norms, dataclasses.replace(lc, mode=mode), 32, seed=5, drop_last=False,
                               weights=p)
    assert loader.mode == mode and len(loader) == int(np.ceil(train.n_days / 32))
    for epoch in (0, 1):
        draws = _epoch_draws(loader, epoch)
        counts = epoch_counts(p, 5, epoch)
        assert draws == Counter({int(i): int(c) for i, c in enumerate(counts) if c})


def test_memory_and_streaming_batches_follow_the_weights(split):
    train, norms, lc = split
    p = sampling_weights(day_statistic(train.target, "domain_mean"),
                         OversamplingConfig(statistic="domain_mean", weighting="value", strength=2.0))
    total = {}
    for mode in ("memory", "streaming"):
        loader = make_train_loader(train, norms, dataclasses.replace(lc, mode=mode), 64, seed=2, drop_last=False,
                                   weights=p)
        total[mode] = sum((_epoch_draws(loader, e) for e in range(12)), Counter())
    assert total["memory"] == total["streaming"]
    counts = np.array([total["memory"].get(i, 0) for i in range(train.n_days)])
    assert scipy.stats.chisquare(counts, counts.sum() * p).pvalue > 1e-3


def test_weights_file_and_log_line(tmp_path):
    times = pd.date_range("2000-01-01", periods=4, freq="D").values
    p = np.array([0.1, 0.2, 0.3, 0.4])
    path = write_weights(tmp_path / "sampling_weights.csv", times, np.array([1.0, 2.0, 3.0, 4.0]), p)
    table = pd.read_csv(path)
    assert list(table.columns) == ["time", "statistic", "weight"] and table["time"][0] == "2000-01-01T00:00:00"
    np.testing.assert_allclose(table["weight"], p * 4)
    line = summary_line(OversamplingConfig(statistic="p99"), p)
    assert "p99 (rank, strength 1, cap 10)" in line and "min 0.4 median 1 max 1.6 over 4 days" in line
