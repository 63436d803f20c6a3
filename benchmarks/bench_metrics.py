"""Time the evaluation metrics on a benchmark-sized synthetic period: 20 years (7300 days) x 128 x 128.

Prints one JSON line per metric: {"metric": ..., "seconds": ..., "value": <one-number summary>}, then a
total. Usage: python benchmarks/bench_metrics.py [--days 7300] [--size 128] [--members 0] [--dask]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import xarray as xr

from ml_benchmark_spategan.evaluation import diagnostics as D
from ml_benchmark_spategan.evaluation import ensemble as E
from ml_benchmark_spategan.evaluation import spectra as S
from ml_benchmark_spategan.utils.threads import apply_num_threads


def synthetic(days: int, size: int, seed: int = 0) -> tuple[xr.Dataset, xr.Dataset]:
    """Reference and prediction Datasets with tasmax (K) and pr (mm/day), float32, (time, lat, lon)."""
    rng = np.random.default_rng(seed)
    time_ = pd.date_range("1981-01-01", periods=days, freq="D")
    coords = {"time": time_, "lat": np.arange(size, dtype=np.float32), "lon": np.arange(size, dtype=np.float32)}
    season = 8.0 * np.sin(2 * np.pi * np.arange(days) / 365.0)[:, None, None]
    out = []
    for _ in range(2):
        tas = (295.0 + season + rng.normal(0, 3, (days, size, size))).astype(np.float32)
        pr = np.where(rng.random((days, size, size)) < 0.6, 0.0, rng.gamma(0.7, 6.0, (days, size, size)))
        dims = ("time", "lat", "lon")
        out.append(xr.Dataset({"tasmax": (dims, tas), "pr": (dims, pr.astype(np.float32))}, coords=coords))
    return out[0], out[1]


def _summary(value) -> float:
    if isinstance(value, tuple):
        value = value[0]
    if isinstance(value, xr.Dataset):
        value = value[list(value.data_vars)[-1]]
    return float(np.nanmean(np.asarray(value)))


def metrics(x0: xr.Dataset, x1: xr.Dataset, members: int) -> dict:
    jobs = {
        "rmse_map_tasmax": lambda: D.rmse(x0, x1, "tasmax", dim="time"),
        "bias_mean_tasmax": lambda: D.bias_index(x0, x1, "mean", "tasmax"),
        "bias_quantile98_tasmax": lambda: D.bias_index(x0, x1, "quantile", "tasmax", q=0.98),
        "bias_txx": lambda: D.bias_index(x0, x1, "txx", "tasmax"),
        "bias_txn": lambda: D.bias_index(x0, x1, "txn", "tasmax"),
        "bias_su": lambda: D.bias_index(x0, x1, "su", "tasmax"),
        "bias_lag1_corr_tasmax": lambda: D.bias_index(x0, x1, "lag1_corr", "tasmax"),
        "bias_interannual_var_tasmax": lambda: D.bias_index(x0, x1, "interannual_var", "tasmax"),
        "rmse_map_pr": lambda: D.rmse(x0, x1, "pr", dim="time"),
        "bias_sdii": lambda: D.bias_index(x0, x1, "sdii", "pr"),
        "bias_rx1day": lambda: D.bias_index(x0, x1, "rx1day", "pr"),
        "bias_cdd": lambda: D.bias_index(x0, x1, "cdd", "pr"),
        "bias_cwd": lambda: D.bias_index(x0, x1, "cwd", "pr"),
        "bias_cwd_summer": lambda: D.bias_index(x0, x1, "cwd", "pr", season="summer"),
        "psd_tasmax": lambda: D.psd(x0, x1, "tasmax"),
        "psd_corrected_pr": lambda: S.psd_corrected(x0, x1, "pr", dx_km=12.5),
        "ralsd_rms_pr": lambda: S.ralsd_rms(x0, x1, "pr"),
        "wasserstein_scalar_tasmax": lambda: D.wasserstein_distance(x0, x1, "tasmax"),
        "wasserstein_map_tasmax": lambda: D.wasserstein_distance(x0, x1, "tasmax", spatial=True),
        "wasserstein_map_pr_summer": lambda: D.wasserstein_distance(x0, x1, "pr", season="summer", spatial=True),
        "bias_corr_tasmax_pr": lambda: D.bias_multivariable_correlation(x0, x1, "tasmax", "pr"),
        "fss_pr_3thr_3scales": lambda: E.fss(x0["pr"], x1["pr"], [1.0, 5.0, 20.0], [1, 9, 33]),
    }
    if members:
        ens = xr.concat([x1["pr"] + np.float32(0.1 * k) for k in range(members)], dim="member")
        jobs["crps_pr"] = lambda: E.crps(x0["pr"], ens, dim="time")
        jobs["crps_fair_pr"] = lambda: E.crps(x0["pr"], ens, fair=True, dim="time")
        jobs["rank_histogram_pr"] = lambda: E.rank_histogram(x0["pr"], ens)
        jobs["spread_skill_pr"] = lambda: E.spread_skill_ratio(x0["pr"], ens)
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7300)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--members", type=int, default=0, help="also time ensemble scores with this many members")
    parser.add_argument("--dask", action="store_true", help="chunk the inputs with dask (lat blocks of 32)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of torch and dask (0 = auto)")
    args = parser.parse_args()
    apply_num_threads(args.threads)
    x0, x1 = synthetic(args.days, args.size)
    if args.dask:
        x0, x1 = x0.chunk({"lat": 32}), x1.chunk({"lat": 32})
    total = 0.0
    for name, job in metrics(x0, x1, args.members).items():
        start = time.perf_counter()
        result = job()
        if hasattr(result, "compute"):
            result = result.compute()
        seconds = time.perf_counter() - start
        total += seconds
        print(json.dumps({"metric": name, "seconds": round(seconds, 3), "value": _summary(result)}), flush=True)
    print(json.dumps({"metric": "TOTAL", "seconds": round(total, 3), "days": args.days, "size": args.size}))


if __name__ == "__main__":
    main()
