"""Streaming accumulators (pysteps style): ``update(y_true, y_pred)`` per batch of days, ``merge(other)``,
``compute()``; merging accumulators of two halves equals one pass over the whole period.

Inputs per batch: numpy arrays ``y_true`` (time, ny, nx) and ``y_pred`` (time, ny, nx) or
(time, member, ny, nx); or xarray DataArrays with named dims (``time``, optional ``member``, two spatial
dims), which are transposed to that layout and whose spatial coordinates are kept for the output.
NaN policies follow the corresponding functions (noted per class).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ._common import MEMBER, TIME, spatial_dims
from .ensemble import (
    crps_sorted,
    fss_dataarray,
    fss_from_sums,
    fss_sums,
    rank_counts,
    sort_members,
    spread_skill_from_means,
)
from .spectra import WAVENUMBER, bin_weights, frame_profiles, ralsd, wavenumber_coords


def _as_array(x, name: str, ensemble: bool) -> tuple[np.ndarray, dict]:
    """numpy array in (time[, member], ny, nx) layout plus the spatial coordinates (if any)."""
    if isinstance(x, xr.DataArray):
        ydim, xdim = spatial_dims(x, name)
        lead = [TIME] + ([MEMBER] if MEMBER in x.dims else [])
        missing = set(x.dims) - {*lead, ydim, xdim}
        if missing:
            raise ValueError(f"{name}: unexpected dims {sorted(missing)} (dims: {tuple(x.dims)})")
        coords = {d: x[d].values for d in (ydim, xdim) if d in x.coords}
        return np.asarray(x.transpose(*lead, ydim, xdim).values), {"dims": (ydim, xdim), "coords": coords}
    arr = np.asarray(x)
    ok = arr.ndim == 3 or (ensemble and arr.ndim == 4)
    if not ok:
        want = "(time, ny, nx) or (time, member, ny, nx)" if ensemble else "(time, ny, nx)"
        raise ValueError(f"{name}: expected shape {want}, got {arr.shape}")
    return arr, {"dims": ("y", "x"), "coords": {}}


def _pair(y_true, y_pred, ensemble: bool = True):
    t, meta = _as_array(y_true, "y_true", ensemble=False)
    p, _ = _as_array(y_pred, "y_pred", ensemble=ensemble)
    if t.shape[0] != p.shape[0] or t.shape[-2:] != p.shape[-2:]:
        raise ValueError(f"y_true shape {t.shape} and y_pred shape {p.shape} disagree in time or space")
    return t, p, meta


def _map(values: np.ndarray, meta: dict, name: str) -> xr.DataArray:
    dims = meta["dims"]
    return xr.DataArray(values, dims=dims, coords={d: c for d, c in meta["coords"].items()}, name=name)


class _Accumulator:
    """Common merge logic: add the array-valued state of two accumulators of the same settings."""

    _state: tuple[str, ...] = ()

    def _settings(self) -> tuple:
        return ()

    def merge(self, other):
        if type(other) is not type(self) or other._settings() != self._settings():
            raise ValueError(f"cannot merge {type(other).__name__}{other._settings()} into "
                             f"{type(self).__name__}{self._settings()}")
        for key in self._state:
            mine, theirs = getattr(self, key), getattr(other, key)
            setattr(self, key, theirs if mine is None else (mine if theirs is None else mine + theirs))
        self.meta = self.meta or other.meta
        return self


class MeanSpectrum(_Accumulator):
    """Time- (and member-) mean radial power spectra of truth and prediction; ``kind`` 'benchmark' or 'corrected'.

    ``compute()`` returns a Dataset with PSD_x0, PSD_x1 (dim wavenumber) and the benchmark ``ralsd``.
    NaN -> 0 (as the benchmark psd).
    """

    _state = ("sum_true", "sum_pred", "n_true", "n_pred")

    def __init__(self, kind: str = "benchmark", dx_km: float | None = None):
        bin_weights(2, 2, kind)  # validates kind
        self.kind, self.dx_km, self.meta, self.shape = kind, dx_km, None, None
        self.sum_true = self.sum_pred = None
        self.n_true = self.n_pred = 0

    def _settings(self):
        return (self.kind, self.dx_km)

    def update(self, y_true, y_pred) -> None:
        t, p, self.meta = _pair(y_true, y_pred)
        self.shape = t.shape[-2:]
        pt, pp = frame_profiles(t, self.kind), frame_profiles(p, self.kind)
        pt, pp = pt.reshape(-1, pt.shape[-1]), pp.reshape(-1, pp.shape[-1])
        self.sum_true = pt.sum(0) if self.sum_true is None else self.sum_true + pt.sum(0)
        self.sum_pred = pp.sum(0) if self.sum_pred is None else self.sum_pred + pp.sum(0)
        self.n_true, self.n_pred = self.n_true + pt.shape[0], self.n_pred + pp.shape[0]

    def merge(self, other):
        super().merge(other)
        self.shape = self.shape or other.shape
        return self

    def compute(self) -> xr.Dataset:
        p0 = xr.DataArray(self.sum_true / self.n_true, dims=[WAVENUMBER])
        p1 = xr.DataArray(self.sum_pred / self.n_pred, dims=[WAVENUMBER])
        ds = xr.Dataset({"PSD_x0": p0, "PSD_x1": p1, "ralsd": ralsd(p0, p1)})
        if self.kind == "corrected":
            ds = ds.assign_coords(wavenumber_coords(*self.shape, self.dx_km))
        return ds


class CRPS(_Accumulator):
    """Per-grid-point mean CRPS over all days seen; ``y_pred`` needs a member axis. NaN points are skipped."""

    _state = ("total", "count")

    def __init__(self, fair: bool = False):
        self.fair, self.meta, self.total, self.count = fair, None, None, None

    def _settings(self):
        return (self.fair,)

    def update(self, y_true, y_pred) -> None:
        t, p, self.meta = _pair(y_true, y_pred)
        if p.ndim != 4:
            raise ValueError(f"CRPS: y_pred needs a member axis (time, member, ny, nx), got shape {p.shape}")
        score = crps_sorted(t, sort_members(np.ascontiguousarray(np.moveaxis(p, 1, 0))), self.fair)
        valid = ~np.isnan(score)
        total, count = np.where(valid, score, 0.0).sum(0), valid.sum(0)
        self.total = total if self.total is None else self.total + total
        self.count = count if self.count is None else self.count + count

    def compute(self) -> xr.DataArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return _map(self.total / self.count, self.meta, "crps")


class SpreadSkill(_Accumulator):
    """Spread-skill ratio pooled over all (day, point) pairs seen, with the (m + 1)/m correction: the
    streaming form of :func:`.ensemble.spread_skill_ratio` with ``dim=None``. Needs 2+ members; a point
    where the observation or any member is NaN is skipped. ``compute()`` -> float (NaN before any update)."""

    _state = ("var_sum", "err2_sum", "count")

    def __init__(self):
        self.meta, self.members, self.var_sum, self.err2_sum, self.count = None, None, 0.0, 0.0, 0

    def update(self, y_true, y_pred) -> None:
        t, p, self.meta = _pair(y_true, y_pred)
        if p.ndim != 4 or p.shape[1] < 2:
            raise ValueError(f"SpreadSkill: y_pred needs 2+ members (time, member, ny, nx), got shape {p.shape}")
        if self.members not in (None, p.shape[1]):
            raise ValueError(f"SpreadSkill: member count changed ({self.members} -> {p.shape[1]})")
        self.members = p.shape[1]
        p = p.astype(np.float64)
        var, err2 = p.var(axis=1, ddof=1), (p.mean(axis=1) - t) ** 2
        valid = np.isfinite(var) & np.isfinite(err2)
        self.var_sum += float(var[valid].sum())
        self.err2_sum += float(err2[valid].sum())
        self.count += int(valid.sum())

    def merge(self, other):
        if isinstance(other, SpreadSkill) and None not in (self.members, other.members) and self.members != other.members:
            raise ValueError(f"cannot merge SpreadSkill of {other.members} members into one of {self.members}")
        super().merge(other)
        self.members = self.members or other.members
        return self

    def compute(self) -> float:
        if not self.count:
            return float("nan")
        return float(spread_skill_from_means(self.var_sum / self.count, self.err2_sum / self.count, self.members))


class FSS(_Accumulator):
    """Fractions skill score per (threshold, scale[, member]) over all days seen (see :func:`.ensemble.fss`)."""

    _state = ("sums",)

    def __init__(self, thresholds: Sequence[float], scales: Sequence[int]):
        self.thresholds, self.scales = tuple(thresholds), tuple(int(s) for s in scales)
        self.meta, self.sums = None, None

    def _settings(self):
        return (self.thresholds, self.scales)

    def update(self, y_true, y_pred) -> None:
        t, p, self.meta = _pair(y_true, y_pred)
        sums = fss_sums(t, p, self.thresholds, self.scales)
        self.sums = sums if self.sums is None else self.sums + sums

    def compute(self) -> xr.DataArray:
        return fss_dataarray(fss_from_sums(self.sums), self.thresholds, self.scales)


class RankHistogram(_Accumulator):
    """Rank histogram counts (m + 1,), random tie-breaking from one generator seeded at init.

    Merging adds counts; with ties, halves draw different random numbers than one pass (same distribution).
    """

    _state = ("counts",)

    def __init__(self, seed: int = 0):
        self.rng, self.meta, self.counts = np.random.default_rng(seed), None, None

    def _settings(self):
        return ()

    def update(self, y_true, y_pred) -> None:
        t, p, self.meta = _pair(y_true, y_pred)
        if p.ndim != 4:
            raise ValueError(f"RankHistogram: y_pred needs a member axis (time, member, ny, nx), got shape {p.shape}")
        counts = rank_counts(t.astype(np.float64), np.moveaxis(p, 1, -1).astype(np.float64), self.rng)
        if self.counts is not None and counts.size != self.counts.size:
            raise ValueError(f"RankHistogram: member count changed ({self.counts.size - 1} -> {counts.size - 1})")
        self.counts = counts if self.counts is None else self.counts + counts

    def compute(self) -> xr.DataArray:
        return xr.DataArray(self.counts, dims=["rank"], coords={"rank": np.arange(self.counts.size)},
                            name="rank_histogram")


class Moments(_Accumulator):
    """Per-grid-point moments for RMSE, bias and standard deviations (Chan et al. parallel update).

    Members (if any) are pooled as extra samples. NaN: a (true, pred) pair with a NaN is skipped.
    ``compute()``: Dataset of maps rmse, bias (pred - true), mean_true, mean_pred, std_true, std_pred (ddof 0).
    """

    _keys = ("mean_true", "mean_pred", "m2_true", "m2_pred", "msd")

    def __init__(self):
        self.meta, self.n = None, None
        for key in self._keys:
            setattr(self, key, None)

    def update(self, y_true, y_pred) -> None:
        t, p, self.meta = _pair(y_true, y_pred)
        if p.ndim == 4:
            t, p = np.broadcast_to(t[:, None], p.shape).reshape(-1, *p.shape[2:]), p.reshape(-1, *p.shape[2:])
        self._combine(self._batch_stats(t.astype(np.float64), p.astype(np.float64)))

    @staticmethod
    def _batch_stats(t: np.ndarray, p: np.ndarray) -> dict:
        valid = ~(np.isnan(t) | np.isnan(p))
        n = valid.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats = {"n": n}
            for key, x in (("true", t), ("pred", p)):
                mean = np.where(valid, x, 0.0).sum(0) / n
                stats[f"mean_{key}"] = np.where(n > 0, mean, 0.0)
                stats[f"m2_{key}"] = np.where(valid, (x - stats[f"mean_{key}"]) ** 2, 0.0).sum(0)
            stats["msd"] = np.where(valid, (p - t) ** 2, 0.0).sum(0)
        return stats

    def _combine(self, b: dict) -> None:
        if self.n is None:
            self.n = b["n"]
            for key in self._keys:
                setattr(self, key, b[key])
            return
        n = self.n + b["n"]
        with np.errstate(invalid="ignore", divide="ignore"):
            wa, wb = np.where(n > 0, self.n / n, 0.0), np.where(n > 0, b["n"] / n, 0.0)
        for key in ("true", "pred"):
            delta = b[f"mean_{key}"] - getattr(self, f"mean_{key}")
            setattr(self, f"m2_{key}", getattr(self, f"m2_{key}") + b[f"m2_{key}"] + delta**2 * self.n * wb)
            setattr(self, f"mean_{key}", wa * getattr(self, f"mean_{key}") + wb * b[f"mean_{key}"])
        self.msd, self.n = self.msd + b["msd"], n

    def merge(self, other):
        if not isinstance(other, Moments):
            raise ValueError(f"cannot merge {type(other).__name__} into Moments")
        if other.n is not None:
            self._combine({"n": other.n, **{k: getattr(other, k) for k in self._keys}})
            self.meta = self.meta or other.meta
        return self

    def compute(self) -> xr.Dataset:
        with np.errstate(invalid="ignore", divide="ignore"):
            n = np.where(self.n > 0, self.n, np.nan)
            maps = {"rmse": np.sqrt(self.msd / n), "bias": (self.mean_pred - self.mean_true) + 0 * n,
                    "mean_true": self.mean_true + 0 * n, "mean_pred": self.mean_pred + 0 * n,
                    "std_true": np.sqrt(self.m2_true / n), "std_pred": np.sqrt(self.m2_pred / n)}
        return xr.Dataset({k: _map(v, self.meta, k) for k, v in maps.items()})
