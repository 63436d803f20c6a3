"""Inference throughput of the SpaGAN generator: ensemble fields per second over a test period.

A field is one member of one day on the 128x128 grid. Each configuration predicts ``--members`` members
for ``--days`` days of synthetic normalised predictors (15 x 16x16, host memory, float32) plus one static
channel, in batches of ``--batch-sizes`` days, and times everything a submission needs up to a host array
in physical units: host->device copy of the predictors, ``Generator.sample`` (MC dropout on), the inverse
target transform on the device (log1p_standardize of pr: ``expm1(y * scale + shift)`` clamped at 0) and
the device->host copy. Two paths:

* ``predict_array``: :func:`ml_benchmark_spategan.inference.predict_array` itself (the product path,
  output (member, time, H, W)); ``--precision`` is applied by an autocast around the call;
* ``pipelined``: output laid out (time, member, H, W), so each batch is one contiguous slice; the batch is
  copied (non-blocking) into one of two pinned staging buffers and moved into the output while the
  device computes the next batch (on CPU the same code runs without pinning).

One JSON line per configuration: ``fields_per_s`` = members * days / seconds, ``seconds``,
``peak_mem_mb`` (as in bench_train_step.py), ``gflop_per_field`` (FlopCounterMode, fp32 forward at
batch 1) and ``achieved_tflops``. With ``--write`` the pr ensemble and a second prediction as tasmax
(standardised inverse) are written with the submission writer (zlib level 1) and ``write_mb_per_s``
(raw MB of pr + tasmax in the template dtypes per second of writing), ``predict_mb_per_s`` (float32 MB
predicted per second) and ``write_over_predict`` (write time / time to predict both variables) are
added. An untrained generator's noisy fields compress worse than real ones, so file sizes are an upper bound.

Each record also has this process's CPU ``user_s``/``system_s`` and ``minor_faults`` during the timed
prediction (and writing), from ``resource.getrusage``. ``--legacy`` runs the previous prediction path
(``torch.no_grad``, a host copy per batch, freed memory returned to the kernel: ``ML_BENCH_KEEP_MEMORY=0``);
``--compare`` runs every configuration twice in fresh subprocesses, legacy then current, and adds a line
with the ratios (fields/s, minor faults, system time).

Usage::

    python benchmarks/bench_inference.py --device cpu --sizes reference --days 32 --batch-sizes 4 8
    python benchmarks/bench_inference.py --device cuda --batch-sizes 256 512 1024 --precision bf16 --write
    python benchmarks/bench_inference.py --device cpu --days 64 --batch-sizes 8 --threads 1 --write --compare
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from bench_train_step import (
    IN_SHAPE,
    N_PREDICTORS,
    OUT_SHAPE,
    SIZES,
    STATIC_CHANNELS,
    environment,
    n_params,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
    synchronize,
)
from torch.utils.flop_counter import FlopCounterMode

from ml_benchmark_spategan.dataloader.torch_bridge import TorchNormalizer
from ml_benchmark_spategan.inference import predict_array
from ml_benchmark_spategan.model.amp import autocast, resolve_precision
from ml_benchmark_spategan.model.spagan2d import Generator
from ml_benchmark_spategan.utils.memory import usage, usage_since
from ml_benchmark_spategan.utils.threads import apply_num_threads

#: Inverse transforms in the form of ``Normalizer.params()``: pr (log1p_standardize, mm/day), tasmax (K).
PR_PARAMS = {"log1p": True, "shift": np.full((1, 1, 1), 0.9, np.float32), "scale": np.full((1, 1, 1), 1.2, np.float32)}
TASMAX_PARAMS = {"log1p": False, "shift": np.full((1, 1, 1), 288.0, np.float32),
                 "scale": np.full((1, 1, 1), 9.0, np.float32)}
PATHS = ("predict_array", "pipelined")


def build_generator(sizes: str, device: torch.device, channels_last: bool, compile_: bool,
                    seed: int = 0, compile_mode: str = "default") -> Generator:
    """Seeded generator in eval mode with MC dropout on (members differ), as used for prediction."""
    torch.manual_seed(seed)
    generator = Generator(N_PREDICTORS, IN_SHAPE, OUT_SHAPE, SIZES[sizes][0], static_channels=STATIC_CHANNELS)
    generator = generator.to(device).eval()
    if channels_last:
        generator.to(memory_format=torch.channels_last)
    if compile_:
        generator.compile(mode=compile_mode)
    return generator


def synthetic_inputs(days: int, device: torch.device, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    """Normalised predictors (days, 15, 16, 16) float32 on the host and static (1, 1, 128, 128) on ``device``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((days, N_PREDICTORS, *IN_SHAPE), dtype=np.float32)
    static = torch.from_numpy(rng.standard_normal((1, STATIC_CHANNELS, *OUT_SHAPE), dtype=np.float32))
    return x, static.to(device)


def _run_for(generator: Generator, params: dict, device: torch.device) -> SimpleNamespace:
    """The parts of a ``LoadedRun`` that ``predict_array`` reads."""
    target = SimpleNamespace(params=lambda: params)
    return SimpleNamespace(bundle=SimpleNamespace(generator=generator), normalizers=SimpleNamespace(target=target),
                           device=device, geometry={"out_shape": OUT_SHAPE})


def predict_pipelined(generator: Generator, x_norm: np.ndarray, members: int, batch_size: int,
                      static_hr: torch.Tensor, params: dict, device: torch.device) -> np.ndarray:
    """Normalised predictors (T, C, h, w) -> physical ensemble (T, members, H, W) float32 (see module doc)."""
    inverse = TorchNormalizer(params, device)
    out = np.empty((x_norm.shape[0], members, *OUT_SHAPE), dtype=np.float32)
    pin = device.type == "cuda"
    staging = [torch.empty((batch_size, members, *OUT_SHAPE), pin_memory=pin) for _ in range(2)]
    pending = None  # (event or None, staging buffer, output slice) of the previous batch
    with torch.inference_mode():
        for i, start in enumerate(range(0, x_norm.shape[0], batch_size)):
            x = torch.from_numpy(x_norm[start:start + batch_size]).to(device, non_blocking=pin)
            phys = inverse.inverse(generator.sample(x, members, static_hr=static_hr).float())
            buf = staging[i % 2][:x.shape[0]]
            buf.copy_(phys, non_blocking=pin)
            event = torch.cuda.Event() if pin else None
            if event is not None:
                event.record()
            if pending is not None:
                _drain(pending, out)
            pending = (event, buf, slice(start, start + x.shape[0]))
        if pending is not None:
            _drain(pending, out)
    return out


def _drain(pending, out: np.ndarray) -> None:
    event, buf, rows = pending
    if event is not None:
        event.synchronize()  # the device->host copy into ``buf`` is complete
    out[rows] = buf.numpy()


@torch.no_grad()
def predict_array_legacy(run, x_norm: np.ndarray, members: int, batch_size: int, static_hr) -> np.ndarray:
    """The previous ``inference.predict_array`` (before the allocation changes), for ``--legacy``."""
    generator = run.bundle.generator.eval()
    inverse = TorchNormalizer.from_normalizer(run.normalizers.target, device=run.device)
    out = np.empty((members, x_norm.shape[0], *run.geometry["out_shape"]), dtype=np.float32)
    for start in range(0, x_norm.shape[0], batch_size):
        x = torch.from_numpy(x_norm[start:start + batch_size]).to(run.device)
        phys = inverse.inverse(generator.sample(x, members, static_hr=static_hr).float())
        out[:, start:start + x.shape[0]] = phys.permute(1, 0, 2, 3).cpu().numpy()
    return out


LEGACY = False  # set by --legacy


def predict(path: str, generator, x_norm, members, batch_size, static_hr, params, precision, device) -> np.ndarray:
    with autocast(precision, device.type):
        if path == "predict_array" and LEGACY:
            return predict_array_legacy(_run_for(generator, params, device), x_norm, members, batch_size, static_hr)
        if path == "predict_array":
            return predict_array(_run_for(generator, params, device), x_norm, members, batch_size, static_hr)
        return predict_pipelined(generator, x_norm, members, batch_size, static_hr, params, device)


def gflop_per_field(sizes: str, device: torch.device) -> float:
    generator = build_generator(sizes, device, channels_last=False, compile_=False)
    x, static = synthetic_inputs(1, device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        generator.sample(torch.from_numpy(x).to(device), 1, static_hr=static)
    return counter.get_total_flops() / 1e9


def timed_predict(args, path: str, batch_size: int, generator, x_norm, static, params, device) -> tuple:
    """(output array, seconds): one untimed warm-up batch, then the whole period."""
    precision = resolve_precision(args.precision, device.type)
    predict(path, generator, x_norm[:batch_size], args.members, batch_size, static, params, precision, device)
    synchronize(device)
    t0 = time.perf_counter()
    out = predict(path, generator, x_norm, args.members, batch_size, static, params, precision, device)
    synchronize(device)
    return out, time.perf_counter() - t0


# --- writing -----------------------------------------------------------------------------------------
def _as_dataarray(values: np.ndarray, path: str, domain: str, times: np.ndarray):
    import xarray as xr

    from ml_benchmark_spategan.submission.layout import MEMBER_DIM
    from ml_benchmark_spategan.submission.writer import template_like

    like = template_like(domain)
    row, col = like.dims
    dims = (MEMBER_DIM, "time", row, col) if path == "predict_array" else ("time", MEMBER_DIM, row, col)
    return xr.DataArray(values, dims=dims, coords={"time": times, row: like[row].values, col: like[col].values})


def write_both(out_dir: Path, path: str, pr: np.ndarray, tasmax: np.ndarray, domain: str, members: int) -> dict:
    """Write pr and tasmax with the submission writer; returns the write statistics."""
    import pandas as pd
    import xarray as xr

    from ml_benchmark_spategan.cordex import domain_spec
    from ml_benchmark_spategan.submission.writer import write_prediction_file

    spec = domain_spec(domain)
    days = pr.shape[0] if path == "pipelined" else pr.shape[1]
    times = (pd.date_range("2041-01-01", periods=days, freq="D") + pd.Timedelta(hours=spec.time_hour)).values
    predictor_time = xr.DataArray(times, dims="time", name="time")
    # float64: ALPS stamps at 12:00 are half days in its "days since" units
    predictor_time.encoding = {"units": spec.time_units, "calendar": spec.time_calendar, "dtype": "float64"}
    stats = write_prediction_file(out_dir / f"bench_{domain}_{path}.nc", _as_dataarray(pr, path, domain, times),
                                  _as_dataarray(tasmax, path, domain, times), domain, predictor_time, members)
    stats.path.unlink()
    return {"write_s": round(stats.seconds, 3), "write_raw_mb": round(stats.raw_bytes / 1e6, 1),
            "file_mb": round(stats.file_bytes / 1e6, 1), "write_mb_per_s": round(stats.mb_per_s, 1),
            "compression_ratio": round(stats.raw_bytes / stats.file_bytes, 3)}


# --- one configuration -------------------------------------------------------------------------------
def run_config(args, path: str, batch_size: int, device: torch.device, gflop: float) -> dict:
    env = environment(device)
    reset_ok = reset_peak_memory(device)
    generator = build_generator(args.sizes, device, args.channels_last == "on", args.compile == "on", args.seed,
                                args.compile_mode)
    x_norm, static = synthetic_inputs(args.days, device, args.seed)
    before = usage()
    pr, seconds = timed_predict(args, path, batch_size, generator, x_norm, static, PR_PARAMS, device)
    predict_usage = usage_since(before)
    fields = args.members * args.days
    record = {
        "benchmark": "inference", **env, "sizes": args.sizes, "path": path, "batch_size": batch_size,
        "members": args.members, "days": args.days, "precision": resolve_precision(args.precision, device.type),
        "compile": args.compile, "compile_mode": args.compile_mode, "channels_last": args.channels_last == "on",
        "fields_per_s": round(fields / seconds, 3), "seconds": round(seconds, 3),
        **peak_memory_mb(device), "peak_mem_reset": reset_ok, "gflop_per_field": round(gflop, 3),
        "achieved_tflops": round(gflop * fields / seconds / 1e3, 6), "params_g": n_params(generator),
        "variant": "legacy" if LEGACY else "current", **{f"predict_{k}": v for k, v in predict_usage.items()},
    }
    if args.write:
        before = usage()
        tasmax, seconds_tas = timed_predict(args, path, batch_size, generator, x_norm, static, TASMAX_PARAMS, device)
        with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
            write = write_both(Path(args.out_dir or tmp), path, pr, tasmax, args.domain, args.members)
        total = {k: round(predict_usage[k] + v, 3) for k, v in usage_since(before).items()}
        record.update({f"predict_write_{k}": v for k, v in total.items()},
                      predict_write_fields_per_s=round(2 * fields / (seconds + seconds_tas + write["write_s"]), 3))
        predict_mb = fields * int(np.prod(OUT_SHAPE)) * 4 / 1e6
        record.update(write, predict_mb_per_s=round(predict_mb / seconds, 1),
                      write_over_predict=round(write["write_s"] / (seconds + seconds_tas), 3))
    return record


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    on_off = ("on", "off")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--sizes", default="reference", choices=sorted(SIZES))
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--days", type=int, default=None, help="default: 7300 on CUDA, 32 on CPU")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                   help="days per batch; default: 256 512 1024 on CUDA, 8 on CPU")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="autocast dtype; auto = bf16 on CUDA, fp32 on CPU")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--compile", default="off", choices=on_off, help="torch.compile the generator (in place)")
    p.add_argument("--compile-mode", default="default", choices=("default", "reduce-overhead", "max-autotune"))
    p.add_argument("--channels-last", default="off", choices=on_off)
    p.add_argument("--write", action="store_true", help="also write pr + tasmax as a compressed NetCDF")
    p.add_argument("--domain", default="ALPS", choices=("ALPS", "NZ", "SA"), help="grid and dtypes for --write")
    p.add_argument("--out-dir", default=None, help="folder for --write (default: a temporary folder)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads (0 = auto: OMP_NUM_THREADS, SLURM_CPUS_PER_TASK or the CPUs this process may use; "
                        "see ml_benchmark_spategan.utils.threads); 1 is much faster on an oversubscribed CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--legacy", action="store_true", help="the previous prediction path (see the module docstring)")
    p.add_argument("--compare", action="store_true", help="legacy and current, each in a fresh subprocess")
    args = p.parse_args(argv)
    for name in ("members", "days"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name}: expected a positive number, found {value}")
    return args


RATIO_KEYS = ("fields_per_s", "predict_write_fields_per_s", "predict_minor_faults", "predict_system_s",
              "predict_write_minor_faults", "predict_write_system_s")


def compare(argv: list[str]) -> None:
    """Run legacy then current in fresh subprocesses; print both records and their ratios."""
    argv = [a for a in argv if a != "--compare"]
    runs = {}
    for variant in ("legacy", "current"):
        cmd = [sys.executable, __file__, *argv, *(["--legacy"] if variant == "legacy" else [])]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs[variant] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        for record in runs[variant]:
            print(json.dumps(record), flush=True)
    for old, new in zip(runs["legacy"], runs["current"], strict=True):
        ratios = {f"{k}_current_over_legacy": round(new[k] / old[k], 3) for k in RATIO_KEYS
                  if k in new and old.get(k)}
        print(json.dumps({"benchmark": "inference_compare", "path": new["path"], "batch_size": new["batch_size"],
                          **ratios}), flush=True)


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.compare:
        return compare(argv)
    global LEGACY
    LEGACY = args.legacy
    if LEGACY:
        os.environ["ML_BENCH_KEEP_MEMORY"] = "0"  # before anything calls keep_freed_memory
    device = resolve_device(args.device)
    apply_num_threads(args.threads)
    cuda = device.type == "cuda"
    args.days = args.days or (7300 if cuda else 32)
    batch_sizes = args.batch_sizes or ([256, 512, 1024] if cuda else [8])
    gflop = gflop_per_field(args.sizes, device)
    for path in args.paths:
        for batch_size in batch_sizes:
            print(json.dumps(run_config(args, path, batch_size, device, gflop)), flush=True)
            torch.compiler.reset()


if __name__ == "__main__":
    sys.exit(main())
