#!/usr/bin/env python
"""Skill benchmark: every model trained on the same small case with the same budget, scored on held-out years.

    python benchmarks/bench_skill.py [--models spagan resgan unet deepesd bilinear] [--variable pr|tasmax|both]
        [--minutes 30 | --steps N] [--members 10] [--threads 1] [--out /tmp/bench_skill] [--oversample STAT]
        [--set key=value ...] [--set-model name:key=value ...]

The case (see benchmarks/README.md): the package's synthetic ALPS domain (``--years`` 9 per period, written
under ``--out``/data unless ``--data-root`` holds one), target block-averaged x2 to 64x64
(``data.target_coarsen``), train 1961-1966, validation 1967, test 1968-1969 (held out, ``data.test_years``),
small model sizes (:data:`CASE`). Each model is trained with the package's ``train`` and scored with
``evaluation/evaluate.py`` (``--split test_years``, ``--members`` members, checkpoint ``best``), so every
number comes from the project's own evaluation code. Models missing from the registry are skipped with a
message on stderr.

Budget: ``--minutes`` is the wall time of the whole benchmark for ONE variable (all models), shared equally
by the trainable models after reserving :data:`EVAL_RESERVE_S` per model for the evaluation; a model stops
after the epoch that would run past its share (epochs are ``--steps-per-epoch`` steps). ``--steps`` gives
every trainable model the same number of generator steps instead. The interpolation baseline trains nothing.

Prints one JSON line per (model, variable) as it finishes, then a markdown table per variable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ml_benchmark_spategan.config.loader import load_config
from ml_benchmark_spategan.dataloader.reader import open_training_data
from ml_benchmark_spategan.dataloader.split import held_out_split
from ml_benchmark_spategan.evaluation import ensemble
from ml_benchmark_spategan.model.registry import MODELS
from ml_benchmark_spategan.training.run import train
from ml_benchmark_spategan.utils.threads import apply_num_threads

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluation"))
import evaluate as evaluate_script  # noqa: E402  (evaluation/evaluate.py: the project's evaluation entry point)

DEFAULT_MODELS = ("spagan", "resgan", "unet", "deepesd", "bilinear")
KEYS = ("benchmark", "model", "variable", "budget", "rmse", "crps", "mae", "ralsd", "std_ratio", "spread_skill",
        "rank_edge_fraction", "dry_freq_error", "p99_ratio", "wasserstein", "seconds")
#: Seconds of the per-variable budget reserved for each model's evaluation (prediction + scores).
EVAL_RESERVE_S = 120.0
#: The case every model shares (``--set`` adds to it; ``--set-model`` per model).
CASE = {
    "data.domain": "ALPS", "data.target_coarsen": 2, "data.train_years": ["1961-1966"], "data.val_years": ["1967"],
    "data.test_years": ["1968-1969"], "data.loader.mode": "memory", "device": "cpu",
    "model.generator.filters": 32, "model.generator.n_coarse_blocks": 2, "model.generator.upsample_channels": [32, 16],
    "model.discriminator.hr_channels": [32, 64, 64], "model.discriminator.lr_channels": [32],
    "training.batch_size": 16, "training.val_members": 4,
    "logging.plot_every_epochs": 0, "logging.checkpoint_every_epochs": 0, "logging.progress_bar": False,
}
DRY_MM = 1.0


class BudgetReached(Exception):
    """Raised by the epoch-end hook when the next epoch would exceed the model's time budget."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="registry names (default %(default)s)")
    p.add_argument("--variable", default="both", choices=("pr", "tasmax", "both"))
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=30.0, help="wall time per variable, all models (default 30)")
    budget.add_argument("--steps", type=int, default=None, help="generator steps per trainable model instead")
    p.add_argument("--steps-per-epoch", type=int, default=100, help="training.max_steps_per_epoch (default 100)")
    p.add_argument("--members", type=int, default=10, help="ensemble members at evaluation (default 10)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (0 = auto; default 1)")
    p.add_argument("--out", default="/tmp/bench_skill", help="folder for data, runs and results")
    p.add_argument("--data-root", default=None, help="folder holding ALPS_domain/ (default: <out>/data, generated)")
    p.add_argument("--years", type=int, default=9, help="years of the generated synthetic domain (default 9)")
    p.add_argument("--oversample", default=None, help="data.oversampling.statistic for every model (if the "
                   "package has it)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every model; repeatable")
    p.add_argument("--set-model", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="config override for one model; repeatable")
    args = p.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    if args.minutes <= 0 or args.members < 2 or args.steps_per_epoch < 1:
        p.error("--minutes must be > 0, --members >= 2, --steps-per-epoch >= 1")
    if args.steps is not None:  # whole epochs: --steps rounded up to a multiple of --steps-per-epoch
        args.steps_per_epoch = min(args.steps_per_epoch, args.steps)
    for item in args.set_model:
        if ":" not in item or "=" not in item.split(":", 1)[1]:
            p.error(f"--set-model {item!r}: expected NAME:KEY=VALUE, e.g. spagan:training.batch_size=8")
    return args


def available_models(names: Sequence[str]) -> list[str]:
    """``names`` that the registry holds, in order; a message on stderr for each one it does not."""
    kept = []
    for name in dict.fromkeys(names):
        if name in MODELS:
            kept.append(name)
        else:
            print(f"bench_skill: skipping model {name!r}: not in the registry (registered: {sorted(MODELS)})",
                  file=sys.stderr, flush=True)
    return kept


def model_overrides(args: argparse.Namespace, model: str, variable: str, root: Path, epochs: int) -> list[str]:
    """The ``--set`` list of one model's run (case, budget, user overrides; later entries win)."""
    case = {**CASE, "data.root": str(root), "data.target_variable": variable, "model.name": model,
            "training.epochs": epochs, "training.max_steps_per_epoch": 0 if model == "bilinear" else args.steps_per_epoch,
            "runtime.num_threads": args.threads, "run.root": str(Path(args.out) / "runs"),
            "run.name": f"{model}_{variable}"}
    if args.oversample:
        case["data.oversampling.statistic"] = args.oversample
    sets = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in case.items()]
    sets += list(args.overrides)
    sets += [item.split(":", 1)[1] for item in args.set_model if item.split(":", 1)[0] == model]
    return sets


def budget_hook(start: float, seconds: float | None):
    """An epoch-end hook raising :class:`BudgetReached` when another epoch like the last would pass ``seconds``."""
    state = {"last": start}

    def hook(session, row) -> None:
        now = time.perf_counter()
        epoch_s, state["last"] = now - state["last"], now
        if seconds is not None and now - start + epoch_s > seconds:
            raise BudgetReached(f"{session.run_dir}: {now - start:.0f} s after epoch {row['epoch']}")

    return hook


def train_model(cfg, seconds: float | None) -> tuple[Path, int]:
    """Train ``cfg`` (stopping at the time budget); (run folder, generator steps done). The run's log goes to
    stderr so that stdout holds only the JSON lines and the tables."""
    seen: dict = {}
    hook = budget_hook(time.perf_counter(), seconds)

    def record(session, row):
        seen.update(folder=session.run_dir, steps=session.global_step)
        hook(session, row)

    with contextlib.redirect_stdout(sys.stderr):
        try:
            train(cfg, epoch_end=[record])
        except BudgetReached as stop:
            print(f"bench_skill: budget reached: {stop}", file=sys.stderr, flush=True)
    return Path(seen["folder"]), int(seen["steps"])


def evaluate_run(run_dir: Path, members: int, threads: int) -> dict:
    """evaluate.py on the held-out test years; its summary.json."""
    out = run_dir / "evaluation" / "bench_test"
    argv = [str(run_dir), "--split", "test_years", "--members", str(members), "--no-plots", "--threads",
            str(threads), "--device", "cpu", "--out", str(out)]
    status = evaluate_script.main(argv)
    if status != 0:
        raise RuntimeError(f"evaluation/evaluate.py {' '.join(argv)} exited with status {status}")
    return json.loads((out / "summary.json").read_text())


def prediction_scores(run_dir: Path, cfg, kind: str) -> dict:
    """Scores the summary lacks, from the written predictions and the test truth: MAE of the ensemble mean
    (the CRPS of a one-member ensemble), dry-day frequency error (pr) and the p99 ratio of member 0."""
    truth = held_out_split(open_training_data(cfg.data), cfg.data).target.load()
    with xr.open_dataset(run_dir / "predictions_test.nc") as ds:
        pred = ds[cfg.data.target_variable].load()
    pred = pred.assign_coords({d: truth[d] for d in truth.dims if d != "time"}).where(truth.notnull())
    ens_mean = pred.mean("member").expand_dims(member=1)
    mae = float(ensemble.crps(truth, ens_mean).mean())
    member0 = pred.isel(member=0, drop=True)
    valid = truth.notnull()
    if kind == "precipitation":
        dry = 100.0 * abs(float((member0 < DRY_MM).where(valid).mean()) - float((truth < DRY_MM).where(valid).mean()))
        p99 = _p99(member0) / _p99(truth)
    else:  # temperature: p99 of the anomaly from the truth's per-cell mean (a ratio of kelvins says nothing)
        clim = truth.mean("time")
        dry, p99 = None, _p99(member0 - clim) / _p99(truth - clim)
    return {"mae": mae, "dry_freq_error": dry, "p99_ratio": p99}


def _p99(da: xr.DataArray) -> float:
    values = np.asarray(da.values, dtype=np.float64).ravel()
    return float(np.quantile(values[np.isfinite(values)], 0.99))


def result_row(model: str, variable: str, budget: str, summary: dict, extra: dict, seconds: float) -> dict:
    s = summary["scores"]
    row = {"benchmark": "skill", "model": model, "variable": variable, "budget": budget,
           "rmse": s.get("rmse/ensemble_mean"), "crps": s.get("crps/fair"), "mae": extra["mae"],
           "ralsd": s.get("ralsd/member0"), "std_ratio": s.get("std_ratio/member0"),
           "spread_skill": s.get("spread_skill/ratio"), "rank_edge_fraction": s.get("rank_histogram/edge_fraction"),
           "dry_freq_error": extra["dry_freq_error"], "p99_ratio": extra["p99_ratio"],
           "wasserstein": s.get("wasserstein/member0"), "seconds": round(seconds, 1)}
    return {k: (round(v, 4) if isinstance(v, float) and k != "seconds" else v) for k, v in row.items()}


def run_model(args, model: str, variable: str, root: Path, seconds: float | None) -> dict:
    if args.steps is not None:
        epochs, label = math.ceil(args.steps / args.steps_per_epoch), ""
    else:
        epochs, label = 100_000, f"{(seconds or 0) / 60:.1f} min, "
    if model == "bilinear":
        epochs, label = 1, "fit only"
    cfg = load_config(None, model_overrides(args, model, variable, root, epochs))
    start = time.perf_counter()
    run_dir, steps = train_model(cfg, None if model == "bilinear" or args.steps is not None else seconds)
    with contextlib.redirect_stdout(sys.stderr):
        summary = evaluate_run(run_dir, args.members, args.threads)
    extra = prediction_scores(run_dir, cfg, summary["run"]["target_kind"])
    if model != "bilinear":
        label += f"{steps} steps, checkpoint epoch {summary['run']['epoch']}"
    return result_row(model, variable, label, summary, extra, time.perf_counter() - start)


def ensure_data(args) -> Path:
    root = Path(args.data_root) if args.data_root else Path(args.out) / "data"
    if not (root / "ALPS_domain").is_dir():
        from ml_benchmark_spategan.synthetic import generate_domain

        generate_domain(root, "ALPS", years=args.years, seed=0, truth=False)
    return root


def markdown_table(rows: list[dict]) -> str:
    keys = [k for k in KEYS if k != "benchmark"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join("" if r[k] is None else (f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]))
                                       for k in keys) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    apply_num_threads(args.threads)
    models = available_models(args.models)
    if not models:
        print("bench_skill: no model to run", file=sys.stderr)
        return 2
    root = ensure_data(args)
    variables = ("pr", "tasmax") if args.variable == "both" else (args.variable,)
    trainable = [m for m in models if m != "bilinear"]
    share = max(args.minutes * 60.0 - EVAL_RESERVE_S * len(models), 60.0) / max(len(trainable), 1)
    rows = []
    for variable in variables:
        for model in models:
            row = run_model(args, model, variable, root, share)
            rows.append(row)
            print(json.dumps(row), flush=True)
    for variable in variables:
        print(f"\n### {variable}\n\n{markdown_table([r for r in rows if r['variable'] == variable])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
