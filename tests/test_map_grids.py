"""Map geometry of your own grids (issue 10, finding 7): rotated pole (CF mapping or rlat/rlon + 2-D lat/lon),
CF projections, curvilinear meshes, and grids that cannot be placed on the globe (one warning)."""

from __future__ import annotations

import warnings

import cartopy.crs as ccrs
import numpy as np
import pytest
import xarray as xr
from conftest import rotated_pole_target, winter_times
from matplotlib.figure import Figure

from ml_benchmark_spategan.cordex import ALPS_LCC, target_coords
from ml_benchmark_spategan.visualization.grids import fit_rotated_pole
from ml_benchmark_spategan.visualization.maps import add_map_axes, draw_outline, map_grid_from_xarray, plot_map


@pytest.fixture(scope="module")
def rotated():
    ds = rotated_pole_target(winter_times([2000]))
    return ds["tasmax"].assign_coords(rotated_pole=ds["rotated_pole"])


def test_rotated_pole_from_cf_mapping_and_from_2d_latlon(rotated):
    grid = map_grid_from_xarray(rotated)
    assert grid.projection == "rotated" and isinstance(grid.crs(), ccrs.RotatedPole)
    assert grid.params == {"pole_longitude": -162.0, "pole_latitude": 39.25, "central_rotated_longitude": 0.0}
    np.testing.assert_array_equal(grid.x, rotated["rlon"].values)
    solved = map_grid_from_xarray(rotated.drop_vars("rotated_pole"))  # no grid mapping: solved from lat/lon
    assert solved.projection == "rotated"
    assert solved.params["pole_latitude"] == pytest.approx(39.25, abs=1e-6)
    assert solved.params["pole_longitude"] == pytest.approx(-162.0, abs=1e-6)
    # a grid that is not rotated (lat/lon scrambled) is not accepted as one
    assert fit_rotated_pole(rotated["rlon"].values, rotated["rlat"].values, rotated["lat"].values[::-1],
                            rotated["lon"].values) is None


def test_projected_grid_from_cf_mapping_matches_the_alps_lambert():
    c = target_coords("ALPS")
    mapping = xr.DataArray(np.int32(0), attrs={**ALPS_LCC, "grid_mapping_name": "lambert_conformal_conic"})
    da = xr.DataArray(np.zeros((1, 128, 128)), dims=("time", "y", "x"), attrs={"grid_mapping": "Lambert_Conformal"},
                      coords={"y": ("y", c["y"], {"units": "km"}), "x": ("x", c["x"], {"units": "km"}),
                              "lat": (("y", "x"), c["lat"]), "lon": (("y", "x"), c["lon"]),
                              "Lambert_Conformal": mapping})
    grid = map_grid_from_xarray(da)
    assert grid.projection == "projected" and isinstance(grid.crs(), ccrs.LambertConformal)
    np.testing.assert_allclose(grid.x, c["x"] * 1000.0)
    # the projection places the cell centres where the file's 2-D lat/lon say
    geo = ccrs.PlateCarree().transform_points(grid.crs(), *np.meshgrid(grid.x, grid.y))
    np.testing.assert_allclose(geo[..., 1], c["lat"], atol=1e-6)
    np.testing.assert_allclose(geo[..., 0], c["lon"], atol=1e-6)


def test_curvilinear_and_plain_grids(rotated, tmp_path):
    curvy = map_grid_from_xarray(rotated.drop_vars(["rotated_pole", "rlat", "rlon"]))
    assert curvy.projection == "curvilinear" and curvy.edges()[0].shape == (11, 13)
    fig = Figure(figsize=(4, 3))
    ax = add_map_axes(fig, curvy, 1, 1, 1)
    plot_map(ax, rotated.isel(time=0).values, curvy, kind="tasmax", features=False)
    draw_outline(ax, curvy)
    assert isinstance(ax.projection, ccrs.PlateCarree)
    fig.savefig(tmp_path / "curvy.png")
    bare = rotated.drop_vars(["rotated_pole", "lat", "lon"]).rename(rlat="j", rlon="i")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grids = [map_grid_from_xarray(bare) for _ in range(4)]
    assert all(g.projection == "plain" for g in grids)
    assert len([w for w in caught if "map drawn in grid coordinates" in str(w.message)]) == 1
