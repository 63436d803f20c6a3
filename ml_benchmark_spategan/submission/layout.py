"""Where the files of a CORDEX ML-Bench submission go, and what each file must look like.

Tree (benchmark rule; note the capital D in ``_Domain`` and no ``predictors/`` level)::

    <sub_root>/<name>/<D>_Domain/<experiment>/<period>/<perfect|imperfect>/Predictions_pr_tasmax_<GCM>_<label>.nc

``<GCM>_<label>`` equals the name of the test predictor file the predictions come from
(``cordex.test_predictor_path``), e.g. ``Predictions_pr_tasmax_CNRM-CM5_1981-2000.nc``. Every test predictor
file is predicted for both training experiments: 3 periods × 2 kinds × 2 GCMs = 12 files per domain and
experiment.

Dimension order of both variables in a file: ``(time, <row>, <col>, member)`` with ``(row, col)`` = ``(y, x)``
for ALPS and ``(lat, lon)`` for NZ/SA (see :mod:`ml_benchmark_spategan.submission` for why member is last).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml_benchmark_spategan.cordex import (
    EXPERIMENTS,
    PREDICTOR_KINDS,
    TEST_PERIODS,
    domain_spec,
    period_label,
)

MEMBER_DIM = "member"
#: Ensemble size written by default (the benchmark README says 10, its issue template says 5).
DEFAULT_MEMBERS = 10
VARIABLES = ("pr", "tasmax")


@dataclass(frozen=True)
class ExpectedFile:
    """One file a complete submission holds; ``relpath`` is relative to the ``<name>/`` folder."""

    domain: str
    experiment: str
    period: str
    kind: str
    gcm: str
    relpath: Path


def domain_folder(domain: str) -> str:
    """``ALPS_Domain``: the submission's folder of a domain (capital D, unlike the data's ``_domain``)."""
    return f"{domain_spec(domain).name}_Domain"


def prediction_filename(gcm: str, period: str) -> str:
    """``Predictions_pr_tasmax_<GCM>_<first>-<last>.nc`` for a test period name (historical, ...)."""
    return f"Predictions_pr_tasmax_{gcm}_{period_label(_period_years(period))}.nc"


def _period_years(period: str) -> tuple[int, int]:
    if period not in TEST_PERIODS:
        raise ValueError(f"unknown test period {period!r}; expected one of {list(TEST_PERIODS)}")
    return TEST_PERIODS[period]


def _check_names(domain: str, experiment: str, kind: str, gcm: str) -> None:
    spec = domain_spec(domain)
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {list(EXPERIMENTS)}")
    if kind not in PREDICTOR_KINDS:
        raise ValueError(f"unknown predictor kind {kind!r}; expected one of {list(PREDICTOR_KINDS)}")
    if gcm not in spec.gcms:
        raise ValueError(f"GCM {gcm!r} is not a GCM of domain {spec.name}; expected one of {list(spec.gcms)}")


def relative_path(domain: str, experiment: str, period: str, kind: str, gcm: str) -> Path:
    """Path of one prediction file relative to the submission's ``<name>/`` folder."""
    _check_names(domain, experiment, kind, gcm)
    return Path(domain_folder(domain)) / experiment / period / kind / prediction_filename(gcm, period)


def submission_path(sub_root: str | Path, name: str, domain: str, experiment: str, period: str, kind: str,
                    gcm: str) -> Path:
    """``<sub_root>/<name>/<D>_Domain/<experiment>/<period>/<kind>/Predictions_pr_tasmax_<GCM>_<label>.nc``."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"submission name {name!r}: expected a plain folder name (no '/')")
    return Path(sub_root) / name / relative_path(domain, experiment, period, kind, gcm)


def expected_files(domain: str, experiments=EXPERIMENTS) -> list[ExpectedFile]:
    """Every file of ``domain`` for ``experiments``: 3 periods × 2 kinds × 2 GCMs = 12 per experiment,
    in the order of ``cordex.test_files`` (period, kind, GCM) within each experiment."""
    spec = domain_spec(domain)
    return [
        ExpectedFile(spec.name, exp, period, kind, gcm, relative_path(spec.name, exp, period, kind, gcm))
        for exp in experiments
        for period in TEST_PERIODS
        for kind in PREDICTOR_KINDS
        for gcm in spec.gcms
    ]


def file_dims(domain: str) -> tuple[str, str, str, str]:
    """Dims of ``pr`` and ``tasmax`` in a prediction file: ``(time, row, col, member)``."""
    row, col = domain_spec(domain).target_dims
    return ("time", row, col, MEMBER_DIM)


def variable_dtype(domain: str, variable: str) -> str:
    """Template dtype of a predictand (SA/NZ pr float64, everything else float32)."""
    spec = domain_spec(domain)
    if variable not in VARIABLES:
        raise ValueError(f"unknown predictand {variable!r}; expected one of {list(VARIABLES)}")
    return spec.pr_dtype if variable == "pr" else spec.tasmax_dtype


def first_time_mismatch(found, expected) -> int | None:
    """Index of the first differing time stamp of two 1-D time arrays (datetime64 or cftime), the shorter
    length when one is a prefix of the other, or None when they are equal. Stamps of different kinds
    (datetime64 vs cftime) or of different cftime calendars never compare equal."""
    a, b = np.asarray(found), np.asarray(expected)
    n = min(len(a), len(b))
    if a.dtype.kind != b.dtype.kind:
        return 0 if n else (None if len(a) == len(b) else n)
    try:
        equal = np.asarray(a[:n] == b[:n], dtype=bool)
    except TypeError:  # cftime objects of different calendars do not compare
        return 0
    if not equal.all():
        return int(np.argmin(equal))
    return None if len(a) == len(b) else n
