"""Plot functions render under Agg, draw the right geometry/colour scales, and never download map data."""

from __future__ import annotations

from pathlib import Path

import cartopy
import cartopy.crs as ccrs
import cartopy.io
import matplotlib
import matplotlib.colors as mcolors
import matplotlib.image as mimage
import numpy as np
import pytest
from cartopy.mpl.feature_artist import FeatureArtist
from matplotlib.figure import Figure

from ml_benchmark_spategan.cordex import predictor_coords, target_coords
from ml_benchmark_spategan.visualization import (
    add_map_axes,
    configure_cartopy_data,
    diagnostics_figure,
    diagnostics_history_figure,
    losses_figure,
    map_grid,
    map_grid_for_domain,
    map_grid_from_xarray,
    maps,
    plot_bars,
    plot_histogram,
    plot_lines,
    plot_map,
    plot_psd,
    plot_qq,
    plot_rank_histogram,
    plot_spread_skill,
    sample_figure,
)

matplotlib.use("Agg")
SHARED_MAP_DATA = Path(__file__).resolve().parents[2] / "shared" / "cartopy_data"
DPI = 40


def _isolate_cartopy(monkeypatch, tmp_path):
    """Restore cartopy's config after the test; an empty download folder so only our folder counts."""
    monkeypatch.delenv(maps.CARTOPY_DATA_ENV, raising=False)
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", cartopy.config["pre_existing_data_dir"])
    monkeypatch.setitem(cartopy.config, "data_dir", tmp_path / "no_downloads")
    monkeypatch.setitem(maps._STATE, "configured", False)

    def no_download(self, url):
        raise AssertionError(f"cartopy tried to download {url}")

    monkeypatch.setattr(cartopy.io.Downloader, "_urlopen", no_download)  # every downloader fetches through it


@pytest.fixture
def map_data(monkeypatch, tmp_path):
    if not (SHARED_MAP_DATA / "shapefiles").is_dir():
        pytest.skip(f"offline Natural Earth data not found at {SHARED_MAP_DATA}")
    _isolate_cartopy(monkeypatch, tmp_path)
    assert configure_cartopy_data(SHARED_MAP_DATA) == SHARED_MAP_DATA
    return SHARED_MAP_DATA


@pytest.fixture
def no_map_data(monkeypatch, tmp_path):
    _isolate_cartopy(monkeypatch, tmp_path)
    empty = tmp_path / "empty_cartopy"
    empty.mkdir()
    assert configure_cartopy_data(empty) is None
    return empty


def _check_png(fig: Figure, path: Path, min_nonwhite: float = 0.05) -> np.ndarray:
    """Save, reload and check size and that the image is not blank; returns the RGB pixels."""
    fig.savefig(path, dpi=DPI)
    img = mimage.imread(path)[..., :3]
    width, height = fig.get_size_inches() * DPI
    assert img.shape[:2] == (round(height), round(width))
    assert img.std() > 0.05
    nonwhite = np.mean(np.any(img < 0.95, axis=-1))
    assert nonwhite > min_nonwhite
    return img


def _feature_artists(ax) -> list:
    return [child for child in ax.get_children() if isinstance(child, FeatureArtist)]


def _mesh(ax):
    return ax.collections[0] if ax.collections else ax.images[0]


# --- grid geometry ----------------------------------------------------------------------------------
def test_alps_grid_is_lambert_and_matches_cordex_latlon():
    grid = map_grid_for_domain("ALPS")
    crs = grid.crs()
    assert grid.projection == "lcc" and isinstance(crs, ccrs.LambertConformal)
    params = crs.proj4_params
    assert (params["lon_0"], params["lat_0"], params["lat_1"], params["lat_2"]) == (10.5, 49.5, 49.5, 49.5)
    assert (params["x_0"], params["y_0"], params["a"]) == (2825000, 2825000, 6371229)
    assert grid.x[0] == 2062500.0 and grid.y[-1] == 1412500.0 + 127 * 12500.0
    # PROJ's inverse of the cell centres reproduces the domain's own lat/lon (independent implementation).
    xx, yy = np.meshgrid(grid.x, grid.y)
    lonlat = ccrs.PlateCarree().transform_points(crs, xx, yy)
    coords = target_coords("ALPS")
    np.testing.assert_allclose(lonlat[..., 0], coords["lon"], atol=1e-6)
    np.testing.assert_allclose(lonlat[..., 1], coords["lat"], atol=1e-6)
    assert grid.extent() == (2056250.0, 2056250.0 + 128 * 12500.0, 1406250.0, 1406250.0 + 128 * 12500.0)


@pytest.mark.parametrize(("domain", "central"), [("NZ", 180.0), ("SA", 0.0)])
def test_latlon_grids_plate_carree(domain, central):
    grid = map_grid_for_domain(domain)
    coords = target_coords(domain)
    assert grid.projection == "latlon" and isinstance(grid.crs(), ccrs.PlateCarree)
    assert grid.central_longitude == central and grid.shape == (128, 128)
    np.testing.assert_allclose((grid.x + central) % 360.0, coords["lon"], atol=1e-4)
    np.testing.assert_allclose(grid.y, coords["lat"])


def test_predictor_grid_across_dateline_uses_180():
    pc = predictor_coords("NZ")  # 157.5 .. 187.5 degrees east
    grid = map_grid(None, pc["lat"], pc["lon"])
    assert grid.central_longitude == 180.0
    np.testing.assert_allclose(grid.x, pc["lon"] - 180.0)
    xarray = pytest.importorskip("xarray")
    da = xarray.DataArray(np.zeros((16, 16)), dims=("lat", "lon"), coords={"lat": pc["lat"], "lon": pc["lon"]})
    np.testing.assert_array_equal(map_grid_from_xarray(da).x, grid.x)


def test_map_grid_errors():
    coords = target_coords("ALPS")
    with pytest.raises(ValueError, match="'ALPS': x and y"):
        map_grid("ALPS", coords["lat"], coords["lon"])
    with pytest.raises(ValueError, match="look like metres"):
        map_grid("ALPS", coords["lat"], coords["lon"], coords["x"] * 1000, coords["y"] * 1000)
    with pytest.raises(ValueError, match="unknown domain 'EU'"):
        map_grid("EU", np.arange(3.0), np.arange(3.0))
    with pytest.raises(ValueError, match="not strictly monotonic"):
        map_grid(None, np.array([0.0, 2.0, 1.0]), np.arange(3.0)).edges()
    grid = map_grid_for_domain("SA")
    fig = Figure()
    with pytest.raises(ValueError, match=r"field has shape \(16, 16\), grid expects \(ny, nx\) = \(128, 128\)"):
        plot_map(add_map_axes(fig, grid, 1, 1, 1), np.zeros((16, 16)), grid, kind="pr")
    with pytest.raises(ValueError, match="unknown kind 'precip'"):
        plot_map(add_map_axes(fig, grid, 1, 1, 1), np.zeros((128, 128)), grid, kind="precip")


# --- maps and offline data ---------------------------------------------------------------------------
@pytest.mark.parametrize("domain", ["ALPS", "NZ", "SA"])
def test_domain_map_projection_extent_coastlines(domain, map_data, tmp_path):
    grid = map_grid_for_domain(domain)
    field = np.random.default_rng(1).gamma(0.6, 3.0, grid.shape)
    fig = Figure(figsize=(4, 3.5))
    ax = plot_map(add_map_axes(fig, grid, 1, 1, 1), field, grid, kind="pr", title=domain)
    expected = ccrs.LambertConformal if domain == "ALPS" else ccrs.PlateCarree
    assert isinstance(ax.projection, expected)
    # Every target cell centre (lat/lon degrees), projected onto the map, lies inside the visible extent.
    coords = target_coords(domain)
    lat, lon = coords["lat"], coords["lon"]
    if lat.ndim == 1:
        lon, lat = np.meshgrid(lon, lat)
    xy = ax.projection.transform_points(ccrs.PlateCarree(), lon.astype(np.float64), lat.astype(np.float64))
    x0, x1, y0, y1 = ax.get_extent()
    assert x0 <= xy[..., 0].min() and xy[..., 0].max() <= x1
    assert y0 <= xy[..., 1].min() and xy[..., 1].max() <= y1
    # ... and the extent is the domain (cell edges), not much more.
    assert (x1 - x0) / (xy[..., 0].max() - xy[..., 0].min()) == pytest.approx(128 / 127, rel=2e-3)
    assert len(_feature_artists(ax)) == 2  # coastlines and borders
    _check_png(fig, tmp_path / f"{domain}.png", min_nonwhite=0.4)


def test_no_map_data_warns_and_draws_without_coastlines(no_map_data, tmp_path):
    grid = map_grid_for_domain("SA")
    fig = Figure(figsize=(4, 3.5))
    with pytest.warns(UserWarning, match="without coastlines/borders: Natural Earth files not found offline"):
        ax = plot_map(add_map_axes(fig, grid, 1, 1, 1), np.ones(grid.shape), grid, kind="tasmax")
    assert _feature_artists(ax) == []
    _check_png(fig, tmp_path / "nocoast.png", min_nonwhite=0.4)


def test_configure_from_environment(monkeypatch, tmp_path):
    if not (SHARED_MAP_DATA / "shapefiles").is_dir():
        pytest.skip(f"offline Natural Earth data not found at {SHARED_MAP_DATA}")
    _isolate_cartopy(monkeypatch, tmp_path)
    monkeypatch.setenv(maps.CARTOPY_DATA_ENV, str(SHARED_MAP_DATA))
    assert configure_cartopy_data() == SHARED_MAP_DATA
    assert Path(cartopy.config["pre_existing_data_dir"]) == SHARED_MAP_DATA


def test_colour_scales(no_map_data):
    grid = map_grid_for_domain("SA")
    field = np.full(grid.shape, 2.0)
    field[0, 0], field[1, 1], field[2, 2] = 0.0, -3.0, 5.0
    fig = Figure()
    with pytest.warns(UserWarning):
        pr = _mesh(plot_map(add_map_axes(fig, grid, 2, 2, 1), np.abs(field), grid, kind="pr"))
        bias = _mesh(plot_map(add_map_axes(fig, grid, 2, 2, 2), field, grid, kind="diverging"))
        pr_bias = _mesh(plot_map(add_map_axes(fig, grid, 2, 2, 3), field, grid, kind="diverging", cmap="BrBG",
                                 vmin=-1.0, vmax=4.0))
        ratio = _mesh(plot_map(add_map_axes(fig, grid, 2, 2, 4), np.abs(field) + 0.25, grid, kind="ratio"))
    assert isinstance(pr.norm, mcolors.LogNorm) and (pr.norm.vmin, pr.norm.vmax) == (0.1, 5.0)
    pr_values = pr.get_array().reshape(grid.shape)
    assert pr_values[0, 0] == 0.1 and not np.ma.is_masked(pr_values[0, 0])  # dry cell: lowest colour, drawn
    assert pr.cmap.name.startswith("YlGnBu")
    assert (bias.norm.vmin, bias.norm.vmax) == (-5.0, 5.0) and bias.cmap.name.startswith("RdBu_r")
    assert (pr_bias.norm.vmin, pr_bias.norm.vmax) == (-4.0, 4.0) and pr_bias.cmap.name.startswith("BrBG")
    assert isinstance(ratio.norm, mcolors.LogNorm)
    assert ratio.norm.vmin * ratio.norm.vmax == pytest.approx(1.0) and ratio.norm.vmax == pytest.approx(5.25)


def test_tasmax_scale_and_nan_transparent(map_data, tmp_path):
    grid = map_grid_for_domain("NZ")
    field = np.linspace(270.0, 300.0, 128 * 128).reshape(grid.shape)
    field[:, :64] = np.nan
    fig = Figure(figsize=(4, 3.5))
    mesh = _mesh(plot_map(add_map_axes(fig, grid, 1, 1, 1), field, grid, kind="tasmax", cbar=False))
    assert mesh.cmap.name.startswith("RdYlBu_r")
    assert (mesh.norm.vmin, mesh.norm.vmax) == (np.nanmin(field), 300.0)
    rgba = mesh.to_rgba(mesh.get_array()).reshape(*grid.shape, 4)
    assert np.all(rgba[:, :64, 3] == 0.0) and np.all(rgba[:, 64:, 3] == 1.0)


def test_nan_cells_show_background_pixels(tmp_path):
    grid = map_grid(None, x=np.arange(20), y=np.arange(10))  # unknown projection: plain image axes
    field = np.ones(grid.shape)
    field[:, :10] = np.nan
    fig = Figure(figsize=(4, 2))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_facecolor((1.0, 0.0, 1.0))
    plot_map(ax, field, grid, kind="sequential", cbar=False)
    img = _check_png(fig, tmp_path / "nan.png")
    h, w = img.shape[:2]
    np.testing.assert_allclose(img[h // 2, w // 4], (1.0, 0.0, 1.0))  # NaN half: the magenta background
    assert not np.allclose(img[h // 2, 3 * w // 4], (1.0, 0.0, 1.0))


# --- figures ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("domain", "var"), [("ALPS", "pr"), ("NZ", "tasmax"), ("SA", "pr")])
def test_sample_figure(domain, var, map_data, tmp_path):
    rng = np.random.default_rng(2)
    grid = map_grid_for_domain(domain)
    pc = predictor_coords(domain)
    base = rng.gamma(0.6, 3.0, grid.shape) if var == "pr" else 280.0 + rng.normal(0, 5, grid.shape)
    members = base + rng.normal(0.0, 0.5, (4, *grid.shape))
    fig = sample_figure(grid, rng.normal(size=(16, 16)), (pc["lat"], pc["lon"]), "u_850", base, np.abs(members),
                        f"{domain} sample", var)
    maps_axes = [ax for ax in fig.axes if hasattr(ax, "projection")]
    assert [ax.get_title() for ax in maps_axes] == [
        "predictor u_850", f"{var} target", f"{var} member 1", f"{var} member 2", f"{var} member 3",
        f"{var} ensemble mean (n=4)", f"{var} ensemble mean - target", f"{var} ensemble spread (std)"]
    # The spread panel shows the member std, the error panel mean - target; target/members/mean share a scale.
    np.testing.assert_allclose(_mesh(maps_axes[-1]).get_array().reshape(grid.shape), np.std(np.abs(members), axis=0))
    np.testing.assert_allclose(_mesh(maps_axes[-2]).get_array().reshape(grid.shape),
                               np.mean(np.abs(members), axis=0) - base)
    assert len({(_mesh(ax).norm.vmin, _mesh(ax).norm.vmax) for ax in maps_axes[1:6]}) == 1
    # The predictor panel covers the 2-degree predictor grid around the target domain.
    lon0, lon1, lat0, lat1 = maps_axes[0].get_extent(crs=ccrs.PlateCarree(central_longitude=180.0 if domain == "NZ" else 0))
    assert lat0 <= pc["lat"][0] - 1 + 1e-6 and lat1 >= pc["lat"][-1] + 1 - 1e-6
    _check_png(fig, tmp_path / "sample.png", min_nonwhite=0.3)


def test_sample_figure_rejects_bad_members():
    grid = map_grid_for_domain("SA")
    pc = predictor_coords("SA")
    with pytest.raises(ValueError, match=r"members must be \(n, ny, nx\)"):
        sample_figure(grid, np.zeros((16, 16)), (pc["lat"], pc["lon"]), "t_850", np.zeros(grid.shape),
                      np.zeros(grid.shape), "x", "pr")


def _history(n: int = 8) -> dict[str, list[float]]:
    rng = np.random.default_rng(3)
    return {
        "d/loss_real": list(rng.random(n)), "d/loss_fake": list(rng.random(n)),
        "g/loss_adv": list(rng.normal(size=n)), "g/loss_content": list(rng.random(n)),
        "val/rmse": list(rng.random(n) + 1.0), "lr": list(np.full(n, 1e-4)),
    }


def test_losses_figure(tmp_path):
    history = _history()
    epochs = np.arange(10, 18)
    fig = losses_figure(history, epochs)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["discriminator losses", "generator losses", "validation", "other"]
    d_ax, g_ax, val_ax, _ = fig.axes
    np.testing.assert_array_equal(d_ax.lines[1].get_xdata(), epochs)
    np.testing.assert_array_equal(d_ax.lines[1].get_ydata(), history["d/loss_fake"])
    assert d_ax.get_yscale() == "log" and g_ax.get_yscale() == "linear"  # g/loss_adv has negative values
    assert [line.get_label() for line in g_ax.lines] == ["g/loss_adv", "g/loss_content"]
    _check_png(fig, tmp_path / "losses.png")
    with pytest.raises(ValueError, match=r"history\['val/rmse'\] has 3 values, expected 8"):
        losses_figure(history | {"val/rmse": [1.0, 2.0, 3.0]})


def test_diagnostics_history_figure(tmp_path):
    history = {f"val/{name}": list(np.arange(6.0) * (i + 1)) for i, name in enumerate(["rmse", "bias", "fss", "crps", "psd"])}
    fig = diagnostics_history_figure(history)
    assert [ax.get_title() for ax in fig.axes] == list(history)
    np.testing.assert_array_equal(fig.axes[2].lines[0].get_ydata(), history["val/fss"])
    np.testing.assert_array_equal(fig.axes[2].lines[0].get_xdata(), np.arange(1, 7))
    _check_png(fig, tmp_path / "diag_history.png", min_nonwhite=0.02)
    with pytest.raises(ValueError, match="history is empty"):
        diagnostics_history_figure({})


def test_diagnostics_figure(map_data, tmp_path):
    rng = np.random.default_rng(4)
    grid = map_grid_for_domain("ALPS")
    k = np.arange(1, 64) / (128 * 12.5)
    diag = {"bias": rng.normal(size=grid.shape), "rmse": rng.gamma(2.0, 1.0, grid.shape),
            "std_ratio": np.exp(rng.normal(0.0, 0.2, grid.shape))}
    fig = diagnostics_figure(diag, {"rmse": 1.25, "bias": -0.03}, grid, "pr",
                             {"target": (k, k ** -2.0), "prediction": (k, k ** -2.5)})
    bias_ax, rmse_ax, ratio_ax, psd_ax, text_ax = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert text_ax.get_title() == "scores" and psd_ax.get_title() == "pr power spectrum"
    bias = _mesh(bias_ax)
    assert bias.cmap.name.startswith("BrBG")
    assert -bias.norm.vmin == bias.norm.vmax == pytest.approx(np.percentile(np.abs(diag["bias"]), 98))
    assert bias.colorbar.extend == "both"  # the 2 % beyond saturate, with arrows
    assert isinstance(_mesh(ratio_ax).norm, mcolors.LogNorm) and _mesh(rmse_ax).cmap.name.startswith("viridis")
    assert "rmse: 1.25" in text_ax.texts[0].get_text()
    assert psd_ax.get_xscale() == psd_ax.get_yscale() == "log" and len(psd_ax.lines) == 2
    _check_png(fig, tmp_path / "diagnostics.png", min_nonwhite=0.3)


# --- curves -------------------------------------------------------------------------------------------
def test_curves(tmp_path):
    rng = np.random.default_rng(5)
    fig = Figure(figsize=(12, 6), layout="constrained")
    axes = [fig.add_subplot(2, 4, i) for i in range(1, 8)]
    k = np.arange(0, 10) / 10.0
    plot_psd(axes[0], {"a": (k, np.r_[5.0, k[1:] ** -2])}, xlabel="wavenumber")
    assert axes[0].get_xscale() == "log" and axes[0].lines[0].get_xdata()[0] == 0.1  # k = 0 dropped

    q = np.linspace(0.1, 10, 20)
    plot_qq(axes[1], q, {"model": q * 1.1}, log=True)
    ref = axes[1].lines[-1]
    assert ref.get_label() == "1:1" and list(ref.get_xdata()) == list(ref.get_ydata()) == [0.1, 11.0]

    plot_histogram(axes[2], {"a": rng.normal(size=500), "b": np.r_[rng.normal(size=500), np.nan]},
                   bins=np.linspace(-4, 4, 21), log=True)
    assert axes[2].get_yscale() == "log" and len(axes[2].patches) == 2

    counts = np.array([5, 10, 10, 15])
    plot_rank_histogram(axes[3], counts)
    np.testing.assert_allclose([p.get_height() for p in axes[3].patches], counts / 40)
    assert axes[3].lines[0].get_ydata()[0] == 0.25

    plot_spread_skill(axes[4], np.array([0.5, 1.0, 2.0]), np.array([0.6, 1.1, 2.5]), label="gan")
    assert list(axes[4].lines[1].get_ydata()) == [0.0, 2.5]

    plot_bars(axes[5], {"run1": {"rmse": 1.0, "bias": -0.5}, "run2": {"rmse": 0.8, "crps": 0.3}})
    heights = [p.get_height() for p in axes[5].patches]
    np.testing.assert_array_equal(heights, [1.0, -0.5, np.nan, 0.8, np.nan, 0.3])
    assert [t.get_text() for t in axes[5].get_xticklabels()] == ["rmse", "bias", "crps"]

    plot_lines(axes[6], np.arange(4), {"x": [1.0, 2.0, np.nan, 4.0]}, ylabel="loss", logy=True)
    assert axes[6].get_yscale() == "log" and axes[6].get_ylabel() == "loss"
    with pytest.raises(ValueError, match=r"plot_lines 'y' vs x: lengths differ \(4 vs 2\)"):
        plot_lines(axes[6], np.arange(4), {"y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="counts sum to zero"):
        plot_rank_histogram(axes[3], np.zeros(3))
    _check_png(fig, tmp_path / "curves.png")


_OFFLINE_MAP_SCRIPT = """
import sys, warnings
import cartopy, cartopy.io
import matplotlib
matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure
from ml_benchmark_spategan.visualization import add_map_axes, configure_cartopy_data, map_grid_for_domain, plot_map

empty = sys.argv[1]
cartopy.config["pre_existing_data_dir"] = empty
cartopy.config["data_dir"] = empty
def no_network(self, url):
    raise SystemExit(f"cartopy tried to download {url}")
cartopy.io.Downloader._urlopen = no_network
warnings.simplefilter("error")  # a 'drawn without coastlines' warning fails the script
print(configure_cartopy_data())
grid = map_grid_for_domain("ALPS")
for name, features in (("with", True), ("without", False)):
    fig = Figure(figsize=(4, 4))
    plot_map(add_map_axes(fig, grid, 1, 1, 1), np.full(grid.shape, 290.0), grid, kind="tasmax", vmin=280, vmax=300,
             cbar=False, features=features)
    fig.savefig(f"{sys.argv[2]}/{name}.png", dpi=60)
"""


def test_packaged_coastlines_offline_without_any_setting(tmp_path):
    """A fresh process with no ML_BENCH_CARTOPY_DATA, no proxies and an empty cartopy folder still draws
    coastlines, from the Natural Earth files shipped in the package."""
    import os
    import subprocess
    import sys

    empty = tmp_path / "empty_cartopy"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != maps.CARTOPY_DATA_ENV}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", _OFFLINE_MAP_SCRIPT, str(empty), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip().splitlines()[-1]) == maps.PACKAGED_MAP_DATA
    assert list(empty.iterdir()) == []  # nothing downloaded or cached there

    with_, without = (mimage.imread(tmp_path / f"{name}.png")[..., :3] for name in ("with", "without"))
    line_pixels = np.sum(without.mean(axis=-1) - with_.mean(axis=-1) > 0.15)  # grey lines on the light field
    assert line_pixels > 500
    assert np.sum(with_.mean(axis=-1) - without.mean(axis=-1) > 0.15) == 0  # nothing else changed
