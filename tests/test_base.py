"""model.base: interpolation — networks that learn the departure from the interpolation baseline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from ml_benchmark_spategan.config import load_config
from ml_benchmark_spategan.config.schema import GeneratorConfig, ModelConfig, UNetConfig
from ml_benchmark_spategan.model import losses
from ml_benchmark_spategan.model.base import OUTPUT_INIT_SCALE, BaselineResidual
from ml_benchmark_spategan.model.baselines import BilinearBaseline
from ml_benchmark_spategan.model.registry import build_model, uses_base
from ml_benchmark_spategan.model.resgan import ResidualGenerator
from ml_benchmark_spategan.model.spagan2d import Generator
from ml_benchmark_spategan.training.run import train

ROOT = Path(__file__).resolve().parents[1]
IN, OUT, C = (8, 8), (32, 32), 3
G_CFG = GeneratorConfig(filters=8, n_coarse_blocks=1, upsample_channels=(8, 8))


def _fill(base: BilinearBaseline, seed: int = 0) -> None:
    """Random statistics in every float buffer of the baseline: interpolate channel 1 with a monthly gain/offset."""
    g = torch.Generator().manual_seed(seed)
    base.channel.fill_(1)
    base.index.copy_(torch.randint(0, IN[0] * IN[1], base.index.shape, generator=g))
    base.weight.copy_(torch.rand(base.weight.shape, generator=g))
    base.gain.copy_(torch.rand(base.gain.shape, generator=g) + 0.5)
    base.offset.copy_(torch.randn(base.offset.shape, generator=g))


class _Zero(nn.Module):
    def forward(self, x_lr, static_hr=None, n_members=None, doy=None):
        shape = (x_lr.shape[0], n_members or 1, *OUT)
        return torch.zeros(shape)


def test_output_is_the_baseline_plus_the_network():
    torch.manual_seed(0)
    x, doy = torch.randn(3, C, *IN), torch.tensor([15, 200, 340])
    model = BaselineResidual(_Zero(), IN, OUT)
    _fill(model.base)
    reference = BilinearBaseline(IN, OUT)
    reference.load_state_dict({k.removeprefix("base."): v for k, v in model.state_dict().items()})
    expected = reference(x, doy=doy)
    assert float(expected.std()) > 0.1  # the months and the predictor make the days differ
    torch.testing.assert_close(model(x, doy=doy), expected)
    torch.testing.assert_close(model.sample(x, 4, doy=doy), expected.expand(-1, 4, -1, -1))
    net = Generator(C, IN, OUT, G_CFG)
    wrapped = BaselineResidual(net, IN, OUT)
    _fill(wrapped.base)
    torch.manual_seed(1)
    members = wrapped.sample(x, 2, doy=doy)
    torch.manual_seed(1)
    torch.testing.assert_close(members, reference(x, doy=doy) + net.sample(x, 2))


class _SampleOnly(nn.Module):
    """A user network whose members come from ``sample`` only (its forward takes no n_members)."""

    def forward(self, x_lr, static_hr=None):
        return torch.zeros(x_lr.shape[0], 1, *OUT)

    def sample(self, x_lr, n_members, static_hr=None):
        return torch.arange(n_members, dtype=torch.float32).view(1, -1, 1, 1).expand(x_lr.shape[0], -1, *OUT)


def test_members_of_a_network_without_n_members_come_from_its_sample():
    model = BaselineResidual(_SampleOnly(), IN, OUT)
    _fill(model.base)
    x, doy = torch.randn(2, C, *IN), torch.tensor([10, 100])
    base = model.base(x, doy=doy)
    torch.testing.assert_close(model.sample(x, 3, doy=doy), base + torch.arange(3.0).view(1, 3, 1, 1))


def test_network_output_layer_starts_small_and_state_dict_holds_the_baseline():
    torch.manual_seed(0)
    a = Generator(C, IN, OUT, G_CFG)
    torch.manual_seed(0)
    b = BaselineResidual(Generator(C, IN, OUT, G_CFG), IN, OUT)
    torch.testing.assert_close(b.net.head[-1].weight, OUTPUT_INIT_SCALE * a.head[-1].weight)
    torch.testing.assert_close(b.net.stem.weight, a.stem.weight)  # only the output layer is scaled
    assert {"base.gain", "base.offset", "base.index", "base.weight", "base.channel"} <= set(b.state_dict())


def test_resgan_mean_loss_is_on_baseline_plus_mean():
    torch.manual_seed(0)
    inner = ResidualGenerator(C, IN, OUT, UNetConfig(channels=(8, 8)), G_CFG)
    model = BaselineResidual(inner, IN, OUT)
    _fill(model.base)
    x, y = torch.randn(2, C, *IN), torch.randn(2, 1, *OUT)
    mask = torch.ones(1, 1, *OUT, dtype=torch.bool)
    mask[..., :4, :] = False
    model.sample(x, 3)
    mean = inner._last_mean.detach()
    expected = losses.masked_mse(model._last_base + mean, y, mask)
    torch.testing.assert_close(model.auxiliary_loss(y, mask), expected)
    assert not hasattr(BaselineResidual(Generator(C, IN, OUT, G_CFG), IN, OUT), "auxiliary_loss")


def test_auto_means_gans_only():
    auto = ModelConfig(base="auto")
    assert uses_base(auto, "gan") and not uses_base(auto, "regression") and not uses_base(auto, "fixed")
    assert uses_base(ModelConfig(base="interpolation"), "regression")
    assert not uses_base(ModelConfig(base="interpolation"), "fixed")
    assert not uses_base(ModelConfig(base="none"), "gan")
    bundle = build_model(dataclasses.replace(auto, name="spagan", generator=G_CFG), C, IN, OUT)
    assert isinstance(bundle.generator, BaselineResidual)
    assert not isinstance(build_model(dataclasses.replace(auto, name="deepesd"), C, IN, OUT).generator,
                          BaselineResidual)


def test_trained_run_carries_the_fitted_baseline(cordex_root, tmp_path):
    """Training fits the baseline, checkpoints carry it, and the loaded run's baseline is the plain baseline's."""
    from test_training_e2e import tiny_overrides

    from ml_benchmark_spategan.inference import load_run

    extra = {"data.target_variable": "tasmax", "training.epochs": 1, "training.max_steps_per_epoch": 2}
    gan = train(load_config(ROOT / "config.yml", tiny_overrides(cordex_root, tmp_path / "g", **extra,
                                                               **{"model.base": "interpolation"})))
    plain = train(load_config(ROOT / "config.yml", tiny_overrides(cordex_root, tmp_path / "b", **extra,
                                                                 **{"model.name": "bilinear"})))
    loaded, reference = load_run(gan, "last"), load_run(plain, "last")
    generator = loaded.bundle.generator
    assert isinstance(generator, BaselineResidual) and float(generator.base.gain.abs().max()) > 0
    torch.manual_seed(0)
    x = torch.randn(4, loaded.geometry["in_channels"], *loaded.geometry["in_shape"])
    doy = torch.tensor([1, 90, 180, 300])
    torch.testing.assert_close(generator.base(x, doy=doy), reference.bundle.generator(x, doy=doy))
