#!/usr/bin/env python
"""Write a CORDEX ML-Bench submission for one domain from trained run folders, check it, optionally zip it.

    python evaluation/submit.py --name NAME --domain ALPS --data-root data/cordex \\
        --run ESD_pseudo_reality:pr=runs/<a> --run ESD_pseudo_reality:tasmax=runs/<b> \\
        [--run Emulator_hist_future:pr=... --run Emulator_hist_future:tasmax=...] \\
        [--members 10] [--out submissions] [--checkpoint best] [--device cuda] [--workers 4] [--zip] [--overwrite]

Each experiment needs a run for pr and one for tasmax; an experiment without runs is skipped with a warning
(a complete submission has both experiments and all three domains: the validator lists what is missing).
All runs are loaded and checked before any file is written. Exit status: 0 on success (problems found by
the validator are printed but do not fail the run unless --zip was asked for), 2 for bad arguments or runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ml_benchmark_spategan.cordex import DOMAINS, EXPERIMENTS
from ml_benchmark_spategan.submission import package_submission, validate_submission, validate_zip
from ml_benchmark_spategan.submission.layout import DEFAULT_MEMBERS, VARIABLES, domain_folder
from ml_benchmark_spategan.submission.writer import run_predict_fn, write_submission

LOG = logging.getLogger("submit")


def parse_run_specs(specs: Sequence[str]) -> dict[tuple[str, str], Path]:
    """``EXPERIMENT:VARIABLE=RUN_DIR`` strings -> {(experiment, variable): run_dir}; ValueError on bad ones."""
    runs = {}
    for spec in specs:
        key, sep, run_dir = spec.partition("=")
        experiment, _, variable = key.partition(":")
        if not sep or not run_dir or experiment not in EXPERIMENTS or variable not in VARIABLES:
            raise ValueError(f"--run {spec!r}: expected EXPERIMENT:VARIABLE=RUN_DIR with EXPERIMENT in "
                             f"{list(EXPERIMENTS)} and VARIABLE in {list(VARIABLES)}")
        if (experiment, variable) in runs:
            raise ValueError(f"--run {spec!r}: {experiment}:{variable} given twice")
        runs[(experiment, variable)] = Path(run_dir)
    return runs


def experiments_with_runs(runs: dict[tuple[str, str], Path]) -> list[str]:
    """Experiments with a run for both variables (warning for the others); ValueError if none is complete."""
    complete = []
    for experiment in EXPERIMENTS:
        given = [v for v in VARIABLES if (experiment, v) in runs]
        if len(given) == len(VARIABLES):
            complete.append(experiment)
        elif given:
            raise ValueError(f"{experiment}: a run is given for {given} only; each file needs pr and tasmax")
        else:
            LOG.warning("%s: no runs given, skipped (a complete submission needs it)", experiment)
    if not complete:
        raise ValueError("no experiment has runs for both pr and tasmax; give --run EXPERIMENT:VARIABLE=RUN_DIR")
    return complete


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write a CORDEX ML-Bench submission from trained runs.")
    parser.add_argument("--name", required=True, help="submission name (top folder and zip name), e.g. SpaGAN-v1-orog")
    parser.add_argument("--domain", required=True, choices=sorted(DOMAINS))
    parser.add_argument("--data-root", required=True, help="data folder holding <DOMAIN>_domain/test/")
    parser.add_argument("--run", dest="runs", action="append", default=[], metavar="EXPERIMENT:VARIABLE=RUN_DIR",
                        help="trained run folder for one experiment and variable; repeatable")
    parser.add_argument("--members", type=int, default=DEFAULT_MEMBERS, help="ensemble size (default %(default)s)")
    parser.add_argument("--out", default="submissions", help="folder that receives <name>/ (default %(default)s)")
    parser.add_argument("--checkpoint", default="best", help="best, last, final or epoch_N (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="processes writing files in parallel (0: inline)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing prediction files")
    parser.add_argument("--zip", action="store_true", help="zip <name>/ beside it when the validator finds no problem")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _parse_args(argv)
    from ml_benchmark_spategan.training.checkpoint import CheckpointError

    try:
        runs = parse_run_specs(args.runs)
        experiments = experiments_with_runs(runs)
        predict_fn = run_predict_fn(runs, args.members, args.device, args.batch_size, domain=args.domain,
                                    data_root=args.data_root, which=args.checkpoint)
        write_submission(args.out, args.name, args.data_root, args.domain, experiments, predict_fn, args.members,
                         args.overwrite, workers=args.workers)
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    folder = Path(args.out) / args.name
    # Every domain written so far (by this or earlier calls), both experiments: a skipped experiment shows
    # up as missing files. Predictor times are checked for this domain's data root only.
    domains = [d for d in sorted(DOMAINS) if (folder / domain_folder(d)).is_dir()]
    problems = validate_submission(folder, domains, EXPERIMENTS, args.members,
                                   args.data_root if domains == [args.domain] else None)
    for problem in problems:
        print(problem)
    print(f"{folder}: {len(problems)} problem(s) for {', '.join(domains)} x {', '.join(EXPERIMENTS)}")
    if args.zip:
        if problems:
            print("error: not zipped: fix the problems above first", file=sys.stderr)
            return 1
        zip_path = package_submission(folder)
        zip_problems = validate_zip(zip_path, domains, EXPERIMENTS)
        for problem in zip_problems:
            print(problem)
        if zip_problems:
            print(f"error: {zip_path}: {len(zip_problems)} problem(s) in the zip's entries", file=sys.stderr)
            return 1
        print(f"zipped: {zip_path} (entries checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
