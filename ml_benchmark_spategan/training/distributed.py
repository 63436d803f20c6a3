"""Distributed data-parallel setup for torchrun and SLURM (``srun``), one process per GPU.

Where the rank comes from, in this order:

* torchrun (or any launcher that exports them): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``;
* SLURM ``srun``: ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (the step's task count; ``SLURM_NTASKS``,
  the allocation's, when the step variable is absent), ``SLURM_LOCALID``;
* neither: one process (rank 0 of 1), and no process group is created.

The rendezvous address is ``MASTER_ADDR`` / ``MASTER_PORT`` when set (torchrun sets both). Under SLURM
the address defaults to the first host of ``SLURM_JOB_NODELIST`` and the port to
``20000 + SLURM_JOB_ID % 20000``, so that two jobs sharing a node do not collide; without SLURM the
defaults are 127.0.0.1 and 29500.

Conventions for the training loop (nanoGPT style: rank 0 does all I/O): every rank builds the same models
and wraps them with :func:`wrap_ddp` (which copies rank 0's weights to all ranks); each rank reads its own
share of the data; statistics are averaged with :func:`reduce_mean`; only rank 0 writes files,
and it saves the unwrapped model's ``state_dict()`` so checkpoints carry no ``module.`` prefix.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = 29500
SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 20000  # ports 20000..39999 derived from the job id
SEED_STRIDE = 1_000_003  # a prime: rank seeds seed + k * stride do not collide for nearby seeds
# Longest wait in a collective before the group aborts. Generous, because the other ranks wait at a
# barrier while rank 0 alone validates on the full validation split and writes plots and checkpoints.
DEFAULT_TIMEOUT = datetime.timedelta(minutes=60)


class DistributedError(RuntimeError):
    """The launcher's environment is inconsistent or the process group cannot be set up."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node.

    ``backend`` is ``nccl``/``gloo`` when a process group exists, None for a single process; ``device``
    is the device this rank computes on (``cuda:<local GPU>`` or ``cpu``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


# --- environment ------------------------------------------------------------------------------------
def _int_var(environ: Mapping[str, str], name: str) -> int:
    value = environ[name]
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}: expected an integer, found {value!r}") from None


def env_info(environ: Mapping[str, str] = os.environ) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables, else SLURM's, else (0, 1, 0)."""
    torchrun = ("RANK", "WORLD_SIZE")
    if any(k in environ for k in torchrun):
        missing = [k for k in torchrun if k not in environ]
        if missing:
            raise DistributedError(f"environment: {', '.join(missing)} missing although "
                                   f"{', '.join(k for k in torchrun if k in environ)} is set (torchrun sets both)")
        rank, world = _int_var(environ, "RANK"), _int_var(environ, "WORLD_SIZE")
        local = _int_var(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else 0
        source = "RANK/WORLD_SIZE"
    elif "SLURM_PROCID" in environ:
        size_var = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in environ else "SLURM_NTASKS"
        rank = _int_var(environ, "SLURM_PROCID")
        world = _int_var(environ, size_var) if size_var in environ else 1
        local = _int_var(environ, "SLURM_LOCALID") if "SLURM_LOCALID" in environ else 0
        source = f"SLURM_PROCID/{size_var}"
    else:
        return 0, 1, 0
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DistributedError(f"environment {source}: expected 0 <= rank < world_size and local rank >= 0, "
                               f"found rank {rank}, world_size {world}, local rank {local}")
    return rank, world, local


_HOST_RE = re.compile(r"\[([^\[\]]*)\]")


def _expand_ranges(spec: str, nodelist: str) -> list[str]:
    """'01-03,07' -> ['01', '02', '03', '07'] (zero padding kept)."""
    out = []
    for part in spec.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise DistributedError(f"SLURM nodelist {nodelist!r}: cannot parse range {part!r} in [{spec}]")
        if not sep:
            out.append(lo)
            continue
        if int(hi) < int(lo):
            raise DistributedError(f"SLURM nodelist {nodelist!r}: range {part!r} runs backwards")
        out.extend(str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1))
    return out


def _split_top_level(nodelist: str) -> list[str]:
    """Split at commas outside brackets: 'a[1,2],b' -> ['a[1,2]', 'b']."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth not in (0, 1):
            raise DistributedError(f"SLURM nodelist {nodelist!r}: unbalanced or nested brackets")
        if ch == "," and depth == 0:
            parts.append(nodelist[start:i])
            start = i + 1
    if depth != 0:
        raise DistributedError(f"SLURM nodelist {nodelist!r}: unbalanced brackets")
    return parts + [nodelist[start:]]


def parse_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM host list: 'node[01-03],gpu7' -> ['node01', 'node02', 'node03', 'gpu7'].

    Several bracket groups in one name expand as a product ('r[1-2]n[1-2]' -> r1n1, r1n2, r2n1, r2n2).
    """
    hosts: list[str] = []
    for name in _split_top_level(nodelist.strip()):
        if not name:
            raise DistributedError(f"SLURM nodelist {nodelist!r}: empty host name")
        expanded = [""]
        pos = 0
        for match in _HOST_RE.finditer(name):
            prefix = name[pos:match.start()]
            expanded = [e + prefix + n for e in expanded for n in _expand_ranges(match.group(1), nodelist)]
            pos = match.end()
        tail = name[pos:]
        if "[" in tail or "]" in tail:
            raise DistributedError(f"SLURM nodelist {nodelist!r}: cannot parse host {name!r}")
        hosts.extend(e + tail for e in expanded)
    return hosts


def _scontrol_first_host(nodelist: str) -> str | None:
    if shutil.which("scontrol") is None:
        return None
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=False)
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


def master_address(environ: Mapping[str, str] = os.environ) -> str:
    """``MASTER_ADDR``, else the first host of ``SLURM_JOB_NODELIST`` (``SLURM_NODELIST``), else 127.0.0.1."""
    if environ.get("MASTER_ADDR"):
        return environ["MASTER_ADDR"]
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodelist:
        return DEFAULT_MASTER_ADDR
    try:
        return parse_nodelist(nodelist)[0]
    except DistributedError:
        # Host-list syntax this parser does not know: ask SLURM itself before giving up.
        host = _scontrol_first_host(nodelist)
        if host is None:
            raise
        return host


def master_port(environ: Mapping[str, str] = os.environ) -> int:
    """``MASTER_PORT``, else ``20000 + SLURM_JOB_ID % 20000``, else 29500."""
    if environ.get("MASTER_PORT"):
        return _int_var(environ, "MASTER_PORT")
    if environ.get("SLURM_JOB_ID"):
        return SLURM_PORT_BASE + _int_var(environ, "SLURM_JOB_ID") % SLURM_PORT_SPAN
    return DEFAULT_MASTER_PORT


# --- process group ----------------------------------------------------------------------------------
def _rank_device(device_request: torch.device, local_rank: int) -> torch.device:
    """cuda:<local_rank> for a CUDA request (cuda:0 when each task sees one GPU only), else the request."""
    if device_request.type != "cuda":
        return device_request
    visible = torch.cuda.device_count()
    if visible == 1:  # e.g. srun --gpus-per-task=1: each task sees exactly its own GPU
        return torch.device("cuda", 0)
    if local_rank >= visible:
        raise DistributedError(f"local rank {local_rank} needs its own GPU but only {visible} CUDA device(s) are "
                               "visible on this node; start one task per GPU")
    return torch.device("cuda", local_rank)


def setup(device_request: torch.device, environ: Mapping[str, str] | None = None,
          timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> DistInfo:
    """Join the process group described by the environment (see the module docstring).

    One process: nothing is initialised and ``DistInfo(0, 1, 0, None, device_request)`` is returned.
    Several: NCCL on CUDA (this rank's GPU becomes the current device), gloo on CPU; ``MASTER_ADDR``,
    ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are exported to ``os.environ`` when
    missing (SLURM launches) and the group is joined with ``init_method='env://'``. ``timeout``: the
    longest wait in a collective (see ``DEFAULT_TIMEOUT``).
    """
    environ = os.environ if environ is None else environ
    rank, world, local = env_info(environ)
    if world == 1:
        return DistInfo(0, 1, 0, None, device_request)
    device = _rank_device(device_request, local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    defaults = {"MASTER_ADDR": master_address(environ), "MASTER_PORT": str(master_port(environ)),
                "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(local)}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, timeout=timeout)
    return DistInfo(rank, world, local, backend, device)


def cleanup() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if not _active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


# --- collectives --------------------------------------------------------------------------------------
def reduce_mean(stats: Mapping[str, float | torch.Tensor], info: DistInfo) -> dict[str, float]:
    """Mean over ranks of each scalar in ``stats`` -> plain floats (one all_reduce, one host sync).

    Every rank must pass the same keys in the same order. Values are floats or 0-dim tensors on any
    device; the sum is taken in float64 on ``info.device``. NaN on any rank gives NaN.
    """
    keys = list(stats)
    if not keys:
        return {}
    values = torch.stack([torch.as_tensor(stats[k]).detach().to(info.device, torch.float64).reshape(()) for k in keys])
    if info.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= info.world_size
    return dict(zip(keys, values.cpu().tolist(), strict=True))


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank if ``flag`` is True on any rank (e.g. a stop signal seen by one rank only)."""
    if not info.distributed:
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """Rank ``src``'s ``obj`` (any picklable object) on every rank; the argument of other ranks is ignored."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=info.device if info.backend == "nccl" else None)
    return box[0]


# --- models -------------------------------------------------------------------------------------------
def wrap_ddp(module: nn.Module, info: DistInfo) -> nn.Module:
    """``module`` in DistributedDataParallel (rank 0's weights and buffers are copied to all ranks).

    Identity for one process and for modules with no trainable parameters (the bilinear baseline).
    The module must already be on ``info.device``. Every parameter takes part in every backward pass of
    this project's models, so ``find_unused_parameters`` stays off.
    """
    if not info.distributed or not any(p.requires_grad for p in module.parameters()):
        return module
    if info.device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[info.device.index], output_device=info.device.index)
    return DistributedDataParallel(module)


def rank_seed(seed: int, rank: int) -> int:
    """Seed of ``rank`` derived from the run's ``seed``: rank 0 keeps ``seed`` (a 1-process run is unchanged),
    other ranks differ (different dropout masks and data order); in [0, 2**32) as numpy requires."""
    if seed < 0 or rank < 0:
        raise ValueError(f"rank_seed: expected seed >= 0 and rank >= 0, found seed {seed}, rank {rank}")
    return (seed + SEED_STRIDE * rank) % 2**32
