"""Normalisation of predictors, target and static fields (xarray + numpy; no torch).

Every method is an affine map after an optional ``log1p``:  ``y = (f(x) - shift) / scale`` with
``f(x) = log1p(s * x)`` for the ``log1p_*`` methods and the identity otherwise. ``s`` (``log1p_scale``)
turns a precipitation target into mm/day first (86400 for kg m-2 s-1; 1 for mm/day and anything else), so
the log compresses the same physical range whatever the file's units.

==================== ============================================== ========================
method               statistics (over the fitting data)              shift, scale
==================== ============================================== ========================
standardize_pointwise mean, std over ``time`` per grid point (and     mean, std
                     channel) -- the benchmark's predictor reference
standardize_global   mean, std over time and space, per channel      mean, std
minmax_01            min, range over time and space, per channel     min, range
minmax_11            as minmax_01, mapped to [-1, 1]                 min + range/2, range/2
log1p_standardize    mean, std of log1p(x), global per channel       mean, std
log1p_minmax         min, range of log1p(x), global, to [0, 1]       min, range
none                 --                                              0, 1
==================== ============================================== ========================

``auto`` (target only) = ``log1p_standardize`` for a precipitation-like target, ``standardize_global``
otherwise (temperature-like and generic targets; see :mod:`ml_benchmark_spategan.variables`).
Statistics: fitted on the data given (pass the TRAINING split), lazily with dask in one pass, in float64,
``ddof=0``, NaN cells ignored (masked target cells). Guards: a std or range below ``min_std`` (also a NaN one,
e.g. a grid point that is NaN on every day) is replaced by 1, and a NaN mean/min by 0, so constant or
masked cells map to finite values. The inverse is exact up to float32 rounding; it clamps at 0 for
``log1p_*`` methods and for every non-negative (precipitation-like) target, so precipitation comes back
non-negative whatever the input.
Roles: ``predictors`` (dims time, channel, ...), ``target`` (time, row, col), ``static`` (row, col).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from ml_benchmark_spategan.config.schema import NORMALIZATION_METHODS, NormalizationConfig
from ml_benchmark_spategan.dataloader.errors import DataError
from ml_benchmark_spategan.variables import mm_per_day_factor

ROLES = ("predictors", "target", "static")
FORMAT_VERSION = 1
_STATS = {"standardize": ("mean", "std"), "minmax": ("min", "range"), "none": ()}


def resolve_method(method: str, role: str, variable: str | None = None, kind: str | None = None) -> str:
    """The concrete method: ``auto`` (target only) -> log1p_standardize for a precipitation-like target
    (``kind``; without it, a target named pr), standardize_global otherwise."""
    if method == "auto":
        if role != "target":
            raise ValueError(f"normalisation method 'auto' is for the target only, not for role {role!r}")
        precipitation = kind == "precipitation" if kind is not None else variable == "pr"
        return "log1p_standardize" if precipitation else "standardize_global"
    if method not in NORMALIZATION_METHODS:
        raise ValueError(f"unknown normalisation method {method!r}; expected one of {('auto',) + NORMALIZATION_METHODS}")
    return method


def _family(method: str) -> str:
    if method == "none":
        return "none"
    return "minmax" if method.endswith(("minmax", "minmax_01", "minmax_11")) else "standardize"


def _reduce_dims(method: str, da: xr.DataArray) -> list[str]:
    if method == "standardize_pointwise":
        if "time" not in da.dims:
            raise ValueError(f"standardize_pointwise needs a 'time' dim; got dims {da.dims}")
        return ["time"]
    return [d for d in da.dims if d != "channel"]


@dataclass(frozen=True, eq=False)
class Normalizer:
    """A fitted transform. ``stats``: float64 statistics (see the module table), dims = the fitted data's
    dims minus the reduced ones; ``dims``: dims of the fitted data (for :meth:`params` shapes)."""

    method: str
    role: str
    stats: xr.Dataset
    dims: tuple[str, ...]
    log1p_scale: float = 1.0
    nonnegative: bool = False

    @property
    def log1p(self) -> bool:
        return self.method.startswith("log1p")

    @property
    def clamps(self) -> bool:
        """Whether :meth:`inverse` clamps at 0 (log1p methods and non-negative targets)."""
        return self.log1p or self.nonnegative

    def _forward(self, x):
        return np.log1p(x * np.float32(self.log1p_scale)) if self.log1p else x

    def shift_scale(self) -> tuple[xr.DataArray, xr.DataArray]:
        """(shift, scale) as float64 DataArrays (scalars for ``none``)."""
        fam = _family(self.method)
        if fam == "none":
            return xr.DataArray(0.0), xr.DataArray(1.0)
        a, b = (self.stats[k] for k in _STATS[fam])
        if self.method.endswith("minmax_11"):
            return a + b / 2, b / 2
        return a, b

    def transform(self, da: xr.DataArray) -> xr.DataArray:
        """Normalised ``da`` (float32, lazy if ``da`` is); NaN stays NaN."""
        shift, scale = (v.astype(np.float32) for v in self.shift_scale())
        x = self._forward(da.astype(np.float32))
        with xr.set_options(arithmetic_join="exact"):
            try:
                return ((x - shift) / scale).astype(np.float32)
            except ValueError as err:
                raise DataError(f"{self.role} normaliser: coordinates differ from the data it was fitted on "
                                f"({err})") from err

    def inverse(self, da: xr.DataArray) -> xr.DataArray:
        """Physical values from normalised ``da`` (float32); log1p methods clamp at 0."""
        shift, scale = (v.astype(np.float32) for v in self.shift_scale())
        with xr.set_options(arithmetic_join="exact"):
            x = da.astype(np.float32) * scale + shift
        if self.log1p:
            x = np.expm1(x) / np.float32(self.log1p_scale)
        return (x.clip(min=0) if self.clamps else x).astype(np.float32)

    def params(self) -> dict:
        """``{'shift', 'scale'}`` float32 numpy arrays of 3 dims, ``'log1p'`` (bool), ``'log1p_scale'``
        (float) and ``'nonnegative'`` (bool: the inverse clamps at 0): arrays broadcastable to (C, h, w) for
        predictors (C = channels; (C, 1, 1) when global) and (1, H, W) for target/static."""
        out = {"log1p": self.log1p, "log1p_scale": float(self.log1p_scale), "nonnegative": self.clamps}
        spatial = [d for d in self.dims if d not in ("time", "channel")]
        for key, v in zip(("shift", "scale"), self.shift_scale(), strict=True):
            lead = ["channel"] if "channel" in v.dims else []
            arr = v.transpose(*lead, *[d for d in spatial if d in v.dims]).values.astype(np.float32)
            if not lead:
                arr = arr[None]
            while arr.ndim < 3:
                arr = arr[..., None]
            out[key] = np.ascontiguousarray(arr)
        return out

    def save(self, path: str | Path) -> None:
        """Write the statistics and attrs (method, role, dims, version) to NetCDF (atomically)."""
        ds = self.stats.copy()
        ds.attrs = {"method": self.method, "role": self.role, "dims": " ".join(self.dims),
                    "format_version": FORMAT_VERSION, "log1p_scale": float(self.log1p_scale),
                    "nonnegative": int(self.nonnegative)}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        ds.to_netcdf(tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        """Read a normaliser written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: normaliser file not found")
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
        for key in ("method", "role", "dims", "format_version"):
            if key not in ds.attrs:
                raise DataError(f"{path}: attribute {key!r} missing; not a normaliser file")
        if int(ds.attrs["format_version"]) != FORMAT_VERSION:
            raise DataError(f"{path}: format_version {ds.attrs['format_version']}, expected {FORMAT_VERSION}")
        attrs = dict(ds.attrs)
        ds.attrs = {}
        return cls(method=attrs["method"], role=attrs["role"], stats=ds, dims=tuple(attrs["dims"].split()),
                   log1p_scale=float(attrs.get("log1p_scale", 1.0)), nonnegative=bool(attrs.get("nonnegative", 0)))


def fit_normalizer(method: str, da: xr.DataArray, role: str, *, min_std: float = 1e-6,
                   variable: str | None = None, kind: str | None = None, units: str = "") -> Normalizer:
    """Fit ``method`` on ``da`` (the training split). ``kind`` (else ``variable``, default ``da.name``)
    resolves ``auto``; a precipitation-like ``kind`` makes the inverse non-negative and, with ``units``,
    sets the log1p scale to mm/day."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    method = resolve_method(method, role, variable or da.name, kind)
    precipitation = kind == "precipitation" or (kind is None and role == "target" and (variable or da.name) == "pr")
    scale = mm_per_day_factor(units) if precipitation and method.startswith("log1p") else 1.0
    nonnegative = role == "target" and precipitation
    fam = _family(method)
    if fam == "none":
        return Normalizer(method, role, xr.Dataset(), tuple(da.dims), scale, nonnegative)
    dims = _reduce_dims(method, da)
    x = da.astype(np.float64)
    if method.startswith("log1p"):
        x = np.log1p(x * scale)
    if fam == "standardize":
        a, b = x.mean(dims, skipna=True), x.std(dims, skipna=True, ddof=0)
    else:
        a, b = x.min(dims, skipna=True), x.max(dims, skipna=True)
    with warnings.catch_warnings():  # all-NaN (masked) cells: their NaN statistics are replaced below
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        a, b = dask.compute(a, b)  # one pass over the data
    if fam == "minmax":
        b = b - a
    b = xr.where(np.isfinite(b) & (b >= min_std), b, 1.0)
    a = xr.where(np.isfinite(a), a, 0.0)
    names = _STATS[fam]
    stats = xr.Dataset({names[0]: a, names[1]: b}).drop_vars([c for c in a.coords if c not in a.dims])
    return Normalizer(method, role, stats, tuple(da.dims), scale, nonnegative)


def apply_params(x: np.ndarray, params: dict) -> np.ndarray:
    """Numpy version of :meth:`Normalizer.transform` on (n, C, h, w) / (n, H, W)-like arrays, float32."""
    x = np.asarray(x, dtype=np.float32)
    if params["log1p"]:
        x = np.log1p(x * np.float32(params.get("log1p_scale", 1.0)))
    return (x - params["shift"]) / params["scale"]


@dataclass(frozen=True)
class Normalizers:
    """The normalisers of a run: predictors, target and (with orography) static."""

    predictors: Normalizer
    target: Normalizer
    static: Normalizer | None = None

    def save(self, folder: str | Path) -> None:
        """Write ``norm_<role>.nc`` files into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for role in ROLES:
            n = getattr(self, role)
            if n is not None:
                n.save(folder / f"norm_{role}.nc")

    @classmethod
    def load(cls, folder: str | Path) -> Normalizers:
        folder = Path(folder)
        static = folder / "norm_static.nc"
        return cls(Normalizer.load(folder / "norm_predictors.nc"), Normalizer.load(folder / "norm_target.nc"),
                   Normalizer.load(static) if static.is_file() else None)


def fit_normalizers(train, cfg: NormalizationConfig) -> Normalizers:
    """Fit predictor, target and (when present) orography normalisers on the training split ``train``
    (a :class:`~.reader.DomainData`). Orography uses ``standardize_global``."""
    pred = fit_normalizer(cfg.predictors, train.predictors, "predictors", min_std=cfg.min_std)
    info = train.info
    target = fit_normalizer(cfg.target, train.target, "target", min_std=cfg.min_std, variable=train.target_variable,
                            kind=info.kind, units=info.units)
    static = None
    if train.orography is not None:
        static = fit_normalizer("standardize_global", train.orography, "static", min_std=cfg.min_std)
    return Normalizers(pred, target, static)
