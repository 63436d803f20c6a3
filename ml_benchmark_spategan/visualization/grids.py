"""Recognising the map geometry of a gridded xarray object (no science, no drawing).

Order of the rules (first match wins), for the last two (spatial) dims ``(row, col)`` of the object:

1. a CF grid mapping: the variable named by the object's ``grid_mapping`` attribute, kept as a scalar
   coordinate (the data layer attaches it), or any scalar coordinate with a ``grid_mapping_name``:
   ``rotated_latitude_longitude`` -> a ``RotatedPole`` grid on the rlon/rlat coordinates (degrees);
   ``latitude_longitude`` -> rule 2; ``lambert_conformal_conic``, ``transverse_mercator``,
   ``polar_stereographic``, ``stereographic``, ``lambert_azimuthal_equal_area``, ``albers_conical_equal_area``,
   ``mercator`` -> that projection on the x/y coordinates (metres, or km converted);
2. 1-D latitude/longitude dims (by CF standard_name, units or name) -> PlateCarree;
3. rotated dims (standard_name grid_latitude/grid_longitude, or named rlat/rlon) with 2-D lat/lon: the
   rotated pole is solved from the 2-D lat/lon (each cell's angular distance from the rotated north pole is
   90° - rlat: a linear least-squares problem for the pole's unit vector) and accepted when it reproduces
   every cell's position to 0.01°;
4. any 2-D lat/lon -> a curvilinear mesh in PlateCarree;
5. otherwise grid coordinates (plain axes), with ONE warning per grid and process.
"""

from __future__ import annotations

import warnings

import numpy as np

from ml_benchmark_spategan.visualization.maps import MapGrid, _latlon_grid, _wrap_lon

_LAT = ("lat", "latitude", "nav_lat")
_LON = ("lon", "longitude", "nav_lon")
_WARNED: set[tuple] = set()
_PROJECTIONS = ("lambert_conformal_conic", "transverse_mercator", "polar_stereographic", "stereographic",
                "lambert_azimuthal_equal_area", "albers_conical_equal_area", "mercator")


def _attr(coord, key: str) -> str:
    return str(coord.attrs.get(key, "") or "").lower()


def _is_lat(coord) -> bool:
    return _attr(coord, "standard_name") == "latitude" or _attr(coord, "units") in ("degrees_north", "degree_north") \
        or str(coord.name).lower() in _LAT


def _is_lon(coord) -> bool:
    return _attr(coord, "standard_name") == "longitude" or _attr(coord, "units") in ("degrees_east", "degree_east") \
        or str(coord.name).lower() in _LON


def _spatial(obj) -> tuple[str, str]:
    dims = [d for d in obj.dims if d not in ("time", "member", "channel")]
    if len(dims) < 2:
        raise ValueError(f"map grid: expected two spatial dims, found dims {tuple(obj.dims)}")
    return dims[-2], dims[-1]


def grid_mapping(obj) -> dict | None:
    """The CF grid-mapping attributes attached to ``obj`` (see module docstring), or None."""
    name = str(obj.attrs.get("grid_mapping", "") or "")
    if name and name in obj.coords and "grid_mapping_name" in obj.coords[name].attrs:
        return dict(obj.coords[name].attrs)
    for coord in obj.coords.values():
        if coord.ndim == 0 and "grid_mapping_name" in coord.attrs:
            return dict(coord.attrs)
    return None


def _aux(obj, row: str, col: str, test) -> np.ndarray | None:
    for coord in obj.coords.values():
        if coord.ndim == 2 and set(coord.dims) == {row, col} and test(coord):
            return np.asarray(coord.transpose(row, col).values, dtype=np.float64)
    return None


def grid_from_xarray(obj) -> MapGrid:
    """The :class:`MapGrid` of ``obj`` (rules in the module docstring)."""
    row, col = _spatial(obj)
    y = np.asarray(obj[row].values, dtype=np.float64) if row in obj.coords else None
    x = np.asarray(obj[col].values, dtype=np.float64) if col in obj.coords else None
    lat2d, lon2d = _aux(obj, row, col, _is_lat), _aux(obj, row, col, _is_lon)
    mapping = grid_mapping(obj)
    name = (mapping or {}).get("grid_mapping_name", "")
    if name == "rotated_latitude_longitude" and x is not None and y is not None:
        params = {"pole_longitude": float(mapping.get("grid_north_pole_longitude", 180.0)),
                  "pole_latitude": float(mapping.get("grid_north_pole_latitude", 90.0)),
                  "central_rotated_longitude": float(mapping.get("north_pole_grid_longitude", 0.0))}
        return MapGrid(None, "rotated", x, y, lat2d, lon2d, params=params)
    if name in _PROJECTIONS and x is not None and y is not None:
        scale = 1000.0 if _attr(obj[col], "units") == "km" else 1.0
        return MapGrid(None, "projected", x * scale, y * scale, lat2d, lon2d, params=mapping)
    if y is not None and x is not None and _is_lat(obj[row]) and _is_lon(obj[col]):
        return _latlon_grid(None, y, x)
    if lat2d is not None and lon2d is not None:
        if x is not None and y is not None and _rotated_dims(obj, row, col):
            params = fit_rotated_pole(x, y, lat2d, lon2d)
            if params is not None:
                return MapGrid(None, "rotated", x, y, lat2d, lon2d, params=params)
        return curvilinear_grid(lat2d, lon2d)
    return _plain(obj, row, col)


def _rotated_dims(obj, row: str, col: str) -> bool:
    names = (_attr(obj[row], "standard_name"), _attr(obj[col], "standard_name"))
    return names == ("grid_latitude", "grid_longitude") or (row.lower(), col.lower()) == ("rlat", "rlon")


def fit_rotated_pole(rlon: np.ndarray, rlat: np.ndarray, lat2d: np.ndarray, lon2d: np.ndarray,
                     tolerance_deg: float = 0.01) -> dict | None:
    """``RotatedPole`` arguments reproducing the 2-D lat/lon of an (rlat, rlon) grid, or None if none does."""
    import cartopy.crs as ccrs

    la, lo = np.deg2rad(lat2d.ravel()), np.deg2rad(lon2d.ravel())
    vectors = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
    rr = np.broadcast_to(rlat[:, None], lat2d.shape).ravel()
    pole, *_ = np.linalg.lstsq(vectors, np.sin(np.deg2rad(rr)), rcond=None)
    if not 0.9 < np.linalg.norm(pole) < 1.1:
        return None
    pole /= np.linalg.norm(pole)
    params = {"pole_latitude": float(np.rad2deg(np.arcsin(pole[2]))),
              "pole_longitude": float(np.rad2deg(np.arctan2(pole[1], pole[0]))), "central_rotated_longitude": 0.0}
    cc = np.broadcast_to(rlon[None, :], lat2d.shape)
    rotated = ccrs.RotatedPole(**params).transform_points(ccrs.PlateCarree(), lon2d, lat2d)
    shift = float(np.median((cc - rotated[..., 0] + 180.0) % 360.0 - 180.0))
    params["central_rotated_longitude"] = shift
    geo = ccrs.PlateCarree().transform_points(ccrs.RotatedPole(**params), cc, np.broadcast_to(rlat[:, None], lat2d.shape))
    dlon = np.abs((geo[..., 0] - lon2d + 180.0) % 360.0 - 180.0)
    return params if max(float(dlon.max()), float(np.abs(geo[..., 1] - lat2d).max())) < tolerance_deg else None


def curvilinear_grid(lat2d: np.ndarray, lon2d: np.ndarray) -> MapGrid:
    """A mesh of 2-D cell centres in PlateCarree (centred on 180 when the cells straddle the dateline)."""
    central = 180.0 if np.ptp(_wrap_lon(lon2d, 0.0)) > 180.0 else 0.0
    return MapGrid(None, "curvilinear", _wrap_lon(lon2d, central), lat2d, lat2d, lon2d, central)


def _plain(obj, row: str, col: str) -> MapGrid:
    shape = (obj.sizes[row], obj.sizes[col])
    key = (row, col, shape)
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(f"map drawn in grid coordinates: the grid ({row}, {col}) {shape[0]}x{shape[1]} has no "
                      "latitude/longitude and no CF grid mapping to place it on the globe", stacklevel=3)
    return MapGrid(None, "plain", np.arange(shape[1], dtype=np.float64), np.arange(shape[0], dtype=np.float64))


def cf_projection(params: dict):
    """cartopy projection of a CF grid mapping (see the module docstring for the names known)."""
    import cartopy.crs as ccrs

    p = {k: float(v) if np.ndim(v) == 0 and not isinstance(v, str) else v for k, v in params.items()}
    radius = p.get("earth_radius")
    globe = ccrs.Globe(semimajor_axis=radius, semiminor_axis=radius) if radius else ccrs.Globe(
        semimajor_axis=p.get("semi_major_axis"), inverse_flattening=p.get("inverse_flattening"))
    common = {"false_easting": p.get("false_easting", 0.0), "false_northing": p.get("false_northing", 0.0),
              "globe": globe}
    name = p["grid_mapping_name"]
    lon0 = p.get("longitude_of_central_meridian", p.get("longitude_of_projection_origin",
                                                          p.get("straight_vertical_longitude_from_pole", 0.0)))
    lat0 = p.get("latitude_of_projection_origin", 0.0)
    parallels = np.atleast_1d(p.get("standard_parallel", lat0)).astype(float).tolist()
    if name == "lambert_conformal_conic":
        return ccrs.LambertConformal(lon0, lat0, standard_parallels=tuple(parallels * (2 // len(parallels))), **common)
    if name == "albers_conical_equal_area":
        return ccrs.AlbersEqualArea(lon0, lat0, standard_parallels=tuple(parallels * (2 // len(parallels))), **common)
    if name == "transverse_mercator":
        return ccrs.TransverseMercator(lon0, lat0, scale_factor=p.get("scale_factor_at_central_meridian", 1.0),
                                       approx=False, **common)
    if name == "lambert_azimuthal_equal_area":
        return ccrs.LambertAzimuthalEqualArea(lon0, lat0, **common)
    if name == "mercator":
        return ccrs.Mercator(lon0, latitude_true_scale=parallels[0] if "standard_parallel" in p else None, **common)
    return ccrs.Stereographic(lat0 if name == "stereographic" else (90.0 if lat0 >= 0 else -90.0), lon0,
                              true_scale_latitude=p.get("standard_parallel"), **common)
