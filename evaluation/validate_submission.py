#!/usr/bin/env python
"""Check a CORDEX ML-Bench submission folder against the benchmark's rules.

    python evaluation/validate_submission.py SUBMISSIONS/NAME [--domains ALPS NZ SA] [--members 10]
                                             [--data-root data/cordex] [--experiments ...] [--no-values]
    python evaluation/validate_submission.py SUBMISSIONS/NAME.zip [--domains ...] [--experiments ...]

FOLDER is the ``<name>/`` folder holding ``<D>_Domain/``, or the zip made from it (then its entries are
checked: names and layout). ``--members`` is the required ensemble size (default 10, the benchmark
README's; 0 accepts any size). Prints one line per problem and exits 1 if there is any; exits 0 with a
summary line otherwise (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ml_benchmark_spategan.cordex import DOMAINS, EXPERIMENTS
from ml_benchmark_spategan.submission import DEFAULT_MEMBERS, validate_submission, validate_zip
from ml_benchmark_spategan.submission.layout import expected_files


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Validate a CORDEX ML-Bench submission folder.")
    parser.add_argument("folder", help="the submission's <name>/ folder (holding <D>_Domain/) or its zip")
    parser.add_argument("--domains", nargs="+", choices=sorted(DOMAINS), default=None,
                        help="domains to check (default: all three, as a complete submission needs)")
    parser.add_argument("--experiments", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS),
                        help="training experiments to check (default: both)")
    parser.add_argument("--members", type=int, default=DEFAULT_MEMBERS,
                        help="required ensemble size (default %(default)s; 0: any size, equal on pr and tasmax)")
    parser.add_argument("--data-root", default=None,
                        help="data folder holding <D>_domain/test/: times must equal the predictor files' times")
    parser.add_argument("--no-values", action="store_true", help="skip the scan of every value (NaN/Inf, ranges)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.members < 0:
        print(f"error: --members must be >= 0 (0 = any), got {args.members}", file=sys.stderr)
        return 2
    if args.folder.endswith(".zip"):
        problems = validate_zip(args.folder, args.domains, args.experiments)
    else:
        problems = validate_submission(args.folder, args.domains, args.experiments, args.members or None,
                                       args.data_root, check_values=not args.no_values)
    for problem in problems:
        print(problem)
    domains = args.domains or sorted(DOMAINS)
    n_files = sum(len(expected_files(d, args.experiments)) for d in domains)
    if problems:
        print(f"{len(problems)} problem(s) in {args.folder}", file=sys.stderr)
        return 1
    print(f"OK: {args.folder}: {n_files} files for {', '.join(domains)} x {', '.join(args.experiments)} pass all checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
