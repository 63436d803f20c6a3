"""High-resolution targets (128×128): daily maximum temperature ``tasmax`` (K) and precipitation ``pr`` (mm/day).

Inputs per day: the perfect predictors and the wetness anomaly ``omega`` of the large-scale state,
interpolated to the target grid (subscript f: bilinear to 33×33 nodes, then linear), and the
orography ``h`` (m). ζ_t is a fresh unit-variance random field each day with PSD ∝ (k² + 4)^-1.75
(k in cycles per domain): small-scale structure that the predictors do not determine.

* tasmax:  ``T_x = t_850,f + Γ (z_850,f - h) + D_x - 0.48 ζ_t - 0.64 ζ_(t-1)`` with Γ = 6.5 K/km and
  ``D_x`` the domain's daily-maximum offset; the ζ terms are fine-scale variability (unit-variance
  mix of two independent fields, σ = 0.8 K): cloudy/wet days and days after rain are cooler.
* pr: a latent Gaussian field, thresholded and exponentiated,

      w  = clip((u_850,f ∂h/∂x + v_850,f ∂h/∂y) / 0.05 m/s, -2, 3)     (upslope flow; < 0 in the lee)
      L  = 0.8 ζ_t + 0.6 omega_f + 0.35 w
      pr = 4 mm/day · (q_850,f / q_ref) · (1 + 0.3 max(w, 0)) · (exp(0.6 max(L + 0.1, 0)) - 1)

  ``q_ref`` is the domain's climatological q_850, so intensities scale with Clausius–Clapeyron
  (~7 %/K) in warmer climates.
"""

from __future__ import annotations

import numpy as np

from ml_benchmark_spategan.cordex import domain_spec, grid_spacing_km, lcc_to_latlon, predictor_coords, target_coords
from ml_benchmark_spategan.synthetic.climate import CLIMATES, saturation_q
from ml_benchmark_spategan.synthetic.spectral import coloured_noise, power_law_filter

LAPSE_RATE = 6.5e-3  # K/m
UPSLOPE_SCALE = 0.05  # m/s
PR_SCALE = 4.0  # mm/day
PR_THRESHOLD = -0.1
PR_KAPPA = 0.6


_NODES = 33  # the coarse fields go bilinearly to 33×33 nodes at grid positions 4k - 0.5, then linearly to 128
_NODE_WEIGHTS = ((np.arange(4) + 0.5) / 4.0).astype(np.float32)  # position of i = 4k + r between nodes k, k+1


def _node_latlon(domain: str) -> tuple[np.ndarray, np.ndarray]:
    """lat/lon (degrees) of the 33×33 nodes at fractional target-grid indices ``4k - 0.5``."""
    pos = 4.0 * np.arange(_NODES) - 0.5
    coords = target_coords(domain)
    if coords["lat"].ndim == 2:  # ALPS: x, y are linear in the index; evaluate the projection
        x = (coords["x"][0] + pos * (coords["x"][1] - coords["x"][0])) * 1000.0
        y = (coords["y"][0] + pos * (coords["y"][1] - coords["y"][0])) * 1000.0
        return lcc_to_latlon(*np.meshgrid(x, y))
    lat, lon = (coords[k].astype(np.float64) for k in ("lat", "lon"))
    lat = lat[0] + pos * (lat[-1] - lat[0]) / 127.0
    lon = lon[0] + pos * (lon[-1] - lon[0]) / 127.0
    return tuple(np.meshgrid(lat, lon, indexing="ij"))


def coarse_to_nodes(domain: str) -> np.ndarray:
    """Bilinear weights from the 16×16 predictor grid to the 33×33 nodes: float32 (256, 1089)."""
    src = predictor_coords(domain)
    lat, lon = (a.ravel() for a in _node_latlon(domain))
    fi = np.clip((lat - src["lat"][0]) / (src["lat"][1] - src["lat"][0]), 0.0, 15.0 - 1e-9)
    fj = np.clip((lon - src["lon"][0]) / (src["lon"][1] - src["lon"][0]), 0.0, 15.0 - 1e-9)
    i0, j0 = np.floor(fi).astype(int), np.floor(fj).astype(int)
    wi, wj = fi - i0, fj - j0
    weights = np.zeros((256, lat.size))
    cols = np.arange(lat.size)
    for di, dj, w in ((0, 0, (1 - wi) * (1 - wj)), (0, 1, (1 - wi) * wj), (1, 0, wi * (1 - wj)), (1, 1, wi * wj)):
        np.add.at(weights, ((i0 + di) * 16 + j0 + dj, cols), w)
    return weights.astype(np.float32)


def _upsample_matrix() -> np.ndarray:
    """(33, 128) float32: linear interpolation from the 33 nodes to the 128 grid indices."""
    matrix = np.zeros((_NODES, 128), dtype=np.float32)
    for r, t in enumerate(_NODE_WEIGHTS):
        matrix[np.arange(32), 4 * np.arange(32) + r] = 1 - t
        matrix[np.arange(1, 33), 4 * np.arange(32) + r] = t
    return matrix


_UPSAMPLE = _upsample_matrix()


def upsample4(nodes: np.ndarray) -> np.ndarray:
    """Linear interpolation (m, 33, 33) nodes at positions 4k - 0.5 -> (m, 128, 128) grid values.

    Two GEMMs with the (33, 128) interpolation matrix; the transposes touch only the smaller arrays.
    """
    m = nodes.shape[0]
    cols = np.ascontiguousarray(nodes.transpose(0, 2, 1)).reshape(m * _NODES, _NODES) @ _UPSAMPLE
    rows = np.ascontiguousarray(cols.reshape(m, _NODES, 128).transpose(0, 2, 1)).reshape(m * 128, _NODES)
    return (rows @ _UPSAMPLE).reshape(m, 128, 128)


class FineGrid:
    """Everything static that the target generator needs for one domain."""

    def __init__(self, domain: str, orog: np.ndarray):
        self.spec = domain_spec(domain)
        self.climate = CLIMATES[self.spec.name]
        self.orog = orog.astype(np.float32)
        self.to_nodes = coarse_to_nodes(domain)
        self.dhdx, self.dhdy = _orography_gradient(domain, self.orog)
        self.pr_filter = power_law_filter(128, 3.5, 2.0)
        self.q_ref = float(self.climate.rh_mean * saturation_q(np.float32(self.climate.t850_mean), 850))

    def interpolate(self, coarse: np.ndarray) -> np.ndarray:
        """(..., 16, 16) -> (..., 128, 128) float32: bilinear to 33×33 nodes, then linear to the grid."""
        lead = coarse.shape[:-2]
        nodes = (coarse.reshape(-1, 256).astype(np.float32) @ self.to_nodes).reshape(-1, _NODES, _NODES)
        return upsample4(nodes).reshape(lead + (128, 128))


def _orography_gradient(domain: str, orog: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """∂h/∂x (eastward) and ∂h/∂y (northward), dimensionless (m/m), each (128, 128) float32."""
    coords = target_coords(domain)
    dy = grid_spacing_km(domain) * 1000.0
    if coords["lat"].ndim == 2:
        dx = np.full((128, 1), 12.5e3)
        dy = 12.5e3
    else:
        dx = dy * np.cos(np.deg2rad(coords["lat"].astype(np.float64)))[:, None]
    dhdy, dhdx = np.gradient(orog.astype(np.float64))
    return (dhdx / dx).astype(np.float32), (dhdy / dy).astype(np.float32)


def target_chunk(grid: FineGrid, fields: dict[str, np.ndarray], omega: np.ndarray, rng: np.random.Generator,
                 previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pr (mm/day) and tasmax (K) for a batch of days, each float32 (time, 128, 128).

    ``fields``: perfect predictors (time, 16, 16) (needs t_850, z_850, q_850, u_850, v_850);
    ``omega``: wetness anomaly (time, 16, 16); ``rng``: draws the fresh small-scale fields ζ;
    ``previous``: ζ of the day before the batch (None: drawn). Returns (pr, tasmax, ζ of the last day).
    """
    n = omega.shape[0]
    climate = grid.climate
    # One interpolation for all smooth inputs: u, v, omega, q and the lapse-rate-reduced temperature.
    t_surface0 = fields["t_850"] + np.float32(LAPSE_RATE) * fields["z_850"] + np.float32(climate.tmax_offset)
    coarse = np.stack([fields["u_850"], fields["v_850"], omega, fields["q_850"], t_surface0], axis=1)
    u, v, omega_f, q_f, tasmax = np.moveaxis(grid.interpolate(coarse), 1, 0)
    zeta = coloured_noise(rng, n + (previous is None), grid.pr_filter)
    if previous is not None:
        zeta = np.concatenate([previous[None], zeta])
    upslope = u * grid.dhdx
    upslope += v * grid.dhdy
    upslope *= np.float32(1.0 / UPSLOPE_SCALE)
    np.clip(upslope, -2.0, 3.0, out=upslope)
    latent = np.float32(0.8) * zeta[1:]
    latent += np.float32(0.6) * omega_f
    latent += np.float32(0.35) * upslope
    latent -= np.float32(PR_THRESHOLD)
    np.maximum(latent, np.float32(0.0), out=latent)
    latent *= np.float32(PR_KAPPA)
    pr = np.exp(latent, out=latent)
    pr -= np.float32(1.0)
    q_f *= np.float32(PR_SCALE / grid.q_ref)
    np.maximum(upslope, np.float32(0.0), out=upslope)
    upslope *= np.float32(0.3)
    upslope += np.float32(1.0)
    pr *= q_f
    pr *= upslope
    tasmax -= np.float32(LAPSE_RATE) * grid.orog
    tasmax -= np.float32(0.48) * zeta[1:]
    tasmax -= np.float32(0.64) * zeta[:-1]
    return pr, tasmax, zeta[-1].copy()
