"""From opened NetCDF data to torch batches: the only module of the package that imports xarray-side
code and torch together.

Batches are dicts:

* ``x_lr``: float32 (B, C, h, w) normalised predictors;
* ``y_hr``: float32 (B, 1, H, W) normalised target, 0 where the target is invalid;
* ``mask``: bool (B, 1, H, W), True where the target is finite on that day (per sample; a cell NaN on
  some days only is masked on those days);
* ``time_index``: int64 (B,) position of each day in the split;
* ``doy``: int64 (B,) day of the year of each day (1..366, of the data's calendar);
* ``time``: numpy array (B,) of the time stamps (datetime64 or cftime objects).

Two paths give identical samples (both read with :class:`~.blocks.BlockReader` and normalise with
:func:`~.normalization.apply_params`):

* in memory: the whole split as contiguous float32 tensors, batches by a seeded permutation
  (``loader.to(device)`` moves the set, e.g. to the GPU, so batching happens there);
* streaming: a torch ``IterableDataset`` reading blocks of ``block_days`` days (aligned to multiples of
  ``block_days`` in the file's time axis, so with ``block_days == chunk_days`` a block is one chunk);
  shuffling = the order of blocks, then samples within a block (optionally within a pair of blocks);
  blocks are sharded across distributed ranks, then across DataLoader workers, without duplicates.
  Each worker opens the files itself; the dataset object stores only paths, positions and statistics.

Oversampling (``weights``: per-day probabilities, :mod:`.oversampling`): each training epoch draws the
split's number of days with replacement (multinomial counts seeded by (seed, epoch)); in memory the drawn
days are permuted, streaming repeats each day of a block by its count before the within-block shuffle.
Both paths draw the same multiset of days in an epoch.

Epoch semantics (training): every rank yields the same number of batches (``len(loader)``), a few
samples per epoch may be dropped to keep ranks in step (never duplicated). Evaluation: every sample of
the rank's share exactly once, in time order; batches ``k`` with ``k % world_size == rank`` go to ``rank``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ml_benchmark_spategan.config.schema import LoaderConfig
from ml_benchmark_spategan.dataloader.blocks import BlockReader
from ml_benchmark_spategan.dataloader.normalization import Normalizer, Normalizers, apply_params
from ml_benchmark_spategan.dataloader.oversampling import epoch_counts
from ml_benchmark_spategan.dataloader.reader import DataOrigin, DomainData


class TorchNormalizer:
    """A :class:`Normalizer` on tensors (B, C, h, w) / (B, 1, H, W); ``.to(device)`` for GPU-side use."""

    def __init__(self, params: dict, device: str | torch.device = "cpu"):
        self.log1p = bool(params["log1p"])
        self.log1p_scale = float(params.get("log1p_scale", 1.0))
        self.nonnegative = bool(params.get("nonnegative", self.log1p))
        self.shift = torch.as_tensor(params["shift"], dtype=torch.float32, device=device)
        self.scale = torch.as_tensor(params["scale"], dtype=torch.float32, device=device)

    @classmethod
    def from_normalizer(cls, normalizer: Normalizer, device: str | torch.device = "cpu") -> TorchNormalizer:
        return cls(normalizer.params(), device)

    def to(self, device: str | torch.device) -> TorchNormalizer:
        self.shift, self.scale = self.shift.to(device), self.scale.to(device)
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.log1p(x * self.log1p_scale) if self.log1p else x
        return (x - self.shift) / self.scale

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = y * self.scale + self.shift
        if self.log1p:
            x = torch.expm1(x) / self.log1p_scale if self.log1p_scale != 1.0 else torch.expm1(x)
        return x.clamp_min(0.0) if self.nonnegative else x


def normalise_block(x: np.ndarray, y: np.ndarray, px: dict, py: dict) -> tuple[np.ndarray, ...]:
    """Raw block (x (n,C,h,w), y (n,H,W) with NaN) -> (x_lr, y_hr (n,1,H,W) with 0 where invalid, mask)."""
    mask = np.isfinite(y)[:, None]
    y_hr = apply_params(y[:, None], py)
    y_hr = np.where(mask, y_hr, np.float32(0.0)).astype(np.float32)
    x_lr = apply_params(x, px).astype(np.float32)
    return np.ascontiguousarray(x_lr), y_hr, mask


def _batch(x, y, m, idx, times, doy) -> dict:
    return {"x_lr": x, "y_hr": y, "mask": m, "time_index": idx, "doy": doy, "time": times}


def day_of_year(times: np.ndarray) -> np.ndarray:
    """Day of the year (1..366) of datetime64 or cftime stamps, int64 (B,)."""
    return np.asarray(xr.DataArray(np.asarray(times), dims="time").dt.dayofyear.values, dtype=np.int64)


def _identity(item):
    return item


# --- in memory -------------------------------------------------------------------------------------
class InMemorySplit:
    """A whole split as tensors: x (N, C, h, w), y (N, 1, H, W), mask (N, 1, H, W), on one device."""

    def __init__(self, origin: DataOrigin, times: np.ndarray, px: dict, py: dict, block_days: int):
        reader = BlockReader(origin)
        xs, ys, ms = [], [], []
        try:
            for start in range(0, len(origin.positions), block_days):
                x, y = reader.read(origin.positions[start:start + block_days])
                x, y, m = normalise_block(x, y, px, py)
                xs.append(x), ys.append(y), ms.append(m)
        finally:
            reader.close()
        self.x = torch.from_numpy(np.concatenate(xs))
        self.y = torch.from_numpy(np.concatenate(ys))
        self.mask = torch.from_numpy(np.concatenate(ms))
        self.times = times
        self.doy = torch.from_numpy(day_of_year(times))

    def to(self, device) -> InMemorySplit:
        self.x, self.y, self.mask = self.x.to(device), self.y.to(device), self.mask.to(device)
        return self

    def batch(self, idx: torch.Tensor) -> dict:
        idx = idx.to(self.x.device)
        if self.x.device.type == "cpu":
            # numpy gather: single-threaded; torch's OpenMP gather of small batches is slower on busy CPUs
            rows = idx.numpy()
            take = (torch.from_numpy(np.take(t.numpy(), rows, axis=0)) for t in (self.x, self.y, self.mask))
        else:
            take = (t.index_select(0, idx) for t in (self.x, self.y, self.mask))
        rows = idx.cpu()
        return _batch(*take, idx, self.times[rows.numpy()], self.doy.index_select(0, rows).to(idx.device))


# --- streaming -------------------------------------------------------------------------------------
def split_blocks(positions: np.ndarray, block_days: int) -> list[np.ndarray]:
    """Split indices (0..n-1) grouped by the block ``position // block_days`` of their file position."""
    keys = positions // block_days
    breaks = np.flatnonzero(np.diff(keys) != 0) + 1
    return np.split(np.arange(len(positions)), breaks)


class StreamingDataset(IterableDataset):
    """Yields batches (dicts) read block by block from the files; see the module docstring."""

    def __init__(self, origin: DataOrigin, times: np.ndarray, px: dict, py: dict, batch_size: int,
                 block_days: int, *, train: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True, shuffle: bool = True, mix_blocks: int = 1,
                 weights: np.ndarray | None = None):
        super().__init__()
        self.weights = None if weights is None or not train else np.asarray(weights, dtype=np.float64)
        self.origin, self.times, self.px, self.py = origin, times, px, py
        self.batch_size, self.block_days, self.train = batch_size, block_days, train
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.shuffle, self.mix_blocks, self.epoch = shuffle, mix_blocks, 0
        self.blocks = split_blocks(origin.positions, block_days)
        self.doy = day_of_year(times)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- the plan (pure functions of seed, epoch, rank, worker) --
    def worker_blocks(self, rank: int, worker: int, num_workers: int) -> list[int]:
        """Block ids a (rank, worker) reads this epoch, in reading order."""
        order = np.arange(len(self.blocks))
        if self.train and self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.blocks))
        return [int(b) for b in order[rank::self.world_size][worker::num_workers]]

    def counts(self) -> np.ndarray | None:
        """Draws of each day this epoch (oversampling), or None (every day once)."""
        return None if self.weights is None else epoch_counts(self.weights, self.seed, self.epoch)

    def _block_size(self, block: int, counts: np.ndarray | None) -> int:
        return len(self.blocks[block]) if counts is None else int(counts[self.blocks[block]].sum())

    def eval_batches(self, rank: int, worker: int, num_workers: int) -> list[np.ndarray]:
        n = len(self.origin.positions)
        starts = list(range(0, n, self.batch_size))[rank::self.world_size][worker::num_workers]
        return [np.arange(s, min(s + self.batch_size, n)) for s in starts]

    def batches_per_rank(self, num_workers: int) -> list[int]:
        """Number of batches each rank yields (before the equalisation of training ranks)."""
        counts, draws = [], self.counts() if self.train else None
        for r in range(self.world_size):
            total = 0
            for w in range(max(num_workers, 1)):
                if not self.train:
                    total += len(self.eval_batches(r, w, max(num_workers, 1)))
                    continue
                n = sum(self._block_size(b, draws) for b in self.worker_blocks(r, w, max(num_workers, 1)))
                total += n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
            counts.append(total)
        return counts

    # -- iteration --
    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        reader = BlockReader(self.origin)  # opened here: inside the worker process
        try:
            if self.train:
                yield from self._train_batches(reader, worker, num_workers)
            else:
                for idx in self.eval_batches(self.rank, worker, num_workers):
                    yield _to_torch(self._read(reader, idx))
        finally:
            reader.close()

    def _read(self, reader: BlockReader, idx: np.ndarray) -> dict:
        """Samples ``idx`` of the split as a dict of numpy arrays (converted to tensors per batch)."""
        x, y = reader.read(self.origin.positions[idx])
        x, y, m = normalise_block(x, y, self.px, self.py)
        return _batch(x, y, m, idx.astype(np.int64), self.times[idx], self.doy[idx])

    def _train_batches(self, reader: BlockReader, worker: int, num_workers: int) -> Iterator[dict]:
        ids = self.worker_blocks(self.rank, worker, num_workers)
        draws = self.counts()
        pending: list[dict] = []
        n_pending = 0
        for g in range(0, len(ids), self.mix_blocks):
            group = sorted(ids[g:g + self.mix_blocks])
            idx = np.concatenate([self.blocks[b] for b in group])
            data = self._read(reader, idx)  # indices sorted by block, so file positions increase
            if draws is not None:  # oversampling: each day as often as drawn this epoch
                data = {k: v[np.repeat(np.arange(len(idx)), draws[idx])] for k, v in data.items()}
            n_group = len(data["time_index"])
            if n_group == 0:
                continue
            if self.shuffle:
                perm = np.random.default_rng([self.seed, self.epoch, *group]).permutation(n_group)
                data = {k: v[perm] for k, v in data.items()}
            pending.append(data)
            n_pending += n_group
            while n_pending >= self.batch_size:
                batch, pending = _take(pending, self.batch_size)
                n_pending -= self.batch_size
                yield _to_torch(batch)
        if n_pending and not self.drop_last:
            yield _to_torch(_take(pending, n_pending)[0])


def _take(pending: list[dict], n: int) -> tuple[dict, list[dict]]:
    """The first ``n`` samples of a list of partial batches, and what is left."""
    out, rest, need = [], [], n
    for part in pending:
        size = len(part["time_index"])
        if need >= size:
            out.append(part)
            need -= size
        elif need > 0:
            out.append({k: v[:need] for k, v in part.items()})
            rest.append({k: v[need:] for k, v in part.items()})
            need = 0
        else:
            rest.append(part)
    return {k: np.concatenate([p[k] for p in out]) for k in out[0]}, rest


def _to_torch(batch: dict) -> dict:
    """numpy batch -> tensors (all keys but 'time')."""
    return {k: (v if k == "time" else torch.from_numpy(np.ascontiguousarray(v))) for k, v in batch.items()}


# --- the loaders -----------------------------------------------------------------------------------
def split_nbytes(data: DomainData) -> int:
    """Bytes of a split held in memory: float32 predictors and target plus the bool mask."""
    n, c, h, w = (int(s) for s in data.predictors.shape)
    rows, cols = (int(s) for s in data.target.shape[1:])
    return n * (c * h * w * 4 + rows * cols * 5)


def choose_mode(data: DomainData, loader_cfg: LoaderConfig) -> str:
    """'memory' or 'streaming' (``auto``: memory when the split fits ``memory_budget_gb``)."""
    if loader_cfg.mode != "auto":
        return loader_cfg.mode
    return "memory" if split_nbytes(data) <= loader_cfg.memory_budget_gb * 2**30 else "streaming"


class BatchLoader:
    """An iterable of batch dicts with ``len`` (batches per epoch on this rank), ``set_epoch`` and ``to``.

    ``mode`` is 'memory' or 'streaming'. ``to(device)`` moves the in-memory set (batches are then drawn on
    that device) or, when streaming, each batch as it is yielded.
    """

    def __init__(self, mode: str, *, memory: InMemorySplit | None = None, stream: StreamingDataset | None = None,
                 batch_size: int, train: bool, seed: int, rank: int, world_size: int, drop_last: bool,
                 shuffle: bool, num_workers: int = 0, weights: np.ndarray | None = None):
        self.mode, self.memory, self.stream = mode, memory, stream
        self.weights = None if weights is None or not train else np.asarray(weights, dtype=np.float64)
        self.batch_size, self.train, self.seed, self.epoch = batch_size, train, seed, 0
        self.rank, self.world_size, self.drop_last, self.shuffle = rank, world_size, drop_last, shuffle
        self.num_workers, self.device = num_workers, None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.stream is not None:
            self.stream.set_epoch(epoch)

    def to(self, device) -> BatchLoader:
        self.device = torch.device(device)
        if self.memory is not None:
            self.memory.to(self.device)
        return self

    def __len__(self) -> int:
        if self.memory is not None:
            n = len(self._memory_indices())
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        counts = self.stream.batches_per_rank(self.num_workers)
        return min(counts) if self.train else counts[self.rank]

    def _memory_indices(self) -> torch.Tensor:
        n = len(self.memory.times)
        if self.weights is not None:  # oversampling: the days drawn this epoch, permuted
            drawn = torch.from_numpy(np.repeat(np.arange(n), epoch_counts(self.weights, self.seed, self.epoch)))
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = drawn[torch.randperm(n, generator=gen)]
        elif self.train and self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if not self.train:  # contiguous batches k with k % world_size == rank
            batches = torch.split(order, self.batch_size)[self.rank::self.world_size]
            return torch.cat(batches) if batches else order[:0]
        return order[self.rank::self.world_size][: n // self.world_size]

    def __iter__(self) -> Iterator[dict]:
        if self.memory is not None:
            idx = self._memory_indices().to(self.memory.x.device)
            for k in range(len(self)):
                yield self.memory.batch(idx[k * self.batch_size:(k + 1) * self.batch_size])
            return
        loader = DataLoader(self.stream, batch_size=None, num_workers=self.num_workers, collate_fn=_identity,
                            pin_memory=False)
        n_batches = len(self)  # computed once: it replays every rank's and worker's block plan
        for k, batch in enumerate(loader):
            if k >= n_batches:
                break
            yield self._to_device(batch)

    def _to_device(self, batch: dict) -> dict:
        if self.device is None:
            return batch
        return {k: (v if k == "time" else v.to(self.device, non_blocking=True)) for k, v in batch.items()}


def _make_loader(data: DomainData, normalizers: Normalizers, loader_cfg: LoaderConfig, batch_size: int, *,
                 train: bool, seed: int, rank: int, world_size: int, drop_last: bool, mix_blocks: int = 1,
                 weights: np.ndarray | None = None) -> BatchLoader:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1} (world_size {world_size})")
    px, py = normalizers.predictors.params(), normalizers.target.params()
    mode = choose_mode(data, loader_cfg)
    shuffle = train and loader_cfg.shuffle
    common = dict(batch_size=batch_size, train=train, seed=seed, rank=rank, world_size=world_size,
                  drop_last=drop_last, shuffle=shuffle)
    times = data.time
    if weights is not None and len(weights) != data.n_days:
        raise ValueError(f"sampling weights: expected one per day of the split ({data.n_days}), found {len(weights)}")
    if mode == "memory":
        memory = InMemorySplit(data.origin, times, px, py, loader_cfg.block_days)
        return BatchLoader(mode, memory=memory, weights=weights, **common)
    stream = StreamingDataset(data.origin, times, px, py, batch_size, loader_cfg.block_days, mix_blocks=mix_blocks,
                              weights=weights, **{k: v for k, v in common.items() if k != "batch_size"})
    return BatchLoader(mode, stream=stream, num_workers=loader_cfg.num_workers, weights=weights, **common)


def make_train_loader(data: DomainData, normalizers: Normalizers, loader_cfg: LoaderConfig, batch_size: int,
                      seed: int, rank: int = 0, world_size: int = 1, drop_last: bool = True,
                      mix_blocks: int = 1, weights: np.ndarray | None = None) -> BatchLoader:
    """Shuffled training batches of the split ``data`` (see the module docstring); ``set_epoch`` reseeds.
    ``mix_blocks`` (streaming): shuffle samples within groups of this many blocks. ``weights``: per-day
    sampling probabilities (oversampling, draws with replacement; None = every day once per epoch)."""
    return _make_loader(data, normalizers, loader_cfg, batch_size, train=True, seed=seed, rank=rank,
                        world_size=world_size, drop_last=drop_last, mix_blocks=mix_blocks, weights=weights)


def make_eval_loader(data: DomainData, normalizers: Normalizers, loader_cfg: LoaderConfig, batch_size: int,
                     rank: int = 0, world_size: int = 1) -> BatchLoader:
    """Sequential batches (time order, no shuffle, last batch partial), every sample of the rank's share once."""
    return _make_loader(data, normalizers, loader_cfg, batch_size, train=False, seed=0, rank=rank,
                        world_size=world_size, drop_last=False)


def static_hr(data: DomainData, normalizer: Normalizer | None) -> torch.Tensor | None:
    """Normalised orography as a float32 (1, 1, H, W) tensor (NaN cells -> 0), or None without orography."""
    if data.orography is None:
        return None
    values = data.orography.values.astype(np.float32)[None]
    if normalizer is not None:
        values = apply_params(values, normalizer.params())
    values = np.where(np.isfinite(values), values, np.float32(0.0)).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(values[None]))
