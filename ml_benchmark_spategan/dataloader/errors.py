"""The one exception type of the data layer."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: a missing/corrupt file, a missing variable, wrong dims, mismatched grids or times,
    non-finite predictors, an empty or all-NaN split. The message names the file, the variable or
    dimension, what was expected and what was found."""
