#!/usr/bin/env python
"""Compare evaluated runs: one table of their one-number diagnostics and overlay plots.

    python evaluation/compare.py runs/<a> runs/<b> ... [--split val|test|test_years] [--period P] [--kind K] [--gcm G]
        [--evaluate [--members 10] [--device auto]] [--out DIR]

Reads ``<run>/evaluation/<label>/summary.json`` (and ``psd.nc`` / ``quantiles.nc``) written by
``evaluation/evaluate.py``; label ``val``, ``test`` (held-out ``data.test_years``: ``--split test_years``, or
``--split test`` for bring-your-own runs) or ``test_<period>_<kind>_<gcm>`` (CORDEX runs with ``--split test``;
GCM default: the domain's GCM1).
A run without that summary is an error unless ``--evaluate`` is given, which runs the evaluation first
(without plots). Runs must share the data source, domain and target variable: otherwise a clear error
names both runs and nothing is written.

Writes to ``--out`` (default ``<runs root>/comparisons/<YYYYmmdd_HHMMSS>/``, the runs root being the folder
holding the first run, e.g. ``runs/comparisons/...``): ``comparison.md`` / ``comparison.csv``
(one row per score, one column per run, labelled ``<run id> (<checkpoint file>, epoch N)``, preceded by
the runs' facts), ``comparison.json`` (facts and scores per run), ``psd.png`` (target and each run's
member 0 / ensemble mean spectra), ``qq.png`` (member 0 quantiles against the truth's) and
``bias_bars.png`` (index biases of member 0; one panel per unit, e.g. mm/day and days).

Exit status: 0 success; 2 bad arguments, missing runs or summaries, or runs that cannot be compared.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import xarray as xr

from ml_benchmark_spategan import cordex
from ml_benchmark_spategan.config.loader import load_config
from ml_benchmark_spategan.evaluation.report import evaluation_label, index_units
from ml_benchmark_spategan.utils.progress import track
from ml_benchmark_spategan.visualization import evaluation_figures as ef

LOG = logging.getLogger("compare")
#: Run facts listed above the scores in the table.
FACT_ROWS = ("model", "checkpoint_file", "epoch", "members", "years", "n_days", "prediction_seconds")
#: Facts that must agree between compared runs.
MATCH_KEYS = ("data_source", "domain", "variable")


class CompareError(ValueError):
    """Runs that cannot be compared, or a summary that is missing or unreadable."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Compare the evaluation summaries of several runs.")
    p.add_argument("runs", nargs="+", help="run folders (runs/<id>)")
    p.add_argument("--split", default="val", choices=("val", "test", "test_years"))
    p.add_argument("--period", default="historical", choices=sorted(cordex.TEST_PERIODS))
    p.add_argument("--kind", default="perfect", choices=cordex.PREDICTOR_KINDS)
    p.add_argument("--gcm", default=None, help="test GCM (default: the domain's GCM1)")
    p.add_argument("--evaluate", action="store_true", help="run evaluation/evaluate.py for runs without a summary")
    p.add_argument("--members", type=int, default=10, help="members for --evaluate (default %(default)s)")
    p.add_argument("--device", default="auto", help="device for --evaluate (default %(default)s)")
    p.add_argument("--data-root", default=None, help="data root for --evaluate (default: each run's data.root)")
    p.add_argument("--out", default=None, help="output folder (default: <folder of the first run>/comparisons/<timestamp>/, "
                        "e.g. runs/comparisons/...)")
    return p.parse_args(argv)


# --- summaries -------------------------------------------------------------------------------------------
def run_facts(run_dir: str | Path) -> dict:
    """data_source, domain and variable of a run folder, from its config.yaml."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CompareError(f"run folder {run_dir} does not exist or has no config.yaml")
    data = load_config(run_dir / "config.yaml").data
    # Bring-your-own runs are comparable only on the same target file (their "domain").
    domain = data.domain if data.source == "cordex" else data.files.target_file
    variable = (data.files.target_variable or data.target_variable) if data.source == "files" else data.target_variable
    return {"run_dir": str(run_dir), "data_source": data.source, "domain": domain, "variable": variable}


def run_label_for(run_dir: Path, args: argparse.Namespace) -> str:
    """The evaluation label of ``run_dir`` for the requested split (GCM default from the run's domain)."""
    facts = run_facts(run_dir)
    if args.split == "val":
        return "val"
    if args.split == "test_years" or facts["data_source"] == "files":
        return evaluation_label("test_years")
    gcm = args.gcm or cordex.domain_spec(facts["domain"]).gcm1
    return evaluation_label("test", args.period, args.kind, gcm)


def _evaluate(run_dir: Path, args: argparse.Namespace) -> None:
    spec = importlib.util.spec_from_file_location("evaluate_cli", Path(__file__).with_name("evaluate.py"))
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    argv = [str(run_dir), "--split", args.split, "--members", str(args.members), "--device", args.device, "--no-plots"]
    if args.split == "test":
        argv += ["--period", args.period, "--kind", args.kind] + (["--gcm", args.gcm] if args.gcm else [])
    if args.data_root:
        argv += ["--data-root", args.data_root]
    status = module.main(argv)
    if status != 0:
        raise CompareError(f"evaluating {run_dir} failed (exit status {status})")


def load_summary(run_dir: str | Path, args: argparse.Namespace) -> tuple[Path, dict]:
    """(evaluation folder, summary dict) of a run; evaluates first when asked and absent."""
    run_dir = Path(run_dir)
    folder = run_dir / "evaluation" / run_label_for(run_dir, args)
    path = folder / "summary.json"
    if not path.is_file() and args.evaluate:
        _evaluate(run_dir, args)
    if not path.is_file():
        raise CompareError(f"{path} not found: run `python evaluation/evaluate.py {run_dir} --split {args.split}` "
                           "first, or pass --evaluate")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CompareError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(summary, dict) or "run" not in summary or "scores" not in summary:
        raise CompareError(f"{path}: expected a summary with 'run' and 'scores' (written by evaluate.py)")
    return folder, summary


def check_comparable(facts: Sequence[dict]) -> None:
    """CompareError naming both runs when data source, domain or variable differ (``facts``: run facts with
    run_dir and MATCH_KEYS, from config.yaml or a summary's ``run``)."""
    first = facts[0]
    for run in facts[1:]:
        for key in MATCH_KEYS:
            if run.get(key) != first.get(key):
                raise CompareError(
                    f"cannot compare {first.get('run_dir')} ({key} {first.get(key)!r}) with {run.get('run_dir')} "
                    f"({key} {run.get(key)!r}): runs must share the domain and the variable")


def column_label(run: dict) -> str:
    return f"{run.get('run_id')} ({run.get('checkpoint_file')}, epoch {run.get('epoch')})"


def score_names(summaries: Sequence[dict]) -> list[str]:
    """Union of score keys in order of first appearance."""
    return list(dict.fromkeys(k for s in summaries for k in s["scores"]))


# --- writing ---------------------------------------------------------------------------------------------
def _cell(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def table_rows(summaries: Sequence[dict]) -> list[list]:
    """[[name, value per run], ...]: facts (FACT_ROWS) then every score; missing values are None."""
    rows = [[key, *[s["run"].get(key) for s in summaries]] for key in FACT_ROWS]
    rows += [[name, *[s["scores"].get(name) for s in summaries]] for name in score_names(summaries)]
    return rows


def dataset_title(run: dict) -> str:
    """``pr (mm/day) on NZ`` or, for your own data, ``tg (degC) from tg_obs.nc``."""
    units = f" ({run['units']})" if run.get("units") else ""
    where = f"on {run['domain']}" if run.get("domain") else f"from {Path(str(run.get('target_file') or '?')).name}"
    return f"{run.get('variable')}{units} {where}"


def write_tables(out: Path, summaries: Sequence[dict], split_label: str) -> None:
    labels = [column_label(s["run"]) for s in summaries]
    rows = table_rows(summaries)
    first = summaries[0]["run"]
    md = [f"# Comparison: {dataset_title(first)} ({split_label})", "",
          "| score | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    md += ["| " + " | ".join([row[0], *[_cell(v) for v in row[1:]]]) + " |" for row in rows]
    (out / "comparison.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    with open(out / "comparison.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["score", *labels])
        writer.writerows([[row[0], *["" if v is None else v for v in row[1:]]] for row in rows])
    payload = {"split": split_label, "variable": first.get("variable"), "domain": first.get("domain"),
               "runs": [{"label": label, **{k: s["run"].get(k) for k in ("run_dir", *FACT_ROWS)},
                         "scores": s["scores"]} for label, s in zip(labels, summaries, strict=True)]}
    (out / "comparison.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _open(path: Path) -> xr.Dataset | None:
    if not path.is_file():
        LOG.warning("%s not found: left out of the overlay plots", path)
        return None
    with xr.open_dataset(path) as ds:
        return ds.load()


def plot_overlays(out: Path, folders: Sequence[Path], summaries: Sequence[dict]) -> None:
    """psd.png, qq.png and bias_bars.png over all runs."""
    from ml_benchmark_spategan.training.artifacts import save_figure

    first = summaries[0]["run"]
    var, units, kind = first.get("variable"), first.get("units"), first.get("target_kind")
    labels = [column_label(s["run"]) for s in summaries]
    psds = [_open(f / "psd.nc") for f in folders]
    quants = [_open(f / "quantiles.nc") for f in folders]
    if any(p is not None for p in psds):
        ref = next(p for p in psds if p is not None)["power"]
        k = "wavenumber_per_km" if "wavenumber_per_km" in ref.coords else "wavenumber"
        curves = {"target": (ref[k].values, ref.sel(series="target").values)}
        for label, ds in zip(labels, psds, strict=True):
            for series in ("member 0", "ensemble mean") if ds is not None else ():
                curves[f"{label} {series}"] = (ds["power"][k].values, ds["power"].sel(series=series).values)
        xlabel = "wavenumber (cycles/km)" if k == "wavenumber_per_km" else "wavenumber (cycles per grid length)"
        save_figure(ef.psd_figure(curves, var, xlabel=xlabel, units=units), out / "psd.png")
    if any(q is not None for q in quants):
        ref = next(q for q in quants if q is not None)["quantile"]
        by_label = {label: q["quantile"].sel(series="member 0").values
                    for label, q in zip(labels, quants, strict=True) if q is not None}
        save_figure(ef.qq_figure(ref.sel(series="target").values, by_label, var, title=f"{var} member 0 quantiles",
                                 units=units, kind=kind), out / "qq.png")
    bars = {label: {k.split("/")[0].removeprefix("bias_"): v for k, v in s["scores"].items()
                    if k.startswith("bias_") and k.endswith("/member0") and v is not None}
            for label, s in zip(labels, summaries, strict=True)}
    if any(bars.values()):
        units_by_index = {k: index_units(k, units) for values in bars.values() for k in values}
        save_figure(ef.bars_figure(bars, ylabel="spatial mean |bias|", title=f"{var} index biases (member 0)",
                                   units=units_by_index), out / "bias_bars.png")


def default_out(runs: Sequence[str | Path]) -> Path:
    """``<runs root>/comparisons/<YYYYmmdd_HHMMSS>``: beside the runs (``runs/comparisons/...``), not in the CWD."""
    return Path(runs[0]).resolve().parent / "comparisons" / datetime.now().strftime("%Y%m%d_%H%M%S")


def compare(args: argparse.Namespace) -> Path:
    check_comparable([run_facts(run) for run in args.runs])  # before anything is evaluated or written
    loaded = [load_summary(run, args) for run in track(args.runs, "summaries", unit="runs")]
    folders, summaries = [f for f, _ in loaded], [s for _, s in loaded]
    check_comparable([s["run"] for s in summaries])
    out = Path(args.out) if args.out else default_out(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    split_label = summaries[0]["run"].get("label", args.split)
    write_tables(out, summaries, split_label)
    plot_overlays(out, folders, summaries)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        out = compare(args)
    except (CompareError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"comparison written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
