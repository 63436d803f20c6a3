"""The benchmark scripts: tiny CPU runs as subprocesses (JSON lines with consistent numbers), plus
in-process checks of their FLOP counts, phase timers, compile fallback and prediction paths."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_inference as bi  # noqa: E402
import bench_train_step as bt  # noqa: E402

from ml_benchmark_spategan.model import spagan2d  # noqa: E402
from ml_benchmark_spategan.model.blocks import MCDropout  # noqa: E402
from ml_benchmark_spategan.model.noise import set_noise_std  # noqa: E402

TRAIN_KEYS = {"benchmark", "device", "torch", "threads", "load_avg_1min", "sizes", "batch_size", "precision",
              "compile", "channels_last", "steps", "warmup", "ensemble_size", "n_critic", "samples_per_s",
              "step_ms", "d_phase_ms", "g_phase_ms", "fakes_ms", "first_step_s", "peak_mem_mb", "peak_mem_kind",
              "gflop_per_sample", "achieved_tflops", "peak_tflops", "fraction_of_peak", "params_g", "params_d"}
INFER_KEYS = {"benchmark", "device", "sizes", "path", "batch_size", "members", "days", "precision",
              "fields_per_s", "seconds", "peak_mem_mb", "gflop_per_field", "achieved_tflops", "params_g",
              "write_s", "write_mb_per_s", "file_mb", "compression_ratio", "predict_mb_per_s", "write_over_predict"}


TRAIN_ARGS = ("--batch-sizes", "1", "2", "--steps", "1", "--warmup", "0")
INFER_ARGS = ("--days", "4", "--members", "2", "--batch-sizes", "4", "--write")


@pytest.fixture(scope="module")
def cli_records() -> dict[str, list[dict]]:
    """JSON lines of both scripts, run at the same time (tiny settings, one thread each)."""
    procs = {}
    for script, args in (("bench_train_step.py", TRAIN_ARGS), ("bench_inference.py", INFER_ARGS)):
        cmd = [sys.executable, str(BENCH / script), "--device", "cpu", "--sizes", "small", "--threads", "1", *args]
        procs[script] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         cwd=BENCH.parent)
    out = {}
    for script, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-2000:]
        out[script] = [json.loads(line) for line in stdout.splitlines()]
    return out


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_train_step_cli_prints_one_consistent_line_per_batch_size(cli_records):
    records = cli_records["bench_train_step.py"]
    assert [r["batch_size"] for r in records] == [1, 2]
    for r in records:
        assert TRAIN_KEYS <= set(r), TRAIN_KEYS - set(r)
        assert (r["benchmark"], r["device"], r["precision"], r["compile"], r["threads"]) == (
            "train_step", "cpu", "fp32", "off", 1)
        for key in ("samples_per_s", "step_ms", "d_phase_ms", "g_phase_ms", "gflop_per_sample", "peak_mem_mb"):
            assert _positive(r[key]), (key, r[key])
        # samples/s from the wall clock and step_ms from per-step markers time the same loop
        assert r["samples_per_s"] == pytest.approx(1e3 * r["batch_size"] / r["step_ms"], rel=0.05)
        assert r["d_phase_ms"] + r["g_phase_ms"] <= r["step_ms"] + 1e-3
        assert r["fakes_ms"] == pytest.approx(r["step_ms"] - r["d_phase_ms"] - r["g_phase_ms"], abs=2e-3)
        assert r["achieved_tflops"] == pytest.approx(r["gflop_per_sample"] * r["samples_per_s"] / 1e3, rel=1e-2)
        assert r["fraction_of_peak"] == pytest.approx(r["achieved_tflops"] / 989.0, rel=1e-2)
    assert records[0]["gflop_per_sample"] == records[1]["gflop_per_sample"]


def test_inference_cli_with_write(cli_records):
    records = cli_records["bench_inference.py"]
    assert [r["path"] for r in records] == ["predict_array", "pipelined"]
    for r in records:
        assert INFER_KEYS <= set(r), INFER_KEYS - set(r)
        for key in ("fields_per_s", "seconds", "gflop_per_field", "write_mb_per_s", "file_mb", "predict_mb_per_s"):
            assert _positive(r[key]), (key, r[key])
        assert r["fields_per_s"] == pytest.approx(2 * 4 / r["seconds"], rel=0.01)
        # ALPS: pr and tasmax float32, 4 days x 2 members x 128 x 128
        assert r["write_raw_mb"] == pytest.approx(2 * 4 * 2 * 128 * 128 * 4 / 1e6, abs=0.06)


@pytest.fixture(autouse=True)
def one_thread():
    """In-process tests run single-threaded: much faster than 2 OpenMP threads on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_bad_arguments_are_rejected(capsys):
    with pytest.raises(SystemExit):
        bt.parse_args(["--steps", "0"])
    assert "--steps >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bi.parse_args(["--members", "0"])
    assert "--members: expected a positive number, found 0" in capsys.readouterr().err


def _conv_flops(module: nn.Module, *inputs) -> int:
    """Brute force: 2 * C_in/groups * k_h * k_w per output element of every Conv2d."""
    total = 0

    def hook(m, _, out):
        nonlocal total
        total += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        module(*inputs)
    for h in handles:
        h.remove()
    return total


def test_flop_count_of_the_generator_equals_the_sum_over_its_convolutions():
    device = torch.device("cpu")
    generator = bi.build_generator("small", device, channels_last=False, compile_=False)
    x, static = bi.synthetic_inputs(1, device)
    expected = _conv_flops(generator, torch.from_numpy(x), static)
    assert bi.gflop_per_field("small", device) == pytest.approx(expected / 1e9, rel=1e-6)


def test_train_flops_scale_with_n_critic_like_the_discriminator_phase():
    """One more critic phase adds exactly one D update: D fwd+bwd on 2B (real+fake) and one more fake."""
    device = torch.device("cpu")
    f1, f2, f3 = (bt.flops_per_sample(bt.BenchConfig("cpu", "small", n_critic=n), device) for n in (1, 2, 3))
    assert f3 - f2 == pytest.approx(f2 - f1, rel=1e-9) and f2 - f1 > 0


def test_phase_timers_record_each_call_and_restore_the_package_functions():
    originals = (spagan2d.discriminator_step, spagan2d.generator_step)
    runner = bt._Runner(bt.BenchConfig("cpu", "small", batch_size=1, n_critic=3), torch.device("cpu"))
    with bt.phase_timers(bt.Clock(torch.device("cpu"))) as records:
        runner.step()
    assert [r[0] for r in records] == ["d", "d", "d", "g"]
    assert all(end >= start for _, start, end in records)
    assert (spagan2d.discriminator_step, spagan2d.generator_step) == originals


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("backend exploded")
        return spagan2d.train_gan_step(*args, **kwargs)

    monkeypatch.setattr(bt, "train_gan_step", failing_once)
    cfg = bt.BenchConfig("cpu", "small", batch_size=1, compile=True)
    with pytest.warns(UserWarning, match="torch.compile failed .*backend exploded"):
        runner, _, status = bt._first_step(cfg, torch.device("cpu"))
    assert status == "failed" and not runner.cfg.compile and len(calls) == 2


def test_ablation_adds_one_option_per_step():
    args = bt.parse_args(["--device", "cpu", "--ablation", "--batch-sizes", "8", "--precision", "fp16"])
    steps = bt.configurations(args, torch.device("cpu"))
    assert [name for name, _ in steps] == ["fp32", "bf16", "+channels_last", "+compile", "+cudnn_benchmark"]
    flags = [(c.precision, c.channels_last, c.compile, c.cudnn_benchmark) for _, c in steps]
    assert flags == [("fp32", False, False, False), ("bf16", False, False, False), ("bf16", True, False, False),
                     ("bf16", True, True, False), ("bf16", True, True, True)]


def test_pipelined_path_equals_predict_array_transposed_and_denormalises():
    device = torch.device("cpu")
    generator = bi.build_generator("small", device, channels_last=False, compile_=False)
    for m in generator.modules():  # deterministic: both paths see the same network
        if isinstance(m, MCDropout):
            m.always_on = False
    set_noise_std(generator, 0.0)
    x, static = bi.synthetic_inputs(5, device)
    ref = bi.predict("predict_array", generator, x, 2, 2, static, bi.PR_PARAMS, "fp32", device)
    pip = bi.predict("pipelined", generator, x, 2, 2, static, bi.PR_PARAMS, "fp32", device)
    assert ref.shape == (2, 5, 128, 128) and pip.shape == (5, 2, 128, 128)
    np.testing.assert_allclose(pip, ref.transpose(1, 0, 2, 3), rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        y = generator.sample(torch.from_numpy(x), 2, static_hr=static)
    expected = np.clip(np.expm1(y.numpy() * 1.2 + 0.9), 0.0, None)  # PR_PARAMS: scale 1.2, shift 0.9
    np.testing.assert_allclose(pip, expected, rtol=1e-5, atol=1e-6)


def test_bench_metrics_ours_equal_the_official_formulas():
    """Every recommended metric gives the official formulas' numbers on a small synthetic period (float64
    data: on float32 the official side sums in float32, see benchmarks/README.md)."""
    import bench_metrics as bm

    x0, x1 = (x.astype("float64") for x in bm.synthetic(days=730, size=16, seed=3))
    jobs = bm.recommended(x0, x1)
    assert len(jobs) == 14
    for name, (ours, official) in jobs.items():
        _, got = bm.timed(ours)
        _, ref = bm.timed(official)
        assert got.shape == ref.shape and bm.compare(got, ref) < 1e-9, name
