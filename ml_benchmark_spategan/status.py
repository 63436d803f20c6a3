"""Print a table of runs from their ``status.json`` files (no torch; works on a login node over a shared
filesystem).

    python -m ml_benchmark_spategan.status [runs/ | runs/<run>] [--state training] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ml_benchmark_spategan.monitor.status import scan_runs
from ml_benchmark_spategan.monitor.table import format_table, status_row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_benchmark_spategan.status",
                                     description="Table of training runs from their status.json files.")
    parser.add_argument("root", nargs="?", default="runs", help="folder of run folders, or one run folder (default runs)")
    parser.add_argument("--state", action="append", default=[], help="show only runs in this state (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the statuses as JSON instead of a table")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: {root} is not a folder (give the folder holding the run folders, e.g. runs/)", file=sys.stderr)
        return 2
    statuses = [s for s in scan_runs(root) if not args.state or s.get("state") in args.state]
    if args.json:
        print(json.dumps(statuses, indent=1))
    elif not statuses:
        print(f"no runs with a status.json under {root}")
    else:
        print(format_table([status_row(s) for s in statuses]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
