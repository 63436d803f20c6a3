"""Command line: ``python -m ml_benchmark_spategan.synthetic --domain ALPS --out data/cordex --years 4 --seed 0``."""

from __future__ import annotations

import argparse
import time

from ml_benchmark_spategan.cordex import DOMAINS
from ml_benchmark_spategan.synthetic.generate import generate_domain


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ml_benchmark_spategan.synthetic",
                                     description="Write a synthetic CORDEX ML-Bench domain tree.")
    parser.add_argument("--domain", required=True, choices=sorted(DOMAINS), help="benchmark domain")
    parser.add_argument("--out", default="data/cordex", help="root folder (gets <D>_domain and <D>_domain_truth)")
    parser.add_argument("--years", type=int, default=20, help="years per period, 1..20 (default 20 = full size)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weather (default 0)")
    parser.add_argument("--no-truth", action="store_true", help="skip the test periods' synthetic truth")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = generate_domain(args.out, args.domain, years=args.years, seed=args.seed, truth=not args.no_truth)
    print(f"wrote {path} ({args.years} years per period) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
