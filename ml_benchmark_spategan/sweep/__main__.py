"""Run a sweep worker (or write a sweep's summary).

    python -m ml_benchmark_spategan.sweep --config config.yml --space slurm/sweeps/gan.yml
        [--set key.path=value ...] [--trials N] [--study NAME] [--storage URL|FILE] [--sweep-dir DIR]
        [--worker-index K] [--summary]

Every worker started with the same --study and storage joins the same study; --trials is the total of
all workers. Defaults: study = the space file's name; sweep folder = <run.root>/sweeps/<study>; storage =
the journal file <sweep folder>/journal.log (or an Optuna RDB URL such as sqlite:///sweep.db).

Exit status: 0 when the study's budget is used (or the summary written); 2 for a bad config, search
space, data or storage (nothing is created); 75 when SIGTERM/SIGUSR1 stopped the worker (its trial is
re-queued; a SLURM job script requeues the worker).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ml_benchmark_spategan.config.loader import ConfigError, load_config


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ml_benchmark_spategan.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="FILE", help="base config of every trial (default: the schema defaults)")
    parser.add_argument("--set", dest="overrides", metavar="KEY.PATH=VALUE", action="append", default=[],
                        help="override a key of the base config; repeatable")
    parser.add_argument("--space", metavar="FILE", required=True, help="search-space YAML (see slurm/sweeps/)")
    parser.add_argument("--trials", type=int, metavar="N", help="trials in the study, all workers together "
                        "(default: the space file's trials)")
    parser.add_argument("--study", metavar="NAME", help="study name (default: the space file's name)")
    parser.add_argument("--storage", metavar="URL|FILE", help="Optuna RDB URL or journal file "
                        "(default: <sweep folder>/journal.log)")
    parser.add_argument("--sweep-dir", metavar="DIR", help="sweep folder (default: <run.root>/sweeps/<study>)")
    parser.add_argument("--worker-index", type=int, metavar="K",
                        default=int(os.environ.get("SLURM_ARRAY_TASK_ID", "0")),
                        help="offsets the sampler seed so that workers draw different points "
                             "(default: $SLURM_ARRAY_TASK_ID or 0)")
    parser.add_argument("--summary", action="store_true", help="only write the summary of the study; run no trial")
    args = parser.parse_args(argv)
    if args.trials is not None and args.trials < 1:
        parser.error(f"--trials must be >= 1, got {args.trials}")
    return args


def _options(args: argparse.Namespace, cfg, space):
    from ml_benchmark_spategan.sweep.study import JOURNAL_NAME
    from ml_benchmark_spategan.sweep.worker import WorkerOptions

    study = args.study or space.path.stem
    folder = Path(args.sweep_dir) if args.sweep_dir else Path(cfg.run.root) / "sweeps" / study
    storage = args.storage or str(folder / JOURNAL_NAME)
    return WorkerOptions(study=study, folder=folder, storage=storage, n_trials=args.trials or space.spec.trials,
                         worker_index=args.worker_index)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    # Imported after parsing: --help needs neither torch nor optuna.
    from ml_benchmark_spategan.dataloader.errors import DataError
    from ml_benchmark_spategan.sweep.space import load_space
    from ml_benchmark_spategan.sweep.summary import write_summary
    from ml_benchmark_spategan.sweep.worker import prepare, run_worker, setup_logging

    log = setup_logging()
    try:
        cfg = load_config(args.config, args.overrides)
        space = load_space(args.space, cfg)
        opts = _options(args, cfg, space)
        sweep = prepare(cfg, space, opts)
    except ConfigError as err:
        print(f"config error:\n{err}", file=sys.stderr)
        return 2
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log.info("study %r in %s: %d trials, %s %s (%s), pruner %s; sweep folder %s", opts.study, opts.storage,
             opts.n_trials, sweep.direction, sweep.metric, sweep.unit, space.spec.pruner.name, opts.folder)
    if args.summary:
        for path in write_summary(sweep).values():
            print(path)
        return 0
    return run_worker(sweep, opts.storage)


if __name__ == "__main__":
    sys.exit(main())
