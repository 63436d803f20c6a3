"""CORDEX ML-Bench submission: write the prediction files, check them, zip them.

* :mod:`.layout`: paths (``<name>/<D>_Domain/<experiment>/<period>/<kind>/Predictions_pr_tasmax_<GCM>_<label>.nc``)
  and the list of files a complete submission holds (12 per domain and experiment).
* :mod:`.writer`: ``write_prediction_file``, ``write_submission`` (every test predictor file of a domain ->
  one file with pr and tasmax), ``run_predict_fn`` (predictions from trained run folders).
* :mod:`.validator`: ``validate_submission`` -> list of :class:`Problem` (the benchmark has no checker).
* :mod:`.package`: ``package_submission`` -> a zip with the ``<name>/`` top level, written outside the folder.

Dimension order ``(time, row, col, member)``, i.e. member LAST. The benchmark requires ALPS to be written
``(time, y, x)`` (issue #44: its evaluation may break on another order) and requires a ``member`` dimension
for generative models without saying where. With member last, the first three dims are exactly the required
``(time, y, x)`` / ``(time, lat, lon)``, so positional code written for deterministic files (``[t]``,
``[t, i, j]``, ``.dims[:3]``) still sees them in place, and selecting one member gives a file-layout
``(time, row, col)`` array. This also matches a submission the organisers have accepted (EnScale).
The ensemble size is configurable (default 10: the README says 10, the issue template 5).
"""

from ml_benchmark_spategan.submission.layout import (
    DEFAULT_MEMBERS,
    MEMBER_DIM,
    ExpectedFile,
    expected_files,
    file_dims,
    submission_path,
)
from ml_benchmark_spategan.submission.package import package_submission
from ml_benchmark_spategan.submission.validator import Problem, validate_file, validate_submission, validate_zip
from ml_benchmark_spategan.submission.writer import (
    WriteStats,
    run_predict_fn,
    write_prediction_file,
    write_submission,
)

__all__ = [
    "DEFAULT_MEMBERS",
    "MEMBER_DIM",
    "ExpectedFile",
    "Problem",
    "WriteStats",
    "expected_files",
    "file_dims",
    "package_submission",
    "run_predict_fn",
    "submission_path",
    "validate_file",
    "validate_submission",
    "validate_zip",
    "write_prediction_file",
    "write_submission",
]
