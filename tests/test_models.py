"""Models: shapes on benchmark and bring-your-own grids, stochastic members, init, losses, baselines, registry."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ml_benchmark_spategan.config.schema import DiscriminatorConfig, GeneratorConfig, ModelConfig
from ml_benchmark_spategan.cordex import PREDICTOR_VARIABLES
from ml_benchmark_spategan.model import losses, noise
from ml_benchmark_spategan.model.base import BaselineResidual
from ml_benchmark_spategan.model.baselines import BilinearBaseline, DeepESD, sample_members
from ml_benchmark_spategan.model.registry import MODELS, ModelBundle, build_model, register_model
from ml_benchmark_spategan.model.spagan2d import (
    Discriminator,
    GanStepSettings,
    Generator,
    resolve_precision,
    train_gan_step,
    working_grid,
)

SMALL_G = GeneratorConfig(filters=16, n_coarse_blocks=2, upsample_channels=(16, 8, 8), dropout=0.2)
SMALL_D = DiscriminatorConfig(hr_channels=(8, 16, 16, 16, 8), lr_channels=(8, 8))


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- generator ----------------------------------------------------------------------------------
@pytest.mark.parametrize("static", [0, 1])
@pytest.mark.parametrize("in_shape,out_shape", [((16, 16), (128, 128)), ((11, 13), (75, 90))])
def test_generator_output_shape(in_shape, out_shape, static):
    g = Generator(5, in_shape, out_shape, SMALL_G, static_channels=static)
    x = torch.randn(2, 5, *in_shape)
    s = torch.randn(1, 1, *out_shape) if static else None
    assert g(x, s).shape == (2, 1, *out_shape)
    assert g.sample(x, 3, s).shape == (2, 3, *out_shape)


def test_working_grid_rule():
    assert working_grid((128, 128), 3) == (16, 16)
    assert working_grid((75, 90), 3) == (10, 12)  # ceil(75/8), ceil(90/8)
    assert working_grid((75, 90), 3, (9, 11)) == (9, 11)
    assert working_grid((19, 29), 3, in_shape=(5, 7)) == (5, 7)  # never coarser than the predictors (issue 10)
    assert working_grid((75, 90), 3, in_shape=(11, 13)) == (11, 13)
    assert working_grid((128, 128), 3, in_shape=(16, 16)) == (16, 16)
    g = Generator(2, (5, 7), (19, 29), GeneratorConfig(filters=8, upsample_channels=(8, 8, 8)))
    assert g.working_grid == (5, 7) and g(torch.randn(1, 2, 5, 7)).shape == (1, 1, 19, 29)
    g = Generator(2, (11, 13), (75, 90), GeneratorConfig(filters=8, upsample_channels=(8, 8), working_grid=(7, 9)))
    assert g.working_grid == (7, 9)
    assert g(torch.randn(1, 2, 11, 13)).shape == (1, 1, 75, 90)
    with pytest.raises(ValueError, match="working_grid: expected two positive ints"):
        working_grid((75, 90), 3, (9,))


def test_ensemble_members_differ_and_deterministic_mode():
    g = Generator(5, (16, 16), (128, 128), SMALL_G, static_channels=1).eval()  # eval: MC dropout stays on
    x, s = torch.randn(2, 5, 16, 16), torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        members = g.sample(x, 4, s)
        for i in range(4):
            for j in range(i + 1, 4):
                assert (members[:, i] - members[:, j]).abs().mean() > 1e-4
        assert (g.sample(x, 4, s) - members).abs().mean() > 1e-4  # no reseeding between calls either
    quiet = Generator(5, (16, 16), (128, 128), dataclasses.replace(SMALL_G, dropout=0.0, noise_std=0.0), 1).eval()
    with torch.no_grad():
        a, b = quiet.sample(x, 2, s), quiet(x, s)
    torch.testing.assert_close(a[:, 0], a[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(a[:, :1], b, rtol=1e-5, atol=1e-6)


NOISE_ONLY = GeneratorConfig(filters=8, n_coarse_blocks=2, upsample_channels=(8, 8), dropout=0.0)


def _member_gap(g: Generator, x: torch.Tensor, n: int = 3) -> float:
    """Smallest mean absolute difference between two members of ``g``'s ensemble for ``x``."""
    with torch.no_grad():
        m = g.sample(x, n)
    return min(float((m[:, i] - m[:, j]).abs().mean()) for i in range(n) for j in range(i + 1, n))


@pytest.mark.parametrize("noise_channels,stage_noise", [(8, False), (0, True), (8, True)])
def test_latent_noise_makes_members_differ_without_dropout(noise_channels, stage_noise):
    cfg = dataclasses.replace(NOISE_ONLY, noise_channels=noise_channels, stage_noise=stage_noise)
    g = Generator(3, (8, 8), (32, 32), cfg).eval()
    for stage in g.stages:
        if stage_noise:
            nn.init.constant_(stage.noise.scale, 0.5)  # learned scales start at 0; as after some training
    x = torch.randn(2, 3, 8, 8)
    assert _member_gap(g, x) > 1e-3
    torch.manual_seed(11)
    a = g.sample(x, 3).detach()
    torch.manual_seed(11)
    b = g.sample(x, 3).detach()
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # same seed, same members
    noise.set_noise_std(g, 0.0)
    assert _member_gap(g, x) == 0.0  # noise with scale 0: identical members


def test_stage_noise_scale_starts_at_zero_and_learns():
    g = Generator(3, (8, 8), (32, 32), dataclasses.replace(NOISE_ONLY, noise_channels=0))
    scales = [stage.noise.scale for stage in g.stages]
    assert all(float(s.detach().abs().max()) == 0.0 for s in scales)
    assert _member_gap(g.eval(), torch.randn(1, 3, 8, 8)) == 0.0
    g.sample(torch.randn(2, 3, 8, 8), 2).square().mean().backward()
    assert all(float(s.grad.abs().max()) > 0 for s in scales)


def test_stage_noise_init_sets_every_scale_and_members_differ_from_the_start():
    g = Generator(3, (8, 8), (32, 32), dataclasses.replace(NOISE_ONLY, noise_channels=0, stage_noise_init=0.05))
    assert all(torch.equal(stage.noise.scale.detach(), torch.full_like(stage.noise.scale, 0.05)) for stage in g.stages)
    assert _member_gap(g.eval(), torch.randn(1, 3, 8, 8)) > 0.0


def test_latent_noise_is_spatially_correlated_and_fresh_per_sample():
    z = noise.LatentNoise(4, (16, 16))(500, torch.device("cpu"))
    assert z.shape == (500, 4, 16, 16)
    neighbours = torch.corrcoef(torch.stack([z[..., :, :-1].flatten(), z[..., :, 1:].flatten()]))[0, 1]
    assert neighbours > 0.5  # bilinear from an 8x8 grid: adjacent cells share most of their noise
    samples = torch.corrcoef(torch.stack([z[:-1].flatten(), z[1:].flatten()]))[0, 1]
    assert abs(float(samples)) < 0.02  # independent between samples (and thus members)
    far = torch.corrcoef(torch.stack([z[..., :, 0].flatten(), z[..., :, 8].flatten()]))[0, 1]
    assert abs(float(far)) < 0.05
    assert noise.LatentNoise(2, (1, 3)).coarse == (1, 2)


@pytest.mark.parametrize("grid", [(16, 16), (5, 7), (16, 3)])
def test_latent_noise_has_unit_variance_in_every_cell_corners_included(grid):
    """Brute force: the per-cell variance over many draws is 1 everywhere (before the per-cell scaling, the
    corners of a 16x16 grid had 1 and the interior 0.39)."""
    torch.manual_seed(0)
    z = noise.LatentNoise(8, grid)(4000, torch.device("cpu")).double()
    var = z.var(dim=(0, 1))  # 32000 draws per cell: sampling error of the variance ~ 0.8 %
    assert var.shape == grid
    assert float((var - 1).abs().max()) < 0.05
    assert float(var[0, 0] / var[grid[0] // 2, grid[1] // 2]) == pytest.approx(1.0, abs=0.08)


def test_generator_pads_by_replication():
    g = Generator(3, (8, 8), (32, 32), NOISE_ONLY)
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs and all(m.padding_mode == "replicate" for m in convs)
    d = Discriminator(3, (8, 8), (32, 32), SMALL_D)
    assert all(m.padding_mode == "zeros" for m in d.modules() if isinstance(m, nn.Conv2d))


def test_static_field_is_used_and_checked():
    g = Generator(3, (8, 8), (32, 32), GeneratorConfig(filters=8, upsample_channels=(8, 8), noise_std=0.0), 1).eval()
    x = torch.randn(1, 3, 8, 8)
    s = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        # A spatial change (a constant shift is normalised away by the per-channel GroupNorm, with
        # replicate padding exactly)
        assert (g(x, s) - g(x, s.flip(-1))).abs().max() > 1e-4
    with pytest.raises(ValueError, match="expects 1 static channel"):
        g(x)
    with pytest.raises(ValueError, match=r"x_lr: expected \(batch, 3, 8, 8\), found \(1, 4, 8, 8\)"):
        g(torch.randn(1, 4, 8, 8), s)


def test_reference_parameter_counts():
    g = Generator(15, (16, 16), (128, 128), GeneratorConfig(), static_channels=1)
    d = Discriminator(15, (16, 16), (128, 128), DiscriminatorConfig())
    # Reference implementation: G ~1.7 M, D ~5.9 M; we stay within a factor 1.5.
    assert 1.7e6 / 1.5 < _n_params(g) < 1.7e6 * 1.5
    assert 5.9e6 / 1.5 < _n_params(d) < 5.9e6 * 1.5


# --- discriminator ------------------------------------------------------------------------------
@pytest.mark.parametrize("in_shape,out_shape,n_down", [((16, 16), (128, 128), 3), ((11, 13), (75, 90), 2)])
def test_discriminator_patch_logits(in_shape, out_shape, n_down):
    d = Discriminator(4, in_shape, out_shape, SMALL_D)
    assert d.n_down == n_down
    out = d(torch.randn(3, 1, *out_shape), torch.randn(3, 4, *in_shape))
    assert out.shape == (3, 1, *in_shape)


@pytest.mark.parametrize("sn", [True, False])
def test_discriminator_init_and_spectral_norm(sn):
    d = Discriminator(15, (16, 16), (128, 128), DiscriminatorConfig(spectral_norm=sn))
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 * 2 + 4 + 2 * 2 + 1 + 2  # hr: 2 convs each + 4 skips; lr: 2 each + 1 skip; head 2
    gain = math.sqrt(2.0 / (1 + 0.2**2))
    for conv in convs:
        assert torch.count_nonzero(conv.bias) == 0
        assert hasattr(conv, "parametrizations") == sn
        weight = conv.parametrizations.weight.original if sn else conv.weight
        fan_in = weight[0].numel()
        if weight.numel() > 100_000:  # large enough for a 3 % estimate of the std
            assert weight.std().item() == pytest.approx(gain / math.sqrt(fan_in), rel=0.03)
    if sn:  # the effective weight has spectral norm ~1 after a few power iterations (small D: fast)
        small = Discriminator(2, (4, 4), (16, 16), SMALL_D).train()
        for _ in range(30):
            small(torch.randn(1, 1, 16, 16), torch.randn(1, 2, 4, 4))
        for conv in [m for m in small.modules() if isinstance(m, nn.Conv2d)]:
            w = conv.weight.detach().flatten(1)
            assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, rel=0.05)


# --- losses -------------------------------------------------------------------------------------
def test_masked_losses_match_brute_force():
    pred, true = torch.randn(2, 1, 5, 6), torch.randn(2, 1, 5, 6)
    mask = torch.rand(1, 1, 5, 6) > 0.4
    true_nan = torch.where(mask, true, float("nan"))
    p, t, m = pred.numpy(), true.numpy(), np.broadcast_to(mask.numpy(), pred.shape)
    assert losses.masked_l1(pred, true_nan, mask).item() == pytest.approx(np.abs(p - t)[m].mean(), rel=1e-6)
    assert losses.masked_mse(pred, true_nan, mask).item() == pytest.approx(((p - t) ** 2)[m].mean(), rel=1e-6)


def _crps_brute_force(x: np.ndarray, y: float) -> float:
    """Fair CRPS of members ``x`` (m,) for ``y`` by the double loop of its definition."""
    m = len(x)
    skill = sum(abs(xi - y) for xi in x) / m
    if m == 1:
        return skill
    return skill - sum(abs(xi - xj) for xi in x for xj in x) / (2 * m * (m - 1))


@pytest.mark.parametrize("m", [1, 2, 3, 5, 8])
def test_fair_crps_matches_brute_force_double_loop_with_mask(m):
    members, true = torch.randn(2, m, 4, 5, dtype=torch.float64), torch.randn(2, 1, 4, 5, dtype=torch.float64)
    members[0, :, 0, 0] = 0.7  # ties: all members equal
    mask = torch.rand(1, 1, 4, 5) > 0.3
    true_nan = torch.where(mask, true, float("nan"))
    x, y = members.numpy(), true.numpy()
    cells = [(b, i, j) for b in range(2) for i in range(4) for j in range(5) if mask[0, 0, i, j]]
    expected = np.mean([_crps_brute_force(x[b, :, i, j], y[b, 0, i, j]) for b, i, j in cells])
    assert losses.masked_crps_fair(members, true_nan, mask).item() == pytest.approx(expected, rel=1e-10)
    per_cell = losses.crps_fair(members, true)
    assert per_cell[1, 0, 2, 3].item() == pytest.approx(_crps_brute_force(x[1, :, 2, 3], y[1, 0, 2, 3]), rel=1e-10)
    if m == 1:  # one member: the absolute error
        assert losses.masked_crps_fair(members, true_nan, mask).item() == pytest.approx(
            losses.masked_l1(members, true_nan, mask).item(), rel=1e-12)


def test_fair_crps_of_a_perfect_ensemble_is_zero_and_rewards_spread():
    y = torch.randn(3, 1, 6, 6)
    assert losses.crps_fair(y.expand(3, 4, 6, 6), y).abs().max().item() < 1e-6
    # y ~ N(0, 1): members drawn from the same distribution score better than a collapsed ensemble at 0
    torch.manual_seed(1)
    y = torch.randn(20000, 1, 1, 1)
    mask = torch.ones(1, 1, 1, 1, dtype=torch.bool)
    calibrated = losses.masked_crps_fair(torch.randn(20000, 4, 1, 1), y, mask).item()
    collapsed = losses.masked_crps_fair(torch.zeros(20000, 4, 1, 1), y, mask).item()
    assert calibrated == pytest.approx(1 / np.sqrt(np.pi), rel=0.03)  # CRPS of N(0,1) for y ~ N(0,1)
    assert collapsed == pytest.approx(np.sqrt(2 / np.pi), rel=0.03)  # E|y|
    assert calibrated < collapsed


def test_adversarial_losses_match_formulas():
    r, f = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([-0.3, 1.5, 0.0])
    sig = torch.sigmoid
    lr, lf = losses.d_loss_bce(r, f, 0.1)
    exp_r = -(0.9 * torch.log(sig(r)) + 0.1 * torch.log(1 - sig(r))).mean()
    torch.testing.assert_close(lr, exp_r)
    torch.testing.assert_close(lf, -torch.log(1 - sig(f)).mean())
    torch.testing.assert_close(losses.g_loss_bce(f), -torch.log(sig(f)).mean())
    hr, hf = losses.d_loss_hinge(r, f)
    assert hr.item() == pytest.approx((0.5 + 2.0 + 0.0) / 3)
    assert hf.item() == pytest.approx((0.7 + 2.5 + 1.0) / 3)
    assert losses.g_loss_hinge(f).item() == pytest.approx(-0.4)


def test_resolve_precision():
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp16", "cpu") == "fp16"
    with pytest.raises(ValueError, match="training.precision: expected one of"):
        resolve_precision("fp8", "cpu")


# --- baselines ----------------------------------------------------------------------------------
def test_deepesd_shape_and_c_order():
    m = DeepESD(3, (4, 5), (6, 7))
    x = torch.randn(2, 3, 4, 5)
    y = m(x)
    assert y.shape == (2, 1, 6, 7)
    flat = m.dense(m.features(x).flatten(1))  # (B, H*W): row i, column j at index i*W + j
    torch.testing.assert_close(y[:, 0, 2, 3], flat[:, 2 * 7 + 3])
    assert _n_params(m) == (3 * 9 * 50 + 50) + (50 * 9 * 25 + 25) + (25 * 9 + 1) + (20 * 42 + 42)
    members = m.sample(x, 3)
    assert members.shape == (2, 3, 6, 7) and torch.equal(members[:, 0], members[:, 2])


def test_deepesd_learns_toy_problem():
    from ml_benchmark_spategan.model.baselines import train_regression_step

    x = torch.rand(16, 2, 4, 4)
    y = F.interpolate(x[:, :1], size=(8, 8), mode="bilinear", align_corners=False)  # learnable linear map
    batch = {"x_lr": x, "y_hr": y, "mask": torch.ones(1, 1, 8, 8, dtype=torch.bool)}
    m = DeepESD(2, (4, 4), (8, 8))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = train_regression_step(batch, m, opt, GanStepSettings())["g/loss_mse"].item()
    for _ in range(60):
        logs = train_regression_step(batch, m, opt, GanStepSettings())
    assert logs["g/loss"].item() < 0.2 * first


def _identity_fit(channel, in_shape, out_shape, gain=1.0, offset=0.0):
    """Extent-aligned weights with a constant correction, as the fit would produce them."""
    import xarray as xr

    from ml_benchmark_spategan.dataloader.baseline_fit import BaselineFit, point_weights

    index, weight, _ = point_weights(xr.DataArray(np.zeros((1, 1, *in_shape)), dims=("time", "channel", "a", "b")),
                                     xr.DataArray(np.zeros((1, *out_shape)), dims=("time", "r", "c")))
    full = np.full((13, *out_shape), 1.0, np.float32)
    return BaselineFit("p", channel, index, weight, full * gain, full * offset, "")


IDENTITY = {"shift": np.zeros((1, 1, 1), np.float32), "scale": np.ones((1, 1, 1), np.float32), "log1p": False}


def test_bilinear_baseline_interpolates_and_corrects_by_month():
    m = BilinearBaseline((16, 16), (128, 128))
    m.load_fit(_identity_fit(2, (16, 16), (128, 128)), IDENTITY, IDENTITY)
    x = torch.randn(2, 4, 16, 16)
    expected = F.interpolate(x[:, 2:3], size=(128, 128), mode="bilinear", align_corners=False)
    torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)
    assert _n_params(m) == 0
    torch.testing.assert_close(m.sample(x, 2)[:, 1:], expected, rtol=1e-5, atol=1e-5)
    # gain/offset per month row, picked by day of year; physical predictor = x * scale + shift
    fit = _identity_fit(0, (4, 4), (8, 8))
    fit.gain[:] = np.arange(13, dtype=np.float32)[:, None, None]
    fit.offset[:] = 100.0 + np.arange(13, dtype=np.float32)[:, None, None]
    pred_params = {"shift": np.full((2, 1, 1), 5.0, np.float32), "scale": np.full((2, 1, 1), 2.0, np.float32),
                   "log1p": False}
    target_params = {"shift": np.full((1, 1, 1), 1.0, np.float32), "scale": np.full((1, 1, 1), 4.0, np.float32),
                     "log1p": False}
    m = BilinearBaseline((4, 4), (8, 8))
    m.load_fit(fit, pred_params, target_params)
    x = torch.zeros(3, 2, 4, 4)  # physical predictor 5 everywhere
    doy = torch.tensor([1, 45, 365])  # January, February, December
    y = m(x, doy=doy)
    for b, month in enumerate((0, 1, 11)):
        torch.testing.assert_close(y[b], torch.full((1, 8, 8), (month * 5.0 + 100 + month - 1.0) / 4.0))
    torch.testing.assert_close(m(x)[0], torch.full((1, 8, 8), (12 * 5.0 + 112 - 1.0) / 4.0))  # no doy: row 12
    assert torch.equal(sample_members(m, x, 2, doy=doy)[:, 0], y[:, 0])
    # a state dict round trip restores every fitted buffer
    fresh = BilinearBaseline((4, 4), (8, 8))
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh(x, doy=doy), y)


# --- registry -----------------------------------------------------------------------------------
def test_registry_builds_each_kind():
    names = PREDICTOR_VARIABLES
    cfg = ModelConfig(generator=SMALL_G, discriminator=SMALL_D)
    gan = build_model(cfg, 15, (16, 16), (128, 128), 1, names, "pr")
    assert gan.kind == "gan" and isinstance(gan.discriminator, Discriminator)
    # model.base auto: a GAN's generator learns the departure from the interpolation baseline
    assert isinstance(gan.generator, BaselineResidual) and isinstance(gan.generator.net, Generator)
    plain = build_model(dataclasses.replace(cfg, base="none"), 15, (16, 16), (128, 128), 1, names, "pr")
    assert isinstance(plain.generator, Generator)
    reg = build_model(ModelConfig(name="deepesd"), 15, (16, 16), (128, 128), 1, names, "pr")
    assert reg.kind == "regression" and reg.discriminator is None
    fixed = build_model(ModelConfig(name="bilinear"), 15, (16, 16), (128, 128), 0, names, "tasmax")
    assert fixed.kind == "fixed" and isinstance(fixed.generator, BilinearBaseline) and fixed.generator.channel == -1
    build_model(ModelConfig(name="bilinear", bilinear_predictor="z_500"), 15, (16, 16), (128, 128), 0, names)


def test_registry_errors_and_user_models():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; registered models: \['bilinear', 'deepesd', 'resgan', 'spagan', 'unet'"):
        build_model(ModelConfig(name="nope"), 15, (16, 16), (128, 128))
    with pytest.raises(ValueError, match="predictor 'q_850' not among the predictors"):
        build_model(ModelConfig(name="bilinear", bilinear_predictor="q_850"), 2, (16, 16), (128, 128), 0,
                    ("t_850", "z_500"), "pr")
    with pytest.raises(ValueError, match="already registered"):
        register_model("spagan")(lambda *a: None)
    with pytest.raises(ValueError, match="kind 'gan' needs discriminator"):
        ModelBundle(nn.Identity(), None, "gan")

    @register_model("toy_test_model")
    def _toy(cfg, in_channels, in_shape, out_shape, static_channels, predictor_names, target_variable):
        return ModelBundle(BilinearBaseline(in_shape, out_shape), None, "fixed")

    try:
        bundle = build_model(ModelConfig(name="toy_test_model"), 1, (4, 4), (8, 8))
        assert bundle.generator.out_shape == (8, 8)
    finally:
        MODELS.pop("toy_test_model")


def test_gan_step_smoke_on_bring_your_own_grid():
    g = Generator(3, (11, 13), (75, 90), GeneratorConfig(filters=8, upsample_channels=(8, 8, 8)), 1)
    d = Discriminator(3, (11, 13), (75, 90), SMALL_D)
    batch = {"x_lr": torch.randn(2, 3, 11, 13), "y_hr": torch.randn(2, 1, 75, 90),
             "mask": torch.ones(1, 1, 75, 90, dtype=torch.bool)}
    logs = train_gan_step(batch, g, d, torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters()),
                          GanStepSettings(), static_hr=torch.randn(1, 1, 75, 90))
    assert all(torch.isfinite(v) for v in logs.values())
