#!/usr/bin/env python
"""Skill of the interpolation baseline (``model.name: bilinear``) against the old one and the training
climatology, on the synthetic CORDEX domain (validation years; RMSE = the benchmark's reduction, the
spatial mean of the per-cell RMSE over time, in the target's units).

    python benchmarks/bench_baseline.py [--domain NZ] [--years 6] [--root /tmp/bench_baseline] [--threads 0]

Prints one JSON line per (domain, variable, predictor):

* ``new``: the baseline as shipped (matching predictor in physical units, bilinear at each cell's
  latitude/longitude, per-cell monthly mean (+ variance for temperature) correction fitted on the training
  years; monthly climatology where no predictor matches);
* ``old``: the previous baseline (predictor standardised per grid point, stretched over the target grid
  with ``F.interpolate(align_corners=False)``, read as the target's standardised anomaly and mapped through
  the target's global normalisation);
* ``plain_bilinear``: the new interpolation without correction (temperature: the predictor converted to
  the target's units);
* ``climatology``: the per-cell mean of the training years; ``monthly_climatology``: per cell and month.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from ml_benchmark_spategan.config.schema import DataConfig, NormalizationConfig
from ml_benchmark_spategan.dataloader import fit_normalizers, open_training_data, split_data
from ml_benchmark_spategan.dataloader.baseline_fit import fit_bilinear_baseline, interpolate_points, month_of_doy
from ml_benchmark_spategan.dataloader.torch_bridge import TorchNormalizer
from ml_benchmark_spategan.evaluation.diagnostics import rmse_score
from ml_benchmark_spategan.model.baselines import BilinearBaseline
from ml_benchmark_spategan.utils.threads import apply_num_threads
from ml_benchmark_spategan.variables import convert


def _doy(data) -> np.ndarray:
    return np.asarray(xr.DataArray(data.time, dims="time").dt.dayofyear.values, dtype=np.int64)


def new_baseline(train, val, norms, choice: str) -> tuple[np.ndarray, str]:
    fit = fit_bilinear_baseline(train, choice)
    model = BilinearBaseline(train.predictors.shape[2:], train.target.shape[1:])
    model.load_fit(fit, norms.predictors.params(), norms.target.params())
    x = torch.from_numpy(norms.predictors.transform(val.predictors).values)
    with torch.no_grad():
        y = model(x, doy=torch.from_numpy(_doy(val)))
    return TorchNormalizer.from_normalizer(norms.target).inverse(y)[:, 0].numpy(), fit.description


def old_baseline(val, norms, channel: int) -> np.ndarray:
    x = torch.from_numpy(norms.predictors.transform(val.predictors).values)[:, channel:channel + 1]
    y = F.interpolate(x, size=tuple(val.target.shape[1:]), mode="bilinear", align_corners=False)
    return TorchNormalizer.from_normalizer(norms.target).inverse(y)[:, 0].numpy()


def plain_bilinear(train, val, predictor: str) -> np.ndarray:
    fit = fit_bilinear_baseline(train, predictor)
    field = val.predictors.sel(channel=predictor).values
    p = interpolate_points(field, fit.index, fit.weight, val.target.shape[1:])
    return np.asarray(convert(p, val.predictor_info[predictor].units, val.info.units), dtype=np.float32)


def climatologies(train, val) -> tuple[np.ndarray, np.ndarray]:
    t = train.target.values.astype(np.float64)
    overall = np.nanmean(t, axis=0)
    months_train, months_val = month_of_doy()[_doy(train)], month_of_doy()[_doy(val)]
    monthly = np.stack([np.nanmean(t[months_train == m], axis=0) if (months_train == m).any() else overall
                        for m in range(12)])
    return np.broadcast_to(overall, val.target.shape), monthly[months_val]


def score(truth: xr.DataArray, values: np.ndarray) -> float:
    return float(rmse_score(truth, truth.copy(data=np.asarray(values, dtype=np.float32))))


def run_case(root: Path, domain: str, variable: str, years: int) -> dict:
    cfg = DataConfig(root=str(root), domain=domain, target_variable=variable, use_orography=False,
                     train_years=(f"1961-{1961 + years - 3}",), val_years=(f"{1961 + years - 2}-{1961 + years - 1}",))
    train, val = split_data(open_training_data(cfg), cfg)
    norms = fit_normalizers(train, NormalizationConfig())
    truth = val.target.load()
    old_predictor = {"tasmax": "t_850", "pr": "q_850"}[variable]
    start = time.perf_counter()
    new, description = new_baseline(train, val, norms, "auto")
    fit_seconds = time.perf_counter() - start
    overall, monthly = climatologies(train, val)
    out = {"domain": domain, "variable": variable, "units": val.info.units, "train_days": train.n_days,
           "val_days": val.n_days, "baseline": description, "rmse_new": score(truth, new),
           "rmse_old": score(truth, old_baseline(val, norms, train.channels.index(old_predictor))),
           "rmse_climatology": score(truth, overall), "rmse_monthly_climatology": score(truth, monthly),
           "fit_and_predict_seconds": round(fit_seconds, 2)}
    if variable == "tasmax":
        out["rmse_plain_bilinear"] = score(truth, plain_bilinear(train, val, "t_850"))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", nargs="+", default=["NZ", "ALPS"])
    parser.add_argument("--years", type=int, default=6, help="years per period of the synthetic domain (>= 3)")
    parser.add_argument("--root", default=None, help="folder for the synthetic data (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = auto)")
    args = parser.parse_args()
    apply_num_threads(args.threads)
    from ml_benchmark_spategan.synthetic import generate_domain

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        for domain in args.domain:
            if not (root / f"{domain}_domain").is_dir():
                generate_domain(root, domain, years=args.years, seed=0, truth=False)
            for variable in ("tasmax", "pr"):
                result = run_case(root, domain, variable, args.years)
                print(json.dumps({**result, "load_avg_1min": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
