"""Map panels: grid geometry, offline Natural Earth data, and ``plot_map``.

Plot functions do no science: they take computed 2-D arrays, draw on an ``ax`` and return it.
cartopy is imported inside the functions that need it, so importing this module stays cheap.

Projections:

* ALPS is drawn on its own spherical Lambert Conformal grid (``pcolormesh`` on x/y in metres).
* NZ, SA and any regular 1-D lat/lon grid are drawn in PlateCarree; grids near the dateline
  (NZ, its predictors) use ``central_longitude=180`` so nothing is split at ±180°.
* Rotated-pole grids (CF ``rotated_latitude_longitude``, or rlat/rlon with 2-D lat/lon) are drawn in their
  ``RotatedPole`` CRS; other CF grid mappings (Lambert conformal, transverse Mercator, stereographic, ...)
  in their own projection; other grids with 2-D lat/lon as curvilinear meshes in PlateCarree
  (:mod:`.grids` recognises them).
* A grid that cannot be placed on the globe falls back to plain ``imshow`` axes (one warning per grid).

Map data: coastlines and borders come from Natural Earth 50m shapefiles (public domain). The package ships
the two layers it draws (:data:`PACKAGED_MAP_DATA`, ~1.5 MB) and uses them whenever cartopy has no local
copy, so maps get coastlines offline without any setting; ``ML_BENCH_CARTOPY_DATA`` (or an explicit
folder) overrides (see :func:`configure_cartopy_data`). A folder without the files gives maps without
coastlines and a warning saying why. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
from matplotlib import colormaps

from ml_benchmark_spategan.cordex import ALPS_LCC, target_coords

#: Environment variable naming a cartopy data folder (``shapefiles/natural_earth/...`` inside).
CARTOPY_DATA_ENV = "ML_BENCH_CARTOPY_DATA"
#: The Natural Earth files shipped with the package (a cartopy data folder: ``shapefiles/natural_earth/...``).
PACKAGED_MAP_DATA = Path(__file__).resolve().parent / "natural_earth"
#: Natural Earth layers drawn on every map: label -> (category, name); always at 50m.
NATURAL_EARTH_LAYERS = {
    "coastlines": ("physical", "coastline"),
    "borders": ("cultural", "admin_0_boundary_lines_land"),
}
NATURAL_EARTH_SCALE = "50m"
MAP_KINDS = ("pr", "tasmax", "diverging", "sequential", "ratio")
PR_LOG_VMIN = 0.1  # mm/day: the lower end of the pr colour scale; drier cells get its colour


def pr_log_vmin(units: str | None) -> float:
    """:data:`PR_LOG_VMIN` (0.1 mm/day) in ``units`` (e.g. 1.16e-6 kg m-2 s-1); unchanged for unknown units."""
    from ml_benchmark_spategan.variables import UnitError, convert

    try:
        return float(convert(PR_LOG_VMIN, "mm/day", units or "mm/day"))
    except UnitError:
        return PR_LOG_VMIN
_STATE = {"configured": False}


# --- grid geometry ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MapGrid:
    """Geometry of a 2-D field of shape ``(len(y), len(x))`` for drawing.

    ``projection``: ``"lcc"`` (x/y in metres on the ALPS Lambert Conformal grid), ``"latlon"`` (x = longitude
    in degrees east relative to ``central_longitude``, y = latitude in degrees north), ``"rotated"`` (x/y =
    rotated longitude/latitude in degrees; ``params`` = cartopy ``RotatedPole`` arguments), ``"projected"``
    (x/y in metres of the CF grid mapping in ``params``), ``"curvilinear"`` (x/y = 2-D longitude/latitude of
    every cell, drawn in PlateCarree) or ``"plain"`` (x/y are column/row indices: a grid that cannot be
    placed on the globe). ``lat``/``lon`` (degrees) are kept for reference and may be ``None``.
    """

    domain: str | None
    projection: str
    x: np.ndarray
    y: np.ndarray
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None
    central_longitude: float = 0.0
    params: dict | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.y.shape) if np.ndim(self.y) == 2 else (self.y.size, self.x.size)

    @property
    def is_geographic(self) -> bool:
        return self.projection != "plain"

    def crs(self):
        """cartopy CRS of ``x``/``y`` (also the natural axes projection); ``None`` for plain grids."""
        import cartopy.crs as ccrs

        if self.projection == "lcc":
            globe = ccrs.Globe(semimajor_axis=ALPS_LCC["earth_radius"], semiminor_axis=ALPS_LCC["earth_radius"])
            return ccrs.LambertConformal(
                central_longitude=ALPS_LCC["longitude_of_central_meridian"],
                central_latitude=ALPS_LCC["latitude_of_projection_origin"],
                standard_parallels=(ALPS_LCC["standard_parallel"], ALPS_LCC["standard_parallel"]),
                false_easting=ALPS_LCC["false_easting"],
                false_northing=ALPS_LCC["false_northing"],
                globe=globe,
            )
        if self.projection in ("latlon", "curvilinear"):
            return ccrs.PlateCarree(central_longitude=self.central_longitude)
        if self.projection == "rotated":
            return ccrs.RotatedPole(**self.params)
        if self.projection == "projected":
            from ml_benchmark_spategan.visualization.grids import cf_projection

            return cf_projection(self.params)
        return None

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell edges ``(x_edges (nx+1,), y_edges (ny+1,))`` in the units of ``x``/``y`` (2-D grids:
        ``(ny+1, nx+1)`` corner arrays)."""
        if np.ndim(self.x) == 2:
            return _corner_edges(self.x), _corner_edges(self.y)
        return _cell_edges(self.x, "x"), _cell_edges(self.y, "y")

    def extent(self) -> tuple[float, float, float, float]:
        """``(x0, x1, y0, y1)`` of the outer cell edges in :meth:`crs` units."""
        xe, ye = self.edges()
        return (float(xe.min()), float(xe.max()), float(ye.min()), float(ye.max()))


def _cell_edges(centres: np.ndarray, name: str) -> np.ndarray:
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 1 or c.size < 2:
        raise ValueError(f"map grid coordinate {name!r}: expected a 1-D array of >= 2 values, found shape {c.shape}")
    steps = np.diff(c)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise ValueError(f"map grid coordinate {name!r} is not strictly monotonic")
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - 0.5 * steps[0]], mid, [c[-1] + 0.5 * steps[-1]]])


def _corner_edges(centres: np.ndarray) -> np.ndarray:
    """Corners (ny+1, nx+1) of a 2-D array of cell centres: midpoints inside, extrapolated at the border."""
    c = np.asarray(centres, dtype=np.float64)
    pad = np.pad(c, 1, mode="reflect", reflect_type="odd")
    return 0.25 * (pad[:-1, :-1] + pad[1:, :-1] + pad[:-1, 1:] + pad[1:, 1:])


def _wrap_lon(lon: np.ndarray, central_longitude: float) -> np.ndarray:
    return (np.asarray(lon, dtype=np.float64) - central_longitude + 180.0) % 360.0 - 180.0


def _latlon_grid(domain: str | None, lat: np.ndarray, lon: np.ndarray) -> MapGrid:
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.ndim != 1 or lon.ndim != 1:
        raise ValueError(f"map grid for domain {domain!r}: expected 1-D lat and lon, found shapes {lat.shape}, {lon.shape}")
    # NZ sits next to the dateline; other grids get 180 only if their longitudes are not monotonic around 0.
    candidates = (180.0,) if domain == "NZ" else (0.0, 180.0)
    for central in candidates:
        x = _wrap_lon(lon, central)
        if np.all(np.diff(x) > 0) or np.all(np.diff(x) < 0):
            return MapGrid(domain, "latlon", x, lat, lat, lon, central)
    raise ValueError(f"map grid for domain {domain!r}: longitudes are not monotonic in any wrapping")


def map_grid(domain: str | None, lat=None, lon=None, x=None, y=None) -> MapGrid:
    """Drawing geometry of a field.

    ``domain="ALPS"``: ``x``/``y`` (1-D, km, as in the benchmark files; 128 each) are required, ``lat``/``lon``
    (2-D, degrees) are kept for reference. ``"NZ"``/``"SA"`` or ``None`` with 1-D ``lat``/``lon`` (degrees):
    a regular lat/lon grid in PlateCarree. ``None`` without usable 1-D lat/lon: plain image axes whose
    size comes from ``y``/``x`` (arrays or 2-D lat).
    """
    if domain == "ALPS":
        if x is None or y is None:
            raise ValueError("map grid for domain 'ALPS': x and y (1-D, km) are required for the Lambert grid")
        x_km, y_km = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if max(np.abs(x_km).max(), np.abs(y_km).max()) > 1.0e5:
            raise ValueError("map grid for domain 'ALPS': x/y look like metres (> 1e5); expected km as in the files")
        return MapGrid("ALPS", "lcc", x_km * 1000.0, y_km * 1000.0,
                       None if lat is None else np.asarray(lat), None if lon is None else np.asarray(lon))
    if domain is not None and domain not in ("NZ", "SA"):
        raise ValueError(f"map grid: unknown domain {domain!r}; expected 'ALPS', 'NZ', 'SA' or None")
    if lat is not None and lon is not None and np.ndim(lat) == 1 and np.ndim(lon) == 1:
        return _latlon_grid(domain, lat, lon)
    if domain is not None:
        raise ValueError(f"map grid for domain {domain!r}: expected 1-D lat and lon, found none or 2-D")
    return _plain_grid(lat, x, y)


def _plain_grid(lat, x, y) -> MapGrid:
    if x is not None and y is not None:
        ny, nx = np.size(y), np.size(x)
    elif lat is not None and np.ndim(lat) == 2:
        ny, nx = np.shape(lat)
    else:
        raise ValueError("map grid without domain: give 1-D lat/lon, or x/y, or 2-D lat to size the image")
    return MapGrid(None, "plain", np.arange(nx, dtype=np.float64), np.arange(ny, dtype=np.float64))


def map_grid_for_domain(domain: str) -> MapGrid:
    """The :class:`MapGrid` of a benchmark domain's 128×128 target grid (from :mod:`cordex` constants)."""
    coords = target_coords(domain)
    return map_grid(domain, coords["lat"], coords["lon"], coords.get("x"), coords.get("y"))


def map_grid_from_xarray(obj, domain: str | None = None) -> MapGrid:
    """:class:`MapGrid` of an xarray object's last two (spatial) dims.

    CORDEX domains use their known geometry. Otherwise, in this order: a CF grid mapping (the object's
    ``grid_mapping`` coordinate: rotated pole or a projection), 1-D latitude/longitude dims, rlat/rlon dims
    with 2-D lat/lon (the rotated pole is recovered from them), any 2-D lat/lon (curvilinear), and last
    grid coordinates (plain axes) with one warning per grid (see :mod:`.grids`).
    """
    from ml_benchmark_spategan.visualization.grids import grid_from_xarray

    if domain is not None:
        def coord(name):
            return np.asarray(obj.coords[name].values) if name in obj.coords else None

        return map_grid(domain, coord("lat"), coord("lon"), coord("x"), coord("y"))
    return grid_from_xarray(obj)


# --- offline Natural Earth data ---------------------------------------------------------------------
def configure_cartopy_data(path: str | os.PathLike | None = None) -> Path | None:
    """Point cartopy at an offline data folder and report where Natural Earth 50m files are.

    ``path`` wins, else the ``ML_BENCH_CARTOPY_DATA`` environment variable; either becomes
    ``cartopy.config['pre_existing_data_dir']`` (it must hold ``shapefiles/natural_earth/{physical,cultural}/
    ne_50m_*.shp``). Without either, cartopy's own folders are used when they hold the files, else the copy
    shipped with the package (:data:`PACKAGED_MAP_DATA`). Returns the folder the map layers will be read
    from, or ``None`` when they are not on disk (maps are then drawn without them).
    """
    import cartopy

    if path is None:
        path = os.environ.get(CARTOPY_DATA_ENV) or None
    if path is not None:
        cartopy.config["pre_existing_data_dir"] = Path(path).expanduser()
    elif _layers_root() is None:
        cartopy.config["pre_existing_data_dir"] = PACKAGED_MAP_DATA
    _STATE["configured"] = True
    return _layers_root()


def _layers_root() -> Path | None:
    found = [_layer_dir(category, name) for category, name in NATURAL_EARTH_LAYERS.values()]
    return found[0] if all(d is not None for d in found) else None


def _layer_dir(category: str, name: str) -> Path | None:
    """The cartopy data folder holding one Natural Earth layer (all of .shp/.shx/.dbf), or None."""
    import cartopy

    rel = Path("shapefiles", "natural_earth", category, f"ne_{NATURAL_EARTH_SCALE}_{name}")
    # Same order as cartopy's lookup: pre-existing folder first, then its download folder.
    for key in ("pre_existing_data_dir", "data_dir"):
        root = cartopy.config.get(key)
        if root and all((Path(root) / rel).with_suffix(s).is_file() for s in (".shp", ".shx", ".dbf")):
            return Path(root)
    return None


def add_map_features(ax) -> list:
    """Draw 50m coastlines and borders on a GeoAxes if their files are on disk; never download.

    Returns the added feature artists. Missing layers are skipped with one warning naming them.
    """
    import cartopy.feature as cfeature

    if not _STATE["configured"]:
        configure_cartopy_data()
    artists, missing = [], []
    for label, (category, name) in NATURAL_EARTH_LAYERS.items():
        if _layer_dir(category, name) is None:
            missing.append(f"{category}/ne_{NATURAL_EARTH_SCALE}_{name}.shp")
            continue
        feature = cfeature.NaturalEarthFeature(category, name, NATURAL_EARTH_SCALE)
        width = 0.6 if label == "coastlines" else 0.4
        artists.append(ax.add_feature(feature, facecolor="none", edgecolor="0.15", linewidth=width))
    if missing:
        warnings.warn(
            f"map drawn without coastlines/borders: Natural Earth files not found offline ({', '.join(missing)}); "
            f"set {CARTOPY_DATA_ENV} or call configure_cartopy_data(path) with a cartopy data folder",
            stacklevel=2,
        )
    return artists


# --- colours ----------------------------------------------------------------------------------------
def _finite_range(field: np.ndarray) -> tuple[float, float]:
    finite = field[np.isfinite(field)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def colour_scale(field: np.ndarray, kind: str, vmin=None, vmax=None, cmap: str | None = None):
    """``(field_to_draw, cmap, norm, extend)`` for a map of ``kind`` (see :func:`plot_map`); NaN stays NaN."""
    if kind not in MAP_KINDS:
        raise ValueError(f"plot_map: unknown kind {kind!r}; expected one of {MAP_KINDS}")
    lo, hi = _finite_range(field)
    extend = "neither"
    if kind == "pr":
        vmin = PR_LOG_VMIN if vmin is None else vmin
        vmax = max(hi, 10.0 * vmin) if vmax is None else vmax
        field = np.where(np.isnan(field), np.nan, np.maximum(field, vmin))  # dry cells: lowest colour
        norm, name, extend = mcolors.LogNorm(vmin, vmax), cmap or "YlGnBu", "min"
    elif kind == "diverging":
        half = max(abs(lo), abs(hi)) if vmin is None and vmax is None else max(abs(vmin or 0.0), abs(vmax or 0.0))
        half = half or 1.0
        norm, name = mcolors.Normalize(-half, half), cmap or "RdBu_r"
    elif kind == "ratio":  # a ratio around 1 on a log scale, symmetric in log: r and 1/r get opposite colours
        r = max(hi, 1.0 / lo if lo > 0 else hi, 1.01) if vmax is None else max(vmax, 1.0 / vmax)
        norm, name = mcolors.LogNorm(1.0 / r, r), cmap or "PuOr_r"
    else:
        norm = mcolors.Normalize(lo if vmin is None else vmin, hi if vmax is None else vmax)
        name = cmap or ("RdYlBu_r" if kind == "tasmax" else "viridis")
    return field, colormaps[name].with_extremes(bad=(0.0, 0.0, 0.0, 0.0)), norm, extend


# --- drawing ----------------------------------------------------------------------------------------
def add_map_axes(fig, grid: MapGrid, *subplot_args):
    """``fig.add_subplot(*subplot_args)`` on the grid's projection (plain axes for plain grids)."""
    return fig.add_subplot(*subplot_args, projection=grid.crs())


def plot_map(ax, field2d, grid: MapGrid, *, kind: str, vmin=None, vmax=None, title: str = "", cbar: bool = True,
             cbar_label: str = "", cmap: str | None = None, set_extent: bool = True, features: bool = True,
             gridlines: bool = True):
    """Draw a 2-D field ``(ny, nx)`` on its grid; returns ``ax``.

    ``ax`` is a cartopy GeoAxes (made with :func:`add_map_axes`, any projection) for geographic grids, any
    Axes for plain grids. ``kind``: ``"pr"`` (mm/day, LogNorm from 0.1, 'YlGnBu'), ``"tasmax"`` ('RdYlBu_r'),
    ``"diverging"`` (biases: 'RdBu_r', limits symmetric about 0; pass ``cmap="BrBG"`` for pr),
    ``"sequential"`` ('viridis'), ``"ratio"`` (log scale symmetric about 1). NaN cells are transparent.
    ``gridlines``: dotted latitude/longitude lines labelled in degrees on the left and bottom edges
    (:func:`add_gridlines`).
    """
    field = np.asarray(field2d, dtype=np.float64)
    if field.shape != grid.shape:
        raise ValueError(f"plot_map {title!r}: field has shape {field.shape}, grid expects (ny, nx) = {grid.shape}")
    field, cmap_obj, norm, extend = colour_scale(field, kind, vmin, vmax, cmap)
    if extend == "neither":  # values beyond given limits: arrows on the colour bar
        lo, hi = _finite_range(field)
        extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
            (lo < norm.vmin, hi > norm.vmax), "neither")
    masked = np.ma.masked_invalid(field)
    if grid.is_geographic:
        xe, ye = grid.edges()
        mesh = ax.pcolormesh(xe, ye, masked, cmap=cmap_obj, norm=norm, transform=grid.crs())
        if set_extent:
            ax.set_extent(grid.extent(), crs=grid.crs())
        if features:
            add_map_features(ax)
        if gridlines:
            add_gridlines(ax)
    else:
        mesh = ax.imshow(masked, origin="lower", cmap=cmap_obj, norm=norm, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    if cbar:
        bar = ax.figure.colorbar(mesh, ax=ax, shrink=0.8, extend=extend, label=cbar_label)
        if isinstance(norm, mcolors.LogNorm):  # 0.5, 1, 2 rather than 10^-1 ... on log colour bars
            from ml_benchmark_spategan.visualization.curves import plain_log_axis

            plain_log_axis(bar.ax.yaxis)
    ax.set_title(title, fontsize=9)
    return ax


def add_gridlines(ax):
    """Dotted latitude/longitude lines on a GeoAxes, labelled (degrees N/E) on the left and bottom edges;
    returns cartopy's Gridliner. Projections cartopy cannot label get the lines without labels."""
    import cartopy.crs as ccrs

    style = {"crs": ccrs.PlateCarree(), "linewidth": 0.4, "color": "0.35", "alpha": 0.7, "linestyle": ":"}
    try:
        gl = ax.gridlines(draw_labels={"left": "y", "bottom": "x"}, x_inline=False, y_inline=False,
                          rotate_labels=False, **style)
    except (TypeError, ValueError):
        return ax.gridlines(draw_labels=False, **style)
    gl.xlabel_style = gl.ylabel_style = {"size": 6}
    return gl


def draw_outline(ax, grid: MapGrid, **line_kwargs):
    """Outline the outer cell edges of ``grid`` on ``ax`` (e.g. the target domain on a predictor panel)."""
    if not grid.is_geographic:
        raise ValueError("draw_outline: the grid has no geographic projection")
    xe, ye = grid.edges()
    if xe.ndim == 2:  # curvilinear: walk the corner arrays' border
        bx = np.concatenate([xe[0], xe[1:, -1], xe[-1, ::-1], xe[::-1, 0]])
        by = np.concatenate([ye[0], ye[1:, -1], ye[-1, ::-1], ye[::-1, 0]])
    else:
        bx = np.concatenate([xe, np.full(ye.size, xe[-1]), xe[::-1], np.full(ye.size, xe[0])])
        by = np.concatenate([np.full(xe.size, ye[0]), ye, np.full(xe.size, ye[-1]), ye[::-1]])
    style = {"color": "k", "linewidth": 1.0, "linestyle": "--"} | line_kwargs
    ax.plot(bx, by, transform=grid.crs(), **style)
    return ax
