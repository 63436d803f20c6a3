"""The run dashboard: a local web page of the runs under a folder (live progress, curves, samples, log,
Stop and Start buttons, evaluation results). Needs the ``dashboard`` extra (Panel).

    python -m ml_benchmark_spategan.dashboard [runs/] [--port 8050] [--address 127.0.0.1] [--refresh 2]

It binds to 127.0.0.1: from your laptop, ``ssh -L 8050:localhost:8050 login-node`` and open
http://localhost:8050/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    from ml_benchmark_spategan.monitor.dashboard.launch import default_repo

    parser = argparse.ArgumentParser(prog="python -m ml_benchmark_spategan.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default="runs", help="folder holding the run folders (default runs)")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--address", default="127.0.0.1", help="interface to bind (default 127.0.0.1: local only)")
    parser.add_argument("--refresh", type=float, default=2.0, help="seconds between page updates (default 2)")
    parser.add_argument("--repo", type=Path, default=None, help="checkout with training_v2.py for Start (default: this one)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: {root} is not a folder (give the folder holding the run folders, e.g. runs/)", file=sys.stderr)
        return 2
    try:
        from ml_benchmark_spategan.monitor.dashboard.app import serve
    except ImportError as err:
        print(f"error: the dashboard needs Panel ({err}); pip install -e '.[dashboard]'", file=sys.stderr)
        return 2
    repo = (args.repo or default_repo()).resolve()
    print(f"dashboard of {root.resolve()} on http://{args.address}:{args.port}/ (Ctrl-C to stop)", flush=True)
    serve(root.resolve(), repo, args.port, args.address, int(args.refresh * 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
