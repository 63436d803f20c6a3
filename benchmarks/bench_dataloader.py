"""Data-loading benchmark on a full-size synthetic CORDEX domain.

Configurations (each in a fresh subprocess, one JSON line each):

* ``naive``: a map-style loop doing ``ds[variables].isel(time=i)`` + ``.to_array().values`` per sample
  on the lazily opened files (random order), then normalising;
* ``streaming``: :func:`make_train_loader` in streaming mode with 2 DataLoader workers (one epoch);
* ``memory``: the in-memory path (load time reported separately from the epoch);
* ``streaming_40y``: streaming on the 40-year Emulator file, to show that peak RSS does not grow with years.

Peak RSS: VmHWM of the process plus the largest ``ru_maxrss`` of its (worker) children.

Usage: ``python benchmarks/bench_dataloader.py [--root /tmp/bench_cordex] [--domain NZ] [--keep]``
(generates the 20-year domain with the synthetic generator when absent; ``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ml_benchmark_spategan.utils.threads import apply_num_threads

EXPERIMENTS = {"naive": "ESD_pseudo_reality", "streaming": "ESD_pseudo_reality", "memory": "ESD_pseudo_reality",
               "streaming_40y": "Emulator_hist_future"}


def _peak_rss_mb() -> dict:
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_mb": round(hwm / 1024, 1), "peak_rss_worker_mb": round(children / 1024, 1)}


def _open(root: str, domain: str, experiment: str, mode: str):
    from ml_benchmark_spategan.config.schema import DataConfig, LoaderConfig
    from ml_benchmark_spategan.dataloader import fit_normalizers, open_training_data, split_data

    loader = LoaderConfig(mode=mode, num_workers=2, block_days=128, chunk_days=128, memory_budget_gb=8.0)
    cfg = DataConfig(root=root, domain=domain, experiment=experiment, target_variable="pr", use_orography=False,
                     loader=loader)
    t0 = time.perf_counter()
    data = open_training_data(cfg)
    train, _ = split_data(data, cfg)
    norms = fit_normalizers(train, cfg.normalization)
    return cfg, train, norms, time.perf_counter() - t0


def run_naive(root: str, domain: str, n_samples: int = 400) -> dict:
    import xarray as xr

    from ml_benchmark_spategan.cordex import PREDICTOR_VARIABLES, train_predictor_path, train_target_path
    from ml_benchmark_spategan.dataloader.normalization import apply_params

    cfg, train, norms, _ = _open(root, domain, EXPERIMENTS["naive"], "streaming")
    px, py = norms.predictors.params(), norms.target.params()
    ds = xr.open_dataset(train_predictor_path(root, domain, cfg.experiment))
    ts = xr.open_dataset(train_target_path(root, domain, cfg.experiment))
    order = np.random.default_rng(0).permutation(train.n_days)[:n_samples]
    t0 = time.perf_counter()
    for i in order:
        x = ds[list(PREDICTOR_VARIABLES)].isel(time=int(i)).to_array().values
        y = ts["pr"].isel(time=int(i)).values
        apply_params(x, px), apply_params(y[None], py)
    dt = time.perf_counter() - t0
    return {"samples": int(n_samples), "seconds": round(dt, 3), "samples_per_s": round(n_samples / dt, 1)}


def run_loader(root: str, domain: str, config: str) -> dict:
    from ml_benchmark_spategan.dataloader.torch_bridge import make_train_loader

    mode = "memory" if config == "memory" else "streaming"
    cfg, train, norms, open_s = _open(root, domain, EXPERIMENTS[config], mode)
    t0 = time.perf_counter()
    loader = make_train_loader(train, norms, cfg.loader, batch_size=32, seed=0)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = sum(len(batch["time_index"]) for batch in loader)
    dt = time.perf_counter() - t0
    return {"mode": loader.mode, "train_days": train.n_days, "samples": n, "open_and_fit_s": round(open_s, 2),
            "build_s": round(build_s, 2), "epoch_s": round(dt, 3), "samples_per_s": round(n / dt, 1)}


def child(args) -> None:
    result = run_naive(args.root, args.domain) if args.run == "naive" else run_loader(args.root, args.domain, args.run)
    print(json.dumps({"config": args.run, "domain": args.domain, **result, **_peak_rss_mb()}))


def ensure_domain(root: Path, domain: str) -> bool:
    """Generate the 20-year synthetic domain under ``root`` when absent; True when generated here."""
    from ml_benchmark_spategan.cordex import train_target_path

    if train_target_path(root, domain, "Emulator_hist_future").is_file():
        return False
    from ml_benchmark_spategan.synthetic import generate_domain

    t0 = time.perf_counter()
    generate_domain(root, domain, years=20, seed=0, truth=False)
    print(json.dumps({"generated": domain, "seconds": round(time.perf_counter() - t0, 1)}), file=sys.stderr)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench_cordex")
    parser.add_argument("--domain", default="NZ")
    parser.add_argument("--keep", action="store_true", help="keep generated data")
    parser.add_argument("--run", choices=sorted(EXPERIMENTS), help=argparse.SUPPRESS)
    parser.add_argument("--configs", nargs="*", default=["naive", "streaming", "memory", "streaming_40y"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of torch and dask (0 = auto)")
    args = parser.parse_args()
    apply_num_threads(args.threads)
    if args.run:
        return child(args)
    root = Path(args.root)
    generated = ensure_domain(root, args.domain)
    results = []
    for config in args.configs:
        out = subprocess.run([sys.executable, __file__, "--run", config, "--root", str(root), "--domain", args.domain,
                              "--threads", str(args.threads)],
                             check=True, capture_output=True, text=True)
        line = out.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        results.append(json.loads(line))
    by = {r["config"]: r for r in results}
    if "naive" in by and "streaming" in by:
        print(json.dumps({"streaming_over_naive": round(by["streaming"]["samples_per_s"] / by["naive"]["samples_per_s"], 1)}))
    if generated and not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
