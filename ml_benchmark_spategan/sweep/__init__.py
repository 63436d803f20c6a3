"""Hyperparameter search on Optuna: each trial is an ordinary run; any number of workers share one study.

    python -m ml_benchmark_spategan.sweep --config config.yml --space slurm/sweeps/gan.yml [--trials N]

Modules: :mod:`.space` (the search-space file and its validation), :mod:`.study` (storage, joining,
heartbeats, lost trials, the trial budget), :mod:`.trial` (one trial as a run folder, the per-epoch
report/prune hook), :mod:`.worker` (the loop), :mod:`.summary` (best_config.yaml, trials.csv, figures).
"""
