"""Write a complete synthetic domain tree: training experiments, static fields, test predictors, truth.

One *simulation* is a (GCM, 20-year period) pair; it is generated once and written to every file that
contains it, as in the benchmark, where the same RCM run feeds several files:

* GCM1 1961-1980: both experiments' training files (the Emulator file's first half);
* GCM1 2080-2099: the Emulator file's second half, the end-century perfect test file (in-sample) and
  its truth; its imperfect file adds the GCM1 biases;
* GCM1 1981-2000 / 2041-2060 and GCM2 for all three test periods: test files and truth.
"""

from __future__ import annotations

import queue
import threading
import zlib
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml_benchmark_spategan import cordex
from ml_benchmark_spategan.synthetic.climate import GCM_BIASES, bias_pattern, predictors, synoptic_state
from ml_benchmark_spategan.synthetic.orography import land_fraction, synthetic_orography
from ml_benchmark_spategan.synthetic.targets import FineGrid, target_chunk
from ml_benchmark_spategan.synthetic.timeaxis import time_axis
from ml_benchmark_spategan.synthetic.writer import NcFile, predictor_file, target_file, write_static

CHUNK_DAYS = 64  # target days generated per batch (keeps arrays ~ a few MB, RSS bounded)

# Predictor variable order per (domain, file kind): (bases, levels); the benchmark's files differ.
_ORDERS = {
    "ALPS": {"train": ("uvqtz", (850, 700, 500)), "perfect": ("uvtzq", (850, 700, 500)),
             "imperfect": ("uvtzq", (850, 700, 500))},
    "NZ": {"train": ("vuztq", (850, 700, 500)), "perfect": ("vuztq", (850, 700, 500)),
           "imperfect": ("tqzuv", (500, 700, 850))},
    "SA": {"train": ("tuvzq", (500, 700, 850)), "perfect": ("tuvzq", (500, 700, 850)),
           "imperfect": ("uvqtz", (850, 700, 500))},
}


def variable_order(domain: str, kind: str) -> list[str]:
    """Predictor variable order of a file kind ('train', 'perfect', 'imperfect') in ``domain``."""
    bases, levels = _ORDERS[cordex.domain_spec(domain).name][kind]
    return [f"{base}_{level}" for base in bases for level in levels]


class _AsyncWriter:
    """Writes chunks on a background thread (netCDF4 releases the GIL during I/O), so that writing
    overlaps with generating the next chunk. All files are created before and closed after it runs."""

    def __init__(self, depth: int = 3):
        self.jobs: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    job[0].write(*job[1:])
                except BaseException as exc:  # re-raised in the main thread by submit/close
                    self.error = exc

    def submit(self, nc: NcFile, start: int, axis, data: dict) -> None:
        if self.error is not None:
            raise RuntimeError(f"writing {nc.path} failed") from self.error
        self.jobs.put((nc, start, axis, data))

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        if self.error is not None:
            raise RuntimeError("writing a synthetic file failed") from self.error


@dataclass
class _Sink:
    """Where one simulation goes: files (opened by the caller) and the time offset in each."""

    perfect: list[tuple[NcFile, int]] = field(default_factory=list)
    imperfect: list[tuple[NcFile, int]] = field(default_factory=list)
    target: list[tuple[NcFile, int]] = field(default_factory=list)


def _seeds(seed: int, domain: str, gcm_index: int, first_year: int) -> list[int]:
    return [seed, zlib.crc32(domain.encode()), gcm_index, first_year]


def _simulate(spec, grid: FineGrid, seed: int, gcm_index: int, years: tuple[int, int], sink: _Sink,
              writer: _AsyncWriter) -> None:
    """Generate one simulation and write its predictors and targets to the files in ``sink``."""
    gcm = spec.gcms[gcm_index]
    axis = time_axis(spec, gcm, *years)
    keys = _seeds(seed, spec.name, gcm_index, years[0])
    state = synoptic_state(keys, len(axis))
    bias = GCM_BIASES[gcm_index]
    perfect = predictors(spec, axis, state, bias, imperfect=False)
    for nc, offset in sink.perfect:
        writer.submit(nc, offset, axis, perfect)
    if sink.imperfect:
        pattern = bias_pattern(_seeds(seed, spec.name, gcm_index, 0) + [7])
        imperfect = predictors(spec, axis, state, bias, imperfect=True, pattern=pattern)
        for nc, offset in sink.imperfect:
            writer.submit(nc, offset, axis, imperfect)
    if not sink.target:
        return
    previous = None
    for chunk, start in enumerate(range(0, len(axis), CHUNK_DAYS)):
        stop = min(start + CHUNK_DAYS, len(axis))
        rng = np.random.default_rng(keys + [100 + chunk])
        fields = {k: perfect[k][start:stop] for k in ("t_850", "z_850", "q_850", "u_850", "v_850")}
        pr, tasmax, previous = target_chunk(grid, fields, state["omega"][start:stop], rng, previous)
        for nc, offset in sink.target:
            writer.submit(nc, offset + start, axis.slice(start, stop), {"pr": pr, "tasmax": tasmax})


def _n_days(spec, gcm: str, years: tuple[int, int]) -> int:
    return len(time_axis(spec, gcm, *years))


def _check_args(domain: str, years: int) -> cordex.DomainSpec:
    spec = cordex.domain_spec(domain)
    if isinstance(years, bool) or not isinstance(years, int) or not 1 <= years <= 20:
        raise ValueError(f"years must be an integer in 1..20 (years per period), got {years!r}")
    return spec


def generate_domain(out_root: str | Path, domain: str, years: int = 20, seed: int = 0, truth: bool = True) -> Path:
    """Write the synthetic ``<domain>_domain`` tree (and ``<domain>_domain_truth``) under ``out_root``.

    ``years``: years per period (1..20; file names keep the full period labels); ``seed``: the weather
    (orography depends on the domain only); ``truth``: also write the test periods' pr/tasmax.
    Returns ``cordex.domain_dir(out_root, domain)``.
    """
    spec = _check_args(domain, years)
    root = Path(out_root)
    orog = synthetic_orography(spec.name)
    for experiment in cordex.EXPERIMENTS:
        write_static(cordex.static_fields_path(root, spec.name, experiment), spec, orog, land_fraction(orog))
    grid = FineGrid(spec.name, orog)
    span = {name: (first, first + years - 1) for name, (first, _) in cordex.TEST_PERIODS.items()}
    span["train"] = (1961, 1960 + years)
    with ExitStack() as stack:
        plan = _plan(stack, root, spec, span, truth)
        writer = _AsyncWriter()
        try:
            for gcm_index, period, sink in plan:
                _simulate(spec, grid, seed, gcm_index, period, sink, writer)
        finally:
            writer.close()
    return cordex.domain_dir(root, spec.name)


def _plan(stack: ExitStack, root: Path, spec, span: dict, truth: bool) -> list:
    """Open every output file and return the simulations as (gcm index, years, sink)."""
    name, gcm1 = spec.name, spec.gcm1

    def open_file(factory, path, gcm, years, n_days, *args):
        return stack.enter_context(factory(path, spec, time_axis(spec, gcm, *years), n_days, *args))

    n_train = _n_days(spec, gcm1, span["train"])
    n_total = n_train + _n_days(spec, gcm1, span["end_century"])
    train, future = _Sink(), _Sink()
    for experiment, n_days in zip(cordex.EXPERIMENTS, (n_train, n_total), strict=True):
        path = cordex.train_predictor_path(root, name, experiment)
        train.perfect.append((open_file(predictor_file, path, gcm1, span["train"], n_days,
                                        variable_order(name, "train")), 0))
        path = cordex.train_target_path(root, name, experiment)
        train.target.append((open_file(target_file, path, gcm1, span["train"], n_days), 0))
    future.perfect.append((train.perfect[1][0], n_train))
    future.target.append((train.target[1][0], n_train))
    plan = [(0, span["train"], train)]
    for gcm_index, gcm in enumerate(spec.gcms):
        for period in cordex.TEST_PERIODS:
            sink = future if (gcm_index, period) == (0, "end_century") else _Sink()
            n_days = _n_days(spec, gcm, span[period])
            for kind in cordex.PREDICTOR_KINDS:
                path = cordex.test_predictor_path(root, name, period, kind, gcm)
                nc = open_file(predictor_file, path, gcm, span[period], n_days, variable_order(name, kind))
                getattr(sink, kind).append((nc, 0))
            if truth:
                path = cordex.truth_path(root, name, period, gcm)
                sink.target.append((open_file(target_file, path, gcm, span[period], n_days), 0))
            plan.append((gcm_index, span[period], sink))
    return plan
