"""Synthetic CORDEX ML-Bench domains: the project's embedded default data.

``generate_domain(out_root, domain, years=20, seed=0, truth=True)`` writes ``<out_root>/<D>_domain`` with
the benchmark's exact layout and schema (both training experiments, ``Static_fields.nc``, perfect and
imperfect test predictors of both GCMs) plus ``<D>_domain_truth`` (pr/tasmax of every test period).
Command line: ``python -m ml_benchmark_spategan.synthetic --domain ALPS --out data/cordex --years 4``.

The fields are physically coherent rather than random (equations in docs/synthetic_domain.md):

* predictors (16×16, daily): hemisphere-aware seasonal cycle, AR(1) synoptic anomalies (lag-1 ≈ 0.75-0.8)
  at scales of ~2000-3000 km, hypsometric thickness, q from Clausius–Clapeyron times relative humidity,
  geostrophic winds; warming of +1.5 K (mid) / +3.5 K (end century) scaled per scenario and GCM;
  imperfect predictors = biased state (offsets, variability scale, spatial pattern);
* orography (128×128): coasts, ridges and plateaus per domain with power-law fractal detail;
* tasmax: interpolated t_850 lapse-rate reduced to the orography (-6.5 K/km) plus fine-scale noise;
* pr: intermittent (50-70 % of days < 1 mm), skewed and heavy-tailed, orographically enhanced by
  upslope flow, with fresh small-scale structure (PSD ∝ k^-3.5) that the predictors do not determine.

Modules: ``spectral`` (random fields, AR(1)), ``orography``, ``timeaxis`` (encodings), ``climate``
(predictors), ``targets`` (pr, tasmax), ``writer`` (NetCDF), ``generate`` (the file tree).
"""

from ml_benchmark_spategan.synthetic.generate import generate_domain

__all__ = ["generate_domain"]
