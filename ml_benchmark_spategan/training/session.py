"""Everything a run needs in one place: data loaders, normalisers, models, optimisers, schedulers.

``build_session`` turns a validated config and opened data into a :class:`Session`; ``session_state`` /
``load_session_state`` convert it to and from a checkpoint dict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ml_benchmark_spategan.config.loader import config_to_dict, resolve_best_metric
from ml_benchmark_spategan.config.schema import Config, ModelConfig, TrainingConfig
from ml_benchmark_spategan.dataloader import oversampling
from ml_benchmark_spategan.dataloader.baseline_fit import fit_bilinear_baseline
from ml_benchmark_spategan.dataloader.normalization import Normalizers, fit_normalizers
from ml_benchmark_spategan.dataloader.reader import DomainData
from ml_benchmark_spategan.dataloader.torch_bridge import (
    TorchNormalizer,
    make_eval_loader,
    make_train_loader,
    static_hr,
)
from ml_benchmark_spategan.model.registry import ModelBundle, build_model
from ml_benchmark_spategan.model.spagan2d import GanStepSettings, resolve_precision
from ml_benchmark_spategan.training.checkpoint import capture_rng_state, restore_rng_state
from ml_benchmark_spategan.training.distributed import DistInfo, wrap_ddp
from ml_benchmark_spategan.training.ema import EmaGenerator
from ml_benchmark_spategan.training.optim import build_optimizer, make_grad_scalers
from ml_benchmark_spategan.training.schedule import build_scheduler


@dataclass
class Session:
    cfg: Config
    run_dir: Path
    device: torch.device
    bundle: ModelBundle
    normalizers: Normalizers
    train_loader: object
    val_loader: object
    val_data: DomainData
    static_hr: torch.Tensor | None
    geometry: dict
    settings: GanStepSettings
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    scalers: dict[str, torch.amp.GradScaler] | None
    logger: logging.Logger
    dist: DistInfo = field(default_factory=DistInfo)
    trainables: dict = field(default_factory=dict)  # the modules the step runs: DDP-wrapped when distributed
    ema: EmaGenerator | None = None  # G_ema (training.ema), updated after every generator step
    epoch: int = 0  # epoch to run next, or the one interrupted (0-based)
    epoch_step: int = 0  # batches of `epoch` already done (non-zero only after an interruption)
    partial: dict | None = None  # running sums of an interrupted epoch
    global_step: int = 0
    best: float | None = None
    history: list[dict] = field(default_factory=list)

    @property
    def eval_generator(self) -> torch.nn.Module:
        """The generator validation predicts with: G_ema when kept, else the trained weights."""
        return self.ema.module if self.ema is not None else self.bundle.generator

    @property
    def best_metric(self) -> str:
        """``logging.best_metric`` with ``auto`` resolved for this model (val/crps for GANs, else val/rmse)."""
        return resolve_best_metric(self.cfg.logging.best_metric, self.bundle.kind)

    @property
    def target_normalizer(self) -> TorchNormalizer:
        return TorchNormalizer.from_normalizer(self.normalizers.target, device=self.device)


def model_geometry(train: DomainData, use_static: bool) -> dict:
    """Shapes and names a model is built from; stored in checkpoints so inference can rebuild it."""
    return {
        "in_channels": int(train.predictors.sizes["channel"]),
        "in_shape": tuple(int(train.predictors.sizes[d]) for d in train.predictors.dims[2:]),
        "out_shape": tuple(int(train.target.sizes[d]) for d in train.target.dims[1:]),
        "static_channels": 1 if use_static else 0,
        "predictor_names": [str(v) for v in train.predictors["channel"].values],
        "target_variable": train.target_variable,
        "target": train.info.to_dict(),
    }


def build_models(cfg: ModelConfig, geometry: dict, device: torch.device) -> ModelBundle:
    """The registry's model for ``geometry`` (:func:`model_geometry`), moved to ``device``."""
    bundle = build_model(
        cfg,
        in_channels=geometry["in_channels"],
        in_shape=geometry["in_shape"],
        out_shape=geometry["out_shape"],
        static_channels=geometry["static_channels"],
        predictor_names=geometry["predictor_names"],
        target_variable=geometry["target_variable"],
    )
    bundle.generator.to(device)
    if bundle.discriminator is not None:
        bundle.discriminator.to(device)
    return bundle


def _optimizers(cfg: TrainingConfig, bundle: ModelBundle, device: torch.device) -> dict[str, torch.optim.Optimizer]:
    optimizers = {}
    params_g = [p for p in bundle.generator.parameters() if p.requires_grad]
    if params_g:
        optimizers["g"] = build_optimizer(params_g, cfg.optimizer_g, device)
    if bundle.discriminator is not None:
        optimizers["d"] = build_optimizer(bundle.discriminator.parameters(), cfg.optimizer_d, device)
    return optimizers


def build_session(cfg: Config, train: DomainData, val: DomainData, device: torch.device, run_dir: Path,
                  logger: logging.Logger, normalizers: Normalizers | None = None,
                  dist: DistInfo | None = None) -> Session:
    """Wire loaders, models and optimisers for a run (normalisers fitted unless given).

    Distributed: every rank gets a disjoint share of each epoch's (seeded) training order and the
    networks are wrapped in DistributedDataParallel; ``training.batch_size`` is per process.
    """
    dist = dist or DistInfo(device=device)
    normalizers = normalizers or fit_normalizers(train, cfg.data.normalization)
    loader_cfg, batch = cfg.data.loader, cfg.training.batch_size
    train_loader = make_train_loader(train, normalizers, loader_cfg, batch, seed=cfg.training.seed,
                                     rank=dist.rank, world_size=dist.world_size,
                                     weights=_sampling_weights(cfg, train, run_dir if dist.main else None, logger))
    val_loader = make_eval_loader(val, normalizers, loader_cfg, batch)
    if device.type == "cuda":  # in-memory splits live on the GPU: shuffling and batching happen there
        for loader in (train_loader, val_loader):
            if loader.mode == "memory":
                loader.to(device)
    static = static_hr(train, normalizers.static)
    geometry = model_geometry(train, static is not None)
    bundle = build_models(cfg.model, geometry, device)
    _fit_fixed_model(bundle, train, normalizers, cfg.model.bilinear_predictor, logger)
    optimizers = _optimizers(cfg.training, bundle, device)
    precision = resolve_precision(cfg.training.precision, device.type)
    settings = GanStepSettings.from_config(cfg.training, device.type, train.info.kind)
    scalers = make_grad_scalers(precision, device.type, tuple(optimizers))
    schedulers = {name: build_scheduler(opt, cfg.training.schedule) for name, opt in optimizers.items()}
    ema = None
    if bundle.kind == "gan" and cfg.training.ema.enabled:
        ema = EmaGenerator(bundle.generator, cfg.training.ema.decay)
    trainables = {"g": wrap_ddp(bundle.generator, dist)}
    if bundle.discriminator is not None:
        trainables["d"] = wrap_ddp(bundle.discriminator, dist)
    return Session(
        cfg=cfg, run_dir=run_dir, device=device, bundle=bundle, normalizers=normalizers,
        train_loader=train_loader, val_loader=val_loader, val_data=val,
        static_hr=None if static is None else static.to(device), geometry=geometry, settings=settings,
        optimizers=optimizers, schedulers=schedulers, scalers=scalers, logger=logger, dist=dist,
        trainables=trainables, ema=ema,
    )


def _sampling_weights(cfg: Config, train: DomainData, run_dir: Path | None, logger: logging.Logger):
    """Per-day sampling probabilities of the training split (``data.oversampling``), or None when off; writes
    ``sampling_weights.csv`` into ``run_dir`` (rank 0) and logs their range."""
    over = cfg.data.oversampling
    if over.statistic == "none":
        return None
    stat = oversampling.day_statistic(train.target, over.statistic)
    probabilities = oversampling.sampling_weights(stat, over)
    if run_dir is not None:
        oversampling.write_weights(Path(run_dir) / "sampling_weights.csv", train.time, stat, probabilities)
    logger.info("%s", oversampling.summary_line(over, probabilities))
    return probabilities


def _fit_fixed_model(bundle: ModelBundle, train: DomainData, normalizers: Normalizers, bilinear_predictor: str,
                     logger: logging.Logger) -> None:
    """Fit the interpolation baseline's statistics on ``train``: the ``bilinear`` model's, or the baseline a
    ``model.base: interpolation`` network adds its output to (both expose ``load_fit``)."""
    generator = bundle.generator
    if not hasattr(generator, "load_fit"):
        return
    fit = fit_bilinear_baseline(train, bilinear_predictor)
    generator.load_fit(fit, normalizers.predictors.params(), normalizers.target.params())
    logger.info("%s", fit.description)


def normalization_params(normalizers: Normalizers) -> dict:
    """The statistics as plain arrays (checkpoints carry them; the run folder holds the NetCDF files)."""
    roles = {"predictors": normalizers.predictors, "target": normalizers.target, "static": normalizers.static}
    return {role: n.params() for role, n in roles.items() if n is not None}


def session_state(session: Session) -> dict:
    """A checkpoint dict holding everything needed to continue the run exactly."""
    bundle = session.bundle
    return {
        "config": config_to_dict(session.cfg),
        "geometry": session.geometry,
        "generator": bundle.generator.state_dict(),
        "discriminator": None if bundle.discriminator is None else bundle.discriminator.state_dict(),
        "generator_ema": None if session.ema is None else session.ema.state_dict(),
        "optimizers": {k: v.state_dict() for k, v in session.optimizers.items()},
        "schedulers": {k: v.state_dict() for k, v in session.schedulers.items()},
        "scalers": None if session.scalers is None else {k: v.state_dict() for k, v in session.scalers.items()},
        "epoch": session.epoch,
        "epoch_step": session.epoch_step,
        "partial": session.partial,
        "global_step": session.global_step,
        "best": session.best,
        "history": session.history,
        "rng": capture_rng_state(),
        "normalization": normalization_params(session.normalizers),
    }


def load_session_state(session: Session, state: dict) -> None:
    """Restore models (and G_ema), optimisers, schedulers, scalers, counters, history and RNG from a checkpoint."""
    session.bundle.generator.load_state_dict(state["generator"])
    if session.bundle.discriminator is not None:
        session.bundle.discriminator.load_state_dict(state["discriminator"])
    if session.ema is not None:
        if state.get("generator_ema"):
            session.ema.load_state_dict(state["generator_ema"])
        else:  # a checkpoint written without G_ema: the average starts from the loaded weights
            session.ema.module.load_state_dict(state["generator"])
    for name, opt in session.optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    for name, sched in session.schedulers.items():
        sched.load_state_dict(state["schedulers"][name])
    if session.scalers is not None and state.get("scalers"):
        for name, scaler in session.scalers.items():
            scaler.load_state_dict(state["scalers"][name])
    session.epoch = state["epoch"]
    session.epoch_step = state["epoch_step"]
    session.partial = state["partial"]
    session.global_step = state["global_step"]
    session.best = state["best"]
    session.history = list(state["history"])
    restore_rng_state(state["rng"])
