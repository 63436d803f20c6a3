"""Model registry: name -> builder of a :class:`ModelBundle`.

A user model is added with::

    @register_model("mymodel")
    def build_mymodel(cfg, in_channels, in_shape, out_shape, static_channels, predictor_names, target_variable):
        return ModelBundle(generator=MyNet(...), discriminator=None, kind="regression")

Its generator must take ``(x_lr (B, C, h, w), static_hr | None)`` and return (B, 1, H, W), and offer
``sample(x_lr, n_members, static_hr=None) -> (B, n_members, H, W)``. Where its ``forward`` / ``sample``
also take ``doy=`` (day of year, (B,) int), training, validation and inference pass it; :func:`doy_film`
tells a builder whether ``model.doy_conditioning`` asks for day-of-year FiLM
(:class:`~ml_benchmark_spategan.model.blocks.DoyFiLM`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from ml_benchmark_spategan.config.schema import ModelConfig
from ml_benchmark_spategan.model.base import BaselineResidual
from ml_benchmark_spategan.model.baselines import BilinearBaseline, DeepESD
from ml_benchmark_spategan.model.resgan import ResidualGenerator
from ml_benchmark_spategan.model.spagan2d import Discriminator, Generator
from ml_benchmark_spategan.model.unet import UNet

KINDS = ("gan", "regression", "fixed")


@dataclass(frozen=True)
class ModelBundle:
    """The networks of one model. kind: gan (G + D), regression (trained G only), fixed (nothing to train)."""

    generator: nn.Module
    discriminator: nn.Module | None
    kind: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ModelBundle.kind: expected one of {KINDS}, found {self.kind!r}")
        if (self.kind == "gan") != (self.discriminator is not None):
            raise ValueError(f"ModelBundle: kind {self.kind!r} {'needs' if self.kind == 'gan' else 'takes no'} discriminator")


Builder = Callable[..., ModelBundle]
MODELS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (an existing name raises)."""

    def decorate(builder: Builder) -> Builder:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = builder
        return builder

    return decorate


def build_model(cfg: ModelConfig, in_channels: int, in_shape: tuple[int, int], out_shape: tuple[int, int],
                static_channels: int = 0, predictor_names: Sequence[str] = (), target_variable: str = "pr") -> ModelBundle:
    """Build ``cfg.name`` for predictors (in_channels, *in_shape) and a target on ``out_shape``."""
    if cfg.name not in MODELS:
        raise ValueError(f"model.name: unknown model {cfg.name!r}; registered models: {sorted(MODELS)}")
    if predictor_names and len(predictor_names) != in_channels:
        raise ValueError(f"predictor_names: expected {in_channels} names (in_channels), found {len(predictor_names)}")
    bundle = MODELS[cfg.name](cfg, in_channels, tuple(in_shape), tuple(out_shape), static_channels,
                              tuple(predictor_names), target_variable)
    if uses_base(cfg, bundle.kind):
        check_bilinear_predictor(cfg.bilinear_predictor, predictor_names)
        bundle = ModelBundle(BaselineResidual(bundle.generator, tuple(in_shape), tuple(out_shape)),
                             bundle.discriminator, bundle.kind)
    return bundle


def uses_base(cfg: ModelConfig, kind: str) -> bool:
    """Whether the model predicts the departure from the interpolation baseline (``model.base``; auto = GANs)."""
    if kind == "fixed":
        return False
    return cfg.base == "interpolation" or (cfg.base == "auto" and kind == "gan")


DOY_FILM_BY_DEFAULT = ("unet", "resgan")  # model.doy_conditioning: auto


def doy_film(cfg: ModelConfig) -> bool:
    """Whether ``cfg.name`` gets day-of-year FiLM: ``film``, or ``auto`` for the models in DOY_FILM_BY_DEFAULT."""
    return cfg.doy_conditioning == "film" or (cfg.doy_conditioning == "auto" and cfg.name in DOY_FILM_BY_DEFAULT)


@register_model("spagan")
def _build_spagan(cfg, in_channels, in_shape, out_shape, static_channels, predictor_names, target_variable):
    generator = Generator(in_channels, in_shape, out_shape, cfg.generator, static_channels, doy_film(cfg))
    discriminator = Discriminator(in_channels, in_shape, out_shape, cfg.discriminator, static_channels)
    return ModelBundle(generator, discriminator, "gan")


@register_model("deepesd")
def _build_deepesd(cfg, in_channels, in_shape, out_shape, static_channels, predictor_names, target_variable):
    return ModelBundle(DeepESD(in_channels, in_shape, out_shape, doy_film(cfg)), None, "regression")


@register_model("unet")
def _build_unet(cfg, in_channels, in_shape, out_shape, static_channels, predictor_names, target_variable):
    """Deterministic U-Net on the target grid (predictors interpolated, orography concatenated), masked MSE."""
    return ModelBundle(UNet(in_channels, in_shape, out_shape, cfg.unet, static_channels, doy_film(cfg)), None,
                       "regression")


@register_model("resgan")
def _build_resgan(cfg, in_channels, in_shape, out_shape, static_channels, predictor_names, target_variable):
    """Residual GAN: a U-Net (``model.unet``) for the conditional mean plus a SpaGAN generator
    (``model.generator``) for the residual; D (``model.discriminator``) judges mean + residual.

    The U-Net is trained jointly, by its own masked MSE only (``training.loss.mean_weight``); the GAN and
    content losses train the residual (see :mod:`ml_benchmark_spategan.model.resgan`).
    """
    generator = ResidualGenerator(in_channels, in_shape, out_shape, cfg.unet, cfg.generator, static_channels,
                                  doy_film(cfg))
    discriminator = Discriminator(in_channels, in_shape, out_shape, cfg.discriminator, static_channels)
    return ModelBundle(generator, discriminator, "gan")


def check_bilinear_predictor(choice: str, predictor_names: Sequence[str]) -> None:
    """ValueError unless ``model.bilinear_predictor`` is ``auto``, ``none`` or one of the predictors (the
    matching predictor itself is chosen when the baseline is fitted, from the variables' kinds)."""
    if choice not in ("auto", "none") and predictor_names and choice not in predictor_names:
        raise ValueError(f"model.bilinear_predictor: predictor {choice!r} not among the predictors {list(predictor_names)}")


@register_model("bilinear")
def _build_bilinear(cfg, in_channels, in_shape, out_shape, static_channels, predictor_names, target_variable):
    check_bilinear_predictor(cfg.bilinear_predictor, predictor_names)
    return ModelBundle(BilinearBaseline(in_shape, out_shape), None, "fixed")
