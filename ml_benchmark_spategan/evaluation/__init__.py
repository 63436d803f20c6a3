"""Evaluation metrics (xarray in, xarray out; no torch): the CORDEX ML-Bench indices and diagnostics with
its exact semantics, opt-in corrected variants, ensemble scores and streaming accumulators.

Modules: :mod:`.indices`, :mod:`.diagnostics`, :mod:`.spectra`, :mod:`.ensemble`, :mod:`.streaming`;
season names and coordinate checks in :mod:`._common`.
"""

from ._common import check_same_coords, filter_season, season_code

__all__ = ["check_same_coords", "filter_season", "season_code"]
