"""Time the evaluation metrics on a benchmark-sized synthetic period: 20 years (7300 days) x 128 x 128.

The benchmark-recommended set (SCHEMA.md §5) is timed twice: with this package and with the benchmark's
own formulas (``official_formulas.py``), on the same in-memory data in the same run; each line gives both
times, their ratio and the largest difference between the two results. Then the package's other metrics.
Prints one JSON line per metric: {"metric", "seconds", "official_seconds", "speedup", "max_rel_diff",
"value"}, then totals. Usage:
python benchmarks/bench_metrics.py [--days 7300] [--size 128] [--members 0] [--dask] [--threads 1]
[--only recommended|extras]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import official_formulas as official  # noqa: E402  (beside this script)
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


def _as_array(value) -> np.ndarray:
    """The numbers of a metric result, flattened (a Dataset gives its last variable, a pair both parts)."""
    if isinstance(value, tuple):
        return np.concatenate([_as_array(v) for v in value])
    if isinstance(value, xr.Dataset):
        value = value[list(value.data_vars)[-1]]
    return np.asarray(value, dtype=np.float64).ravel()


def _psd_ralsd(module, x0, x1, var):
    p0, p1 = module.psd(x0, x1, var)
    return p0, p1, module.ralsd(p0, p1)


def recommended(x0: xr.Dataset, x1: xr.Dataset) -> dict:
    """The benchmark's recommended diagnostics: name -> (ours, official)."""
    ref = official
    return {
        "rmse_map_tasmax": (lambda: D.rmse(x0, x1, "tasmax", dim="time"),
                            lambda: ref.rmse(x0, x1, "tasmax", dim="time")),
        "bias_mean_tasmax": (lambda: D.bias_index(x0, x1, "mean", "tasmax"),
                             lambda: ref.bias_index(x0, x1, ref.mean, "tasmax")),
        "bias_txx": (lambda: D.bias_index(x0, x1, "txx", "tasmax"), lambda: ref.bias_index(x0, x1, ref.txx, "tasmax")),
        "bias_su": (lambda: D.bias_index(x0, x1, "su", "tasmax"), lambda: ref.bias_index(x0, x1, ref.su, "tasmax")),
        "psd_ralsd_tasmax": (lambda: _psd_ralsd(D, x0, x1, "tasmax"), lambda: _psd_ralsd(ref, x0, x1, "tasmax")),
        "wasserstein_scalar_tasmax": (lambda: D.wasserstein_distance(x0, x1, "tasmax"),
                                      lambda: ref.wasserstein_distance(x0, x1, "tasmax")),
        "wasserstein_map_tasmax": (lambda: D.wasserstein_distance(x0, x1, "tasmax", spatial=True),
                                   lambda: ref.wasserstein_distance(x0, x1, "tasmax", spatial=True)),
        "rmse_map_pr": (lambda: D.rmse(x0, x1, "pr", dim="time"), lambda: ref.rmse(x0, x1, "pr", dim="time")),
        "bias_sdii": (lambda: D.bias_index(x0, x1, "sdii", "pr"), lambda: ref.bias_index(x0, x1, ref.sdii, "pr")),
        "bias_rx1day": (lambda: D.bias_index(x0, x1, "rx1day", "pr"), lambda: ref.bias_index(x0, x1, ref.rx1day, "pr")),
        "bias_cwd": (lambda: D.bias_index(x0, x1, "cwd", "pr"), lambda: ref.bias_index(x0, x1, ref.cwd, "pr")),
        "psd_ralsd_pr": (lambda: _psd_ralsd(D, x0, x1, "pr"), lambda: _psd_ralsd(ref, x0, x1, "pr")),
        "wasserstein_map_pr_summer": (
            lambda: D.wasserstein_distance(x0, x1, "pr", season="summer", spatial=True),
            lambda: ref.wasserstein_distance(x0, x1, "pr", season="summer", spatial=True)),
        "bias_corr_tasmax_pr": (lambda: D.bias_multivariable_correlation(x0, x1, "tasmax", "pr"),
                                lambda: ref.bias_multivariable_correlation(x0, x1, "tasmax", "pr")),
    }


def extras(x0: xr.Dataset, x1: xr.Dataset, members: int) -> dict:
    """Metrics of the package beyond the recommended set (no official counterpart): name -> ours."""
    jobs = {
        "bias_quantile98_tasmax": lambda: D.bias_index(x0, x1, "quantile", "tasmax", q=0.98),
        "bias_txn": lambda: D.bias_index(x0, x1, "txn", "tasmax"),
        "bias_lag1_corr_tasmax": lambda: D.bias_index(x0, x1, "lag1_corr", "tasmax"),
        "bias_interannual_var_tasmax": lambda: D.bias_index(x0, x1, "interannual_var", "tasmax"),
        "bias_cdd": lambda: D.bias_index(x0, x1, "cdd", "pr"),
        "bias_cwd_summer": lambda: D.bias_index(x0, x1, "cwd", "pr", season="summer"),
        "psd_corrected_pr": lambda: S.psd_corrected(x0, x1, "pr", dx_km=12.5),
        "ralsd_rms_pr": lambda: S.ralsd_rms(x0, x1, "pr"),
        "fss_pr_3thr_3scales": lambda: E.fss(x0["pr"], x1["pr"], [1.0, 5.0, 20.0], [1, 9, 33]),
    }
    if members:
        ens = xr.concat([x1["pr"] + np.float32(0.1 * k) for k in range(members)], dim="member")
        jobs["crps_pr"] = lambda: E.crps(x0["pr"], ens, dim="time")
        jobs["crps_fair_pr"] = lambda: E.crps(x0["pr"], ens, fair=True, dim="time")
        jobs["rank_histogram_pr"] = lambda: E.rank_histogram(x0["pr"], ens)
        jobs["spread_skill_pr"] = lambda: E.spread_skill_ratio(x0["pr"], ens)
    return jobs


def timed(job, repeat: int = 1) -> tuple[float, np.ndarray]:
    """(seconds, result numbers): the best of up to ``repeat`` runs, repeated only while a run takes
    under 2 s (cheap metrics are repeated to damp load noise, on both sides alike)."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = job()
        if hasattr(result, "compute"):
            result = result.compute()
        best = min(best, time.perf_counter() - start)
        if best > 2.0:
            break
    return best, _as_array(result)


def compare(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest |ours - official| relative to max(1, |official|) (NaN positions must agree)."""
    if ours.shape != ref.shape or not np.array_equal(np.isnan(ours), np.isnan(ref)):
        return float("inf")
    ok = ~np.isnan(ref)
    return float(np.max(np.abs(ours[ok] - ref[ok]) / np.maximum(1.0, np.abs(ref[ok])), initial=0.0))


def run_recommended(x0, x1, skip_official: bool, repeat: int) -> tuple[float, float]:
    total = total_ref = 0.0
    for name, (ours, ref) in recommended(x0, x1).items():
        seconds, value = timed(ours, repeat)
        record = {"metric": name, "set": "recommended", "seconds": round(seconds, 3), "value": float(np.nanmean(value))}
        if not skip_official:
            ref_seconds, ref_value = timed(ref, repeat)
            total_ref += ref_seconds
            record.update(official_seconds=round(ref_seconds, 3), speedup=round(ref_seconds / seconds, 2),
                          max_rel_diff=compare(value, ref_value))
        total += seconds
        print(json.dumps(record), flush=True)
    return total, total_ref


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7300)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--members", type=int, default=0, help="also time ensemble scores with this many members")
    parser.add_argument("--dask", action="store_true", help="chunk the inputs with dask (lat blocks of 32)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of torch and dask (0 = auto)")
    parser.add_argument("--only", choices=["recommended", "extras"], default=None, help="time one set only")
    parser.add_argument("--skip-official", action="store_true", help="do not time the official formulas")
    parser.add_argument("--repeat", type=int, default=3,
                        help="best of up to N runs per metric and side while a run takes < 2 s (default 3)")
    args = parser.parse_args()
    apply_num_threads(args.threads)
    x0, x1 = synthetic(args.days, args.size)
    if args.dask:
        x0, x1 = x0.chunk({"lat": 32}), x1.chunk({"lat": 32})
    if args.only != "extras":
        total, total_ref = run_recommended(x0, x1, args.skip_official or args.dask, args.repeat)
        record = {"metric": "TOTAL_recommended", "seconds": round(total, 3), "days": args.days, "size": args.size}
        if total_ref:
            record.update(official_seconds=round(total_ref, 3), speedup=round(total_ref / total, 2))
        print(json.dumps(record), flush=True)
    if args.only != "recommended":
        total = 0.0
        for name, job in extras(x0, x1, args.members).items():
            seconds, value = timed(job, args.repeat)
            total += seconds
            print(json.dumps({"metric": name, "set": "extras", "seconds": round(seconds, 3),
                              "value": float(np.nanmean(value))}), flush=True)
        print(json.dumps({"metric": "TOTAL_extras", "seconds": round(total, 3)}))


if __name__ == "__main__":
    main()
