"""The run dashboard (Panel): run list, one run live, Start, evaluation results. Reads run folders only;
``python -m ml_benchmark_spategan.dashboard``."""
