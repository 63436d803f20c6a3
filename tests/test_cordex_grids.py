"""The target grids of ``cordex.target_coords`` and of the synthetic files equal the benchmark's templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ml_benchmark_spategan import cordex
from ml_benchmark_spategan.synthetic.orography import land_fraction, synthetic_orography
from ml_benchmark_spategan.synthetic.timeaxis import time_axis
from ml_benchmark_spategan.synthetic.writer import target_file, write_static

TEMPLATES = Path(__file__).resolve().parents[2] / "shared" / "cordex" / "templates"
pytestmark = pytest.mark.skipif(not TEMPLATES.is_dir(), reason=f"benchmark templates not found at {TEMPLATES}")
DOMAINS = ("ALPS", "NZ", "SA")


def _assert_grid_equal(coords: dict[str, np.ndarray], template: xr.Dataset, source: str) -> None:
    for name, values in coords.items():
        expected = template[name].values
        assert values.dtype == expected.dtype, f"{source}: {name} dtype {values.dtype} != {expected.dtype}"
        if values.ndim == 2:  # ALPS lat/lon from the reconstructed projection
            np.testing.assert_allclose(values, expected, rtol=0, atol=2e-8, err_msg=f"{source}: {name}")
        else:
            np.testing.assert_array_equal(values, expected, err_msg=f"{source}: {name}")


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("variable", ["pr", "tasmax"])
def test_target_coords_equal_templates(domain, variable):
    with xr.open_dataset(TEMPLATES / f"{variable}_{domain}.nc") as template:
        _assert_grid_equal(cordex.target_coords(domain), template, "cordex.target_coords")
        assert template[variable].dims[1:] == cordex.DOMAINS[domain].target_dims


@pytest.mark.parametrize("domain", DOMAINS)
def test_written_files_match_templates(tmp_path, domain):
    """The synthetic writer's target and static files carry the template's grid and time encoding."""
    spec = cordex.DOMAINS[domain]
    axis = time_axis(spec, spec.gcm1, 1961, 1961).slice(0, 2)
    target, static = tmp_path / "target.nc", tmp_path / "Static_fields.nc"
    with target_file(target, spec, axis, len(axis)) as nc:
        nc.write(0, axis, {"pr": np.ones((2, 128, 128)), "tasmax": np.full((2, 128, 128), 280.0)})
    orog = synthetic_orography(domain)
    write_static(static, spec, orog, land_fraction(orog))
    with xr.open_dataset(TEMPLATES / f"pr_{domain}.nc", decode_times=False) as template:
        for path in (target, static):
            with xr.open_dataset(path, decode_times=False) as ds:
                _assert_grid_equal({name: ds[name].values for name in cordex.target_coords(domain)}, template, str(path))
        with xr.open_dataset(target, decode_times=False) as ds:
            for var, dtype in (("pr", spec.pr_dtype), ("tasmax", spec.tasmax_dtype)):
                assert ds[var].dims == template["pr"].dims and ds[var].dtype == np.dtype(dtype)
            time, expected = ds["time"], template["time"]
            assert time.dtype == expected.dtype
            assert time.attrs["units"] == expected.attrs["units"]
            assert time.attrs["calendar"] == expected.attrs["calendar"]
            assert time.values[0] == expected.values[0]  # 1961-01-01 at the template's hour
            assert float(ds["tasmax"][1, 5, 5]) == 280.0
