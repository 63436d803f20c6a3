"""SpaGAN: a conditional GAN that maps coarse predictors to one high-resolution field.

Shapes: predictors ``x_lr`` (B, C, h, w), static covariates ``static_hr`` (B or 1, S, H, W), target and
predictions (B, 1, H, W), all in normalised space. Members of an ensemble are (B, n_members, H, W).

Generator
    Works on a coarse *working grid* (h0, w0) = ``cfg.working_grid`` if set, else
    (ceil(H / 2**n), ceil(W / 2**n)) with n = len(cfg.upsample_channels) ×2 stages, but never coarser than
    the predictor grid (h0 >= h, w0 >= w: a 19x29 target with 5x7 predictors works on 5x7). For the benchmark
    (16x16 -> 128x128, n = 3) the working grid is the predictor grid and no resizing happens. For
    bring-your-own grids the predictors are bilinearly interpolated from (h, w) to the working grid, the
    network upsamples by 2**n to (h0 * 2**n, w0 * 2**n) >= (H, W), and the output is bilinearly resized
    to exactly (H, W). We resize rather than crop because the working grid spans the same area as the
    target: a crop would cut off its edges and shift every cell. Static covariates (orography) are
    area-averaged to the working grid and concatenated to the predictors, and resized (area average when
    coarsening, bilinear otherwise) and concatenated at every upsampling stage.

    Trunk: stem conv -> residual blocks at (h0, w0) -> one U level (stride-2 conv to ceil(h0/2), blocks,
    bilinear back up, 1x1 merge with the skip) -> blocks -> [day-of-year FiLM, with ``doy_film``] -> n
    stages of [×2 bilinear upsampling, concat static, conv, [stage noise], 2 residual blocks] ->
    GroupNorm/LeakyReLU/3x3 conv to one channel (linear output).
    Every convolution pads by replicating the border (zero padding reads as a dry/cold frame and paints
    artefacts along the edges).
    Stochasticity (:mod:`.noise`, all from the global RNG, a fresh draw per member, active in eval mode
    too): ``noise_channels`` maps of spatially correlated latent noise concatenated to the trunk input;
    optionally (``stage_noise``) a noise map added at every upsampling stage with a learned per-channel
    scale; optionally MC dropout (``dropout`` > 0) in every residual block. ``noise_std = 0`` and
    ``dropout = 0`` give a deterministic network.

Discriminator
    Conditional patch discriminator. The HR path runs residual blocks over y, concatenated with the
    static field when built with ``static_channels`` (``data.use_orography``: D judges the field next to
    the terrain it lies on, so it can reject rain that ignores the mountains) (stride 2 in the first
    k = min(len(hr_channels), floor(log2(min(H/h, W/w)))) blocks; 128 -> 16 for the benchmark) and the
    HR features are then area-averaged to the predictor grid (h, w) if they still differ. The LR path runs
    residual blocks over x_lr at (h, w). Both are concatenated and reduced by 1x1 convs to patch logits
    (B, 1, h, w). Dropout after every block; optional spectral norm on every conv (power iteration and σ
    in fp32 under autocast, :mod:`.spectral`); Kaiming-normal weights and zero biases set after the layers
    exist and before spectral norm is registered.

Training step (StyleGAN2-ADA style phases): ``n_critic`` discriminator phases, then one generator
phase, see :func:`train_gan_step`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ml_benchmark_spategan.config.schema import DiscriminatorConfig, GeneratorConfig, LossConfig, TrainingConfig
from ml_benchmark_spategan.model import losses
from ml_benchmark_spategan.model.amp import autocast, resolve_precision
from ml_benchmark_spategan.model.blocks import (
    GEN_PADDING,
    LEAKY_SLOPE,
    DiscResBlock,
    GenResBlock,
    apply_film,
    check_static,
    conv1x1,
    conv3x3,
    film_or_none,
    group_norm,
    init_weights,
    resize_area,
    resize_bilinear,
)
from ml_benchmark_spategan.model.noise import LatentNoise, StageNoise
from ml_benchmark_spategan.model.spectral import spectral_norm_fp32
from ml_benchmark_spategan.training.optim import optimizer_step

__all__ = [
    "Generator", "Discriminator", "GanStepSettings", "train_gan_step", "discriminator_step",
    "generator_step", "resolve_precision", "working_grid",
]

BLOCKS_PER_STAGE = 2  # residual blocks after each ×2 upsampling


def working_grid(out_shape: tuple[int, int], n_stages: int, override: tuple[int, ...] = (),
                 in_shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """Coarse grid (h0, w0) of the generator: ``override`` if given, else ceil(out / 2**n_stages), but never
    coarser than the predictor grid ``in_shape`` (each side at least the predictors'; a coarser working grid
    would throw predictor information away before the first layer)."""
    if override:
        if len(override) != 2 or min(override) < 1:
            raise ValueError(f"model.generator.working_grid: expected two positive ints (h, w), found {tuple(override)}")
        return int(override[0]), int(override[1])
    f = 2**n_stages
    grid = (math.ceil(out_shape[0] / f), math.ceil(out_shape[1] / f))
    if in_shape is None:
        return grid
    return max(grid[0], int(in_shape[0])), max(grid[1], int(in_shape[1]))


def _check_input(name: str, t: torch.Tensor, channels: int, shape: tuple[int, int]) -> None:
    if t.ndim != 4 or t.shape[1] != channels or tuple(t.shape[-2:]) != tuple(shape):
        raise ValueError(f"{name}: expected (batch, {channels}, {shape[0]}, {shape[1]}), found {tuple(t.shape)}")


class _UpStage(nn.Module):
    """×2 bilinear upsampling, concat the resized static field, conv to ``c_out``, [noise], residual blocks."""

    def __init__(self, c_in: int, c_out: int, static_channels: int, dropout: float, noise: StageNoise | None):
        super().__init__()
        self.conv = conv3x3(c_in + static_channels, c_out, padding_mode=GEN_PADDING)
        self.noise = noise if noise is not None else nn.Identity()
        self.blocks = nn.Sequential(*[GenResBlock(c_out, dropout) for _ in range(BLOCKS_PER_STAGE)])

    def forward(self, h: torch.Tensor, static_hr: torch.Tensor | None) -> torch.Tensor:
        h = resize_bilinear(h, (2 * h.shape[-2], 2 * h.shape[-1]))
        if static_hr is not None:
            h = torch.cat([h, resize_area(static_hr, h.shape[-2:]).to(h.dtype)], dim=1)
        return self.blocks(self.noise(self.conv(h)))


class Generator(nn.Module):
    """Predictors (B, C, h, w) [+ static (B or 1, S, H, W)] -> normalised field (B, 1, H, W)."""

    def __init__(self, in_channels: int, in_shape: tuple[int, int], out_shape: tuple[int, int],
                 cfg: GeneratorConfig, static_channels: int = 0, doy_film: bool = False):
        super().__init__()
        if not cfg.upsample_channels:
            raise ValueError("model.generator.upsample_channels: expected at least one stage, found ()")
        self.in_channels, self.static_channels = in_channels, static_channels
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.working_grid = working_grid(self.out_shape, len(cfg.upsample_channels), cfg.working_grid, self.in_shape)
        f, p, n = cfg.filters, cfg.dropout, cfg.n_coarse_blocks
        n_mid = max(1, n // 2)
        n_pre = (n - n_mid) // 2
        self.latent = LatentNoise(cfg.noise_channels, self.working_grid, cfg.noise_std)
        self.stem = conv3x3(in_channels + static_channels + cfg.noise_channels, f, padding_mode=GEN_PADDING)
        self.pre = nn.Sequential(*[GenResBlock(f, p) for _ in range(n_pre)])
        self.down = conv3x3(f, f, stride=2, padding_mode=GEN_PADDING)
        self.mid = nn.Sequential(*[GenResBlock(f, p) for _ in range(n_mid)])
        self.merge = conv1x1(2 * f, f)
        self.post = nn.Sequential(*[GenResBlock(f, p) for _ in range(n - n_mid - n_pre)])
        chans = (f,) + tuple(cfg.upsample_channels)
        noise = (lambda c: StageNoise(c, cfg.noise_std, cfg.stage_noise_init)) if cfg.stage_noise else (lambda c: None)
        self.stages = nn.ModuleList(_UpStage(a, b, static_channels, p, noise(b))
                                    for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.head = nn.Sequential(group_norm(chans[-1]), nn.LeakyReLU(LEAKY_SLOPE),
                                  conv3x3(chans[-1], 1, padding_mode=GEN_PADDING))
        self.doy_film = film_or_none(doy_film, f)  # on the coarse trunk's output
        init_weights(self)

    def _static(self, static_hr: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if self.static_channels == 0:
            if static_hr is not None:
                raise ValueError("static_hr: the generator was built with static_channels=0 but received a static field")
            return None
        if static_hr is None:
            raise ValueError(f"static_hr: the generator expects {self.static_channels} static channel(s), found None")
        _check_input("static_hr", static_hr, self.static_channels, self.out_shape)
        if static_hr.shape[0] not in (1, batch):
            raise ValueError(f"static_hr: expected batch size 1 or {batch}, found {static_hr.shape[0]}")
        return static_hr.expand(batch, -1, -1, -1)

    def forward(self, x_lr: torch.Tensor, static_hr: torch.Tensor | None = None,
                n_members: int | None = None, doy: torch.Tensor | None = None) -> torch.Tensor:
        """One field (B, 1, H, W), or ``n_members`` stochastic members (B, n_members, H, W) when given.

        Members are produced here, not only in :meth:`sample`, because a DistributedDataParallel wrapper
        synchronises gradients only for passes made through its ``forward``: ``ddp(x, s, n_members=4)``.
        The batch is repeated member-major inside each sample (repeat_interleave); every row of the repeated
        batch draws its own latent noise (and dropout masks), so the members are independent draws.
        ``doy`` (B,): day of year, needed with day-of-year FiLM, else ignored.
        """
        if n_members is None:
            return self._predict(x_lr, static_hr, doy)
        if n_members < 1:
            raise ValueError(f"n_members: expected a positive number of ensemble members, found {n_members}")
        b = x_lr.shape[0]
        x = x_lr.repeat_interleave(n_members, dim=0)
        s = None
        if static_hr is not None:
            s = static_hr.repeat_interleave(n_members, dim=0) if static_hr.shape[0] == b and b > 1 else static_hr
        d = None if doy is None else doy.repeat_interleave(n_members, dim=0)
        return self._predict(x, s, d).reshape(b, n_members, *self.out_shape)

    def _predict(self, x_lr: torch.Tensor, static_hr: torch.Tensor | None, doy: torch.Tensor | None) -> torch.Tensor:
        _check_input("x_lr", x_lr, self.in_channels, self.in_shape)
        static_hr = self._static(static_hr, x_lr.shape[0])
        x = resize_bilinear(x_lr, self.working_grid)
        if static_hr is not None:
            x = torch.cat([x, resize_area(static_hr, self.working_grid).to(x.dtype)], dim=1)
        if self.latent.channels:
            x = torch.cat([x, self.latent(x.shape[0], x.device, x.dtype)], dim=1)
        h = self.pre(self.stem(x))
        u = self.mid(self.down(h))
        h = self.post(self.merge(torch.cat([h, resize_bilinear(u, h.shape[-2:])], dim=1)))
        h = apply_film(self.doy_film, h, doy)
        for stage in self.stages:
            h = stage(h, static_hr)
        return resize_bilinear(self.head(h), self.out_shape)

    def sample(self, x_lr: torch.Tensor, n_members: int, static_hr: torch.Tensor | None = None,
               doy: torch.Tensor | None = None) -> torch.Tensor:
        """``n_members`` stochastic members per sample in one forward pass -> (B, n_members, H, W).

        Same as ``self(x_lr, static_hr, n_members=n_members, doy=doy)``. Gradients flow unless the caller
        disables them.
        """
        return self(x_lr, static_hr, n_members=n_members, doy=doy)


class Discriminator(nn.Module):
    """(y_hr (B, 1, H, W), x_lr (B, C, h, w) [, static_hr (B or 1, S, H, W)]) -> patch logits (B, 1, h, w)."""

    def __init__(self, lr_channels: int, in_shape: tuple[int, int], out_shape: tuple[int, int],
                 cfg: DiscriminatorConfig, static_channels: int = 0):
        super().__init__()
        if not cfg.hr_channels or not cfg.lr_channels:
            raise ValueError("model.discriminator: hr_channels and lr_channels need at least one entry each")
        self.lr_channels, self.in_shape, self.out_shape = lr_channels, tuple(in_shape), tuple(out_shape)
        self.static_channels = static_channels
        ratio = min(out_shape[0] / in_shape[0], out_shape[1] / in_shape[1])
        self.n_down = min(len(cfg.hr_channels), max(0, math.floor(math.log2(ratio)))) if ratio >= 1 else 0
        hr = (1 + static_channels,) + tuple(cfg.hr_channels)
        self.hr_path = nn.ModuleList(
            DiscResBlock(hr[i], hr[i + 1], stride=2 if i < self.n_down else 1, preactivate=i > 0)
            for i in range(len(cfg.hr_channels))
        )
        lr = (lr_channels,) + tuple(cfg.lr_channels)
        self.lr_path = nn.ModuleList(
            DiscResBlock(lr[i], lr[i + 1], stride=1, preactivate=i > 0) for i in range(len(cfg.lr_channels))
        )
        c_cat = hr[-1] + lr[-1]
        self.head = nn.Sequential(nn.LeakyReLU(LEAKY_SLOPE), conv1x1(c_cat, c_cat // 2),
                                  nn.LeakyReLU(LEAKY_SLOPE), conv1x1(c_cat // 2, 1))
        self.dropout = nn.Dropout(cfg.dropout)
        init_weights(self)  # after every layer exists, before the spectral-norm parametrisation
        if cfg.spectral_norm:
            for m in list(self.modules()):
                if isinstance(m, nn.Conv2d):
                    spectral_norm_fp32(m)

    def forward(self, y_hr: torch.Tensor, x_lr: torch.Tensor, static_hr: torch.Tensor | None = None) -> torch.Tensor:
        _check_input("y_hr", y_hr, 1, self.out_shape)
        _check_input("x_lr", x_lr, self.lr_channels, self.in_shape)
        h = y_hr
        if self.static_channels or static_hr is not None:  # the field next to the terrain it lies on
            static_hr = check_static(static_hr, self.static_channels, self.out_shape, y_hr.shape[0])
            h = torch.cat([y_hr, static_hr.to(y_hr.dtype)], dim=1)
        for block in self.hr_path:
            h = self.dropout(block(h))
        h = resize_area(h, self.in_shape)
        g = x_lr
        for block in self.lr_path:
            g = self.dropout(block(g))
        return self.head(torch.cat([h, g], dim=1))


# --- training step ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GanStepSettings:
    """Everything a training step needs besides tensors, models and optimisers (precision resolved)."""

    n_critic: int = 2
    ensemble_size: int = 4
    precision: str = "fp32"
    grad_clip_norm: float = 0.0
    loss: LossConfig = LossConfig()

    @classmethod
    def from_config(cls, training: TrainingConfig, device_type: str, target_kind: str = "generic") -> GanStepSettings:
        """Settings of ``training``; the spectral loss is off for a precipitation-like ``target_kind`` unless
        ``training.loss.spectral_for_precipitation``."""
        loss = training.loss
        if target_kind == "precipitation" and not loss.spectral_for_precipitation:
            loss = dataclasses.replace(loss, spectral_weight=0.0)
        return cls(training.n_critic, training.ensemble_size, resolve_precision(training.precision, device_type),
                   training.grad_clip_norm, loss)


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """Parameters of ``module`` do not require grad inside (no weight gradients are computed for them)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _d_losses(settings: GanStepSettings):
    if settings.loss.adversarial_loss == "hinge":
        return losses.d_loss_hinge, losses.g_loss_hinge
    ls = settings.loss.label_smoothing
    return (lambda r, f: losses.d_loss_bce(r, f, ls)), losses.g_loss_bce


def _module(generator: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (the module itself otherwise)."""
    return generator.module if isinstance(generator, DistributedDataParallel) else generator


def _members(generator: nn.Module, x_lr, n_members: int, static_hr, doy=None) -> torch.Tensor:
    """``n_members`` members (B, n_members, H, W) of ``generator`` (a module or its DDP wrapper).

    A DistributedDataParallel wrapper is *called*: only passes through its ``forward`` synchronise
    gradients across ranks (it has no ``sample``; :meth:`Generator.forward` takes ``n_members``). A plain
    module is asked through ``sample``, the model contract of the registry. ``doy`` (B,) is passed to
    generators whose ``sample`` takes it.
    """
    kwargs = {"doy": doy} if doy is not None and "doy" in inspect.signature(_module(generator).sample).parameters else {}
    if isinstance(generator, DistributedDataParallel):
        return generator(x_lr, static_hr, n_members=n_members, **kwargs)
    return generator.sample(x_lr, n_members, static_hr, **kwargs)


def _repeat_static(static_hr, times: int, interleave: bool):
    """The static field for a batch repeated ``times`` times (a batch-1 field broadcasts as it is)."""
    if static_hr is None or static_hr.shape[0] == 1 or times == 1:
        return static_hr
    return static_hr.repeat_interleave(times, dim=0) if interleave else static_hr.repeat(times, 1, 1, 1)


def _d_static(discriminator, static_hr):
    """``static_hr`` for a discriminator conditioned on it, None for one that is not."""
    return static_hr if getattr(_module(discriminator), "static_channels", 0) else None


def discriminator_step(x_lr, y_real, fake, mask, discriminator, opt_d, settings, scaler=None,
                       static_hr=None) -> dict[str, torch.Tensor]:
    """One D update on real ``y_real`` and generated ``fake`` (B, 1, H, W); invalid cells are set to 0.

    ``static_hr`` (B or 1, S, H, W) is given to a discriminator built with static channels."""
    d_loss, _ = _d_losses(settings)
    device_type = x_lr.device.type
    fake = torch.where(mask, fake.detach().to(y_real.dtype), 0.0)
    static = _repeat_static(_d_static(discriminator, static_hr), 2, interleave=False)
    with autocast(settings.precision, device_type):
        # Real and fake in one batch: no batch statistics in D, so this equals two separate passes.
        logits = discriminator(torch.cat([y_real, fake]), torch.cat([x_lr, x_lr]), static).float()
    real_logits, fake_logits = logits.chunk(2)
    loss_real, loss_fake = d_loss(real_logits, fake_logits)
    loss = loss_real + loss_fake
    grad_norm = optimizer_step(loss, opt_d, discriminator.parameters(), scaler, settings.grad_clip_norm)
    logs = {"d/loss": loss, "d/loss_real": loss_real, "d/loss_fake": loss_fake,
            "d/real_score": torch.sigmoid(real_logits).mean(), "d/fake_score": torch.sigmoid(fake_logits).mean()}
    if grad_norm is not None:
        logs["d/grad_norm"] = grad_norm
    return {k: v.detach() for k, v in logs.items()}


def _content_loss(members, y_real, mask, w: LossConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The content loss of ``training.loss.content_loss`` and its parts (L1/MSE of the mean always logged).

    ``crps``: masked fair CRPS over the members (rewards a calibrated spread); ``mean_l1_mse``:
    ``l1_weight * L1 + mse_weight * MSE`` of the ensemble mean (a regression: it penalises member spread).
    """
    y_mean = members.mean(dim=1, keepdim=True)
    parts = {"g/loss_l1": losses.masked_l1(y_mean, y_real, mask), "g/loss_mse": losses.masked_mse(y_mean, y_real, mask)}
    if w.content_loss == "crps":
        parts["g/loss_crps"] = losses.masked_crps_fair(members, y_real, mask)
        return parts["g/loss_crps"], parts
    return w.l1_weight * parts["g/loss_l1"] + w.mse_weight * parts["g/loss_mse"], parts


def _global_norms(norm_content: torch.Tensor, norm_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient norms of the global batch from each rank's: every rank's loss is a mean over its
    shard, so the global gradient is the ranks' gradients over world size and its squared norm the sum
    of theirs over world size squared (the scale factor cancels in the balance; it is applied for the log)."""
    squares = torch.stack([norm_content, norm_adv]).square()
    torch.distributed.all_reduce(squares)
    norms = squares.sqrt() / torch.distributed.get_world_size()
    return norms[0], norms[1]


def _adversarial_scale(grad_content: torch.Tensor, grad_adv: torch.Tensor, w: LossConfig,
                       distributed: bool = False) -> tuple[torch.Tensor, ...]:
    """Weight of the adversarial term from the gradients of both losses w.r.t. the generated members.

    Returns ``(scale, |d content / d members|, |d (scale * adv) / d members|)``. ``gradnorm``:
    ``scale = adversarial_weight * |grad content| / |grad adv|`` (detached), so the adversarial gradient
    reaching G's output is ``adversarial_weight`` times the content gradient whatever their raw sizes;
    ``fixed``: ``scale = adversarial_weight``. The norms are taken at G's output, not over its parameters.
    ``distributed``: the norms of the global batch (one all-reduce), so every rank uses the same scale.
    """
    norm_content, norm_adv = grad_content.norm().detach(), grad_adv.norm().detach()
    if distributed:
        norm_content, norm_adv = _global_norms(norm_content, norm_adv)
    scale = torch.tensor(float(w.adversarial_weight), device=grad_content.device)
    if w.adversarial_balance == "gradnorm":
        scale = torch.where(norm_adv > 0, scale * norm_content / norm_adv.clamp_min(1e-30), scale)
    return scale, norm_content, scale * norm_adv


def _output_losses(out, y_real, x_lr, mask, discriminator, g_loss, settings, static_hr):
    """The losses of the members ``out`` (B, E, H, W) and the gradient each sends to ``out``.

    ``out`` is a detached leaf: the gradients come from one backward pass through the (frozen) D and the
    losses, none through G (the generator step sends their balanced sum into G once). Returns
    ``(losses, gradients, logs)`` with keys ``content``, ``adv`` and, when ``spectral_weight`` > 0,
    ``spectral`` (unweighted).
    """
    b, e, hh, ww = out.shape
    with autocast(settings.precision, x_lr.device.type):
        fake = torch.where(mask, out, 0.0).reshape(b * e, 1, hh, ww)
        static = _repeat_static(_d_static(discriminator, static_hr), e, interleave=True)
        fake_logits = discriminator(fake, x_lr.repeat_interleave(e, dim=0), static).float()
    values = {}
    values["content"], logs = _content_loss(out, y_real, mask, settings.loss)
    values["adv"] = g_loss(fake_logits)
    if settings.loss.spectral_weight > 0:
        values["spectral"] = logs["g/loss_spectral"] = losses.masked_log_spectral_distance(out, y_real, mask)
    grads = {k: torch.autograd.grad(v, out)[0] for k, v in values.items()}
    logs["g/fake_score"] = torch.sigmoid(fake_logits).mean()
    return values, grads, logs


def generator_step(x_lr, y_real, mask, generator, discriminator, opt_g, settings, scaler=None,
                   static_hr=None, doy=None) -> dict[str, torch.Tensor]:
    """One G update: content loss (fair CRPS over the members, or L1/MSE of their mean) + adversarial loss on
    every member, balanced per ``training.loss.adversarial_balance`` (see :func:`_adversarial_scale`)
    (+ ``spectral_weight`` x the batch's log-spectral distance, outside the balance)
    (+ ``mean_weight`` x ``auxiliary_loss(y_real, mask)`` for generators that have one: resgan's mean).

    The losses and their gradients at G's output are computed on a detached copy of the members, then
    the balanced gradient ``grad content + scale * grad adv`` is back-propagated through G in one pass
    (as the surrogate ``sum(members * gradient)``, whose gradient is exactly that): D is differentiated
    once per step, not once per loss plus once for the update.

    ``generator`` and ``discriminator`` may be DistributedDataParallel wrappers. D is called with its
    parameters frozen: none of its gradient hooks fire, so its reducer neither all-reduces nor waits for
    gradients in this pass (tests/test_distributed.py runs two steps under DDP). Under DDP the balance
    uses the global batch's gradient norms.
    """
    _, g_loss = _d_losses(settings)
    w, e = settings.loss, settings.ensemble_size
    with autocast(settings.precision, x_lr.device.type):
        members = _members(generator, x_lr, e, static_hr, doy).float()  # (B, E, H, W)
    out = members.detach().requires_grad_(True)
    with _frozen(discriminator):
        values, grads, parts = _output_losses(out, y_real, x_lr, mask, discriminator, g_loss, settings, static_hr)
    scale, norm_content, norm_adv = _adversarial_scale(grads["content"], grads["adv"], w,
                                                       isinstance(generator, DistributedDataParallel))
    grad = grads["content"] + scale * grads["adv"]
    loss = (values["content"] + scale * values["adv"]).detach()
    if "spectral" in values:  # outside the balance: the adversarial term is measured against the per-cell loss
        grad = grad + w.spectral_weight * grads["spectral"]
        loss = loss + w.spectral_weight * values["spectral"].detach()
    surrogate = (members * grad).sum()
    if hasattr(_module(generator), "auxiliary_loss"):
        # resgan: the mean network's own masked MSE. Added after the balance, outside it: the mean enters
        # the members detached, so this loss has no gradient at G's output (where the balance measures
        # norms) and trains only the mean network; its weight is mean_weight, not the gradnorm scale.
        parts["g/loss_mean"] = _module(generator).auxiliary_loss(y_real, mask)
        surrogate = surrogate + w.mean_weight * parts["g/loss_mean"]
        loss = loss + w.mean_weight * parts["g/loss_mean"].detach()
    grad_norm = optimizer_step(surrogate, opt_g, generator.parameters(), scaler, settings.grad_clip_norm)
    logs = {"g/loss": loss, "g/loss_content": values["content"], **parts, "g/loss_adv": values["adv"],
            "g/adv_scale": scale, "g/gradnorm_content": norm_content, "g/gradnorm_adv": norm_adv}
    if e > 1:
        logs["g/ensemble_std"] = torch.where(mask, members.std(dim=1, keepdim=True), 0.0).sum() / (
            mask.expand_as(members[:, :1]).sum().clamp_min(1))
    if grad_norm is not None:
        logs["g/grad_norm"] = grad_norm
    return {k: v.detach() for k, v in logs.items()}


def train_gan_step(batch, generator, discriminator, opt_g, opt_d, settings: GanStepSettings, scalers=None,
                   static_hr=None) -> dict[str, torch.Tensor]:
    """``n_critic`` discriminator phases, then one generator phase; returns detached 0-dim tensors.

    batch: ``x_lr`` (B, C, h, w), ``y_hr`` (B, 1, H, W) normalised, ``mask`` (B or 1, 1, H, W) bool
    (True = valid), optional ``doy`` (B,) day of year (passed to generators that take it). Every critic phase sees fresh fakes, as in the reference; G does not change during
    the critic phases, so all ``n_critic`` fake batches are drawn in ONE no-grad forward pass
    (``sample``), which is the same distribution as drawing them phase by phase. D logs are averaged
    over the critic phases. fp16 needs ``scalers = make_grad_scalers('fp16', device_type)``
    (:mod:`ml_benchmark_spategan.training.optim`).

    Under DistributedDataParallel pass the wrapped networks (:func:`training.distributed.wrap_ddp`); each
    rank gives its share of the global batch. Every loss is a mean over its shard, so the averaged
    gradients equal the full batch's when the shards have equal sizes (and, for the masked content
    losses, equal numbers of valid cells, as with one mask for all days).
    """
    x_lr, mask, doy = batch["x_lr"], batch["mask"], batch.get("doy")
    if mask.dtype != torch.bool:
        raise ValueError(f"batch['mask']: expected dtype torch.bool, found {mask.dtype}")
    if settings.precision == "fp16" and (not scalers or set(scalers) != {"g", "d"}):
        raise ValueError("precision fp16 needs scalers={'g': GradScaler, 'd': GradScaler}; use make_grad_scalers")
    scalers = scalers or {}
    y_real = torch.where(mask, batch["y_hr"], 0.0)
    with torch.no_grad(), autocast(settings.precision, x_lr.device.type):
        fakes = _members(generator, x_lr, settings.n_critic, static_hr, doy)  # (B, n_critic, H, W)
    d_logs: dict[str, torch.Tensor] = {}
    for k in range(settings.n_critic):
        phase = discriminator_step(x_lr, y_real, fakes[:, k:k + 1], mask, discriminator, opt_d, settings,
                                   scalers.get("d"), static_hr)
        for key, value in phase.items():
            d_logs[key] = d_logs.get(key, 0.0) + value / settings.n_critic
    g_logs = generator_step(x_lr, y_real, mask, generator, discriminator, opt_g, settings, scalers.get("g"),
                            static_hr, doy)
    return {**d_logs, **g_logs}
