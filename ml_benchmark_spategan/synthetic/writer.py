"""NetCDF4 writers for the synthetic files: predictors, targets (and truth), static fields.

Files are written with netCDF4 directly (uncompressed, contiguous, fill mode off) so that a file can be
created with its final time length and filled chunk by chunk along time (bounded memory). Dims, dtypes,
coordinate attributes and time encodings follow the benchmark (SCHEMA §1.3-1.6, §2).
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np

from ml_benchmark_spategan.cordex import ALPS_LCC, PREDICTOR_UNITS, DomainSpec, predictor_coords, target_coords
from ml_benchmark_spategan.synthetic.timeaxis import TimeAxis

_LATLON_ATTRS = {
    "lat": {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"},
    "lon": {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"},
}
_PREDICTOR_NAMES = {"z": "geopotential height", "t": "air temperature", "q": "specific humidity",
                    "u": "eastward wind", "v": "northward wind"}
_GLOBAL = {"title": "Synthetic CORDEX ML-Bench data (ml_benchmark_spategan.synthetic)",
           "comment": "Synthetic fields with the benchmark's schema; not model output."}


class NcFile:
    """One output file with a fixed-length time axis, filled by :meth:`write` chunks."""

    def __init__(self, path: Path, spec: DomainSpec, axis: TimeAxis, n_days: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.spec = path, spec
        self.ds = netCDF4.Dataset(path, "w", format="NETCDF4")
        self.ds.set_fill_off()
        self.ds.setncatts(_GLOBAL)
        self.ds.createDimension("time", n_days)
        time = self.ds.createVariable("time", axis.values.dtype, ("time",))
        time.setncatts({"standard_name": "time", "axis": "T", "units": axis.units, "calendar": axis.calendar})
        if axis.bounds is not None:
            self.ds.createDimension("bnds", 2)
            time.bounds = "time_bnds"
            self.ds.createVariable("time_bnds", axis.bounds.dtype, ("time", "bnds"))
        self.variables: dict[str, netCDF4.Variable] = {}

    def add(self, name: str, dtype: str, dims: tuple[str, ...], attrs: dict, fill=np.nan) -> None:
        """Create a data variable (contiguous; ``fill`` is recorded as ``_FillValue``, None for none)."""
        var = self.ds.createVariable(name, dtype, dims, contiguous=True,
                                     fill_value=False if fill is None else np.dtype(dtype).type(fill))
        var.setncatts(attrs)
        self.variables[name] = var

    def write(self, start: int, axis: TimeAxis, data: dict[str, np.ndarray]) -> None:
        """Write ``len(axis)`` days from index ``start``: time (and bounds) and each (time, ...) array."""
        stop = start + len(axis)
        self.ds["time"][start:stop] = axis.values
        if axis.bounds is not None:
            self.ds["time_bnds"][start:stop] = axis.bounds
        for name, values in data.items():
            self.variables[name][start:stop] = values.astype(self.variables[name].dtype, copy=False)

    def close(self) -> None:
        self.ds.close()

    def __enter__(self) -> NcFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def predictor_file(path: Path, spec: DomainSpec, axis: TimeAxis, n_days: int, order: list[str]) -> NcFile:
    """A predictor file: 1-D float64 lat/lon and float32 (time, lat, lon) variables in ``order``."""
    nc = NcFile(path, spec, axis, n_days)
    for name, values in predictor_coords(spec.name).items():
        nc.ds.createDimension(name, len(values))
        var = nc.ds.createVariable(name, "f8", (name,))
        var.setncatts(_LATLON_ATTRS[name])
        var[:] = values
    for name in order:
        base, level = name.split("_")
        attrs = {"long_name": f"{_PREDICTOR_NAMES[base]} at {level} hPa", "units": PREDICTOR_UNITS[base]}
        nc.add(name, "f4", ("time", "lat", "lon"), attrs)
    return nc


def _spatial_coords(nc: NcFile, spec: DomainSpec) -> tuple[str, str]:
    """Create the target grid's dims and coordinates (exactly the templates'); return the spatial dims."""
    coords = target_coords(spec.name)
    dims = spec.target_dims
    for dim in dims:
        nc.ds.createDimension(dim, 128)
    if spec.name == "ALPS":
        for dim, axis_name in (("x", "X"), ("y", "Y")):
            var = nc.ds.createVariable(dim, "f8", (dim,))
            var.setncatts({"units": "km", "long_name": f"{dim} coordinate of projection",
                           "standard_name": f"projection_{dim}_coordinate", "axis": axis_name})
            var[:] = coords[dim]
        for name, long_name, units in (("lat", "Latitude", "degrees_north"), ("lon", "Longitude", "degrees_east")):
            var = nc.ds.createVariable(name, "f8", dims)
            var.setncatts({"standard_name": long_name.lower(), "long_name": long_name, "units": units})
            var[:] = coords[name]
        grid_mapping = nc.ds.createVariable("Lambert_Conformal", "i4", ())
        grid_mapping.setncatts(ALPS_LCC)
        grid_mapping.assignValue(0)
        return dims
    for name in ("lat", "lon"):
        var = nc.ds.createVariable(name, "f4", (name,))
        var.setncatts(_LATLON_ATTRS[name])
        var[:] = coords[name]
    if spec.name == "SA":
        _sa_extras(nc, coords)
    return dims


def _sa_extras(nc: NcFile, coords: dict) -> None:
    if "bnds" not in nc.ds.dimensions:
        nc.ds.createDimension("bnds", 2)
    for name in ("lat", "lon"):
        nc.ds[name].bounds = f"{name}_bnds"
        bounds = nc.ds.createVariable(f"{name}_bnds", "f4", (name, "bnds"))
        centre = coords[name].astype(np.float64)
        bounds[:] = np.stack([centre - 0.05, centre + 0.05], axis=-1).astype(np.float32)
    crs = nc.ds.createVariable("crs", "i4", ())
    crs.setncatts({"grid_mapping_name": "latitude_longitude", "earth_radius": 6371000.0})
    crs.assignValue(0)


def target_file(path: Path, spec: DomainSpec, axis: TimeAxis, n_days: int) -> NcFile:
    """A target (or truth) file with ``pr`` (mm/day) and ``tasmax`` (K) on the exact target grid."""
    nc = NcFile(path, spec, axis, n_days)
    dims = ("time",) + _spatial_coords(nc, spec)
    pr_attrs = {"long_name": "Precipitation", "units": "mm/day"}
    tx_attrs = {"standard_name": "air_temperature", "long_name": "Daily Maximum Near-Surface Air Temperature",
                "units": "K", "cell_methods": "time: maximum"}
    tx_fill = np.nan
    if spec.name == "ALPS":
        pr_attrs["coordinates"] = tx_attrs["coordinates"] = "lat lon"
        tx_attrs["grid_mapping"] = "Lambert_Conformal"
    if spec.name == "SA":
        tx_attrs.update({"grid_mapping": "crs", "missing_value": np.float32(9.96921e36)})
        tx_fill = 9.96921e36
    nc.add("pr", spec.pr_dtype, dims, pr_attrs)
    nc.add("tasmax", spec.tasmax_dtype, dims, tx_attrs, fill=tx_fill)
    return nc


def write_static(path: Path, spec: DomainSpec, orog: np.ndarray, land: np.ndarray) -> None:
    """``Static_fields.nc``: ``orog`` (m) and ``sftlf`` (land fraction, 1) on the target grid, float32."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        nc = _StaticShim(ds)
        dims = _spatial_coords(nc, spec)
        for name, values, attrs in (
            ("orog", orog, {"standard_name": "surface_altitude", "long_name": "Surface Altitude", "units": "m"}),
            ("sftlf", land, {"standard_name": "land_area_fraction", "long_name": "Land fraction", "units": "1"}),
        ):
            var = ds.createVariable(name, "f4", dims, fill_value=np.float32(np.nan))
            var.setncatts(attrs | ({"coordinates": "lat lon"} if spec.name == "ALPS" else {}))
            var[:] = values.astype(np.float32)
        ds.setncatts(_GLOBAL)


class _StaticShim:
    """Lets :func:`_spatial_coords` write into a plain dataset (no time axis)."""

    def __init__(self, ds: netCDF4.Dataset):
        self.ds = ds
