"""Rectilinear grids: which dim is which axis, and bilinear interpolation between grids (numpy).

Bilinear interpolation on rectilinear grids is separable: interpolate linearly along rows, then along
columns. Each output point takes two source points per axis, so a regridding is stored as, per axis, the
two source indices and the weight of the second (:class:`AxisWeights`), and applied with gathers and
elementwise float64 arithmetic (:meth:`Regrid.apply`). The same function serves the lazy xarray path
and the streaming block reader, so both give bit-identical values.

Longitudes are compared modulo 360 (a 0..360 grid onto a -180..180 one works), source axes may be
descending (ERA5 latitudes), and target points up to half a source cell beyond the outermost source
points take the edge value (nearest); a target grid reaching further than that raises
:class:`~.errors.DataError` ("does not cover"), one with no common area "does not overlap".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ml_benchmark_spategan.dataloader.errors import DataError

_LAT_NAMES = ("lat", "latitude", "nav_lat", "y_lat")
_LON_NAMES = ("lon", "longitude", "nav_lon", "x_lon")


def _attr(coord: xr.DataArray, key: str) -> str:
    return str(coord.attrs.get(key, "") or "").lower()


def is_longitude(coord: xr.DataArray) -> bool:
    """True for a geographic longitude coordinate (by CF standard_name, units or name)."""
    units = _attr(coord, "units")
    return (_attr(coord, "standard_name") == "longitude" or units in ("degrees_east", "degree_east", "degree_e",
            "degrees_e") or str(coord.name).lower() in _LON_NAMES)


def is_latitude(coord: xr.DataArray) -> bool:
    """True for a geographic latitude coordinate (by CF standard_name, units or name)."""
    units = _attr(coord, "units")
    return (_attr(coord, "standard_name") == "latitude" or units in ("degrees_north", "degree_north", "degree_n",
            "degrees_n") or str(coord.name).lower() in _LAT_NAMES)


def ordered_spatial_dims(da: xr.DataArray, spatial: tuple[str, str]) -> tuple[str, str]:
    """``spatial`` as (row, column): a dim whose coordinate is a latitude (or an ``axis: Y``) first, one that
    is a longitude (``axis: X``) last; the file's order otherwise."""
    def role(dim: str) -> str | None:
        if dim not in da.coords:
            return None
        coord = da.coords[dim]
        if is_latitude(coord) or _attr(coord, "axis") == "y":
            return "y"
        if is_longitude(coord) or _attr(coord, "axis") == "x":
            return "x"
        return None

    a, b = spatial
    if role(a) == "x" or role(b) == "y":
        return (b, a)
    return (a, b)


@dataclass(frozen=True, eq=False)
class AxisWeights:
    """Linear interpolation along one axis: output ``j`` = ``(1 - w[j]) * src[lo[j]] + w[j] * src[hi[j]]``."""

    lo: np.ndarray
    hi: np.ndarray
    w: np.ndarray

    @property
    def size(self) -> int:
        return int(self.lo.size)


@dataclass(frozen=True, eq=False)
class Regrid:
    """Separable bilinear map from a source grid (rows, cols) to a target grid (``y``: rows, ``x``: cols)."""

    y: AxisWeights
    x: AxisWeights

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y.size, self.x.size)

    def apply(self, field: np.ndarray) -> np.ndarray:
        """``(..., rows_src, cols_src)`` -> ``(..., rows, cols)`` float32 (float64 arithmetic)."""
        f = np.asarray(field, dtype=np.float64)
        rows = f[..., self.y.lo, :] * (1.0 - self.y.w)[:, None] + f[..., self.y.hi, :] * self.y.w[:, None]
        out = rows[..., self.x.lo] * (1.0 - self.x.w) + rows[..., self.x.hi] * self.x.w
        return out.astype(np.float32)


def _wrap_to(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Source longitudes moved by multiples of 360 into the 360-degree window centred on the target's."""
    centre = 0.5 * (float(np.min(dst)) + float(np.max(dst)))
    return (src - centre + 180.0) % 360.0 + centre - 180.0


def axis_weights(src, dst, *, longitude: bool = False, what: str = "axis", clamp: bool = False) -> AxisWeights:
    """Weights interpolating 1-D source coordinates ``src`` (any monotonic order) at ``dst`` (any order).

    Raises :class:`DataError` naming ``what`` when ``dst`` leaves the source's cells (see module docstring);
    with ``clamp`` such points take the nearest edge value instead.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 1 or dst.ndim != 1 or not src.size or not dst.size:
        raise DataError(f"{what}: expected 1-D coordinate values, found shapes {src.shape} and {dst.shape}")
    if longitude:  # target longitudes made continuous (359, 1 -> 359, 361), source moved next to them
        dst = np.unwrap(dst, period=360.0)
        src = _wrap_to(src, dst)
    order = np.argsort(src, kind="stable")
    s = src[order]
    if s.size > 1 and np.any(np.diff(s) <= 0):
        raise DataError(f"{what}: source coordinates repeat a value; expected strictly monotonic values")
    half_lo = 0.5 * (s[1] - s[0]) if s.size > 1 else 0.0
    half_hi = 0.5 * (s[-1] - s[-2]) if s.size > 1 else 0.0
    lo_edge, hi_edge = s[0] - half_lo, s[-1] + half_hi
    tol = 1e-6 * max(1.0, abs(lo_edge), abs(hi_edge))
    d_lo, d_hi = float(dst.min()), float(dst.max())
    if not clamp and (d_hi < lo_edge - tol or d_lo > hi_edge + tol):
        raise DataError(f"{what}: the grids do not overlap (source spans {lo_edge:.6g} .. {hi_edge:.6g}, "
                        f"target {d_lo:.6g} .. {d_hi:.6g})")
    if not clamp and (d_lo < lo_edge - tol or d_hi > hi_edge + tol):
        raise DataError(f"{what}: the source grid does not cover the target grid (source cells span "
                        f"{lo_edge:.6g} .. {hi_edge:.6g}, target points {d_lo:.6g} .. {d_hi:.6g})")
    if s.size == 1:
        zeros = np.zeros(dst.size, dtype=np.int64)
        return AxisWeights(order[zeros], order[zeros], np.zeros(dst.size))
    clamped = np.clip(dst, s[0], s[-1])
    i = np.clip(np.searchsorted(s, clamped, side="right") - 1, 0, s.size - 2)
    w = (clamped - s[i]) / (s[i + 1] - s[i])
    return AxisWeights(order[i].astype(np.int64), order[i + 1].astype(np.int64), np.clip(w, 0.0, 1.0))


def _coord_values(da: xr.DataArray, dim: str, what: str) -> np.ndarray:
    if dim not in da.coords or da.coords[dim].ndim != 1:
        raise DataError(f"{what}: dimension {dim!r} has no 1-D coordinate values, so the grid cannot be "
                        "interpolated; add coordinates or put every predictor on one grid")
    return np.asarray(da.coords[dim].values)


def same_grid(src: xr.DataArray, ref: xr.DataArray, src_dims: tuple[str, str], ref_dims: tuple[str, str]) -> bool:
    """True when both grids have the same dim names, sizes and exactly equal 1-D coordinates."""
    if tuple(src_dims) != tuple(ref_dims):
        return False
    for d in src_dims:
        if src.sizes[d] != ref.sizes[d]:
            return False
        a, b = (np.asarray(x.coords[d].values) if d in x.coords else None for x in (src, ref))
        if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
            return False
    return True


def plan_regrid(src: xr.DataArray, src_dims: tuple[str, str], ref: xr.DataArray, ref_dims: tuple[str, str],
                what: str) -> Regrid:
    """The bilinear :class:`Regrid` from ``src``'s grid (dims ``src_dims`` = (row, col)) onto ``ref``'s."""
    axes = []
    for sd, rd, label in zip(src_dims, ref_dims, ("rows", "columns"), strict=True):
        s, r = _coord_values(src, sd, what), _coord_values(ref, rd, what)
        longitude = is_longitude(src.coords[sd]) and is_longitude(ref.coords[rd])
        axes.append(axis_weights(s, r, longitude=longitude, what=f"{what} ({label}: {sd!r} onto {rd!r})"))
    return Regrid(*axes)


def describe_grid(da: xr.DataArray, dims: tuple[str, str]) -> str:
    """``'5x7 (lat -10..10, lon 0..24)'`` for log notes."""
    parts = []
    for d in dims:
        if d in da.coords and da.coords[d].ndim == 1 and da.sizes[d]:
            v = np.asarray(da.coords[d].values, dtype=np.float64)
            parts.append(f"{d} {v[0]:.4g}..{v[-1]:.4g}")
    shape = "x".join(str(da.sizes[d]) for d in dims)
    return f"{shape} ({', '.join(parts)})" if parts else shape


def regrid_dataarray(da: xr.DataArray, regrid: Regrid, src_dims: tuple[str, str], ref: xr.DataArray,
                     ref_dims: tuple[str, str]) -> xr.DataArray:
    """Lazily regrid ``da`` (time, *src_dims) onto ``ref``'s grid: dims (time, *ref_dims), ref's coordinates."""
    out = xr.apply_ufunc(
        regrid.apply, da, input_core_dims=[list(src_dims)], output_core_dims=[[f"_{d}" for d in ref_dims]],
        exclude_dims=set(src_dims), dask="parallelized", output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {f"_{d}": n for d, n in zip(ref_dims, regrid.shape, strict=True)}},
    )
    out = out.drop_vars([c for c in out.coords if c != "time"])
    out = out.rename({f"_{d}": d for d in ref_dims})
    return out.assign_coords({d: ref.coords[d] for d in ref_dims if d in ref.coords}).rename(da.name)
