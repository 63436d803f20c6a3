#!/usr/bin/env python
"""Train a downscaling model: parse arguments -> load the config -> run. No logic of its own.

    python training_v2.py --config config.yml [--set training.epochs=3 --set data.domain=NZ ...]
                          [--run-dir DIR] [--dry-run] [--resume RUN_DIR|auto]
    python training_v2.py --resume RUN_DIR [--set training.epochs=40]     # continue with RUN_DIR/config.yaml

A resumed run uses its own resolved config.yaml; --config/--set given with --resume may change only the
keys in ml_benchmark_spategan.training.resume.RESUMABLE_KEYS (e.g. training.epochs to extend the run).

Exit status: 0 on success; 2 for a bad configuration, bad data, an unusable checkpoint or run folder (the
message is printed to stderr without a traceback, and nothing is created or changed); 75 when SIGTERM or
SIGUSR1 stopped the run after writing checkpoints/last.pt (a SLURM job script requeues on 75); also 0 when
a STOP file in the run folder (the dashboard's Stop button) stopped it after writing checkpoints/last.pt
(status.json says "stopped"; continue with --resume); 3 when a training loss became NaN/Inf
(training.nonfinite_loss: stop).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ml_benchmark_spategan.config import ConfigError, config_to_yaml, load_config
from ml_benchmark_spategan.training.resume import ResumeError, folder_to_resume, resume_config


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a SpaGAN (or baseline) downscaling model on CORDEX ML-Bench data.")
    parser.add_argument("--config", metavar="FILE", help="YAML config file (default: the schema defaults)")
    parser.add_argument("--set", dest="overrides", metavar="KEY.PATH=VALUE", action="append", default=[],
                        help="override a config key, value parsed as YAML (e.g. training.epochs=3); repeatable")
    parser.add_argument("--run-dir", metavar="DIR", help="run folder to create (default: a new folder under run.root)")
    parser.add_argument("--resume", metavar="RUN_DIR|auto",
                        help="continue RUN_DIR from checkpoints/last.pt with its own config.yaml (--config/--set "
                             "may then change only safe keys such as training.epochs); auto = continue --run-dir "
                             "if it has checkpoints/last.pt, else start it fresh (for requeued jobs)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config as YAML and exit without creating anything")
    return parser.parse_args(argv)


def _train(cfg, args: argparse.Namespace) -> int:
    # Imported here: the training stack pulls in torch and the data layer, which a config error or a
    # dry run never needs.
    from ml_benchmark_spategan.dataloader.errors import DataError
    from ml_benchmark_spategan.training.checkpoint import CheckpointError
    from ml_benchmark_spategan.training.loop import NonFiniteLossError
    from ml_benchmark_spategan.training.run import train
    from ml_benchmark_spategan.training.rundir import RunDirError
    from ml_benchmark_spategan.training.signals import Preempted

    try:
        run_dir = train(cfg, run_dir=args.run_dir, resume=args.resume)
    except ConfigError as err:  # e.g. a checkpoint's stored config that no longer validates
        print(f"config error:\n{err}", file=sys.stderr)
        return 2
    except (DataError, CheckpointError, RunDirError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except Preempted as err:
        print(f"stopped: {err}; resume with --resume", file=sys.stderr)
        return err.exit_code
    if _rank() == 0:  # under torchrun/srun every process returns; one line is enough
        print(f"run folder: {run_dir}")
    return 0


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def _config(args: argparse.Namespace):
    folder = folder_to_resume(args.resume, args.run_dir)
    if folder is None:
        return load_config(args.config, args.overrides)
    return resume_config(folder, args.config, args.overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        cfg = _config(args)
    except ResumeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"config error:\n{err}", file=sys.stderr)
        return 2
    if args.dry_run:
        sys.stdout.write(config_to_yaml(cfg, comments=False))
        return 0
    return _train(cfg, args)


if __name__ == "__main__":
    sys.exit(main())
