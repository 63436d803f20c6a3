"""Experiment configuration: the schema (frozen dataclasses, the only home of defaults) and its loader."""

from ml_benchmark_spategan.config.loader import (
    BEST_METRIC_PREFIXES,
    ConfigError,
    apply_values,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    describe_config,
    dump_config,
    load_config,
)
from ml_benchmark_spategan.config.schema import Config

__all__ = [
    "BEST_METRIC_PREFIXES",
    "Config",
    "ConfigError",
    "apply_values",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "describe_config",
    "dump_config",
    "load_config",
]
