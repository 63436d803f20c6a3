"""Distributed setup: launcher environments, host lists, collectives and a DDP GAN step on 2 gloo processes.

The 2-process tests run once per module (``ddp_results``): two CPU processes join a gloo group through
torchrun-style variables, exercise the collectives and run two ``train_gan_step``s with DDP-wrapped
networks, each on half of a fixed global batch, and save what they saw. The tests then compare the ranks
with each other and with a single-process run on the full batch.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ml_benchmark_spategan.config.schema import DiscriminatorConfig, GeneratorConfig, LossConfig
from ml_benchmark_spategan.model.spagan2d import Discriminator, GanStepSettings, Generator, train_gan_step
from ml_benchmark_spategan.training import distributed as D

IN, OUT, C = (8, 8), (32, 32), 3
GLOBAL_BATCH, WORLD, N_STEPS = 4, 2, 2
# Dropout and noise 0: the 2-process and 1-process runs draw different dropout masks and noise otherwise.
G_CFG = GeneratorConfig(filters=8, n_coarse_blocks=2, upsample_channels=(8, 8), dropout=0.0, noise_std=0.0)
D_CFG = DiscriminatorConfig(hr_channels=(8, 8, 8), lr_channels=(8,), dropout=0.0)
# The spectral loss compares batch-mean spectra, which under DDP are each rank's shard's (like unsynchronised
# batch statistics): it is the one term whose DDP gradient is not the global batch's, so it is off here.
SETTINGS = GanStepSettings(n_critic=2, ensemble_size=2, precision="fp32", loss=LossConfig(spectral_weight=0.0))
LR = 0.05


# --- launcher environment -------------------------------------------------------------------------
def test_env_info_reads_torchrun_variables_first():
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    assert D.env_info(env) == (3, 8, 1)
    assert D.env_info({"RANK": "0", "WORLD_SIZE": "1"}) == (0, 1, 0)


def test_env_info_reads_slurm_variables():
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    assert D.env_info(env) == (5, 8, 1)
    # Inside an srun step the step's task count wins over the allocation's.
    assert D.env_info({**env, "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2"}) == (1, 2, 1)
    assert D.env_info({}) == (0, 1, 0)


def test_env_info_errors_name_the_variable():
    with pytest.raises(D.DistributedError, match="WORLD_SIZE missing although RANK is set"):
        D.env_info({"RANK": "0"})
    with pytest.raises(D.DistributedError, match="SLURM_PROCID: expected an integer, found 'x'"):
        D.env_info({"SLURM_PROCID": "x", "SLURM_NTASKS": "2"})
    with pytest.raises(D.DistributedError, match="found rank 4, world_size 4"):
        D.env_info({"RANK": "4", "WORLD_SIZE": "4"})


@pytest.mark.parametrize("nodelist,hosts", [
    ("node[01-04],gpu7", ["node01", "node02", "node03", "node04", "gpu7"]),
    ("gpu[1,3-4]", ["gpu1", "gpu3", "gpu4"]),
    ("r[1-2]n[08-09]", ["r1n08", "r1n09", "r2n08", "r2n09"]),
    ("login-1,cn[9-10]-ib", ["login-1", "cn9-ib", "cn10-ib"]),
    ("single", ["single"]),
])
def test_parse_nodelist(nodelist, hosts):
    assert D.parse_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad,message", [("node[01-", "unbalanced"), ("node[a-b]", "cannot parse range 'a-b'"),
                                          ("node[4-2]", "runs backwards"), ("a,,b", "empty host name")])
def test_parse_nodelist_errors(bad, message):
    with pytest.raises(D.DistributedError, match=message):
        D.parse_nodelist(bad)


def test_master_address_and_port():
    slurm = {"SLURM_JOB_NODELIST": "node[07-08]", "SLURM_JOB_ID": "123456"}
    assert D.master_address(slurm) == "node07"
    assert D.master_port(slurm) == 20000 + 123456 % 20000 == 23456
    explicit = {**slurm, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"}
    assert (D.master_address(explicit), D.master_port(explicit)) == ("10.0.0.1", 1234)
    assert (D.master_address({}), D.master_port({})) == ("127.0.0.1", 29500)


def test_rank_seed():
    assert D.rank_seed(7, 0) == 7  # a one-process run keeps the configured seed
    seeds = {D.rank_seed(s, r) for s in range(4) for r in range(64)}
    assert len(seeds) == 4 * 64 and all(0 <= s < 2**32 for s in seeds)
    with pytest.raises(ValueError, match="found seed -1"):
        D.rank_seed(-1, 0)


# --- single process ----------------------------------------------------------------------------------
def test_single_process_is_a_no_op():
    info = D.setup(torch.device("cpu"), environ={})
    assert info == D.DistInfo(0, 1, 0, None, torch.device("cpu")) and not info.distributed
    assert not dist.is_initialized()
    assert D.reduce_mean({"a": 1.5, "b": torch.tensor(2.0)}, info) == {"a": 1.5, "b": 2.0}
    assert D.any_rank(True, info) and not D.any_rank(False, info)
    obj = {"x": [1, 2]}
    assert D.broadcast_object(obj, info) is obj
    net = nn.Linear(2, 2)
    assert D.wrap_ddp(net, info) is net
    D.barrier()
    D.cleanup()


def test_generator_members_go_through_forward():
    g = Generator(C, IN, OUT, GeneratorConfig(filters=8, n_coarse_blocks=2, upsample_channels=(8, 8)), 1)
    x, s = torch.randn(2, C, *IN), torch.randn(1, 1, *OUT)
    torch.manual_seed(3)
    via_forward = g(x, s, n_members=3)
    torch.manual_seed(3)
    via_sample = g.sample(x, 3, s)
    assert via_forward.shape == (2, 3, *OUT)
    torch.testing.assert_close(via_forward, via_sample, rtol=0, atol=0)
    assert g(x, s).shape == (2, 1, *OUT)
    with pytest.raises(ValueError, match="n_members: expected a positive number"):
        g(x, s, n_members=0)


# --- two gloo processes ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _global_batch(step: int) -> tuple[dict, torch.Tensor]:
    """Batch of step ``step``: x_lr (4, C, 8, 8), y_hr (4, 1, 32, 32), one mask for all days (3 rows invalid)."""
    gen = torch.Generator().manual_seed(100 + step)
    mask = torch.ones(1, 1, *OUT, dtype=torch.bool)
    mask[..., :3, :] = False
    batch = {"x_lr": torch.randn(GLOBAL_BATCH, C, *IN, generator=gen),
             "y_hr": torch.randn(GLOBAL_BATCH, 1, *OUT, generator=gen), "mask": mask}
    return batch, torch.randn(1, 1, *OUT, generator=gen)


def _shard(batch: dict, rank: int, world: int) -> dict:
    n = GLOBAL_BATCH // world
    return {k: v[rank * n:(rank + 1) * n] if v.shape[0] == GLOBAL_BATCH else v for k, v in batch.items()}


def _models(seed: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return Generator(C, IN, OUT, G_CFG, static_channels=1), Discriminator(C, IN, OUT, D_CFG)


def _train(g, d, shard_of) -> list[dict]:
    """N_STEPS train_gan_steps with SGD; ``shard_of(batch)`` selects this process's part of each batch."""
    opt_g, opt_d = torch.optim.SGD(g.parameters(), lr=LR), torch.optim.SGD(d.parameters(), lr=LR)
    logs = []
    for step in range(N_STEPS):
        batch, static = _global_batch(step)
        logs.append(train_gan_step(shard_of(batch), g, d, opt_g, opt_d, SETTINGS, static_hr=static))
    return logs


def _state(g: nn.Module, d: nn.Module) -> dict:
    """Weights, buffers (spectral-norm vectors) and last gradients of both networks."""
    g, d = (m.module if isinstance(m, DistributedDataParallel) else m for m in (g, d))
    out = {f"g.{k}": v.detach().clone() for k, v in g.state_dict().items()}
    out.update({f"d.{k}": v.detach().clone() for k, v in d.state_dict().items()})
    for name, net in (("g", g), ("d", d)):
        out.update({f"{name}.grad.{k}": p.grad.detach().clone() for k, p in net.named_parameters()})
    return out


def _collectives(info: D.DistInfo) -> dict:
    r = info.rank
    wrapped = D.wrap_ddp(nn.Linear(2, 2), info)
    return {
        "info": info,
        "mean": D.reduce_mean({"a": float(r), "b": torch.tensor(2.0 * r + 1.0), "c": torch.tensor(r)}, info),
        "object": D.broadcast_object({"from": r, "list": [r] * 3}, info),
        "any_one": D.any_rank(r == 1, info), "any_none": D.any_rank(False, info),
        "wrapped": (isinstance(wrapped, DistributedDataParallel), type(getattr(wrapped, "module", wrapped)).__name__),
        "no_params": D.wrap_ddp(nn.Identity(), info).__class__.__name__,
    }


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    info = D.setup(torch.device("cpu"))
    try:
        result = {"collectives": _collectives(info)}
        # Different initial weights per rank: wrap_ddp must copy rank 0's (seed 0) to every rank.
        g, d = _models(D.rank_seed(0, rank))
        g, d = D.wrap_ddp(g, info), D.wrap_ddp(d, info)
        logs = _train(g, d, lambda batch: _shard(batch, rank, world))
        result["logs"] = [D.reduce_mean(step_logs, info) for step_logs in logs]
        result["state"] = _state(g, d)
        D.barrier()
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        D.cleanup()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_worker, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_collectives_on_two_processes(ddp_results):
    for rank, res in enumerate(ddp_results):
        c = res["collectives"]
        assert c["info"] == D.DistInfo(rank, WORLD, rank, "gloo", torch.device("cpu"))
        assert c["mean"] == pytest.approx({"a": 0.5, "b": 2.0, "c": 0.5}, abs=1e-12)
        assert c["object"] == {"from": 0, "list": [0, 0, 0]}
        assert (c["any_one"], c["any_none"]) == (True, False)
        assert c["wrapped"] == (True, "Linear") and c["no_params"] == "Identity"


def test_ddp_ranks_hold_identical_weights(ddp_results):
    s0, s1 = ddp_results[0]["state"], ddp_results[1]["state"]
    assert s0.keys() == s1.keys()
    for key in s0:
        torch.testing.assert_close(s0[key], s1[key], rtol=0, atol=0, msg=key)


def test_ddp_step_equals_single_process_step_on_the_global_batch(ddp_results):
    g, d = _models(0)
    initial = {k: v.clone() for k, v in _state_no_grad(g, d).items()}
    logs = _train(g, d, lambda batch: batch)
    reference, state = _state(g, d), ddp_results[0]["state"]
    assert reference.keys() == state.keys()
    for key in reference:
        torch.testing.assert_close(state[key], reference[key], rtol=1e-4, atol=1e-5, msg=key)
    moved = [k for k, v in initial.items() if not torch.allclose(v, reference[k], atol=1e-4)]
    assert len(moved) > len(initial) // 2  # the steps changed the weights: the comparison is not vacuous
    for step in range(N_STEPS):  # rank means of the step statistics equal the full-batch statistics
        assert ddp_results[0]["logs"][step] == pytest.approx({k: v.item() for k, v in logs[step].items()},
                                                             rel=1e-4, abs=1e-6)


def test_ddp_gradients_are_averaged_not_local(ddp_results):
    # A step on rank 0's half alone gives different weights: the ranks did exchange gradients.
    g, d = _models(0)
    _train(g, d, lambda batch: _shard(batch, 0, WORLD))
    local, state = _state(g, d), ddp_results[0]["state"]
    differs = [k for k in local if k.startswith("g.grad.") and not torch.allclose(local[k], state[k], atol=1e-5)]
    assert len(differs) > 0


def _state_no_grad(g: nn.Module, d: nn.Module) -> dict:
    return {**{f"g.{k}": v for k, v in g.state_dict().items()}, **{f"d.{k}": v for k, v in d.state_dict().items()}}
