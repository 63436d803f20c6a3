"""The evaluation report of one ensemble prediction: every diagnostic as one number, plus the curves and maps
the plots need (xarray in, plain Python / xarray out; no torch).

Inputs: ``truth`` (time, row, col) and ``pred`` (member, time, row, col), both in the target's physical units
(whatever they are: CORDEX pr mm/day, tasmax K; your own data keeps its units, e.g. degC or kg m-2 s-1) on
exactly the same coordinates (checked). Cells where the truth is NaN are left out of every score (the
prediction is masked there), so every spatial mean runs over valid cells only. Which index biases are
scored depends on the target's kind (:func:`index_specs`); thresholds are converted to the data's units.

Which prediction each score uses (the keys of :attr:`EvaluationReport.scores`; see :data:`SCORE_DOCS`):

* ``*/member0``: the first member, a single realisation (what a generative model must make realistic);
* ``*/ensemble_mean``: the member mean (the best deterministic estimate; smooth, so its extremes and
  spectra are expected to be too weak);
* ``*/member_mean``: a per-member score averaged over members; ``*/all_members``: members pooled.

The benchmark-recommended diagnostics (CORDEX ML-Bench evaluation README) use the benchmark's definitions
and one-number reductions: RMSE = spatial mean of the RMSE-over-time map; index bias = spatial mean of
|index(pred) - index(truth)|; RALSD without square root on time-mean spectra; Wasserstein-1 over all values
(scalar) and per grid point (map, reduced by its spatial mean).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ml_benchmark_spategan.utils.progress import track
from ml_benchmark_spategan.variables import CORDEX_TARGETS, VariableInfo, default_info

from . import diagnostics, ensemble, spectra
from ._common import MEMBER, TIME, check_same_coords, filter_season, spatial_dims

#: Benchmark-recommended index biases per variable (README §5), plus the mean for pr (see :func:`index_specs`).
INDEX_BIASES = {"tasmax": ("mean", "txx", "su"), "pr": ("mean", "sdii", "rx1day", "cwd")}
#: Thresholds in their own units, converted to the data's: the wet day (pr), SU for your own data (ETCCDI
#: 25 degC) and the benchmark's SU (300 K, kept for CORDEX runs).
WET_DAY = (1.0, "mm/day")
SU_ETCCDI = (25.0, "degC")
SU_BENCHMARK = (300.0, "K")
#: Indices that count days (their biases are in days, whatever the variable's units).
DAY_COUNT_INDICES = ("su", "cwd", "cdd")
#: FSS neighbourhood sizes in grid cells.
FSS_SCALES = (1, 5, 11, 25)
#: FSS event thresholds: pr in mm/day; tasmax as percentiles of the pooled truth values.
PR_FSS_THRESHOLDS = (1.0, 5.0, 20.0)
TASMAX_FSS_PERCENTILES = (90.0, 95.0, 99.0)
#: Probabilities of the saved quantiles (QQ plots).
QQ_PROBABILITIES = (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995,
                    0.999, 0.9999)
SPREAD_SKILL_BINS = 10
#: Two series the paired scores use, stacked along ``member`` so each index/FSS runs once.
PAIR = ("member0", "ensemble_mean")

SCORE_DOCS = {
    "rmse": "spatial mean of the RMSE-over-time map (benchmark); member_mean = mean of the members' scores",
    "corr": "spatial mean of the Pearson correlation over time",
    "std_ratio": "spatial mean of std_pred / std_true over time",
    "bias_mean": "spatial mean of abs(bias) of the time mean (benchmark reduction)",
    "bias_txx": "spatial mean of abs(bias) of TXx (annual max, mean over years)",
    "bias_su": "spatial mean of abs(bias) of SU (days above the threshold per year: 300 K for CORDEX as the benchmark, 25 degC (ETCCDI) for your own data, in the data's units)",
    "bias_annual_max": "spatial mean of abs(bias) of the annual maximum (mean over years)",
    "bias_annual_min": "spatial mean of abs(bias) of the annual minimum (mean over years)",
    "bias_q98": "spatial mean of abs(bias) of the 98th percentile over time",
    "bias_sdii": "spatial mean of abs(bias) of SDII (mean pr of days >= 1 mm/day, in the data's units)",
    "bias_rx1day": "spatial mean of abs(bias) of Rx1day (annual max, mean over years)",
    "bias_cwd": "spatial mean of abs(bias) of CWD (longest wet spell >= 1 mm per year, mean over years)",
    "ralsd": "benchmark RALSD in dB^2 (no square root) of time-mean spectra (all_members: members pooled)",
    "ralsd_rms": "corrected RALSD in dB (Harris et al. 2022): RMS per field, DC bin left out, mean over fields",
    "wasserstein": "Wasserstein-1 distance of all values pooled (benchmark scalar)",
    "wasserstein_map": "spatial mean of the per-grid-point Wasserstein-1 map (benchmark spatial=True)",
    "wasserstein_summer": "Wasserstein-1 of JJA values (the benchmark's pr example, season='summer'; precipitation-like targets)",
    "crps": "CRPS over all members, mean over cells and days (fair: unbiased estimator; standard)",
    "spread_skill": "ratio = sqrt((m+1)/m mean ensemble variance) / RMSE of the ensemble mean (1 = reliable)",
    "fss": "fractions skill score, period-aggregated: fss/<threshold>/s<scale cells>/<series>",
    "rank_histogram": "edge_fraction = share of the truth below/above all members (reliable: 2/(m+1))",
}


@dataclass
class EvaluationReport:
    """One-number scores (``None`` where undefined) and the data behind the plots.

    maps: name -> (row, col) DataArray; psd: Dataset ``power(series, wavenumber)`` (corrected spectra,
    with ``wavenumber_per_km`` when a grid spacing is known) and ``power_benchmark(series, benchmark_bin)``;
    quantiles: ``quantile(series, probability)``; fss_thresholds: label -> threshold value.
    """

    scores: dict[str, float | None]
    rank_histogram: list[int] = field(default_factory=list)
    fss_thresholds: dict[str, float] = field(default_factory=dict)
    spread_skill_bins: dict[str, list[float]] = field(default_factory=dict)
    maps: dict[str, xr.DataArray] = field(default_factory=dict)
    psd: xr.Dataset | None = None
    quantiles: xr.Dataset | None = None


# --- naming ----------------------------------------------------------------------------------------------
def evaluation_label(split: str, period: str | None = None, kind: str | None = None, gcm: str | None = None) -> str:
    """The evaluation folder name (and predictions file suffix): ``val``, ``test`` (the held-out
    ``data.test_years``, split ``test_years``) or ``test_<period>_<kind>_<gcm>`` (a CORDEX test period)."""
    if split == "val":
        return "val"
    if split == "test_years":
        return "test"
    if split != "test" or not (period and kind and gcm):
        raise ValueError(f"evaluation label: split {split!r} needs 'val', or 'test' with period, kind and gcm")
    return f"test_{period}_{kind}_{gcm}"


def index_units(key: str, units: str | None) -> str:
    """Units of the bias of index ``key`` (``"cwd"``, ``"bias_cwd"``, ``"bias_cwd/member0"``): ``days`` for
    the day-count indices (:data:`DAY_COUNT_INDICES`), else the variable's ``units``."""
    name = key.split("/")[0].removeprefix("bias_")
    return "days" if name in DAY_COUNT_INDICES else (units or "")


def score_doc(key: str) -> str:
    """The description of a score key (by its first path component)."""
    return SCORE_DOCS.get(key.split("/")[0], "")


def _clean(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# --- inputs ----------------------------------------------------------------------------------------------
def prepare(truth: xr.DataArray, pred: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """Checked, loaded inputs: truth (time, row, col), pred (member, time, row, col), the
    prediction NaN where the truth is NaN. Raises ValueError on other dims or differing coordinates."""
    if truth.ndim != 3 or TIME not in truth.dims:
        raise ValueError(f"truth: expected dims (time, row, col), got {truth.dims}")
    if MEMBER not in pred.dims or pred.ndim != 4:
        raise ValueError(f"prediction: expected dims (member, time, row, col), got {pred.dims}")
    row, col = spatial_dims(truth, "truth")
    if spatial_dims(pred, "prediction") != (row, col):
        raise ValueError(f"prediction spatial dims {spatial_dims(pred)} differ from the truth's {(row, col)}")
    truth = truth.transpose(TIME, row, col).load()
    pred = pred.transpose(MEMBER, TIME, row, col).load()
    check_same_coords(truth, pred)
    return truth, pred.where(truth.notnull())


def _pair(pred: xr.DataArray) -> xr.DataArray:
    """(member=[member0, ensemble_mean], time, row, col)."""
    stacked = xr.concat([pred.isel({MEMBER: 0}, drop=True), pred.mean(MEMBER)], dim=MEMBER)
    return stacked.assign_coords({MEMBER: list(PAIR)})


def _per_series(da: xr.DataArray, prefix: str, fn=lambda x: x) -> dict[str, float | None]:
    return {f"{prefix}/{s}": _clean(fn(da.sel({MEMBER: s}))) for s in da[MEMBER].values}


# --- scores ----------------------------------------------------------------------------------------------
def deterministic_scores(truth: xr.DataArray, pred: xr.DataArray, pair: xr.DataArray) -> tuple[dict, dict]:
    """RMSE (ensemble mean, member mean, member 0), correlation and std ratio; returns (scores, maps)."""
    rmse_members = diagnostics.rmse(truth, pred, dim=TIME)  # (member, row, col)
    rmse_pair = diagnostics.rmse(truth, pair, dim=TIME)
    scores = _per_series(rmse_pair, "rmse", diagnostics.spatial_mean)
    scores["rmse/member_mean"] = _clean(diagnostics.spatial_mean(rmse_members).mean())
    ens_mean = pair.sel({MEMBER: "ensemble_mean"}, drop=True)
    member0 = pair.sel({MEMBER: "member0"}, drop=True)
    scores["corr/ensemble_mean"] = _clean(diagnostics.spatial_mean(xr.corr(truth, ens_mean, dim=TIME)))
    scores["std_ratio/member0"] = _clean(diagnostics.spatial_mean(member0.std(TIME) / truth.std(TIME)))
    maps = {"rmse (ensemble mean)": rmse_pair.sel({MEMBER: "ensemble_mean"}, drop=True),
            "rmse (member 0)": rmse_pair.sel({MEMBER: "member0"}, drop=True)}
    return scores, maps


@dataclass(frozen=True)
class IndexSpec:
    """One index bias to score: key (``bias_<key>``), the :mod:`.indices` function and its arguments."""

    key: str
    function: str
    kwargs: tuple = ()


def index_specs(info: VariableInfo, benchmark: bool = False) -> tuple[IndexSpec, ...]:
    """The index biases that make sense for a target (thresholds converted to its units).

    precipitation: mean, SDII, Rx1day, CWD (wet day 1 mm/day; SDII and CWD left out when the units are
    unknown); temperature of daily maxima: mean, TXx, SU (``benchmark``: 300 K, else 25 degC); other
    temperatures: mean, annual maximum and minimum; generic: mean and the 98th percentile.
    """
    if info.kind == "precipitation":
        wet = info.threshold(*WET_DAY)
        specs = [IndexSpec("mean", "mean"), IndexSpec("sdii", "sdii", (("wet_threshold", wet),)),
                 IndexSpec("rx1day", "rx1day"), IndexSpec("cwd", "cwd", (("wet_threshold", wet),))]
        return tuple(s for s in specs if wet is not None or s.key not in ("sdii", "cwd"))
    if info.kind == "temperature" and info.statistic == "max":
        su = info.threshold(*(SU_BENCHMARK if benchmark else SU_ETCCDI))
        specs = [IndexSpec("mean", "mean"), IndexSpec("txx", "txx")]
        return tuple(specs + ([IndexSpec("su", "su", (("threshold", su),))] if su is not None else []))
    if info.kind == "temperature":
        return (IndexSpec("mean", "mean"), IndexSpec("annual_max", "txx"), IndexSpec("annual_min", "txn"))
    return (IndexSpec("mean", "mean"), IndexSpec("q98", "quantile", (("q", 0.98),)))


def index_scores(truth: xr.DataArray, pair: xr.DataArray, specs: Sequence[IndexSpec]) -> tuple[dict, dict]:
    """Index biases of member 0 and of the ensemble-mean field (spatial mean of |bias| over valid cells);
    maps of the bias (NaN where the truth is NaN on every day)."""
    scores, maps = {}, {}
    for spec in specs:
        bias = diagnostics.bias_index(truth, pair, spec.function, **dict(spec.kwargs)).compute()
        scores.update(_per_series(bias, f"bias_{spec.key}", diagnostics.spatial_mean_abs))
        for series in PAIR:
            maps[f"bias of {spec.key} ({series.replace('member0', 'member 0').replace('_', ' ')})"] = \
                bias.sel({MEMBER: series}, drop=True)
    return scores, maps


def spectral_scores(truth: xr.DataArray, pred: xr.DataArray, psd: xr.Dataset,
                    corrected: bool = True) -> dict[str, float | None]:
    """Benchmark RALSD from ``psd`` (:func:`psd_series` of :func:`plot_series`: member 0, ensemble mean, members
    pooled) and, if ``corrected``, the corrected RALSD (member 0, all members)."""
    bench = psd["power_benchmark"]
    p_true = bench.sel(series="target")
    scores = {}
    for key, series in (("member0", "member 0"), ("ensemble_mean", "ensemble mean"), ("all_members", "all members")):
        scores[f"ralsd/{key}"] = _clean(spectra.ralsd(p_true, bench.sel(series=series)))
    if not corrected:
        return scores
    scores["ralsd_rms/member0"] = _clean(spectra.ralsd_rms(truth, pred.isel({MEMBER: 0}, drop=True)))
    scores["ralsd_rms/all_members"] = _clean(spectra.ralsd_rms(truth, pred))
    return scores


def distribution_scores(truth: xr.DataArray, member0: xr.DataArray, kind: str) -> tuple[dict, dict]:
    """Wasserstein-1 of member 0: pooled scalar, spatial mean of the per-point map (valid cells only),
    (precipitation-like) JJA pooled."""
    w_map = diagnostics.wasserstein_distance(truth, member0, spatial=True).compute()
    scores = {"wasserstein/member0": _clean(diagnostics.wasserstein_distance(truth, member0)),
              "wasserstein_map/member0": _clean(diagnostics.spatial_mean(w_map))}
    if kind == "precipitation":
        jja = filter_season(truth, "summer")
        scores["wasserstein_summer/member0"] = (
            _clean(diagnostics.wasserstein_distance(truth, member0, season="summer")) if jja.sizes[TIME] else None)
    return scores, {"wasserstein (member 0)": w_map}


def ensemble_scores(truth: xr.DataArray, pred: xr.DataArray, seed: int = 0) -> tuple[dict, list[int], dict]:
    """CRPS (fair, standard), spread-skill, rank histogram (counts) and binned spread vs RMSE (m >= 2)."""
    m = pred.sizes[MEMBER]
    counts = ensemble.rank_histogram(truth, pred, seed=seed).values
    total = counts.sum()
    scores = {"crps/standard": _clean(ensemble.crps(truth, pred).mean()),
              "crps/fair": None, "spread_skill/ratio": None, "spread_skill/spread": None, "spread_skill/rmse": None,
              "rank_histogram/edge_fraction": _clean((counts[0] + counts[-1]) / total) if total else None}
    if m < 2:
        return scores, counts.tolist(), {}
    scores["crps/fair"] = _clean(ensemble.crps(truth, pred, fair=True).mean())
    var = pred.var(MEMBER, ddof=1)
    spread2 = var * ensemble.spread_correction(m)
    err2 = (pred.mean(MEMBER) - truth) ** 2
    spread, rmse = np.sqrt(spread2.mean()), np.sqrt(err2.mean())
    # = ensemble.spread_skill_ratio, from the variance and error already computed for the binned curve
    scores["spread_skill/ratio"] = _clean(ensemble.spread_skill_from_means(var.mean(), err2.mean(), m))
    scores["spread_skill/spread"] = _clean(spread)
    scores["spread_skill/rmse"] = _clean(rmse)
    return scores, counts.tolist(), binned_spread_skill(spread2.values, err2.values)


def binned_spread_skill(spread2: np.ndarray, err2: np.ndarray, n_bins: int = SPREAD_SKILL_BINS) -> dict:
    """Spread-skill curve: points binned by spread (equal-count bins); per bin sqrt(mean spread^2) and
    sqrt(mean squared error of the ensemble mean). NaN points are left out; empty bins are dropped."""
    s, e = np.ravel(spread2), np.ravel(err2)
    keep = np.isfinite(s) & np.isfinite(e)
    s, e = s[keep], e[keep]
    if s.size == 0:
        return {"spread": [], "rmse": []}
    edges = np.unique(np.quantile(s, np.linspace(0.0, 1.0, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(edges.size - 2, 0))
    spread, rmse = [], []
    for b in range(max(edges.size - 1, 1)):
        sel = which == b
        if sel.any():
            spread.append(float(np.sqrt(s[sel].mean())))
            rmse.append(float(np.sqrt(e[sel].mean())))
    return {"spread": spread, "rmse": rmse}


def fss_thresholds(truth: xr.DataArray, info: VariableInfo) -> dict[str, float]:
    """label -> threshold: precipitation 1/5/20 mm/day (in the data's units); otherwise (and for
    precipitation of unknown units) the truth's pooled 90th/95th/99th percentiles."""
    if info.kind == "precipitation" and info.threshold(1.0, "mm/day") is not None:
        return {f"{t:g}mm": info.threshold(t, "mm/day") for t in PR_FSS_THRESHOLDS}
    values = truth.values[np.isfinite(truth.values)]
    return {f"p{p:g}": float(np.percentile(values, p)) for p in TASMAX_FSS_PERCENTILES}


def fss_scores(truth: xr.DataArray, pair: xr.DataArray, thresholds: Mapping[str, float],
               scales: Sequence[int] = FSS_SCALES) -> dict[str, float | None]:
    """FSS of member 0 and of the ensemble mean per threshold and scale: ``fss/<label>/s<scale>/<series>``."""
    score = ensemble.fss(truth, pair, list(thresholds.values()), scales)  # (threshold, scale, member)
    out = {}
    for i, label in enumerate(thresholds):
        for j, scale in enumerate(scales):
            for k, series in enumerate(PAIR):
                out[f"fss/{label}/s{scale}/{series}"] = _clean(score.values[i, j, k])
    return out


# --- curves ----------------------------------------------------------------------------------------------
def _once_per_array(series: Mapping[str, xr.DataArray], fn) -> list:
    """``[fn(da) for da in series.values()]``, computed once per distinct object (labels may share one)."""
    done: dict[int, object] = {}
    return [done[id(da)] if id(da) in done else done.setdefault(id(da), fn(da)) for da in series.values()]


def psd_series(series: Mapping[str, xr.DataArray], dx_km: float | None = None) -> xr.Dataset:
    """Time- (and member-) mean spectra of each labelled field: ``power(series, wavenumber)`` (corrected:
    true DC, up to Nyquist; wavenumber in cycles per grid length, plus per km when ``dx_km`` is given) and
    ``power_benchmark(series, benchmark_bin)`` (the benchmark's PSD)."""
    corrected = _once_per_array(series, lambda da: spectra.power_spectrum(da, kind="corrected", dx_km=dx_km))
    bench = _once_per_array(series, lambda da: spectra.power_spectrum(da).rename({spectra.WAVENUMBER: "benchmark_bin"}))
    labels = list(series)
    power = xr.concat(corrected, dim="series").assign_coords(series=labels)
    return xr.Dataset({"power": power, "power_benchmark": xr.concat(bench, dim="series").assign_coords(series=labels)})


def quantile_series(series: Mapping[str, xr.DataArray], probabilities: Sequence[float] = QQ_PROBABILITIES) -> xr.Dataset:
    """Quantiles of all finite values of each labelled field (time, space and members pooled):
    ``quantile(series, probability)`` in the variable's units."""
    def quantiles(da):
        values = np.asarray(da.values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        return np.quantile(values, probabilities) if values.size else np.full(len(probabilities), np.nan)

    rows = _once_per_array(series, quantiles)
    return xr.Dataset({"quantile": (("series", "probability"), np.array(rows))},
                      coords={"series": list(series), "probability": np.asarray(probabilities, dtype=np.float64)})


def plot_series(truth: xr.DataArray | None, pred: xr.DataArray, label: str = "") -> dict[str, xr.DataArray]:
    """The labelled fields of the saved spectra and quantiles: target (if given), member 0, ensemble mean and all
    members pooled (the last two equal member 0 for a one-member ensemble)."""
    prefix = f"{label} " if label else ""
    out = {"target": truth} if truth is not None else {}
    member0 = pred.isel({MEMBER: 0}, drop=True)
    single = pred.sizes[MEMBER] == 1  # one object for all three: spectra and quantiles are computed once
    out[f"{prefix}member 0"] = member0
    out[f"{prefix}ensemble mean"] = member0 if single else pred.mean(MEMBER)
    out[f"{prefix}all members"] = member0 if single else pred
    return out


# --- the report ------------------------------------------------------------------------------------------
def compute_report(truth: xr.DataArray, pred: xr.DataArray, variable: str, dx_km: float | None = None,
                   seed: int = 0, full: bool = True, *, info: VariableInfo | None = None,
                   benchmark: bool | None = None, progress: str = "") -> EvaluationReport:
    """Every diagnostic of ``pred`` (member, time, row, col) against ``truth`` (time, row, col); see the
    module docstring for the series each score uses.

    ``variable``: the target's name; ``info``: its kind and units (default: from the name, so 'pr' and
    'tasmax' get the CORDEX ones), which pick the indices and convert their thresholds
    (:func:`index_specs`). ``benchmark`` (default: ``info`` is a CORDEX target) keeps the benchmark's SU
    threshold of 300 K. ``full=False`` (used for baselines) keeps RMSE, correlation, index biases, benchmark
    RALSD, Wasserstein, spectra and quantiles, and leaves out the corrected RALSD, ensemble scores and FSS.
    ``progress``: a description shows the scoring stages' progress with an ETA; empty = none.
    """
    info = info or default_info(variable)
    if benchmark is None:
        benchmark = CORDEX_TARGETS.get(info.name) == info
    truth, pred = prepare(truth, pred)
    pair = _pair(pred)
    labelled = plot_series(truth, pred)
    report = EvaluationReport({})

    def spectra_and_quantiles():
        report.psd, report.quantiles = psd_series(labelled, dx_km), quantile_series(labelled)
        return spectral_scores(truth, pred, report.psd, corrected=full), {}

    def ensemble_and_fss():
        scores, report.rank_histogram, report.spread_skill_bins = ensemble_scores(truth, pred, seed)
        report.fss_thresholds = fss_thresholds(truth, info)
        return {**scores, **fss_scores(truth, pair, report.fss_thresholds)}, {}

    stages = [lambda: deterministic_scores(truth, pred, pair),
              lambda: index_scores(truth, pair, index_specs(info, benchmark)),
              lambda: distribution_scores(truth, pair.sel({MEMBER: "member0"}, drop=True), info.kind),
              spectra_and_quantiles] + ([ensemble_and_fss] if full else [])
    for stage in track(stages, progress, unit="stages", enabled=bool(progress)):
        scores, maps = stage()
        report.scores.update(scores)
        report.maps.update(maps)
    return report


# --- writing ---------------------------------------------------------------------------------------------
def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.5g}"


def summary_markdown(summary: Mapping) -> str:
    """``summary.md``: run facts, then one table of the scores (with the baselines' as extra columns) and
    what each score means. ``summary`` is the dict written to ``summary.json``."""
    run, scores = summary["run"], summary["scores"]
    baselines = summary.get("baselines", {})
    lines = [f"# Evaluation: {run.get('run_id', '')} ({run.get('label', '')})", ""]
    lines += [f"- **{key}**: {value}" for key, value in run.items()]
    lines += ["", "Series: member0 = first member; ensemble_mean = member mean field; member_mean = mean of "
              "per-member scores; all_members = members pooled.", ""]
    head = ["score", "this run", *baselines, "meaning"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    documented = set()
    for key, value in scores.items():
        group = key.split("/")[0]
        doc = score_doc(key) if group not in documented else ""
        documented.add(group)
        others = [_fmt(b["scores"].get(key)) for b in baselines.values()]
        lines.append("| " + " | ".join([key, _fmt(value), *others, doc.replace("|", "\\|")]) + " |")
    if summary.get("fss_thresholds"):
        pairs = ", ".join(f"{k} = {v:.4g}" for k, v in summary["fss_thresholds"].items())
        lines += ["", f"FSS thresholds: {pairs}; scales (cells): {', '.join(map(str, FSS_SCALES))}."]
    if summary.get("rank_histogram"):
        lines += ["", f"Rank histogram counts (rank 0..m): {summary['rank_histogram']}"]
    return "\n".join(lines) + "\n"
