"""TensorBoard event files in ``<run>/tensorboard/`` (rank 0 only; the trainer decides who writes).

Scalars use the run's own hierarchical names (``train/g/loss``, ``val/rmse``, ``lr/g``, ...), the same as
the columns of ``metrics.csv``, at the global step at which the epoch ended; ``time/samples_per_s`` is also
logged along the way. A resumed run purges everything logged after its checkpoint's step, so a step that
was logged, lost with a killed process and trained again appears once.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import yaml

from ml_benchmark_spategan.monitor.files import TENSORBOARD_DIR


class TensorBoardLog:
    def __init__(self, run_dir: Path, resumed_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        # purge_step removes events with step >= purge_step; the checkpoint's own step stays
        purge = None if resumed_step is None else resumed_step + 1
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge,
                                    flush_secs=30)

    def config(self, config: dict) -> None:
        text = yaml.safe_dump(config, sort_keys=False)
        self.writer.add_text("config", "```yaml\n" + text + "```", global_step=0)

    def scalars(self, row: dict, step: int) -> None:
        for key, value in row.items():
            if key != "epoch" and _is_number(value):
                self.writer.add_scalar(key, float(value), global_step=step)

    def scalar(self, key: str, value: float, step: int) -> None:
        self.writer.add_scalar(key, value, global_step=step)

    def image(self, tag: str, png: Path, step: int) -> None:
        if png.is_file():
            pixels = np.asarray(mpimg.imread(png))[..., :3]  # PNG as float RGB in [0, 1]
            self.writer.add_image(tag, pixels, global_step=step, dataformats="HWC")

    def hparams(self, hparams: dict, metrics: dict) -> None:
        finite = {k: v for k, v in metrics.items() if _is_number(v) and math.isfinite(v)}
        if finite:
            self.writer.add_hparams(hparams, finite, run_name="hparams")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flat_hparams(config: dict, sections=("model", "training", "data")) -> dict:
    """Scalar config values of ``sections`` as ``model.generator.filters: 32`` (lists as text)."""
    out: dict = {}

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}.{key}"
            if isinstance(value, dict):
                walk(value, name)
            elif isinstance(value, (bool, int, float, str)):
                out[name] = value
            elif isinstance(value, (list, tuple)) and len(value) <= 8:
                out[name] = str(list(value))

    for section in sections:
        if isinstance(config.get(section), dict):
            walk(config[section], section)
    return out
