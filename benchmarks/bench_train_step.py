"""Training-step throughput of SpaGAN on synthetic on-device tensors (CPU or CUDA).

One iteration = ``n_critic`` discriminator updates + 1 generator update, run through the package's
:func:`train_gan_step` with the optimisers the training session builds (fused Adam/AdamW on CUDA).
Shapes are the benchmark's: 15 predictors on 16x16, one static channel and the target on 128x128.
Batches are gathered (``index_select``) from a pool of samples held on the device, as the in-memory
loader does.

One JSON line per configuration (batch size x precision x options) on stdout:

* ``samples_per_s``: batch_size * steps / wall time of ``steps`` iterations (device synchronised before
  and after; no host sync inside the loop, as in the training loop);
* ``step_ms``, ``d_phase_ms`` (all ``n_critic`` D updates), ``g_phase_ms`` (the G update) and
  ``fakes_ms`` (the rest: the no-grad forward that draws the critic's fakes, masking): means per
  iteration. Phases are timed by wrapping the package's ``discriminator_step`` / ``generator_step``
  while ``train_gan_step`` runs (CUDA events on GPU, ``perf_counter`` on CPU); null if not seen;
* ``peak_mem_mb``: ``torch.cuda.max_memory_allocated`` over the timed steps (GPU), or the process's
  peak RSS (VmHWM, reset per configuration where the kernel allows) on CPU;
* ``gflop_per_sample``: FLOPs of one iteration counted by ``FlopCounterMode`` (eager, fp32, batch 1),
  forward + backward of both networks; ``achieved_tflops`` = gflop_per_sample * samples_per_s / 1e3 and
  ``fraction_of_peak`` = achieved / ``--peak-tflops`` (989 = H100 SXM dense bf16; meaningless on CPU);
* ``params_g`` / ``params_d``: parameter counts; ``load_avg_1min``: the machine load when the
  configuration started (other processes compete on shared machines).

Usage::

    python benchmarks/bench_train_step.py --device cpu --sizes small --batch-sizes 4 8 --steps 5
    python benchmarks/bench_train_step.py --device cuda --batch-sizes 32 64 128 --precision bf16 --compile on
    python benchmarks/bench_train_step.py --device cuda --ablation          # fp32 -> bf16 -> +channels_last
                                                                            # -> +compile -> +cudnn_benchmark
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ml_benchmark_spategan.config.schema import DiscriminatorConfig, GeneratorConfig, TrainingConfig
from ml_benchmark_spategan.cordex import PREDICTOR_VARIABLES, predictor_coords, target_coords
from ml_benchmark_spategan.model import spagan2d
from ml_benchmark_spategan.model.spagan2d import Discriminator, GanStepSettings, Generator, train_gan_step
from ml_benchmark_spategan.training.optim import build_optimizer, make_grad_scalers
from ml_benchmark_spategan.utils.threads import apply_num_threads

N_PREDICTORS = len(PREDICTOR_VARIABLES)
IN_SHAPE = tuple(len(predictor_coords("SA")[k]) for k in ("lat", "lon"))  # (16, 16)
OUT_SHAPE = tuple(len(target_coords("SA")[k]) for k in ("lat", "lon"))  # (128, 128)
STATIC_CHANNELS = 1
#: Network sizes: the defaults of the schema (the reference model) and a tiny one for smoke tests.
SIZES = {
    "reference": (GeneratorConfig(), DiscriminatorConfig()),
    "small": (GeneratorConfig(filters=16, n_coarse_blocks=2, upsample_channels=(16, 16, 8)),
              DiscriminatorConfig(hr_channels=(16, 32, 32, 32, 16), lr_channels=(16, 16))),
}
#: Ablation: each step adds one option to the previous one.
ABLATION = (
    ("fp32", {"precision": "fp32", "channels_last": False, "compile": False, "cudnn_benchmark": False}),
    ("bf16", {"precision": "bf16"}),
    ("+channels_last", {"channels_last": True}),
    ("+compile", {"compile": True}),
    ("+cudnn_benchmark", {"cudnn_benchmark": True}),
)
H100_BF16_DENSE_TFLOPS = 989.0


@dataclass(frozen=True)
class BenchConfig:
    device: str
    sizes: str = "reference"
    batch_size: int = 32
    precision: str = "fp32"
    compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = False
    cudnn_benchmark: bool = False
    steps: int = 10
    warmup: int = 2
    ensemble_size: int = 1
    n_critic: int = 2
    seed: int = 0


# --- device helpers (shared with bench_inference.py) ------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU raises."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA requested but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__})")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Markers that are CUDA events (no host sync when recorded) on GPU and perf_counter values on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def ms(self, start, end) -> float:
        """Milliseconds between two markers (CUDA: the device must have passed ``end``)."""
        return start.elapsed_time(end) if self.cuda else (end - start) * 1e3


def reset_peak_memory(device: torch.device) -> bool:
    """Reset the peak counter; False when the CPU peak (VmHWM) cannot be reset on this kernel."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: resets VmHWM to the current RSS
    except OSError:
        return False
    return True


def peak_memory_mb(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_mem_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                "peak_mem_kind": "cuda_max_memory_allocated"}
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    return {"peak_mem_mb": round(hwm / 1024, 1), "peak_mem_kind": "process_peak_rss"}


def environment(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{os.cpu_count()}"
    return {"device": device.type, "device_name": name, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "load_avg_1min": round(os.getloadavg()[0], 2)}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- models and data ---------------------------------------------------------------------------------
def build_models(cfg: BenchConfig, device: torch.device) -> tuple[Generator, Discriminator]:
    """Seeded generator and discriminator on ``device`` (channels_last and in-place compile as asked)."""
    torch.manual_seed(cfg.seed)
    g_cfg, d_cfg = SIZES[cfg.sizes]
    generator = Generator(N_PREDICTORS, IN_SHAPE, OUT_SHAPE, g_cfg, static_channels=STATIC_CHANNELS).to(device)
    discriminator = Discriminator(N_PREDICTORS, IN_SHAPE, OUT_SHAPE, d_cfg).to(device)
    for m in (generator, discriminator):
        if cfg.channels_last:
            m.to(memory_format=torch.channels_last)
        if cfg.compile:
            # In place: Generator.sample calls self(...), which then runs the compiled forward.
            m.compile(mode=cfg.compile_mode)
    return generator, discriminator


def build_optimizers(generator, discriminator, device: torch.device) -> tuple:
    """The training session's optimisers with the schema defaults (Adam for G, AdamW for D)."""
    t = TrainingConfig()
    return (build_optimizer(generator.parameters(), t.optimizer_g, device),
            build_optimizer(discriminator.parameters(), t.optimizer_d, device))


def synthetic_pool(n: int, device: torch.device, channels_last: bool, seed: int = 0) -> dict:
    """``n`` normalised samples on ``device``: x (n, 15, 16, 16), y (n, 1, 128, 128), mask (n, 1, 128, 128)
    with ~10 % invalid cells, and static (1, 1, 128, 128)."""
    gen = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(n, N_PREDICTORS, *IN_SHAPE, generator=gen)
    y = torch.randn(n, 1, *OUT_SHAPE, generator=gen)
    mask = (torch.rand(1, 1, *OUT_SHAPE, generator=gen) > 0.1).expand(n, -1, -1, -1).contiguous()
    static = torch.randn(1, STATIC_CHANNELS, *OUT_SHAPE, generator=gen)
    move = lambda t: t.to(device).contiguous(memory_format=fmt)  # noqa: E731
    return {"x_lr": move(x), "y_hr": move(y), "mask": move(mask), "static_hr": move(static)}


def batch_of(pool: dict, idx: torch.Tensor) -> dict:
    return {k: pool[k].index_select(0, idx) for k in ("x_lr", "y_hr", "mask")}


# --- phase timing ------------------------------------------------------------------------------------
@contextlib.contextmanager
def phase_timers(clock: Clock):
    """Wrap ``spagan2d.discriminator_step`` / ``generator_step`` (looked up by ``train_gan_step`` at call
    time) so each call records (phase, start, end) markers in the yielded list."""
    records: list[tuple[str, object, object]] = []
    originals = {"d": spagan2d.discriminator_step, "g": spagan2d.generator_step}

    def timed(phase, fn):
        def wrapper(*args, **kwargs):
            start = clock.mark()
            out = fn(*args, **kwargs)
            records.append((phase, start, clock.mark()))
            return out
        return wrapper

    spagan2d.discriminator_step = timed("d", originals["d"])
    spagan2d.generator_step = timed("g", originals["g"])
    try:
        yield records
    finally:
        spagan2d.discriminator_step, spagan2d.generator_step = originals["d"], originals["g"]


# --- FLOPs -------------------------------------------------------------------------------------------
def flops_per_sample(cfg: BenchConfig, device: torch.device, batch: int = 1) -> float:
    """FLOPs of one eager fp32 iteration (n_critic D updates + 1 G update) per sample."""
    eager = dataclasses.replace(cfg, compile=False, channels_last=False, precision="fp32")
    generator, discriminator = build_models(eager, device)
    opt_g, opt_d = build_optimizers(generator, discriminator, device)
    pool = synthetic_pool(batch, device, channels_last=False)
    settings = GanStepSettings(n_critic=cfg.n_critic, ensemble_size=cfg.ensemble_size, precision="fp32")
    with FlopCounterMode(display=False) as counter:
        train_gan_step(batch_of(pool, torch.arange(batch, device=device)), generator, discriminator, opt_g,
                       opt_d, settings, static_hr=pool["static_hr"])
    return counter.get_total_flops() / batch


# --- one configuration -------------------------------------------------------------------------------
class _Runner:
    """Models, optimisers, data and settings of one configuration; ``step()`` runs one iteration."""

    def __init__(self, cfg: BenchConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.generator, self.discriminator = build_models(cfg, device)
        self.opt_g, self.opt_d = build_optimizers(self.generator, self.discriminator, device)
        self.pool = synthetic_pool(max(4 * cfg.batch_size, 64), device, cfg.channels_last, cfg.seed)
        self.settings = GanStepSettings(n_critic=cfg.n_critic, ensemble_size=cfg.ensemble_size,
                                        precision=cfg.precision)
        self.scalers = make_grad_scalers(cfg.precision, device.type)
        self.index_gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.n_pool = self.pool["x_lr"].shape[0]

    def step(self) -> dict:
        if self.cfg.compile and self.cfg.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: earlier graph outputs may be reused
        idx = torch.randint(self.n_pool, (self.cfg.batch_size,), device=self.device, generator=self.index_gen)
        return train_gan_step(batch_of(self.pool, idx), self.generator, self.discriminator, self.opt_g,
                              self.opt_d, self.settings, scalers=self.scalers, static_hr=self.pool["static_hr"])


def _first_step(cfg: BenchConfig, device: torch.device) -> tuple[_Runner, float, str]:
    """Build and run one iteration (where compilation happens); on a compile failure, warn and rebuild
    eagerly. Returns (runner, seconds of the first iteration, compile status)."""
    runner = _Runner(cfg, device)
    t0 = time.perf_counter()
    try:
        runner.step()
    except Exception as err:  # any backend/compiler error: fall back to eager, say so, keep benchmarking
        if not cfg.compile:
            raise
        warnings.warn(f"torch.compile failed ({type(err).__name__}: {str(err)[:300]}); "
                      "benchmarking eager modules instead", stacklevel=2)
        torch.compiler.reset()
        runner = _Runner(dataclasses.replace(cfg, compile=False), device)
        t0 = time.perf_counter()
        runner.step()
        synchronize(device)
        return runner, time.perf_counter() - t0, "failed"
    synchronize(device)
    return runner, time.perf_counter() - t0, "on" if cfg.compile else "off"


def _phase_means(clock: Clock, records: list, steps: int) -> dict:
    totals = {"d": 0.0, "g": 0.0}
    counts = {"d": 0, "g": 0}
    for phase, start, end in records:
        totals[phase] += clock.ms(start, end)
        counts[phase] += 1
    if counts["g"] != steps:  # train_gan_step no longer calls the module-level functions
        return {"d_phase_ms": None, "g_phase_ms": None}
    return {"d_phase_ms": totals["d"] / steps, "g_phase_ms": totals["g"] / steps}


def run_config(cfg: BenchConfig, peak_tflops: float, flops: float | None = None) -> dict:
    """Benchmark one configuration; returns the JSON record (see the module docstring)."""
    device = torch.device(cfg.device)
    env = environment(device)
    torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    flops = flops_per_sample(cfg, device) if flops is None else flops
    reset_ok = reset_peak_memory(device)
    runner, first_s, compile_status = _first_step(cfg, device)
    for _ in range(cfg.warmup - 1):  # the first iteration counts as warm-up
        runner.step()
    clock = Clock(device)
    synchronize(device)
    with phase_timers(clock) as records:
        t0 = time.perf_counter()
        marks = [clock.mark()]
        for _ in range(cfg.steps):
            runner.step()
            marks.append(clock.mark())
        synchronize(device)
        wall = time.perf_counter() - t0
    step_ms = clock.ms(marks[0], marks[-1]) / cfg.steps
    phases = _phase_means(clock, records, cfg.steps)
    fakes_ms = None if phases["g_phase_ms"] is None else step_ms - phases["d_phase_ms"] - phases["g_phase_ms"]
    samples_per_s = cfg.batch_size * cfg.steps / wall
    achieved = flops * samples_per_s / 1e12
    record = {
        "benchmark": "train_step", **env, **dataclasses.asdict(cfg), "compile": compile_status,
        "samples_per_s": round(samples_per_s, 3), "step_ms": round(step_ms, 3),
        **{k: None if v is None else round(v, 3) for k, v in phases.items()},
        "fakes_ms": None if fakes_ms is None else round(fakes_ms, 3), "first_step_s": round(first_s, 3),
        **peak_memory_mb(device), "peak_mem_reset": reset_ok,
        "gflop_per_sample": round(flops / 1e9, 3), "achieved_tflops": round(achieved, 6),
        "peak_tflops": peak_tflops, "fraction_of_peak": round(achieved / peak_tflops, 8),
        "params_g": n_params(runner.generator), "params_d": n_params(runner.discriminator),
    }
    del runner
    torch.compiler.reset()
    return record


# --- command line ------------------------------------------------------------------------------------
def configurations(args, device: torch.device) -> list[tuple[str | None, BenchConfig]]:
    base = BenchConfig(
        device=str(device), sizes=args.sizes, precision=spagan2d.resolve_precision(args.precision, device.type),
        compile=args.compile == "on", compile_mode=args.compile_mode, channels_last=args.channels_last == "on",
        cudnn_benchmark=args.cudnn_benchmark == "on", steps=args.steps, warmup=args.warmup,
        ensemble_size=args.ensemble_size, n_critic=args.n_critic, seed=args.seed,
    )
    if not args.ablation:
        return [(None, dataclasses.replace(base, batch_size=b)) for b in args.batch_sizes]
    out = []
    for b in args.batch_sizes:
        cfg = dataclasses.replace(base, batch_size=b)
        for name, change in ABLATION:
            cfg = dataclasses.replace(cfg, **change)
            out.append((name, cfg))
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    on_off = ("on", "off")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto = bf16 on CUDA, fp32 on CPU (as training.precision)")
    p.add_argument("--compile", default="off", choices=on_off, help="torch.compile G and D (eager fallback)")
    p.add_argument("--compile-mode", default="default", choices=("default", "reduce-overhead", "max-autotune"),
                   help="torch.compile mode; reduce-overhead = CUDA graphs (removes per-kernel launch cost)")
    p.add_argument("--channels-last", default="off", choices=on_off)
    p.add_argument("--cudnn-benchmark", default="off", choices=on_off, help="off = as the training run")
    p.add_argument("--steps", type=int, default=20, help="timed iterations per configuration")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed iterations first; the first one (compilation) always runs, as first_step_s")
    p.add_argument("--ensemble-size", type=int, default=1)
    p.add_argument("--n-critic", type=int, default=2)
    p.add_argument("--sizes", default="reference", choices=sorted(SIZES))
    p.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS,
                   help="device peak for fraction_of_peak (989 = H100 SXM dense bf16)")
    p.add_argument("--ablation", action="store_true",
                   help="per batch size: " + " -> ".join(name for name, _ in ABLATION))
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads (0 = auto: OMP_NUM_THREADS, SLURM_CPUS_PER_TASK or the CPUs this process may use; "
                        "see ml_benchmark_spategan.utils.threads); 1 is much faster on an oversubscribed CPU")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or min(args.batch_sizes) < 1:
        p.error(f"--steps >= 1, --warmup >= 0 and batch sizes >= 1 expected, found steps={args.steps}, "
                f"warmup={args.warmup}, batch sizes={args.batch_sizes}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    apply_num_threads(args.threads)
    flops: dict[tuple, float] = {}  # FLOPs depend on sizes / n_critic / ensemble only: count once
    for name, cfg in configurations(args, device):
        key = (cfg.sizes, cfg.n_critic, cfg.ensemble_size)
        if key not in flops:
            flops[key] = flops_per_sample(cfg, device)
        record = run_config(cfg, args.peak_tflops, flops[key])
        if name is not None:
            record = {"ablation_step": name, **record}
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    sys.exit(main())
