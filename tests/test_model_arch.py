"""Day-of-year FiLM for every model, the U-Net baseline and the residual GAN (issue 9 items 6)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from ml_benchmark_spategan.config.loader import ConfigError, load_config
from ml_benchmark_spategan.config.schema import (
    DiscriminatorConfig,
    GeneratorConfig,
    LossConfig,
    ModelConfig,
    UNetConfig,
)
from ml_benchmark_spategan.model import losses
from ml_benchmark_spategan.model.baselines import DeepESD, sample_members, train_regression_step
from ml_benchmark_spategan.model.blocks import DoyFiLM, doy_features
from ml_benchmark_spategan.model.registry import build_model, doy_film
from ml_benchmark_spategan.model.resgan import ResidualGenerator
from ml_benchmark_spategan.model.spagan2d import Discriminator, GanStepSettings, Generator, train_gan_step
from ml_benchmark_spategan.model.spectral import spectral_norm_fp32
from ml_benchmark_spategan.model.unet import UNet

IN, OUT, C = (8, 8), (32, 32), 3
# noise_std 0 and dropout 0: a deterministic SpaGAN generator, so outputs can be compared call to call
G_CFG = GeneratorConfig(filters=8, n_coarse_blocks=2, upsample_channels=(8, 8), dropout=0.0, noise_std=0.0)
U_CFG = UNetConfig(channels=(8, 16, 16), convs_per_level=1)
D_CFG = DiscriminatorConfig(hr_channels=(8, 16, 16), lr_channels=(8,))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomise_film(model: nn.Module) -> None:
    """FiLM heads start at zero (identity); give them weights so the day of year shows."""
    for m in model.modules():
        if isinstance(m, DoyFiLM):
            nn.init.normal_(m.mlp[-1].weight, std=0.5)


def _models() -> dict[str, nn.Module]:
    return {
        "spagan": Generator(C, IN, OUT, G_CFG, 1, doy_film=True),
        "deepesd": DeepESD(C, IN, OUT, doy_film=True),
        "unet": UNet(C, IN, OUT, U_CFG, 1, doy_film=True),
        "resgan": ResidualGenerator(C, IN, OUT, U_CFG, G_CFG, 1, doy_film=True),
    }


# --- day of year --------------------------------------------------------------------------------
def test_doy_features_are_sin_cos_of_the_annual_angle():
    doy = torch.tensor([0, 91.3125, 182.625, 365])
    expected = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0],
                             [math.sin(2 * math.pi * 365 / 365.25), math.cos(2 * math.pi * 365 / 365.25)]])
    torch.testing.assert_close(doy_features(doy), expected, atol=1e-6, rtol=0)


def test_film_starts_as_identity_and_modulates_per_channel():
    film = DoyFiLM(4)
    h = torch.randn(3, 4, 5, 6)
    torch.testing.assert_close(film(h, torch.tensor([1, 100, 300])), h, rtol=0, atol=0)
    _randomise_film(film)
    doy = torch.tensor([1, 100, 300])
    scale, shift = film.mlp(doy_features(doy)).chunk(2, dim=1)
    expected = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    torch.testing.assert_close(film(h, doy), expected)
    with pytest.raises(ValueError, match="doy: this model was built with model.doy_conditioning=film"):
        film(h, None)
    with pytest.raises(ValueError, match=r"doy: expected shape \(3,\)"):
        film(h, torch.tensor([1, 2]))


@pytest.mark.parametrize("name", ["spagan", "deepesd", "unet", "resgan"])
def test_doy_changes_the_output_and_is_cyclic(name):
    model = _models()[name].eval()
    _randomise_film(model)
    x, s = torch.randn(1, C, *IN), torch.randn(1, 1, *OUT)
    static = None if name == "deepesd" else s

    def run(day):
        with torch.no_grad():
            return model(x, static, doy=torch.tensor([day]))

    summer, winter = run(182), run(1)
    assert (summer - winter).abs().mean() > 1e-3  # the season matters
    torch.testing.assert_close(run(182), summer, rtol=0, atol=0)  # same day, same output
    new_year = (run(0) - run(365)).abs().mean()
    assert new_year < 0.05 * (summer - winter).abs().mean()  # 0 and 365 are neighbours, not opposites
    members = sample_members(model, x, 2, static, torch.tensor([182]))
    torch.testing.assert_close(members[:, :1], summer, rtol=1e-4, atol=1e-5)  # sample_members passes doy


def test_doy_conditioning_choice_per_model():
    assert [doy_film(ModelConfig(name=n)) for n in ("spagan", "resgan", "unet", "deepesd")] == [False, True, True, False]
    assert doy_film(ModelConfig(name="spagan", doy_conditioning="film"))
    assert not doy_film(ModelConfig(name="unet", doy_conditioning="none"))
    small = {"unet": U_CFG, "generator": G_CFG, "discriminator": D_CFG}
    for name, expected in (("spagan", 0), ("unet", 1), ("resgan", 2), ("deepesd", 0)):
        bundle = build_model(ModelConfig(name=name, **small), C, IN, OUT, 1)
        assert sum(isinstance(m, DoyFiLM) for m in bundle.generator.modules()) == expected, name
    bundle = build_model(ModelConfig(name="deepesd", doy_conditioning="film"), C, IN, OUT)
    assert isinstance(bundle.generator.doy_film, DoyFiLM)
    with pytest.raises(ConfigError, match="model.doy_conditioning: film needs a trained model"):
        load_config(None, ["model.name=bilinear", "model.doy_conditioning=film"])


def _batch(b=2, doy=True):
    mask = torch.ones(1, 1, *OUT, dtype=torch.bool)
    mask[..., :4, :] = False
    batch = {"x_lr": torch.randn(b, C, *IN), "y_hr": torch.randn(b, 1, *OUT).masked_fill(~mask, float("nan")),
             "mask": mask}
    if doy:
        batch["doy"] = torch.tensor([10, 200][:b])
    return batch


def _film_weights(model):
    return [m.mlp[-1].weight for m in model.modules() if isinstance(m, DoyFiLM)]


def test_gan_step_passes_doy_to_the_generator():
    g, d = Generator(C, IN, OUT, G_CFG, 1, doy_film=True), Discriminator(C, IN, OUT, D_CFG)
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    s = torch.randn(1, 1, *OUT)
    with pytest.raises(ValueError, match="doy"):
        train_gan_step(_batch(doy=False), g, d, opt_g, opt_d, GanStepSettings(), static_hr=s)
    train_gan_step(_batch(), g, d, opt_g, opt_d, GanStepSettings(), static_hr=s)
    assert all(w.abs().sum() > 0 for w in _film_weights(g))  # zero before: only a gradient through doy moves it


def test_regression_step_passes_doy_and_static_to_the_unet():
    unet = UNet(C, IN, OUT, U_CFG, 1, doy_film=True)
    opt = torch.optim.Adam(unet.parameters(), 1e-3)
    s = torch.randn(1, 1, *OUT)
    logs = train_regression_step(_batch(), unet, opt, GanStepSettings(), static_hr=s)
    assert torch.isfinite(logs["g/loss"])
    assert all(w.abs().sum() > 0 for w in _film_weights(unet))
    with pytest.raises(ValueError, match="static_hr: the model expects 1 static channel"):
        train_regression_step(_batch(), unet, opt, GanStepSettings())


# --- U-Net --------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_shape,out_shape,grid", [((16, 16), (128, 128), (128, 128)), ((5, 7), (19, 29), (20, 32))])
def test_unet_shapes_working_grid_and_replicate_padding(in_shape, out_shape, grid):
    unet = UNet(4, in_shape, out_shape, U_CFG, static_channels=1)
    assert unet.working_grid == grid  # the target grid rounded up to a multiple of 2**(levels - 1) = 4
    x, s = torch.randn(2, 4, *in_shape), torch.randn(1, 1, *out_shape)
    y = unet(x, s)
    assert y.shape == (2, 1, *out_shape)
    members = unet.sample(x, 3, s)
    torch.testing.assert_close(members, y.repeat(1, 3, 1, 1), rtol=0, atol=0)  # deterministic
    convs = [m for m in unet.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 3 + 2 and all(c.padding_mode == "replicate" for c in convs)
    with torch.no_grad():
        assert (unet(x, s) - unet(x, torch.randn_like(s))).abs().max() > 1e-3  # the orography is an input
    with pytest.raises(ValueError, match="model.unet.channels: expected at least one level"):
        UNet(4, in_shape, out_shape, UNetConfig(channels=()))


def test_unet_fits_a_fixed_batch_with_the_masked_mse():
    unet = UNet(C, IN, OUT, U_CFG, 1)
    opt = torch.optim.Adam(unet.parameters(), 3e-3)
    batch, s = _batch(), torch.randn(1, 1, *OUT)
    batch["y_hr"] = torch.where(batch["mask"], torch.nn.functional.interpolate(batch["x_lr"][:, :1], OUT), float("nan"))
    first = float(train_regression_step(batch, unet, opt, GanStepSettings(), static_hr=s)["g/loss"])
    for _ in range(40):
        last = float(train_regression_step(batch, unet, opt, GanStepSettings(), static_hr=s)["g/loss"])
    assert math.isfinite(first) and last < 0.2 * first


# --- residual GAN -------------------------------------------------------------------------------
def test_resgan_output_is_mean_plus_residual_conditioned_on_the_mean():
    g = ResidualGenerator(C, IN, OUT, U_CFG, G_CFG, 1).eval()
    x, s, doy = torch.randn(2, C, *IN), torch.randn(1, 1, *OUT), torch.tensor([3, 4])
    with torch.no_grad():
        mean = g.mean_net(x, s)
        residual = g.residual(x, torch.cat([s.expand(2, -1, -1, -1), mean], dim=1), n_members=3)
        torch.testing.assert_close(g.sample(x, 3, s, doy=doy), mean + residual)
    assert g.residual.static_channels == 2


def test_resgan_losses_train_separate_parts():
    # the residual is a SpaGAN Generator: its latent noise (no dropout here) makes the members differ
    g = ResidualGenerator(C, IN, OUT, U_CFG, dataclasses.replace(G_CFG, noise_std=1.0), 1)
    assert g.residual.latent.channels == G_CFG.noise_channels > 0
    x, s = torch.randn(2, C, *IN), torch.randn(1, 1, *OUT)
    batch = _batch()
    y = g.sample(x, 2, s)
    assert (y[:, 0] - y[:, 1]).abs().mean() > 1e-4  # members differ by their residuals
    aux = g.auxiliary_loss(batch["y_hr"], batch["mask"])
    with torch.no_grad():
        expected = losses.masked_mse(g.mean_net(x, s), batch["y_hr"], batch["mask"])
    torch.testing.assert_close(aux, expected)
    with pytest.raises(RuntimeError, match="call the generator"):
        g.auxiliary_loss(batch["y_hr"], batch["mask"])  # the mean of one forward is used once
    y.sum().backward(retain_graph=True)
    assert all(p.grad is None for p in g.mean_net.parameters())  # content/GAN losses: residual only
    assert all(p.grad is not None for p in g.residual.parameters())
    g.zero_grad(set_to_none=True)
    aux.backward()
    assert all(p.grad is None for p in g.residual.parameters())  # the mean's MSE: mean network only
    assert sum(int(p.grad.abs().sum() > 0) for p in g.mean_net.parameters()) > 0


@pytest.mark.parametrize("content_loss,balance", [("crps", "gradnorm"), ("mean_l1_mse", "fixed")])
def test_resgan_gan_step_adds_the_weighted_mean_loss(content_loss, balance):
    bundle = build_model(ModelConfig(name="resgan", base="none", unet=U_CFG, generator=G_CFG, discriminator=D_CFG), C, IN, OUT, 1)
    g, d = bundle.generator, bundle.discriminator
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    batch, s = _batch(), torch.randn(1, 1, *OUT)
    y_real = torch.where(batch["mask"], batch["y_hr"], 0.0)
    with torch.no_grad():
        expected_mean_loss = losses.masked_mse(g.mean_net(batch["x_lr"], s, batch["doy"]), y_real, batch["mask"])
    mean0 = [p.detach().clone() for p in g.mean_net.encoder.parameters()]
    w = LossConfig(mean_weight=2.5, content_loss=content_loss, adversarial_balance=balance, spectral_weight=0.0)
    logs = train_gan_step(batch, g, d, opt_g, opt_d, GanStepSettings(loss=w), static_hr=s)
    torch.testing.assert_close(logs["g/loss_mean"], expected_mean_loss)
    content = (logs["g/loss_crps"] if content_loss == "crps"
               else w.l1_weight * logs["g/loss_l1"] + w.mse_weight * logs["g/loss_mse"])
    torch.testing.assert_close(logs["g/loss_content"], content)
    total = content + logs["g/adv_scale"] * logs["g/loss_adv"] + 2.5 * logs["g/loss_mean"]
    torch.testing.assert_close(logs["g/loss"], total)
    # the mean's loss stays outside the balance: the adversarial gradient at the output is still
    # adversarial_weight times the content gradient (gradnorm), or the scale is the plain weight (fixed)
    if balance == "gradnorm":
        torch.testing.assert_close(logs["g/gradnorm_adv"] / logs["g/gradnorm_content"],
                                   torch.tensor(w.adversarial_weight), rtol=1e-4, atol=0)
    else:
        torch.testing.assert_close(logs["g/adv_scale"], torch.tensor(w.adversarial_weight))
    assert all(not torch.equal(a, b) for a, b in zip(mean0, g.mean_net.encoder.parameters(), strict=True))


# --- end to end ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["unet", "resgan"])
def test_unet_and_resgan_train_validate_and_predict_by_day_of_year(name, cordex_root, tmp_path):
    import json
    from pathlib import Path

    from ml_benchmark_spategan.config import load_config as load
    from ml_benchmark_spategan.inference import load_run, predict_array
    from tests.test_training_e2e import tiny_overrides

    root = Path(__file__).resolve().parents[1]
    sets = tiny_overrides(cordex_root, tmp_path, **{"model.name": name, "model.unet.channels": "[8,8]",
                                                    "model.unet.convs_per_level": 1, "training.val_members": 2,
                                                    "training.epochs": 1, "data.target_variable": "tasmax"})
    from ml_benchmark_spategan.training.run import train

    run_dir = train(load(root / "config.yml", sets))
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history) == 1 and all(math.isfinite(h["val/rmse"]) and math.isfinite(h["val/crps"]) for h in history)
    assert ("train/g/loss_mean" in history[0]) == (name == "resgan")
    assert ("train/d/loss" in history[0]) == (name == "resgan")
    run = load_run(run_dir, "last")
    assert sum(isinstance(m, DoyFiLM) for m in run.bundle.generator.modules()) == (1 if name == "unet" else 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, run.geometry["in_channels"], *run.geometry["in_shape"])).astype(np.float32)
    static = torch.from_numpy(rng.standard_normal((1, 1, *run.geometry["out_shape"])).astype(np.float32))
    summer = predict_array(run, x, 1, 2, static, np.array([180, 180]))
    winter = predict_array(run, x, 1, 2, static, np.array([1, 1]))
    assert all(w.abs().sum() > 0 for w in _film_weights(run.bundle.generator))  # trained from zero
    if name == "unet":  # deterministic: the only difference between the calls is the day of year
        assert np.abs(summer - winter).max() > 0
        np.testing.assert_array_equal(summer, predict_array(run, x, 1, 2, static, np.array([180, 180])))


# --- discriminator conditioned on the static field ------------------------------------------------
def test_discriminator_output_depends_on_the_static_field():
    d = Discriminator(C, IN, OUT, dataclasses.replace(D_CFG, dropout=0.0), static_channels=1).eval()
    y, x, s = torch.randn(2, 1, *OUT), torch.randn(2, C, *IN), torch.randn(1, 1, *OUT)
    with torch.no_grad():
        base = d(y, x, s)
        assert (base - d(y, x, torch.randn_like(s))).abs().max() > 1e-3
        torch.testing.assert_close(d(y, x, s.expand(2, -1, -1, -1)), base)  # batch-1 field broadcasts
        torch.testing.assert_close(d(y[:1], x[:1], s), base[:1])
    assert d.hr_path[0].conv1.in_channels == 2
    with pytest.raises(ValueError, match="static_hr: the model expects 1 static channel"):
        d(y, x)
    with pytest.raises(ValueError, match="static_hr: the model was built with static_channels=0"):
        Discriminator(C, IN, OUT, D_CFG)(y, x, s)


class _SpyD(Discriminator):
    """Records the static field of every call."""

    def forward(self, y_hr, x_lr, static_hr=None):
        self.calls.append((y_hr.shape[0], None if static_hr is None else static_hr.detach().clone()))
        return super().forward(y_hr, x_lr, static_hr)


@pytest.mark.parametrize("per_sample", [False, True])
def test_gan_step_gives_the_static_field_to_the_discriminator(per_sample):
    g = Generator(C, IN, OUT, G_CFG, 1)
    d = _SpyD(C, IN, OUT, D_CFG, static_channels=1)
    d.calls = []
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    s = torch.randn(2 if per_sample else 1, 1, *OUT)
    settings = GanStepSettings(n_critic=2, ensemble_size=3)
    train_gan_step(_batch(), g, d, opt_g, opt_d, settings, static_hr=s)
    assert [n for n, _ in d.calls] == [4, 4, 6]  # two critic phases (real + fake), one G phase (2 x 3 members)
    if per_sample:  # the field follows its sample: real then fake in D phases, member-major in the G phase
        torch.testing.assert_close(d.calls[0][1], torch.cat([s, s]))
        torch.testing.assert_close(d.calls[2][1], s.repeat_interleave(3, dim=0))
    else:
        assert all(torch.equal(c, s) for _, c in d.calls)


def test_registry_conditions_d_on_the_orography_when_used():
    small = {"unet": U_CFG, "generator": G_CFG, "discriminator": D_CFG}
    for name in ("spagan", "resgan"):
        assert build_model(ModelConfig(name=name, **small), C, IN, OUT, 1).discriminator.static_channels == 1
        assert build_model(ModelConfig(name=name, **small), C, IN, OUT, 0).discriminator.static_channels == 0


# --- spectral norm in fp32 ----------------------------------------------------------------------
def test_spectral_norm_sigma_is_fp32_and_exact_under_bf16_autocast():
    conv = spectral_norm_fp32(nn.Conv2d(6, 10, 3))
    p = conv.parametrizations.weight[0]
    w = conv.parametrizations.weight.original.detach()
    exact = torch.linalg.matrix_norm(w.flatten(1), ord=2)
    x = torch.randn(2, 6, 9, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(50):  # each training-mode access refines u, v once
            y = conv(x)
        sigma = p.sigma(w)
        effective = conv.weight
    assert y.dtype == torch.bfloat16  # the convolution itself still runs in bf16
    assert sigma.dtype == torch.float32 and p._u.dtype == torch.float32 and p._v.dtype == torch.float32
    assert effective.dtype == torch.float32
    torch.testing.assert_close(sigma, exact, rtol=1e-4, atol=0)
    torch.testing.assert_close(effective, w / exact, rtol=1e-4, atol=1e-7)
    assert torch.linalg.matrix_norm(effective.flatten(1), ord=2).item() == pytest.approx(1.0, rel=1e-4)


def test_spectral_norm_eval_freezes_u_v_and_state_dict_matches_torch():
    from torch.nn.utils.parametrizations import spectral_norm

    ours, theirs = spectral_norm_fp32(nn.Conv2d(3, 4, 3)), spectral_norm(nn.Conv2d(3, 4, 3))
    assert set(ours.state_dict()) == set(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())  # checkpoints written with torch's spectral norm load
    torch.testing.assert_close(ours.parametrizations.weight[0]._u, theirs.parametrizations.weight[0]._u)
    ours.eval()
    u = ours.parametrizations.weight[0]._u.clone()
    ours(torch.randn(1, 3, 5, 5))
    assert torch.equal(u, ours.parametrizations.weight[0]._u)
    theirs.eval()
    torch.testing.assert_close(ours.weight, theirs.weight)  # same u, v, original -> same normalised weight
