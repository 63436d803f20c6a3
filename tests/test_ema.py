"""G_ema: the update against a hand computation, buffers, warm-up, state round trip through a checkpoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ml_benchmark_spategan.config.schema import GeneratorConfig
from ml_benchmark_spategan.model.spagan2d import Generator
from ml_benchmark_spategan.training.checkpoint import load_checkpoint, save_checkpoint
from ml_benchmark_spategan.training.ema import EmaGenerator, ema_decay


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2).double()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))


def test_warm_up_decay():
    assert ema_decay(0.999, 0) == pytest.approx(0.1)
    assert ema_decay(0.999, 10) == pytest.approx(11 / 20)
    assert ema_decay(0.9, 1000) == 0.9
    assert ema_decay(0.0, 5) == 0.0


def test_update_matches_a_hand_computation_and_copies_buffers():
    torch.manual_seed(0)
    net = _Net()
    ema = EmaGenerator(net, decay=0.5)
    w0 = net.lin.weight.detach().clone()
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    with torch.no_grad():
        net.lin.weight.add_(1.0)
        net.count.fill_(7.0)
    ema.update(net)  # decay_0 = min(0.5, 1/10) = 0.1
    expected = 0.1 * w0 + 0.9 * (w0 + 1.0)
    torch.testing.assert_close(ema.module.lin.weight, expected, rtol=0, atol=1e-15)
    assert float(ema.module.count) == 7.0  # buffers copied, not averaged
    with torch.no_grad():
        net.lin.weight.mul_(2.0)
    ema.update(net)  # decay_1 = min(0.5, 2/11) = 2/11
    expected = (2 / 11) * expected + (9 / 11) * net.lin.weight.detach()
    torch.testing.assert_close(ema.module.lin.weight, expected, rtol=0, atol=1e-14)
    for _ in range(20):
        ema.update(net)  # decay capped at 0.5 from update 8 on: converges to the weights
    torch.testing.assert_close(ema.module.lin.weight, net.lin.weight.detach(), rtol=0, atol=1e-4)
    assert ema.updates == 22
    with pytest.raises(ValueError, match=r"training.ema.decay: expected a value in \[0, 1\)"):
        EmaGenerator(net, 1.0)


def test_ema_is_a_separate_copy():
    net = _Net()
    ema = EmaGenerator(net, 0.9)
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(ema.module.parameters(), net.parameters(), strict=True))


def test_state_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(1)
    g = Generator(3, (8, 8), (32, 32), GeneratorConfig(filters=8, upsample_channels=(8, 8)))
    ema = EmaGenerator(g, 0.99)
    for _ in range(3):
        with torch.no_grad():
            for p in g.parameters():
                p.add_(torch.randn_like(p))
        ema.update(g)
    save_checkpoint(tmp_path / "c.pt", {"generator_ema": ema.state_dict()})
    restored = EmaGenerator(Generator(3, (8, 8), (32, 32), GeneratorConfig(filters=8, upsample_channels=(8, 8))), 0.99)
    restored.load_state_dict(load_checkpoint(tmp_path / "c.pt")["generator_ema"])
    assert restored.updates == 3
    for (k, a), (_, b) in zip(ema.module.state_dict().items(), restored.module.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # the next update continues identically
    ema.update(g)
    restored.update(g)
    assert all(torch.equal(a, b) for a, b in zip(ema.module.parameters(), restored.module.parameters(), strict=True))
