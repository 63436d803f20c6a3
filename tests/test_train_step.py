"""train_gan_step: both networks learn, n_critic phases, masked cells ignored, loss variants, precisions."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from ml_benchmark_spategan.config.schema import DiscriminatorConfig, GeneratorConfig, LossConfig, TrainingConfig
from ml_benchmark_spategan.model import losses
from ml_benchmark_spategan.model.spagan2d import (
    Discriminator,
    GanStepSettings,
    Generator,
    generator_step,
    train_gan_step,
)
from ml_benchmark_spategan.training.optim import make_grad_scalers

IN, OUT, C = (8, 8), (32, 32), 3
G_CFG = GeneratorConfig(filters=16, n_coarse_blocks=2, upsample_channels=(16, 8))
D_CFG = DiscriminatorConfig(hr_channels=(16, 32, 32, 32, 16), lr_channels=(16, 16))
EXPECTED_KEYS = {"d/loss", "d/loss_real", "d/loss_fake", "d/real_score", "d/fake_score",
                 "g/loss", "g/loss_content", "g/loss_crps", "g/loss_l1", "g/loss_mse", "g/loss_adv", "g/adv_scale",
                 "g/gradnorm_content", "g/gradnorm_adv", "g/fake_score", "g/ensemble_std", "g/loss_spectral"}


def _setup(static=True, seed=0):
    torch.manual_seed(seed)
    g = Generator(C, IN, OUT, G_CFG, static_channels=int(static))
    d = Discriminator(C, IN, OUT, D_CFG)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    mask = torch.ones(1, 1, *OUT, dtype=torch.bool)
    mask[..., :5, :] = False
    batch = {"x_lr": torch.randn(2, C, *IN), "y_hr": torch.randn(2, 1, *OUT), "mask": mask}
    static_hr = torch.randn(1, 1, *OUT) if static else None
    return g, d, opt_g, opt_d, batch, static_hr


def _params(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def test_step_updates_both_networks_and_returns_detached_scalars():
    g, d, opt_g, opt_d, batch, s = _setup()
    g0, d0 = _params(g), _params(d)
    logs = train_gan_step(batch, g, d, opt_g, opt_d, GanStepSettings(), static_hr=s)
    assert set(logs) == EXPECTED_KEYS
    for key, v in logs.items():
        assert v.ndim == 0 and not v.requires_grad and torch.isfinite(v), key
    assert all(not torch.equal(a, b) for a, b in zip(g0, g.parameters(), strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(d0, d.parameters(), strict=True))
    assert all(p.requires_grad for p in d.parameters())  # un-frozen after the generator phase
    torch.testing.assert_close(logs["g/loss_content"], logs["g/loss_crps"])  # the GAN default
    spectral = LossConfig().spectral_weight * logs["g/loss_spectral"]  # the default spectral term, outside the balance
    torch.testing.assert_close(logs["g/loss"], logs["g/loss_crps"] + logs["g/adv_scale"] * logs["g/loss_adv"] + spectral)
    ratio = logs["g/gradnorm_adv"] / logs["g/gradnorm_content"]
    torch.testing.assert_close(ratio, torch.tensor(LossConfig().adversarial_weight), rtol=1e-5, atol=0)
    torch.testing.assert_close(logs["d/loss"], logs["d/loss_real"] + logs["d/loss_fake"])


def _count_calls(obj, name: str) -> list[int]:
    calls = [0]
    original = getattr(obj, name)

    def wrapped(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(obj, name, wrapped)
    return calls


@pytest.mark.parametrize("n_critic", [1, 3])
def test_n_critic_discriminator_steps_then_one_generator_step(n_critic):
    g, d, opt_g, opt_d, batch, s = _setup()
    calls_g, calls_d = _count_calls(opt_g, "step"), _count_calls(opt_d, "step")
    train_gan_step(batch, g, d, opt_g, opt_d, GanStepSettings(n_critic=n_critic), static_hr=s)
    assert (calls_d[0], calls_g[0]) == (n_critic, 1)


def test_masked_cells_do_not_change_losses_or_gradients():
    results = []
    for fill in (None, float("nan"), 1e4):
        g, d, opt_g, opt_d, batch, s = _setup(seed=3)
        if fill is not None:
            batch["y_hr"] = torch.where(batch["mask"], batch["y_hr"], fill)
        torch.manual_seed(7)  # same dropout masks in every run
        logs = train_gan_step(batch, g, d, opt_g, opt_d, GanStepSettings(), static_hr=s)
        grads = [p.grad.clone() for p in list(g.parameters()) + list(d.parameters())]
        results.append((logs, grads))
    (logs0, grads0), *others = results
    for logs, grads in others:
        for key in logs0:
            torch.testing.assert_close(logs[key], logs0[key], rtol=0, atol=0)
        for a, b in zip(grads, grads0, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


class _FixedMembers(nn.Module):
    """Stub generator: members = base + bias + offsets (+1, -1, ...), so their mean is base + bias."""

    def __init__(self, base: torch.Tensor):
        super().__init__()
        self.base, self.bias = base, nn.Parameter(torch.zeros(()))

    def sample(self, x_lr, n_members, static_hr=None):
        offsets = torch.tensor([(-1.0) ** k for k in range(n_members)]).view(1, -1, 1, 1)
        return self.base + self.bias + offsets


def test_content_loss_is_on_the_ensemble_mean():
    _, d, _, _, batch, _ = _setup(static=False)
    base = torch.randn(2, 1, *OUT)
    g = _FixedMembers(base)
    settings = GanStepSettings(ensemble_size=2, loss=LossConfig(content_loss="mean_l1_mse"))
    logs = generator_step(batch["x_lr"], batch["y_hr"], batch["mask"], g, d, torch.optim.SGD(g.parameters(), lr=0.0),
                          settings)
    m, y = batch["mask"].expand_as(base), batch["y_hr"]
    assert logs["g/loss_l1"].item() == pytest.approx((base - y).abs()[m].mean().item(), rel=1e-6)
    assert logs["g/loss_mse"].item() == pytest.approx(((base - y) ** 2)[m].mean().item(), rel=1e-6)
    assert logs["g/ensemble_std"].item() == pytest.approx(2**0.5, rel=1e-6)  # std of (+1, -1), unbiased


def test_mean_l1_mse_content_loss_keeps_the_regression_objective():
    g, d, opt_g, opt_d, batch, s = _setup()
    w = LossConfig(content_loss="mean_l1_mse", adversarial_balance="fixed", adversarial_weight=0.01, spectral_weight=0.0)
    logs = train_gan_step(batch, g, d, opt_g, opt_d, GanStepSettings(loss=w), static_hr=s)
    assert "g/loss_crps" not in logs and logs["g/adv_scale"].item() == pytest.approx(0.01)
    total = w.l1_weight * logs["g/loss_l1"] + w.mse_weight * logs["g/loss_mse"] + w.adversarial_weight * logs["g/loss_adv"]
    torch.testing.assert_close(logs["g/loss"], total)


class _ParamMembers(nn.Module):
    """Stub generator whose members ARE a parameter: its SGD step is -lr times the loss gradient at G's output."""

    def __init__(self, members: torch.Tensor):
        super().__init__()
        self.members = nn.Parameter(members.clone())

    def sample(self, x_lr, n_members, static_hr=None):
        return self.members[:, :n_members]


def _output_step(weight: float, balance: str, content: str, d: nn.Module, batch: dict, start: torch.Tensor):
    g = _ParamMembers(start)
    settings = GanStepSettings(ensemble_size=start.shape[1], loss=LossConfig(
        content_loss=content, adversarial_balance=balance, adversarial_weight=weight, spectral_weight=0.0))
    lr = 1e3  # a step large against float32 rounding of the members
    logs = generator_step(batch["x_lr"], batch["y_hr"], batch["mask"], g, d, torch.optim.SGD(g.parameters(), lr=lr),
                          settings)
    return (start - g.members.detach()) / lr, logs


@pytest.mark.parametrize("content", ["crps", "mean_l1_mse"])
@pytest.mark.parametrize("weight", [0.1, 0.5])
def test_gradnorm_balance_makes_the_measured_gradient_ratio_the_weight(content, weight):
    """Measured from the updates: the adversarial part of G's output gradient is (total - content-only)."""
    torch.manual_seed(5)
    d = Discriminator(C, IN, OUT, dataclasses.replace(D_CFG, dropout=0.0))
    _, _, _, _, batch, _ = _setup(static=False)
    start = torch.randn(2, 3, *OUT)
    grad_total, logs = _output_step(weight, "gradnorm", content, d, batch, start)
    grad_content, _ = _output_step(0.0, "gradnorm", content, d, batch, start)
    grad_adv = grad_total - grad_content
    measured = (grad_adv.norm() / grad_content.norm()).item()
    assert measured == pytest.approx(weight, rel=1e-4)
    assert logs["g/gradnorm_content"].item() == pytest.approx(grad_content.norm().item(), rel=1e-5)
    assert logs["g/gradnorm_adv"].item() == pytest.approx(grad_adv.norm().item(), rel=1e-4)
    # fixed: the raw weight, so the ratio is whatever the raw gradient sizes make it
    grad_fixed, logs = _output_step(weight, "fixed", content, d, batch, start)
    assert logs["g/adv_scale"].item() == pytest.approx(weight)
    assert ((grad_fixed - grad_content).norm() / grad_content.norm()).item() == pytest.approx(
        (logs["g/gradnorm_adv"] / logs["g/gradnorm_content"]).item(), rel=1e-4)


def test_generator_update_equals_the_backward_of_the_balanced_loss():
    """The step sends grad content + scale * grad adv through G once; brute force: backward of the loss itself."""
    g, d, _, _, batch, s = _setup(seed=3)
    d.eval()  # no dropout in D, so both passes see the same logits
    state = {k: v.clone() for k, v in g.state_dict().items()}
    settings = GanStepSettings(ensemble_size=3)
    torch.manual_seed(11)
    logs = generator_step(batch["x_lr"], batch["y_hr"], batch["mask"], g, d, torch.optim.SGD(g.parameters(), lr=1.0),
                          settings, static_hr=s)
    stepped = [p.detach().clone() for p in g.parameters()]
    g.load_state_dict(state)
    g.zero_grad(set_to_none=True)
    torch.manual_seed(11)  # the same noise draws
    members = g.sample(batch["x_lr"], 3, s)
    mask = batch["mask"]
    y = torch.where(mask, batch["y_hr"], 0.0)
    fake = torch.where(mask, members, 0.0).reshape(-1, 1, *OUT)
    adv = losses.g_loss_bce(d(fake, batch["x_lr"].repeat_interleave(3, dim=0)))
    loss = (losses.masked_crps_fair(members, y, mask) + logs["g/adv_scale"] * adv
            + settings.loss.spectral_weight * losses.masked_log_spectral_distance(members, y, mask))
    torch.testing.assert_close(loss.detach(), logs["g/loss"], rtol=1e-5, atol=1e-6)
    loss.backward()
    for p, after in zip(g.parameters(), stepped, strict=True):
        torch.testing.assert_close(p.detach() - p.grad, after, rtol=1e-4, atol=1e-5)


def test_spectral_loss_is_the_benchmark_ralsd_of_the_batch():
    """Brute force: evaluation's time-mean spectra and RALSD (numpy, the benchmark's definition) on the same
    fields, invalid cells set to 0 as the benchmark sets NaN to 0."""
    from ml_benchmark_spategan.evaluation.spectra import mean_profile, ralsd

    torch.manual_seed(2)
    members, y = torch.randn(3, 4, 24, 20).double(), (2.0 * torch.randn(3, 1, 24, 20)).double()
    mask = torch.ones(1, 1, 24, 20, dtype=torch.bool)
    mask[..., :3, :5] = False
    got = losses.masked_log_spectral_distance(members, y, mask)
    fake = torch.where(mask, members, 0.0).reshape(-1, 24, 20).numpy()
    real = torch.where(mask, y, 0.0).reshape(-1, 24, 20).numpy()
    expected = ralsd(mean_profile(real), mean_profile(fake))
    assert expected > 1.0  # the truth has 4x the power: about 6 dB in every bin
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert losses.masked_log_spectral_distance(y.expand(-1, 4, -1, -1), y, mask).item() == pytest.approx(0.0, abs=1e-8)


def test_spectral_weight_adds_the_spectral_loss_to_the_content_loss():
    g, d, opt_g, opt_d, batch, s = _setup()
    w = LossConfig(spectral_weight=2.0)
    logs = train_gan_step(batch, g, d, opt_g, opt_d, GanStepSettings(loss=w), static_hr=s)
    assert logs["g/loss_spectral"].item() > 0
    torch.testing.assert_close(logs["g/loss_content"], logs["g/loss_crps"])  # the per-cell loss the balance uses
    total = logs["g/loss_crps"] + logs["g/adv_scale"] * logs["g/loss_adv"] + 2.0 * logs["g/loss_spectral"]
    torch.testing.assert_close(logs["g/loss"], total)
    ratio = logs["g/gradnorm_adv"] / logs["g/gradnorm_content"]  # still adversarial_weight x the CRPS gradient
    torch.testing.assert_close(ratio, torch.tensor(w.adversarial_weight), rtol=1e-5, atol=0)
    off = GanStepSettings(loss=LossConfig(spectral_weight=0.0))
    assert "g/loss_spectral" not in train_gan_step(batch, g, d, opt_g, opt_d, off, static_hr=s)


def test_spectral_loss_is_off_for_precipitation_unless_asked_for():
    training = TrainingConfig()
    assert training.loss.spectral_weight > 0
    assert GanStepSettings.from_config(training, "cpu", "temperature").loss.spectral_weight == training.loss.spectral_weight
    assert GanStepSettings.from_config(training, "cpu", "precipitation").loss.spectral_weight == 0.0
    forced = dataclasses.replace(training, loss=dataclasses.replace(training.loss, spectral_for_precipitation=True))
    assert GanStepSettings.from_config(forced, "cpu", "precipitation").loss.spectral_weight == training.loss.spectral_weight


def test_hinge_and_gradient_clipping():
    g, d, opt_g, opt_d, batch, s = _setup()
    settings = GanStepSettings(grad_clip_norm=1e-3, loss=LossConfig(adversarial_loss="hinge"))
    logs = train_gan_step(batch, g, d, opt_g, opt_d, settings, static_hr=s)
    assert {"g/grad_norm", "d/grad_norm"} <= set(logs)
    assert all(torch.isfinite(v) for v in logs.values())
    for net in (g, d):
        clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters()]))
        assert clipped.item() <= 1e-3 * (1 + 1e-4)
    # hinge D loss on the returned parts: both are means of relu(1 +/- logit), hence >= 0
    assert logs["d/loss_real"].item() >= 0 and logs["d/loss_fake"].item() >= 0


def test_fp16_uses_separate_scalers():
    g, d, opt_g, opt_d, batch, s = _setup()
    scalers = make_grad_scalers("fp16", "cpu")
    assert set(scalers) == {"g", "d"} and scalers["g"] is not scalers["d"]
    updates = {k: _count_calls(v, "update") for k, v in scalers.items()}
    settings = GanStepSettings(n_critic=2, precision="fp16")
    g0 = _params(g)
    try:
        logs = train_gan_step(batch, g, d, opt_g, opt_d, settings, scalers=scalers, static_hr=s)
    except RuntimeError as err:  # pragma: no cover - depends on the CPU build's fp16 kernels
        pytest.skip(f"fp16 autocast on CPU unsupported by this torch build: {err}")
    assert (updates["d"][0], updates["g"][0]) == (2, 1)
    assert all(torch.isfinite(v) for v in logs.values())
    # Where the initial scale (2**16) overflows fp16 gradients, each scaler backs off on its own until its
    # network's step is taken.
    for _ in range(30):
        if any(not torch.equal(a, b) for a, b in zip(g0, g.parameters(), strict=True)):
            break
        train_gan_step(batch, g, d, opt_g, opt_d, settings, scalers=scalers, static_hr=s)
    else:
        pytest.fail(f"no generator update in 30 fp16 steps (scale {scalers['g'].get_scale()})")
    assert max(scalers["g"].get_scale(), scalers["d"].get_scale()) <= 2**16
    with pytest.raises(ValueError, match="precision fp16 needs scalers"):
        train_gan_step(batch, g, d, opt_g, opt_d, settings, static_hr=s)


def test_bf16_step_and_settings_from_config():
    g, d, opt_g, opt_d, batch, s = _setup()
    logs = train_gan_step(batch, g, d, opt_g, opt_d, GanStepSettings(precision="bf16"), static_hr=s)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in logs.values())
    training = TrainingConfig(n_critic=3, ensemble_size=4, grad_clip_norm=2.0)
    settings = GanStepSettings.from_config(training, "cpu")
    assert settings == GanStepSettings(3, 4, "fp32", 2.0, training.loss)
    assert GanStepSettings.from_config(training, "cuda").precision == "bf16"
    assert dataclasses.is_dataclass(settings)


def test_mask_must_be_boolean():
    g, d, opt_g, opt_d, batch, s = _setup()
    batch["mask"] = batch["mask"].float()
    with pytest.raises(ValueError, match=r"batch\['mask'\]: expected dtype torch.bool"):
        train_gan_step(batch, g, d, opt_g, opt_d, GanStepSettings(), static_hr=s)


def test_discriminator_sees_zeros_in_masked_cells():
    g, d, opt_g, opt_d, batch, s = _setup()
    seen = []
    d.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    train_gan_step(batch, g, d, opt_g, opt_d, GanStepSettings(n_critic=1), static_hr=s)
    assert len(seen) == 2  # one critic pass (real + fake batched), one generator pass
    for y in seen:
        assert torch.count_nonzero(y[..., :5, :]) == 0
    assert losses.masked_mse(seen[0][:2], batch["y_hr"], batch["mask"]).item() == 0.0  # real part unchanged
