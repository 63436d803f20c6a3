"""Synthetic orography (surface altitude, m) on each domain's 128×128 target grid.

The terrain is built in kilometres on a local equirectangular plane around the domain centre
(``x = 111.195 cos(lat0) (lon - lon0)``, ``y = 111.195 (lat - lat0)``) from

* a land/sea split: a signed "inland distance" ``d`` (km; > 0 on land) from hand-placed coast lines,
  island spines or sea basins, roughened by fractal noise so coasts are ragged;
* mountain ranges: Gaussian ridges ``H exp(-d_r² / (2 σ²))`` along polylines (``d_r`` distance to the
  ridge line), modulated by ``clip(1 + 0.5 F, 0.15, 1.3)`` with ``F`` a power-law random field
  (PSD ∝ k^-3), which cuts the ranges into peaks, passes and valleys;
* hills: ``h_hill = 180 (1 + F')`` with ``F'`` another power-law field (PSD ∝ k^-3.5);
* plateaus and escarpments (SA): ``H_p / (1 + exp(-(d - d_e) / w))`` in the inland distance.

Land height ``h = (ridges + hills + plateau) · clip(d / 40 km, 0, 1)``; sea is 0. The result is
non-negative float32 (row, column) = (y, x) for ALPS and (lat, lon) for NZ/SA. The terrain depends on
the domain only (a fixed internal seed), so every data seed shares one landscape.
"""

from __future__ import annotations

import numpy as np

from ml_benchmark_spategan.cordex import domain_spec, target_coords
from ml_benchmark_spategan.synthetic.spectral import coloured_noise, power_law_filter

KM_PER_DEG = 111.195

# (lat, lon) polylines; heights in m, widths (Gaussian sigma) in km.
_RIDGES = {
    "ALPS": [
        ([(44.1, 7.3), (45.0, 6.9), (45.9, 7.2), (46.4, 8.5), (46.7, 10.2), (47.0, 12.0), (47.3, 14.0),
          (47.7, 15.8)], 2900.0, 55.0),
        ([(42.75, -0.5), (42.5, 2.5)], 2200.0, 30.0),
        ([(44.3, 8.5), (44.0, 11.0), (42.5, 13.3), (41.0, 15.3), (39.5, 16.3)], 1500.0, 30.0),
        ([(45.8, 14.5), (44.0, 16.5), (42.5, 19.0)], 1500.0, 45.0),
        ([(48.6, 19.2), (49.2, 22.2)], 1300.0, 40.0),
        ([(45.6, 2.7), (44.6, 3.6)], 1100.0, 50.0),
        ([(46.3, 6.0), (47.5, 7.2), (48.5, 7.4)], 900.0, 25.0),
    ],
    "NZ": [
        ([(-46.0, 167.0), (-44.8, 168.3), (-43.7, 170.1), (-42.8, 171.6), (-41.8, 172.8)], 2500.0, 25.0),
        ([(-41.7, 174.0), (-42.5, 173.4)], 1700.0, 20.0),
        ([(-41.3, 175.3), (-40.0, 176.0), (-38.5, 177.2), (-37.8, 178.1)], 1500.0, 20.0),
        ([(-39.4, 175.6), (-39.1, 175.7)], 1500.0, 15.0),
    ],
    "SA": [
        ([(-31.5, 27.3), (-30.0, 28.6), (-29.2, 29.4), (-28.0, 29.8), (-26.0, 30.4), (-23.5, 30.6)], 700.0, 22.0),
        ([(-29.9, 28.0), (-29.3, 28.9)], 1000.0, 50.0),
        ([(-33.9, 20.0), (-33.5, 22.5), (-33.6, 24.5), (-33.7, 26.2)], 1200.0, 18.0),
    ],
}
# NZ islands: spine polylines (lat, lon) and their half-widths (km).
_NZ_ISLANDS = [
    ([(-46.6, 168.6), (-45.6, 167.6), (-44.4, 169.0), (-43.3, 171.2), (-42.2, 172.6), (-41.1, 173.5)], 105.0),
    ([(-41.5, 175.3), (-40.0, 175.7), (-38.6, 176.0), (-37.7, 177.5)], 95.0),
    ([(-38.6, 176.0), (-37.2, 175.1), (-36.0, 174.2), (-34.6, 172.9)], 50.0),
]
# ALPS sea basins: centres (lat, lon) and radii (km); the Adriatic is a polyline with half-width.
_ALPS_SEAS = [((41.6, 5.0), 330.0), ((40.0, 12.2), 230.0), ((37.9, 18.5), 230.0), ((45.5, -3.5), 260.0)]
_ALPS_ADRIATIC = ([(45.6, 13.0), (43.5, 15.0), (41.5, 17.6)], 75.0)
# SA coast line, west to east then north-east (land on the left of the direction of travel).
_SA_COAST = [(-34.9, 19.0), (-34.4, 21.5), (-34.0, 25.6), (-33.0, 27.9), (-31.5, 29.6), (-29.9, 31.0),
             (-28.8, 32.1), (-26.5, 32.9), (-24.5, 35.2), (-21.0, 35.4)]


def _plane_km(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    x = KM_PER_DEG * np.cos(np.deg2rad(lat0)) * (np.asarray(lon) - lon0)
    y = KM_PER_DEG * (np.asarray(lat) - lat0)
    return x, y


def polyline_distance(x: np.ndarray, y: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (km) from points to a polyline, and the side (+1 left, -1 right of travel direction).

    ``x, y``: any shape (km); ``line``: (m, 2) vertices (x, y) in km. Returns two arrays shaped like x.
    """
    best = np.full(x.shape, np.inf)
    side = np.ones(x.shape)
    for (ax, ay), (bx, by) in zip(line[:-1], line[1:], strict=True):
        dx, dy = bx - ax, by - ay
        t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        d = np.hypot(x - ax - t * dx, y - ay - t * dy)
        closer = d < best
        best = np.where(closer, d, best)
        side = np.where(closer, np.where(dx * (y - ay) - dy * (x - ax) >= 0.0, 1.0, -1.0), side)
    return best, side


class _Plane:
    """Target-grid points of one domain on the local km plane."""

    def __init__(self, domain: str):
        coords = target_coords(domain)
        if coords["lat"].ndim == 2:
            lat, lon = coords["lat"], coords["lon"]
        else:
            lat, lon = np.meshgrid(coords["lat"].astype(np.float64), coords["lon"].astype(np.float64), indexing="ij")
        self.lat0, self.lon0 = float(lat.mean()), float(lon.mean())
        self.x, self.y = _plane_km(lat, lon, self.lat0, self.lon0)

    def line(self, points) -> np.ndarray:
        lat, lon = np.asarray(points, dtype=np.float64).T
        return np.stack(_plane_km(lat, lon, self.lat0, self.lon0), axis=-1)

    def distance(self, points) -> tuple[np.ndarray, np.ndarray]:
        return polyline_distance(self.x, self.y, self.line(points))


def _inland_km(domain: str, plane: _Plane) -> np.ndarray:
    """Signed distance to the sea (km): positive on land."""
    if domain == "NZ":
        return np.max([half - plane.distance(spine)[0] for spine, half in _NZ_ISLANDS], axis=0)
    if domain == "SA":
        dist, side = plane.distance(_SA_COAST)
        return dist * side
    seas = []
    for centre, radius in _ALPS_SEAS:
        cx, cy = plane.line([centre])[0]
        seas.append(np.hypot(plane.x - cx, plane.y - cy) - radius)
    seas.append(plane.distance(_ALPS_ADRIATIC[0])[0] - _ALPS_ADRIATIC[1])
    return np.min(seas, axis=0)


def _plateau(domain: str, plane: _Plane, inland: np.ndarray) -> np.ndarray:
    if domain != "SA":
        return np.zeros_like(inland)
    # Highveld: ~1100-1600 m behind an escarpment ~130 km inland, higher towards the east.
    height = 1100.0 + 500.0 * np.clip((plane.x + 300.0) / 600.0, 0.0, 1.0)
    return height / (1.0 + np.exp(-(inland - 130.0) / 18.0))


def synthetic_orography(domain: str) -> np.ndarray:
    """Surface altitude (m) of ``domain`` on its 128×128 target grid: float32, >= 0.

    Dims are the target's spatial dims: (y, x) for ALPS, (lat, lon) for NZ and SA.
    """
    name = domain_spec(domain).name
    rng = np.random.default_rng([20240917, sum(map(ord, name))])
    plane = _Plane(name)
    modulation, hills, coast = (coloured_noise(rng, 1, power_law_filter(128, beta, 2.0))[0].astype(np.float64)
                                for beta in (3.0, 3.5, 3.0))
    inland = _inland_km(name, plane) + 15.0 * coast
    height = 180.0 * (1.0 + hills) + _plateau(name, plane, inland)
    for points, peak, sigma in _RIDGES[name]:
        dist, _ = plane.distance(points)
        height += peak * np.exp(-0.5 * (dist / sigma) ** 2) * np.clip(1.0 + 0.5 * modulation, 0.15, 1.3)
    height *= np.clip(inland / 40.0, 0.0, 1.0)
    return np.maximum(height, 0.0).astype(np.float32)


def land_fraction(orog: np.ndarray) -> np.ndarray:
    """Binary land-sea mask (1 where orography > 0), float32, same shape as ``orog``."""
    return (np.asarray(orog) > 0.0).astype(np.float32)
