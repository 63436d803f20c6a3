"""Learning-rate schedule: warm-up from warmup_start_lr, plateau, exponential decay."""

import pytest
import torch

from ml_benchmark_spategan.config.schema import ScheduleConfig
from ml_benchmark_spategan.training.schedule import build_scheduler, lr_factor


def test_schedule_values():
    cfg = ScheduleConfig(warmup_epochs=5, warmup_start_lr=1e-6, plateau_epochs=2, decay_gamma=0.97)
    peak = 1e-4
    lrs = [peak * lr_factor(e, cfg, peak) for e in range(10)]
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[1] == pytest.approx(1e-6 + (1e-4 - 1e-6) / 5)
    assert lrs[5] == pytest.approx(1e-4) and lrs[6] == pytest.approx(1e-4)
    assert lrs[7] == pytest.approx(1e-4)  # first decay epoch has gamma**0
    assert lrs[8] == pytest.approx(1e-4 * 0.97)
    assert lrs[9] == pytest.approx(1e-4 * 0.97**2)


def test_scheduler_drives_optimizer():
    cfg = ScheduleConfig(warmup_epochs=2, warmup_start_lr=1e-5, plateau_epochs=0, decay_gamma=0.5)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = build_scheduler(opt, cfg)
    seen = []
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([1e-5, 1e-5 + (1e-3 - 1e-5) / 2, 1e-3, 5e-4, 2.5e-4])
