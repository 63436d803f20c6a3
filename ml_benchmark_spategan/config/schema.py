"""The configuration schema: one tree of frozen dataclasses, the only place where defaults live.

Every field carries a one-line description in ``metadata["doc"]`` and, where the value is one of a
fixed set, the allowed values in ``metadata["choices"]``; numeric bounds in ``metadata["min"]`` /
``metadata["max"]`` (``min_exclusive`` for strictly positive values). The loader
(:mod:`ml_benchmark_spategan.config.loader`) validates YAML and ``--set`` overrides against this tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ml_benchmark_spategan.variables import KIND_CHOICES


def _f(default, doc, *, choices=None, min=None, max=None, min_exclusive=False, factory=False):
    """A dataclass field with its description and validation rules."""
    meta = {"doc": doc}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if min is not None:
        meta["min"] = min
        meta["min_exclusive"] = min_exclusive
    if max is not None:
        meta["max"] = max
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


NORMALIZATION_METHODS = ("standardize_pointwise", "standardize_global", "minmax_01", "minmax_11", "log1p_standardize", "log1p_minmax", "none")


@dataclass(frozen=True)
class NormalizationConfig:
    predictors: str = _f("standardize_pointwise", "predictor transform (per-grid-point standardisation is the benchmark reference)", choices=NORMALIZATION_METHODS)
    target: str = _f("auto", "target transform; auto = by the target's kind: log1p_standardize (of the value in mm/day) for precipitation, standardize_global otherwise", choices=("auto",) + NORMALIZATION_METHODS)
    min_std: float = _f(1e-6, "guard: standard deviations (and min-max ranges) below this are replaced by 1", min=0.0)


@dataclass(frozen=True)
class FilesConfig:
    """Bring-your-own data (used when ``data.source: files``)."""

    predictor_files: tuple[str, ...] = _f((), "NetCDF file(s) or glob patterns holding the predictors, combined by variable and time (e.g. one file per variable and year)")
    predictor_variables: tuple[str, ...] = _f((), "predictor variable names in channel order; empty = the 15 CORDEX ML-Bench names")
    predictor_grid: str = _f("", "predictor variable whose grid all predictors are interpolated onto (bilinear) when their grids differ; empty = the first variable's")
    target_file: str = _f("", "NetCDF file holding the target")
    target_variable: str = _f("", "target variable name in target_file (any name); empty = data.target_variable")
    target_units: str = _f("", "units of the target when the file has no units attribute (or a wrong one); empty = the file's units")
    orography_file: str = _f("", "optional NetCDF file with a static covariate on the target grid")
    orography_variable: str = _f("orog", "variable name of the static covariate")


@dataclass(frozen=True)
class LoaderConfig:
    mode: str = _f("auto", "auto = in memory when the split fits memory_budget_gb, else streamed from disk", choices=("auto", "memory", "streaming"))
    memory_budget_gb: float = _f(4.0, "largest split (predictors + target, float32) held in memory by mode=auto", min=0.0)
    num_workers: int = _f(0, "DataLoader worker processes for the streaming path", min=0)
    block_days: int = _f(128, "days read per block by the streaming path (aligned to the dask time chunks)", min=1)
    chunk_days: int = _f(128, "dask chunk length along time when opening files", min=1)
    shuffle: bool = _f(True, "shuffle training samples (blocks, then samples within a block)")


@dataclass(frozen=True)
class OversamplingConfig:
    statistic: str = _f("none", "oversample extreme training days by a per-day statistic of the target (physical units): domain_mean (pr wetness), p99 (99th percentile over the cells: local intensity), heat (domain mean of the anomaly from the per-cell monthly training mean: tasmax); none = uniform shuffling", choices=("none", "domain_mean", "p99", "heat"))
    weighting: str = _f("rank", "weight = 1 + strength * g with g = the day's rank quantile 0..1 (rank) or (s - min) / (mean - min) of the statistic s (value: follows heavy tails)", choices=("rank", "value"))
    strength: float = _f(1.0, "strength of the oversampling (0 = uniform weights)", min=0.0)
    cap: float = _f(10.0, "largest weight as a multiple of the median weight", min=1.0)


@dataclass(frozen=True)
class DataConfig:
    source: str = _f("cordex", "cordex = benchmark directory layout under root; files = bring your own (see data.files)", choices=("cordex", "files"))
    root: str = _f("data/cordex", "folder that contains <DOMAIN>_domain/ (the extracted benchmark zip or the synthetic domain)")
    domain: str = _f("ALPS", "CORDEX ML-Bench domain", choices=("ALPS", "NZ", "SA"))
    experiment: str = _f("ESD_pseudo_reality", "training experiment", choices=("ESD_pseudo_reality", "Emulator_hist_future"))
    target_variable: str = _f("pr", "CORDEX variable to downscale (bring-your-own files name theirs in data.files.target_variable)", choices=("pr", "tasmax"))
    target_kind: str = _f("auto", "kind of the target: picks normalisation, non-negativity, indices and the bilinear predictor; auto = from CF standard_name, units, then name", choices=KIND_CHOICES)
    train_years: tuple[str, ...] = _f((), "training years as 'YYYY' or 'YYYY-YYYY' ranges; empty = experiment default (ESD 1961-1974; Emulator 1961-1980 + 2080-2089)")
    val_years: tuple[str, ...] = _f((), "validation years; empty = experiment default (ESD 1975-1980; Emulator 2090-2099)")
    test_years: tuple[str, ...] = _f((), "test years held out of training and validation (evaluate.py --split test for files, --split test_years for either source); empty = none")
    target_coarsen: int = _f(1, "block-average the target (and its mask and static field) by this factor after reading, e.g. 2: 128x128 -> 64x64, for quick experiments; a coarse cell is the mean of its finite fine cells (NaN only if all are NaN); the grid must be divisible by it", min=1)
    use_orography: bool = _f(True, "add the static orography (Static_fields.nc: orog) as an input covariate")
    normalization: NormalizationConfig = _f(NormalizationConfig, "normalisation per role", factory=True)
    loader: LoaderConfig = _f(LoaderConfig, "data loading", factory=True)
    oversampling: OversamplingConfig = _f(OversamplingConfig, "sampling of training days with replacement, weighted towards extremes (off by default); weights in <run>/sampling_weights.csv", factory=True)
    files: FilesConfig = _f(FilesConfig, "bring-your-own files (data.source: files)", factory=True)


@dataclass(frozen=True)
class GeneratorConfig:
    filters: int = _f(96, "channels of the coarse-resolution residual blocks", min=1)
    n_coarse_blocks: int = _f(4, "residual blocks of the U-shaped coarse-resolution trunk", min=1)
    upsample_channels: tuple[int, ...] = _f((96, 64, 32), "channels after each ×2 upsampling stage (one entry per stage)")
    dropout: float = _f(0.0, "MC dropout probability in every residual block, active when sampling members (an extra noise source; the latent noise is the main one)", min=0.0, max=1.0)
    noise_channels: int = _f(8, "channels of spatially correlated N(0,1) latent noise (drawn at half the working grid, bilinearly upsampled) concatenated to the trunk input; a fresh draw per member; 0 = none", min=0)
    stage_noise: bool = _f(True, "add one N(0,1) map per sample to the features of every upsampling stage with a learned per-channel scale (StyleGAN noise; fine-scale texture)")
    stage_noise_init: float = _f(0.0, "initial value of every stage-noise scale; at 0 the expected gradient of any loss w.r.t. a scale is 0 (the noise is symmetric), so only the adversarial loss can switch the noise on", min=0.0)
    noise_std: float = _f(1.0, "standard deviation of the latent and stage noise (0 with dropout 0 = deterministic generator)", min=0.0)
    working_grid: tuple[int, ...] = _f((), "coarse working grid (h, w); empty = ceil(target shape / 2**stages), but never coarser than the predictor grid")


@dataclass(frozen=True)
class DiscriminatorConfig:
    hr_channels: tuple[int, ...] = _f((128, 256, 256, 256, 128), "channels of the high-resolution residual path")
    lr_channels: tuple[int, ...] = _f((128, 128), "channels of the low-resolution (predictor) path")
    dropout: float = _f(0.3, "dropout probability", min=0.0, max=1.0)
    spectral_norm: bool = _f(True, "spectral normalisation on every convolution")


@dataclass(frozen=True)
class UNetConfig:
    channels: tuple[int, ...] = _f((32, 64, 128, 256), "channels of each U-Net level, finest first (the first level works on the target grid; each further level halves it)")
    convs_per_level: int = _f(2, "3x3 conv + GroupNorm + LeakyReLU layers per level, in the encoder and in the decoder", min=1)


@dataclass(frozen=True)
class ModelConfig:
    name: str = _f("spagan", "model from the registry: spagan (GAN), resgan (U-Net mean + SpaGAN residual), unet and deepesd (deterministic, masked MSE), bilinear (interpolation baseline)", choices=("spagan", "resgan", "unet", "deepesd", "bilinear"))
    doy_conditioning: str = _f("auto", "day-of-year conditioning: film = sin/cos(2π·doy/365.25) -> MLP -> per-channel scale and shift of the trunk features; auto = film for unet and resgan, none for spagan and deepesd (their published architectures); bilinear always uses the month through its own correction", choices=("auto", "none", "film"))
    generator: GeneratorConfig = _f(GeneratorConfig, "SpaGAN generator (resgan: the residual generator)", factory=True)
    discriminator: DiscriminatorConfig = _f(DiscriminatorConfig, "SpaGAN discriminator (resgan: sees the full field, mean + residual)", factory=True)
    unet: UNetConfig = _f(UNetConfig, "U-Net (unet; resgan: the conditional-mean network)", factory=True)
    base: str = _f("auto", "what the network's output is added to: interpolation = the bilinear baseline (bilinear_predictor interpolated with its per-cell monthly correction fitted on the training years; precipitation from the CORDEX predictors: the monthly training climatology), so the network learns the departure from it; none = the network predicts the field itself; auto = interpolation for GANs (spagan, resgan), none otherwise", choices=("none", "interpolation", "auto"))
    bilinear_predictor: str = _f("auto", "predictor interpolated by the bilinear baseline; auto = the predictor of the target's kind (t_850 for tasmax), none = the target's own training climatology")


@dataclass(frozen=True)
class LossConfig:
    content_loss: str = _f("crps", "generator content loss: crps = fair (ensemble) CRPS over the training.ensemble_size members per cell, masked (rewards calibrated spread); mean_l1_mse = l1_weight * L1 + mse_weight * MSE of the ensemble mean (a regression: penalises member spread)", choices=("crps", "mean_l1_mse"))
    l1_weight: float = _f(0.5, "weight of the L1 loss on the ensemble mean (content_loss: mean_l1_mse)", min=0.0)
    mse_weight: float = _f(1.0, "weight of the MSE loss on the ensemble mean (content_loss: mean_l1_mse)", min=0.0)
    spectral_weight: float = _f(0.3, "weight of a spectral loss added to the generator's loss: the benchmark's RALSD on each batch (dB^2 between the batch-mean radial power spectra of the members and of the truth, normalised space); rewards realistic fine-scale variance, which per-cell losses cannot see; outside the gradnorm balance (the adversarial term is measured against the per-cell content loss); under DDP each rank compares its own shard's spectra (its gradient is not the global batch's, unlike every other term); 0 = off. Precipitation-like targets only with spectral_for_precipitation", min=0.0)
    spectral_for_precipitation: bool = _f(False, "apply spectral_weight to precipitation-like targets too; off by default: in log1p-normalised space the spectral loss diverged on the skill benchmark's pr (validation RMSE 133 -> 3069 mm/day within 200 steps), while pr's RALSD is already realistic without it")
    mean_weight: float = _f(1.0, "resgan: weight of the masked MSE of the U-Net mean on its own output (keeps it the conditional mean; it is trained by this loss only)", min=0.0, min_exclusive=True)
    adversarial_balance: str = _f("gradnorm", "gradnorm = scale the adversarial term every step so its gradient at G's output is adversarial_weight times the content loss's (logged as g/gradnorm_content, g/gradnorm_adv, g/adv_scale); fixed = adversarial_weight is a plain loss weight", choices=("gradnorm", "fixed"))
    adversarial_weight: float = _f(0.2, "gradnorm: ratio of the adversarial to the content gradient norm at G's output; fixed: weight of the adversarial loss", min=0.0)
    adversarial_loss: str = _f("bce", "bce = non-saturating with one-sided label smoothing; hinge", choices=("bce", "hinge"))
    label_smoothing: float = _f(0.1, "one-sided label smoothing: real label = 1 - value (bce only)", min=0.0, max=0.5)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = _f("adam", "optimiser", choices=("adam", "adamw"))
    learning_rate: float = _f(1e-4, "peak learning rate", min=0.0, min_exclusive=True)
    beta1: float = _f(0.0, "Adam beta1", min=0.0, max=1.0)
    beta2: float = _f(0.999, "Adam beta2", min=0.0, max=1.0)
    weight_decay: float = _f(1e-4, "weight decay", min=0.0)


@dataclass(frozen=True)
class ScheduleConfig:
    warmup_epochs: int = _f(0, "linear warm-up length in epochs (the rate is stepped per epoch, so the whole first epoch runs at warmup_start_lr: 0 = start at the peak rate)", min=0)
    warmup_start_lr: float = _f(1e-6, "learning rate at the start of warm-up", min=0.0)
    plateau_epochs: int = _f(5, "epochs at the peak learning rate after warm-up", min=0)
    decay_gamma: float = _f(0.97, "exponential decay factor per epoch after the plateau", min=0.0, max=1.0, min_exclusive=True)


@dataclass(frozen=True)
class EmaConfig:
    enabled: bool = _f(True, "keep an exponential moving average of the generator's weights (G_ema; GANs only) and use it for validation, best.pt selection, evaluate.py, inference and submissions")
    decay: float = _f(0.999, "EMA decay per generator step, with warm-up: min(decay, (1 + t) / (10 + t)) at update t", min=0.0, max=1.0)


@dataclass(frozen=True)
class TrainingConfig:
    batch_size: int = _f(32, "samples per batch", min=1)
    epochs: int = _f(20, "training epochs", min=1)
    max_steps_per_epoch: int = _f(0, "cap on steps per epoch (0 = the whole training split)", min=0)
    n_critic: int = _f(2, "discriminator updates per generator update", min=1)
    ensemble_size: int = _f(4, "generator members per sample in the generator step (fair CRPS over them, or L1/MSE of their mean)", min=1)
    loss: LossConfig = _f(LossConfig, "loss weights and adversarial loss", factory=True)
    optimizer_g: OptimizerConfig = _f(lambda: OptimizerConfig(learning_rate=1e-3), "generator optimiser (also the optimiser of the deterministic models)", factory=True)
    optimizer_d: OptimizerConfig = _f(lambda: OptimizerConfig(name="adamw", learning_rate=5e-4), "discriminator optimiser", factory=True)
    schedule: ScheduleConfig = _f(ScheduleConfig, "learning-rate schedule (both networks)", factory=True)
    precision: str = _f("auto", "auto = bf16 autocast on CUDA, fp32 on CPU; fp16 uses separate grad scalers for G and D", choices=("auto", "fp32", "bf16", "fp16"))
    grad_clip_norm: float = _f(0.0, "clip gradient norm of each network to this value (0 = off)", min=0.0)
    seed: int = _f(0, "seed of every random number generator", min=0)
    deterministic: bool = _f(False, "deterministic algorithms (bit-reproducible on CPU; slower on GPU)")
    nonfinite_loss: str = _f("stop", "on a NaN/Inf loss: stop the run with an error, or skip the step", choices=("stop", "skip"))
    val_members: int = _f(3, "ensemble members predicted per validation day for diagnostics", min=1)
    ema: EmaConfig = _f(EmaConfig, "moving average of the generator's weights", factory=True)
    val_days: int = _f(0, "validation during training on this many days of the validation split, evenly spaced over it (a fixed subsample: the same days every epoch; also selects best.pt); 0 = the full split. evaluate.py always scores the full split", min=0)


@dataclass(frozen=True)
class LoggingConfig:
    plot_every_epochs: int = _f(1, "sample plots every N epochs (0 = never; the last epoch always plots)", min=0)
    diagnostics_every_epochs: int = _f(1, "validation diagnostics on the validation split (training.val_days of it) every N epochs", min=1)
    checkpoint_every_epochs: int = _f(5, "keep checkpoint_epoch_NNN.pt every N epochs (0 = never); last.pt is written every epoch", min=0)
    best_metric: str = _f("auto", "validation metric that selects best.pt; auto = val/crps (fair CRPS of the ensemble: rewards skill and calibrated spread, not a collapsed ensemble) for GANs, val/rmse for regression and fixed models")
    best_mode: str = _f("min", "whether smaller or larger best_metric is better (auto metrics are errors: min)", choices=("min", "max"))
    progress_bar: bool = _f(True, "progress with ETA for training steps and validation: a tqdm bar on a terminal; off a terminal or under SLURM a log line every 10 %")
    sample_day: int = _f(0, "index of the validation day drawn in sample plots", min=0)


@dataclass(frozen=True)
class RuntimeConfig:
    num_threads: int = _f(0, "CPU threads of torch (and dask) in training, evaluation and benchmarks; 0 = auto: OMP_NUM_THREADS, else SLURM_CPUS_PER_TASK, else the CPUs this process may use", min=0)


@dataclass(frozen=True)
class RunConfig:
    root: str = _f("runs", "folder in which run folders YYYYMMDD_HHMMSS_<id>/ are created")
    name: str = _f("", "optional suffix appended to the run folder name")


@dataclass(frozen=True)
class Config:
    data: DataConfig = _f(DataConfig, "data source, split, normalisation and loading", factory=True)
    model: ModelConfig = _f(ModelConfig, "model and its sizes", factory=True)
    training: TrainingConfig = _f(TrainingConfig, "optimisation", factory=True)
    logging: LoggingConfig = _f(LoggingConfig, "plots, diagnostics and checkpoints", factory=True)
    run: RunConfig = _f(RunConfig, "run folder", factory=True)
    runtime: RuntimeConfig = _f(RuntimeConfig, "CPU threads", factory=True)
    device: str = _f("auto", "auto = CUDA if available else CPU; or cpu, cuda, cuda:N")
    on_missing_gpu: str = _f("fallback", "when CUDA is requested but absent: fall back to CPU with a warning, or fail", choices=("fallback", "error"))
