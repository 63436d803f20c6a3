"""Data layer: open CORDEX ML-Bench (or your own) NetCDF files lazily, split by years, normalise, and
turn them into torch batches (only :mod:`.torch_bridge` imports torch; import it explicitly)."""

from ml_benchmark_spategan.dataloader.errors import DataError
from ml_benchmark_spategan.dataloader.normalization import (
    Normalizer,
    Normalizers,
    fit_normalizer,
    fit_normalizers,
    resolve_method,
)
from ml_benchmark_spategan.dataloader.reader import (
    DataOrigin,
    DomainData,
    check_same_grid,
    check_same_times,
    open_predictors,
    open_training_data,
)
from ml_benchmark_spategan.dataloader.split import held_out_split, parse_years, select_years, split_data

__all__ = [
    "DataError", "DataOrigin", "DomainData", "Normalizer", "Normalizers", "check_same_grid", "check_same_times",
    "fit_normalizer", "fit_normalizers", "open_predictors", "open_training_data", "parse_years",
    "held_out_split", "resolve_method", "select_years", "split_data",
]
