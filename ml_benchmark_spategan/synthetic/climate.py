"""Large-scale synthetic climate on the 16×16 predictor grid: state, predictors, GCM biases.

State (per day, per predictor grid point; unit-variance anomalies, AR(1) in time with lag-1
correlation ``phi``, spatially smooth with a spectral peak at synoptic scales ~2000-3000 km):
``psi`` (geopotential), ``theta`` (temperature, 0.5 psi + 0.87 independent), ``hum`` (humidity).
The "wetness" anomaly ``omega = 0.8 hum - 0.6 psi`` (unit variance) is moist where pressure is low.

Predictors (level p in {850, 700, 500} hPa), with ``s = ±1`` hemisphere, ``d`` day of year:

* ``t_850 = T0 - G_T (|lat| - |lat_c|) + A cos(2π (d - d_peak) / 365.25) + σ_T theta + ΔT(year)``,
  ``d_peak`` = 196 (July) north, 15 (January) south;
  ``t_700 = t_850 - 9.5 + 0.1 ΔT``, ``t_500 = t_850 - 26.5 - 0.2 σ_T theta + 0.3 ΔT`` (upper-air amplification);
* ``z_850 = Z0 - G_Z (|lat| - |lat_c|) + σ_Z psi`` (gpm); hypsometric thickness per layer
  ``z_top - z_bottom = (R_d / g) · (t_bottom + t_top) / 2 · ln(p_bottom / p_top)``;
* ``q_p = RH_p · q_sat(t_p, p)``, ``q_sat = 0.622 e_s / (p - 0.378 e_s)``,
  ``e_s = 611.2 exp(17.67 (T - 273.15) / (T - 29.65))`` Pa (Clausius–Clapeyron, Bolton 1980);
  ``RH_850 = clip(RH0 + 0.15 omega, 0.05, 0.98)``, ``RH_700 = 0.85 RH_850``, ``RH_500 = 0.65 RH_850``;
* geostrophic wind ``u = -(g / f) ∂z/∂y``, ``v = (g / f) ∂z/∂x``, ``f = 2Ω sin(lat)`` with
  ``|f| >= 2Ω sin 20°`` (keeps the sign; avoids the tropical singularity).

Warming: ``ΔT(year) = c_scen · c_gcm · 3.5 K · ((year - 1970) / 120)²`` for year > 1970 (about +0.1 K
historical, +1.5 K mid-century, +3.5 K end-century); moisture follows through ``q_sat``.
Imperfect (GCM) predictors come from a biased copy of the state: anomalies scaled (``σ · a``),
offsets on t (K) and z (gpm), a smooth spatial pattern bias on t and z, relative humidity × ``r``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml_benchmark_spategan.cordex import LEVELS, DomainSpec, predictor_coords
from ml_benchmark_spategan.synthetic.spectral import ar1_filter, coloured_noise, gaussian_filter
from ml_benchmark_spategan.synthetic.timeaxis import TimeAxis

R_D_OVER_G = 287.05 / 9.80665  # m / K
GRAVITY = 9.80665
OMEGA = 7.2921e-5
M_PER_DEG = 111195.0
_PAD = 32  # predictor fields are drawn on a 32×32 periodic grid; the central 16×16 window is used


@dataclass(frozen=True)
class Climate:
    """Large-scale climatology of one domain (see the module docstring for the equations)."""

    t850_mean: float  # K at the domain-centre latitude
    t850_seasonal: float  # K, amplitude of the annual cycle
    t850_lat_gradient: float  # K per degree poleward
    t_sigma: float  # K, synoptic standard deviation
    z850_mean: float  # gpm
    z850_lat_gradient: float  # gpm per degree poleward
    z_sigma: float  # gpm
    rh_mean: float  # relative humidity at 850 hPa (0-1)
    tmax_offset: float  # K, surface daily maximum above the lapse-rate-reduced 850 hPa temperature
    warming_scale: float  # scenario scale of ΔT


@dataclass(frozen=True)
class GcmBias:
    """Systematic errors of a GCM's (imperfect) predictors relative to the perfect ones."""

    t_offset: float  # K
    z_offset: float  # gpm
    rh_factor: float  # multiplies relative humidity
    anomaly_scale: float  # multiplies the synoptic anomalies (variability bias)
    pattern_t: float  # K, amplitude of a smooth spatial bias pattern
    pattern_z: float  # gpm
    sensitivity: float  # multiplies ΔT (the GCM's own warming; also in its perfect predictors)


CLIMATES = {
    "ALPS": Climate(275.0, 8.0, 0.6, 3.5, 1510.0, 7.0, 30.0, 0.65, 4.0, 1.1),
    "NZ": Climate(279.0, 3.5, 0.5, 2.5, 1400.0, 8.0, 35.0, 0.72, 3.0, 0.8),
    "SA": Climate(287.0, 5.0, 0.4, 2.5, 1540.0, 3.0, 18.0, 0.50, 5.0, 1.0),
}
# Index 0: GCM1, index 1: GCM2 (DomainSpec.gcms order).
GCM_BIASES = (
    GcmBias(-1.2, -15.0, 0.92, 1.12, 0.8, 12.0, 1.0),
    GcmBias(0.9, 10.0, 1.06, 0.9, 1.0, 15.0, 1.25),
)


def warming(year: np.ndarray, climate: Climate, bias: GcmBias) -> np.ndarray:
    """ΔT (K) per day, (time,) float32."""
    x = np.clip((np.asarray(year, dtype=np.float64) - 1970.0) / 120.0, 0.0, None)
    return (climate.warming_scale * bias.sensitivity * 3.5 * x**2).astype(np.float32)


def _window(fields: np.ndarray) -> np.ndarray:
    lo = (_PAD - 16) // 2
    return np.ascontiguousarray(fields[..., lo:lo + 16, lo:lo + 16])


def synoptic_state(seeds: list[int], n_days: int) -> dict[str, np.ndarray]:
    """Unit-variance anomalies ``psi``, ``theta``, ``hum``, ``omega``: float32 (time, 16, 16).

    ``seeds``: the integer key of this simulation; each field has its own generator, so the first
    ``m`` days do not depend on ``n_days`` (a shorter run is a prefix of a longer one).
    """
    filt = gaussian_filter(_PAD, 2.5)
    raw = {}
    for index, (name, phi) in enumerate((("psi", 0.8), ("theta", 0.75), ("hum", 0.7))):
        rng = np.random.default_rng(seeds + [index])
        raw[name] = _window(ar1_filter(coloured_noise(rng, n_days, filt), phi))
    theta = 0.5 * raw["psi"] + np.sqrt(0.75) * raw["theta"]
    omega = 0.8 * raw["hum"] - 0.6 * raw["psi"]
    return {"psi": raw["psi"], "theta": theta, "hum": raw["hum"], "omega": omega}


def bias_pattern(seeds: list[int]) -> np.ndarray:
    """Smooth unit-variance spatial pattern (16, 16) float32 for a GCM's pattern bias."""
    rng = np.random.default_rng(seeds)
    return _window(coloured_noise(rng, 1, gaussian_filter(_PAD, 1.5)))[0]


def _seasonal_t850(spec: DomainSpec, climate: Climate, day_of_year: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lat_c = 0.5 * (lat[0] + lat[-1])
    peak = 196.0 if lat_c > 0 else 15.0
    season = climate.t850_seasonal * np.cos(2 * np.pi * (day_of_year - peak) / 365.25)
    meridional = -climate.t850_lat_gradient * (np.abs(lat) - abs(lat_c))
    return (climate.t850_mean + season[:, None, None] + meridional[None, :, None]).astype(np.float32)


def saturation_q(t: np.ndarray, p_hpa: float) -> np.ndarray:
    """Saturation specific humidity (kg/kg) at temperature ``t`` (K) and pressure ``p_hpa``."""
    e_s = 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
    p = p_hpa * 100.0
    return (0.622 * e_s / (p - 0.378 * e_s)).astype(np.float32)


def geostrophic_wind(z: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) m/s from geopotential height ``z`` (gpm), dims (time, lat, lon), on a regular lat/lon grid."""
    sin_lat = np.sin(np.deg2rad(lat))
    f = 2 * OMEGA * np.where(sin_lat >= 0, 1.0, -1.0) * np.maximum(np.abs(sin_lat), np.sin(np.deg2rad(20.0)))
    dy = M_PER_DEG * (lat[1] - lat[0])
    dx = M_PER_DEG * (lon[1] - lon[0]) * np.cos(np.deg2rad(lat))
    dzdy = np.gradient(z, axis=-2) / dy
    dzdx = np.gradient(z, axis=-1) / dx[:, None]
    g_over_f = (GRAVITY / f)[:, None]
    return (-g_over_f * dzdy).astype(np.float32), (g_over_f * dzdx).astype(np.float32)


def predictors(spec: DomainSpec, axis: TimeAxis, state: dict[str, np.ndarray], bias: GcmBias,
               imperfect: bool, pattern: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The 15 predictors ``{z,t,q,u,v}_{850,700,500}``: float32 (time, lat, lon) in gpm, K, kg/kg, m/s.

    ``state`` from :func:`synoptic_state` (same days as ``axis``); ``imperfect`` applies ``bias``
    (offsets, anomaly scale, the spatial ``pattern`` (16, 16)); ``bias.sensitivity`` always applies.
    """
    climate = CLIMATES[spec.name]
    coords = predictor_coords(spec.name)
    lat, lon = coords["lat"], coords["lon"]
    lat_c = 0.5 * (lat[0] + lat[-1])
    scale, t_off, z_off, rh_factor = 1.0, 0.0, 0.0, 1.0
    pattern = np.zeros((16, 16), np.float32) if pattern is None else pattern
    if imperfect:
        scale, t_off, z_off, rh_factor = bias.anomaly_scale, bias.t_offset, bias.z_offset, bias.rh_factor
    d_t = warming(axis.year, climate, bias)[:, None, None]
    theta = climate.t_sigma * scale * state["theta"]
    t850 = _seasonal_t850(spec, climate, axis.day_of_year, lat) + theta + d_t
    t850 += t_off + imperfect * bias.pattern_t * pattern
    temps = {850: t850, 700: t850 - 9.5 + 0.1 * d_t, 500: t850 - 26.5 - 0.2 * theta + 0.3 * d_t}
    z850 = climate.z850_mean - climate.z850_lat_gradient * (np.abs(lat) - abs(lat_c))[None, :, None]
    z850 = z850 + climate.z_sigma * scale * state["psi"] + z_off + imperfect * bias.pattern_z * pattern
    heights = {850: z850.astype(np.float32)}
    for bottom, top in ((850, 700), (700, 500)):
        thickness = R_D_OVER_G * 0.5 * (temps[bottom] + temps[top]) * np.log(bottom / top)
        heights[top] = (heights[bottom] + thickness).astype(np.float32)
    rh850 = np.clip(rh_factor * (climate.rh_mean + 0.15 * state["omega"]), 0.05, 0.98)
    rh = {850: rh850, 700: 0.85 * rh850, 500: 0.65 * rh850}
    out = {}
    for level in LEVELS:
        u, v = geostrophic_wind(heights[level], lat, lon)
        out.update({f"z_{level}": heights[level], f"t_{level}": temps[level].astype(np.float32),
                    f"q_{level}": (rh[level] * saturation_q(temps[level], level)).astype(np.float32),
                    f"u_{level}": u, f"v_{level}": v})
    return out
