"""Submission writer, validator and packaging on tiny fake predictor trees (14 days per test file)."""

from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ml_benchmark_spategan import cordex
from ml_benchmark_spategan.cordex import (
    EXPERIMENTS,
    PREDICTOR_VARIABLES,
    domain_spec,
    predictor_coords,
    static_fields_path,
    target_coords,
)
from ml_benchmark_spategan.submission import (
    expected_files,
    package_submission,
    submission_path,
    validate_file,
    validate_submission,
    validate_zip,
    write_prediction_file,
    write_submission,
)
from ml_benchmark_spategan.submission.writer import predictor_time, template_like
from ml_benchmark_spategan.synthetic.timeaxis import time_axis

predictor_path = cordex.test_predictor_path  # not imported by name: pytest would collect test_*
ROOT = Path(__file__).resolve().parents[1]
NAME = "TestSub"
MEMBERS = 2
LEAP_YEAR = {"historical": 1984, "mid_century": 2044, "end_century": 2080}
FIRST_DAY, N_DAYS = 52, 14  # 22 Feb .. early March of a leap year: SA/NZ skip 29 Feb, ALPS keeps it


# --- fixtures: predictor trees and a fake model ----------------------------------------------------
def _write_predictor_file(path: Path, domain: str, gcm: str, year: int, rng: np.random.Generator) -> None:
    axis = time_axis(domain_spec(domain), gcm, year, year).slice(FIRST_DAY, FIRST_DAY + N_DAYS)
    coords = predictor_coords(domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as nc:
        for dim, size in (("time", N_DAYS), ("lat", 16), ("lon", 16), ("bnds", 2)):
            nc.createDimension(dim, size)
        t = nc.createVariable("time", axis.values.dtype, ("time",))
        t.setncatts({"units": axis.units, "calendar": axis.calendar, "standard_name": "time"})
        t[:] = axis.values
        if axis.bounds is not None:
            t.bounds = "time_bnds"
            nc.createVariable("time_bnds", axis.bounds.dtype, ("time", "bnds"))[:] = axis.bounds
        for name in ("lat", "lon"):
            nc.createVariable(name, "f8", (name,))[:] = coords[name]
        for name in rng.permutation(PREDICTOR_VARIABLES):  # file order differs from the canonical one
            nc.createVariable(name, "f4", ("time", "lat", "lon"))[:] = rng.standard_normal((N_DAYS, 16, 16))


def _write_static(root: Path, domain: str, experiment: str) -> None:
    like = template_like(domain)
    orog = like.copy(data=np.linspace(0.0, 3000.0, 128 * 128, dtype=np.float32).reshape(128, 128))
    path = static_fields_path(root, domain, experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    orog.to_dataset(name="orog").to_netcdf(path)


def make_data_root(root: Path, domain: str) -> Path:
    rng = np.random.default_rng(0)
    for period, _, gcm, path in cordex.test_files(root, domain):
        _write_predictor_file(path, domain, gcm, LEAP_YEAR[period], rng)
    for experiment in EXPERIMENTS:
        _write_static(root, domain, experiment)
    return root


def fake_values(variable: str, members: int, n_days: int, offset: float = 0.0) -> np.ndarray:
    """(member, time, 128, 128) float32: pr = 1 + member + (day % 20)/2, tasmax = 280 + ... (+ offset)."""
    base = {"pr": 1.0, "tasmax": 280.0}[variable] + offset
    values = base + np.arange(members)[:, None] + 0.5 * (np.arange(n_days)[None, :] % 20)
    return np.broadcast_to(values[:, :, None, None], (members, n_days, 128, 128)).astype(np.float32)


def fake_predict_fn(domain: str, members: int, offset: float = 0.0):
    like = template_like(domain)

    def predict_fn(experiment: str, variable: str, path: Path) -> xr.DataArray:
        times = predictor_time(path).values
        data = fake_values(variable, members, len(times), offset)
        return xr.DataArray(data, dims=("member", "time", *like.dims), coords={"time": times, **like.coords})

    return predict_fn


@pytest.fixture(scope="module")
def sa(tmp_path_factory):
    base = tmp_path_factory.mktemp("sa")
    root = make_data_root(base / "data", "SA")
    stats = write_submission(base / "subs", NAME, root, "SA", EXPERIMENTS, fake_predict_fn("SA", MEMBERS), MEMBERS)
    return SimpleNamespace(root=root, subs=base / "subs", folder=base / "subs" / NAME, stats=stats)


@pytest.fixture(scope="module")
def alps(tmp_path_factory):
    base = tmp_path_factory.mktemp("alps")
    root = make_data_root(base / "data", "ALPS")
    # workers=1: files are written by a spawned process (the parallel path of write_submission).
    stats = write_submission(base / "subs", NAME, root, "ALPS", EXPERIMENTS, fake_predict_fn("ALPS", MEMBERS),
                             MEMBERS, workers=1)
    return SimpleNamespace(root=root, subs=base / "subs", folder=base / "subs" / NAME, stats=stats)


def _rel(domain, experiment, period, kind, gcm) -> str:
    return submission_path(".", NAME, domain, experiment, period, kind, gcm).relative_to(NAME).as_posix()


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"cli_{name}", ROOT / "evaluation" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- layout ----------------------------------------------------------------------------------------
def test_layout_paths_and_expected_files(tmp_path):
    path = submission_path(tmp_path, "S", "ALPS", "ESD_pseudo_reality", "historical", "perfect", "CNRM-CM5")
    assert path == tmp_path / "S/ALPS_Domain/ESD_pseudo_reality/historical/perfect/Predictions_pr_tasmax_CNRM-CM5_1981-2000.nc"
    for domain in cordex.DOMAINS:
        files = expected_files(domain)
        assert len(files) == 24 and len(expected_files(domain, ["Emulator_hist_future"])) == 12
        assert len({f.relpath for f in files}) == 24
        for f in files:  # {GCM}_{period} equals the predictor file's name
            predictor = predictor_path(tmp_path, domain, f.period, f.kind, f.gcm)
            assert f.relpath.name == "Predictions_pr_tasmax_" + predictor.name
            assert f.relpath.parts[:4] == (f"{domain}_Domain", f.experiment, f.period, f.kind)
    with pytest.raises(ValueError, match="GCM 'CNRM-CM5' is not a GCM of domain SA"):
        submission_path(tmp_path, "S", "SA", "ESD_pseudo_reality", "historical", "perfect", "CNRM-CM5")
    with pytest.raises(ValueError, match="unknown experiment 'ESD_pseudo-reality'"):
        submission_path(tmp_path, "S", "SA", "ESD_pseudo-reality", "historical", "perfect", "ACCESS-CM2")


# --- written files ---------------------------------------------------------------------------------
def _raw_time(path: Path) -> tuple[np.ndarray, str, str]:
    with netCDF4.Dataset(path) as nc:
        t = nc["time"]
        return np.asarray(t[:].data), t.units, t.calendar


@pytest.mark.parametrize("gcm, calendar", [("NorESM2-MM", "noleap"), ("ACCESS-CM2", "standard")])
def test_sa_file_contents(sa, gcm, calendar):
    predictor = predictor_path(sa.root, "SA", "mid_century", "imperfect", gcm)
    path = sa.folder / _rel("SA", "Emulator_hist_future", "mid_century", "imperfect", gcm)
    raw, units, cal = _raw_time(path)
    raw_ref, units_ref, cal_ref = _raw_time(predictor)
    assert (units, cal) == (units_ref, cal_ref) == ("minutes since 1961-01-01", calendar)
    assert raw.dtype == raw_ref.dtype == np.float32 and np.array_equal(raw, raw_ref)
    with xr.open_dataset(predictor) as ref:
        ref_times = ref["time"].values
    with xr.open_dataset(path) as ds:
        assert np.array_equal(ds["time"].values, ref_times)
        assert type(ds["time"].values[0]) is type(ref_times[0])
        assert ds["pr"].dims == ds["tasmax"].dims == ("time", "lat", "lon", "member")
        assert (ds["pr"].dtype, ds["tasmax"].dtype) == (np.float64, np.float32)
        for name in ("lat", "lon"):
            assert ds[name].dtype == np.float32 and np.array_equal(ds[name].values, target_coords("SA")[name])
        assert np.array_equal(ds["member"].values, [0, 1])
        for variable in ("pr", "tasmax"):
            expected = np.moveaxis(fake_values(variable, MEMBERS, N_DAYS), 0, -1)
            np.testing.assert_array_equal(ds[variable].values, expected)
        assert ds["pr"].attrs["units"] == "mm/day" and ds["tasmax"].attrs["units"] == "K"
        assert ds["tasmax"].attrs["standard_name"] == "air_temperature"
        assert set(ds.data_vars) == {"pr", "tasmax"}
    with netCDF4.Dataset(path) as nc:
        filters = nc["pr"].filters()
        assert filters["zlib"] and filters["shuffle"] and filters["complevel"] == 1
    dates = pd.to_datetime([str(t)[:10] for t in ref_times])
    assert not ((dates.month == 2) & (dates.day == 29)).any() and len(dates) == N_DAYS


def test_alps_file_contents(alps):
    path = alps.folder / _rel("ALPS", "ESD_pseudo_reality", "end_century", "perfect", "MPI-ESM-LR")
    raw, units, cal = _raw_time(path)
    raw_ref, *_ = _raw_time(predictor_path(alps.root, "ALPS", "end_century", "perfect", "MPI-ESM-LR"))
    assert (units, cal, raw.dtype) == ("days since 1949-12-01", "gregorian", np.float64)
    assert np.array_equal(raw, raw_ref) and np.all(raw % 1 == 0.5)  # 12:00 stamps kept
    coords = target_coords("ALPS")
    with xr.open_dataset(path) as ds:
        assert ds["pr"].dims == ds["tasmax"].dims == ("time", "y", "x", "member")
        assert ds["pr"].dtype == ds["tasmax"].dtype == np.float32
        for name in ("x", "y"):
            assert ds[name].dtype == np.float64 and np.array_equal(ds[name].values, coords[name])
        assert ds["lat"].dims == ("y", "x") and np.array_equal(ds["lat"].values, coords["lat"])
        assert np.array_equal(ds["lon"].values, coords["lon"])
        assert pd.Timestamp("2080-02-29T12:00") in pd.DatetimeIndex(ds["time"].values)
    assert [s.days for s in alps.stats] == [N_DAYS] * 24 and len({s.path for s in alps.stats}) == 24


# --- validator -------------------------------------------------------------------------------------
def test_validator_passes_clean_submissions(sa, alps, capsys):
    assert validate_submission(sa.folder, ["SA"], members=MEMBERS, data_root=sa.root) == []
    # Without data: daily stamps inside the period's years.
    assert validate_submission(sa.folder, ["SA"], ["Emulator_hist_future"], members=MEMBERS) == []
    assert validate_submission(alps.folder, ["ALPS"], members=MEMBERS, data_root=alps.root) == []
    cli = _load_script("validate_submission")
    assert cli.main([str(sa.folder), "--domains", "SA", "--members", "2", "--data-root", str(sa.root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ") and "24 files for SA" in out
    # A domain never written is one problem, not 24.
    problems = validate_submission(sa.folder, ["SA", "NZ"], members=MEMBERS)
    assert [(p.file, p.what) for p in problems] == [("NZ_Domain", "missing domain folder")]


def _rewrite(path: Path, change) -> None:
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    for var in ds.variables.values():
        var.encoding = {k: v for k, v in var.encoding.items() if k in ("units", "calendar", "dtype")}
    change(ds).to_netcdf(path)


def _set_pr(value):
    def change(ds):
        ds["pr"][3, 5, 7, 1] = value
        return ds
    return change


def _set_units(ds):
    ds["pr"].attrs["units"] = "kg m-2 s-1"
    return ds


SA_FILE = ("ESD_pseudo_reality", "historical", "perfect", "ACCESS-CM2")
DAMAGE = {
    "nan": (_set_pr(np.nan), {("non-finite values in pr", "no NaN/Inf", "1 values, first at time index 3 (1984-02-25T12:00:00.000000000)")}),
    "negative pr": (_set_pr(-1.0), {("value range of pr", "[0.0, 2000.0] mm/day", "[-1, 8.5]")}),
    "drop tasmax": (lambda ds: ds.drop_vars("tasmax"), {("missing variable", "tasmax", "variables ['pr']")}),
    "members": (lambda ds: ds.isel(member=[0]), {("member size of pr", "2", "1"), ("member size of tasmax", "2", "1")}),
    "lat rounded": (lambda ds: ds.assign_coords(lat=(ds["lat"] + np.float32(1e-4)).astype(np.float32)),
                    {("coordinate lat",)}),
    # assign_coords drops the time encoding: xarray then picks its own units and calendar
    "time +12h": (lambda ds: ds.assign_coords(time=ds["time"] + pd.Timedelta(hours=12)),
                  {("time",), ("time units",), ("time calendar",)}),
    "units": (_set_units, {("units of pr", "mm/day or mm day-1 or mm d-1", "'kg m-2 s-1'")}),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_validator_reports_damage(sa, tmp_path, damage):
    folder = Path(shutil.copytree(sa.folder, tmp_path / NAME))
    rel = _rel("SA", *SA_FILE)
    change, expected = DAMAGE[damage]
    _rewrite(folder / rel, change)
    problems = validate_submission(folder, ["SA"], [SA_FILE[0]], members=MEMBERS, data_root=sa.root)
    assert {p.file for p in problems} == {rel}
    found = {(p.what, p.expected, p.found)[: len(next(iter(expected)))] for p in problems}
    assert found == expected, problems
    if damage == "time +12h":
        assert "14 stamps" in problems[0].expected and "(stamp 0: " in problems[0].expected
        assert "1984-02-22T12:00" in problems[0].expected
        assert "1984-02-23T00:00" in problems[0].found


def test_validator_reports_missing_and_unexpected_files(sa, tmp_path, capsys):
    folder = Path(shutil.copytree(sa.folder, tmp_path / NAME))
    rel = _rel("SA", "Emulator_hist_future", "end_century", "imperfect", "NorESM2-MM")
    (folder / rel).unlink()
    (folder / (rel + ".tmp")).write_bytes(b"left over")
    (folder / "notes.txt").write_text("x")
    problems = validate_submission(folder, ["SA"], members=MEMBERS, data_root=sa.root)
    assert [(p.file, p.what) for p in problems] == [
        (rel, "missing file"), (rel + ".tmp", "unexpected file"),
        ("notes.txt", "unexpected file")]
    assert problems[0].expected == str(folder / rel)
    cli = _load_script("validate_submission")
    assert cli.main([str(folder), "--domains", "SA"]) == 1
    assert f"{rel}: missing file: expected {folder / rel}" in capsys.readouterr().out


def test_validator_reports_transposed_alps_dims(alps, tmp_path):
    folder = Path(shutil.copytree(alps.folder, tmp_path / NAME))
    rel = _rel("ALPS", "Emulator_hist_future", "historical", "imperfect", "CNRM-CM5")
    _rewrite(folder / rel, lambda ds: ds.transpose("time", "x", "y", "member"))
    problems = validate_submission(folder, ["ALPS"], ["Emulator_hist_future"], members=MEMBERS, data_root=alps.root)
    assert [(p.file, p.what, p.found) for p in problems] == [
        (rel, "dims of pr", "('time', 'x', 'y', 'member')"), (rel, "dims of tasmax", "('time', 'x', 'y', 'member')")]


def _all_members_as_first(ds):
    for name in ("pr", "tasmax"):
        ds[name].values[:] = ds[name].values[..., :1]
    return ds


def _constant_pr(ds):
    ds["pr"].values[:] = 1e-9
    return ds


def _tasmax_minus_73(ds):
    ds["tasmax"].values -= 73.0
    return ds


def _time_in_hours(ds):
    ds["time"].encoding["units"] = "hours since 1961-01-01"  # the same decoded times, other units
    return ds


def _time_noleap(ds):
    ds["time"].encoding["calendar"] = "noleap"
    return ds


TAMPERED = {  # a copy a user could make of a valid file; every problem names what is wrong
    "identical members": (_all_members_as_first, {
        ("identical members of pr", "members that differ (a generative ensemble, not copies of one field)",
         "member(s) [1] equal to member 0 everywhere"),
        ("identical members of tasmax", "members that differ (a generative ensemble, not copies of one field)",
         "member(s) [1] equal to member 0 everywhere")}),
    "member first": (lambda ds: ds.transpose("member", "time", "lat", "lon"), {
        ("dims of pr", "(time, lat, lon, member) in this order", "('member', 'time', 'lat', 'lon')"),
        ("dims of tasmax", "(time, lat, lon, member) in this order", "('member', 'time', 'lat', 'lon')")}),
    "member coordinate deleted": (lambda ds: ds.drop_vars("member"), {
        ("member coordinate", "a 'member' coordinate 0..1", "none (the dimension has no coordinate variable)")}),
    "pr 1e-9": (_constant_pr, {
        ("constant pr", "values that vary in time and space",
         f"{N_DAYS * 128 * 128 * MEMBERS} values all equal to 1e-09 mm/day (physically implausible)"),
        ("mean of pr", "a physically plausible mean in [0.05, 50.0] mm/day", "1e-09 mm/day (wrong units or an offset?)"),
        ("identical members of pr", "members that differ (a generative ensemble, not copies of one field)",
         "member(s) [1] equal to member 0 everywhere")}),
    "tasmax -73 K": (_tasmax_minus_73, {
        ("mean of tasmax", "a physically plausible mean in [250.0, 320.0] K", "210.75 K (wrong units or an offset?)")}),
    "time units": (_time_in_hours, {
        ("time units", "'minutes since 1961-01-01' (as ACCESS-CM2_1981-2000.nc)", "'hours since 1961-01-01'")}),
    "time calendar": (_time_noleap, {
        ("time",), ("time calendar", "'standard' (as ACCESS-CM2_1981-2000.nc)", "'noleap'")}),  # decoded as cftime noleap: not the predictor's stamps either
}


@pytest.mark.parametrize("tamper", list(TAMPERED))
def test_validator_catches_tampered_copies(sa, tmp_path, tamper):
    folder = Path(shutil.copytree(sa.folder, tmp_path / NAME))
    rel = _rel("SA", *SA_FILE)
    change, expected = TAMPERED[tamper]
    assert validate_submission(folder, ["SA"], [SA_FILE[0]], members=MEMBERS, data_root=sa.root) == []
    _rewrite(folder / rel, change)
    problems = validate_submission(folder, ["SA"], [SA_FILE[0]], members=MEMBERS, data_root=sa.root)
    assert {p.file for p in problems} == {rel}
    found = {(p.what, p.expected, p.found)[: max(len(e) for e in expected)] for p in problems}
    found = {f if f[:3] in expected else f[:1] for f in found}
    assert found == expected, problems


def test_validator_expects_ten_members_by_default(sa, capsys):
    problems = validate_submission(sa.folder, ["SA"], [SA_FILE[0]], data_root=sa.root)  # a 2-member submission
    assert len(problems) == 24 and {(p.what, p.expected, p.found) for p in problems} == {
        ("member size of pr", "10", "2"), ("member size of tasmax", "10", "2")}
    cli = _load_script("validate_submission")
    assert cli.main([str(sa.folder), "--domains", "SA", "--experiments", SA_FILE[0]]) == 1
    assert "member size of pr: expected 10; found 2" in capsys.readouterr().out
    assert cli.main([str(sa.folder), "--domains", "SA", "--members", "0"]) == 0  # 0: any size


def test_validator_time_attributes_without_data(sa, tmp_path):
    folder = Path(shutil.copytree(sa.folder, tmp_path / NAME))
    rel = _rel("SA", *SA_FILE)
    with netCDF4.Dataset(folder / rel, "a") as nc:
        nc["time"].units = "minutes after 1961-01-01"
        del nc["time"].calendar
    problems = validate_submission(folder, ["SA"], [SA_FILE[0]], members=MEMBERS)
    assert [(p.file, p.what, p.found) for p in problems] == [
        (rel, "time", "undecodable float32 values (units 'minutes after 1961-01-01')"),
        (rel, "time units", "'minutes after 1961-01-01'"), (rel, "time calendar", "none")]


def _zip_copy(src: Path, dst: Path, rename=lambda n: n, skip=(), extra=()) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename not in skip:
                zout.writestr(rename(info.filename), zin.read(info))
        for name, data in extra:
            zout.writestr(name, data)
    return dst


def test_validate_zip_entries(sa, tmp_path, capsys):
    folder = Path(shutil.copytree(sa.folder, tmp_path / NAME))
    good = package_submission(folder)
    assert validate_zip(good, ["SA"]) == []
    cli = _load_script("validate_submission")
    assert cli.main([str(good), "--domains", "SA"]) == 0
    first = f"{NAME}/{_rel('SA', *SA_FILE)}"
    bad = tmp_path / "bad"
    bad.mkdir()
    flat = _zip_copy(good, bad / f"{NAME}.zip", rename=lambda n: n.split("/", 1)[1])  # the benchmark script's layout
    problems = validate_zip(flat, ["SA"])
    assert problems[0].what == "zip entry outside the top folder" and problems[0].found.startswith("'SA_Domain/")
    assert len([p for p in problems if p.what == "missing file in zip"]) == 24
    other = _zip_copy(good, bad / "Other.zip")  # zip renamed: its top folder no longer matches
    assert {p.what for p in validate_zip(other, ["SA"])} == {"zip entry outside the top folder", "missing file in zip"}
    tampered = _zip_copy(good, bad / f"{NAME}.zip", skip={first},
                         extra=[(f"{NAME}/SA_Domain/notes.txt", b"x"), (f"{NAME}/../evil.nc", b"x"),
                                (f"{NAME}/{_rel('SA', *SA_FILE[:3], 'NorESM2-MM')}x", b"x")])
    assert [(p.file, p.what) for p in validate_zip(tampered, ["SA"])] == [
        (f"{NAME}/SA_Domain/notes.txt", "unexpected file in zip"), (f"{NAME}/../evil.nc", "unsafe zip entry"),
        (f"{NAME}/{_rel('SA', *SA_FILE[:3], 'NorESM2-MM')}x", "unexpected file in zip"),
        (first, "missing file in zip")]
    fake = _zip_copy(good, bad / f"{NAME}.zip", skip={first}, extra=[(first, b"not netcdf")])
    assert [(p.file, p.what) for p in validate_zip(fake, ["SA"])] == [(first, "zip entry is not NetCDF4")]
    assert cli.main([str(fake), "--domains", "SA"]) == 1
    assert f"{first}: zip entry is not NetCDF4" in capsys.readouterr().out


# --- writer errors and overwrite -------------------------------------------------------------------
def test_writer_rejects_bad_predictions(sa, tmp_path):
    predictor = predictor_path(sa.root, "SA", "historical", "perfect", "NorESM2-MM")
    good = fake_predict_fn("SA", MEMBERS)("ESD_pseudo_reality", "pr", predictor)
    tas = good + 279.0
    t = predictor_time(predictor)
    out = tmp_path / "f.nc"
    with pytest.raises(ValueError, match="dimension 'member' has size 2; expected 3"):
        write_prediction_file(out, good, tas, "SA", t, members=3)
    with pytest.raises(ValueError, match=r"pr: time stamp 0 is .*1981, 1, 1.*the predictor file has"):
        shifted = good.assign_coords(time=xr.date_range("1981-01-01", periods=N_DAYS, calendar="noleap", use_cftime=True))
        write_prediction_file(out, shifted, tas, "SA", t, MEMBERS)
    with pytest.raises(ValueError, match="tasmax: coordinate 'lat' differs from the SA template grid"):
        write_prediction_file(out, good, tas.assign_coords(lat=tas["lat"] + 0.01), "SA", t, MEMBERS)
    bad = good.copy(data=good.values.copy())
    bad[1, 4, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"pr: non-finite \(NaN/Inf\) values at time index 4"):
        write_prediction_file(out, bad, tas, "SA", t, MEMBERS, chunk_days=3)
    with pytest.raises(ValueError, match="pr: negative values at time index 0"):
        write_prediction_file(out, good - 1.5, tas, "SA", t, MEMBERS)
    assert list(tmp_path.iterdir()) == []  # nothing left behind, not even the .tmp


def test_write_submission_refuses_to_overwrite(sa, tmp_path):
    folder = Path(shutil.copytree(sa.folder, tmp_path / NAME))
    rel = _rel("SA", *SA_FILE)
    before = (folder / rel).read_bytes()
    with pytest.raises(FileExistsError, match="24 prediction file\\(s\\) already exist"):
        write_submission(tmp_path, NAME, sa.root, "SA", EXPERIMENTS, fake_predict_fn("SA", MEMBERS, 1.0), MEMBERS)
    assert (folder / rel).read_bytes() == before
    write_submission(tmp_path, NAME, sa.root, "SA", ["ESD_pseudo_reality"], fake_predict_fn("SA", MEMBERS, 1.0),
                     MEMBERS, overwrite=True)
    with xr.open_dataset(folder / rel) as ds:
        assert float(ds["tasmax"][0, 0, 0, 0]) == 281.0


# --- packaging -------------------------------------------------------------------------------------
def test_package_submission(sa, tmp_path):
    folder = Path(shutil.copytree(sa.folder, tmp_path / NAME))
    zip_path = package_submission(folder)
    assert zip_path == tmp_path / f"{NAME}.zip"
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert names == sorted(names) and len(names) == 24
        assert all(n.startswith(f"{NAME}/SA_Domain/") for n in names)
        assert not any(n.endswith(".zip") for n in names)
        rel = _rel("SA", *SA_FILE)
        assert zf.read(f"{NAME}/{rel}") == (folder / rel).read_bytes()
    again = package_submission(folder, tmp_path / "other" / "again.zip")
    assert again.read_bytes() == zip_path.read_bytes()  # deterministic
    with pytest.raises(ValueError, match="lies inside the folder it packs"):
        package_submission(folder, folder / "SA_Domain" / "x.zip")


# --- predict_fn from runs and the submit CLI -------------------------------------------------------
def _fake_run(domain, experiment, variable, static=1):
    data = SimpleNamespace(source="cordex", domain=domain, experiment=experiment, target_variable=variable)
    names = ["t_850", "q_850"] if variable == "tasmax" else ["q_850", "z_500", "u_700"]
    geometry = {"predictor_names": names, "target_variable": variable, "out_shape": (128, 128),
                "static_channels": static}
    return SimpleNamespace(cfg=SimpleNamespace(data=data), geometry=geometry)


@pytest.fixture
def fake_inference(monkeypatch):
    """load_run reads 'DOMAIN-EXPERIMENT-VARIABLE' from the run folder's name; predict_ensemble returns
    (channel-0 mean of the day - 0.2 + member index), so negative pr samples occur in member 0."""
    from ml_benchmark_spategan import inference

    calls = []

    def load_run(run_dir, which="best", device="cpu"):
        domain, experiment, variable = Path(run_dir).name.split("-")
        return _fake_run(domain, experiment, variable)

    def predict_ensemble(run, predictors, target_like, members, batch_size=64, orography=None):
        calls.append((list(predictors["channel"].values), None if orography is None else float(orography.max())))
        base = predictors.isel(channel=0).mean(("lat", "lon")).values - 0.2 + (280.0 if run.geometry["target_variable"] == "tasmax" else 0.0)
        base = base[None, :] + np.arange(members)[:, None]  # members differ (member 0 = the day's value)
        values = np.broadcast_to(base[:, :, None, None], (members, base.shape[1], 128, 128)).astype(np.float32)
        return xr.DataArray(values, dims=("member", "time", *target_like.dims),
                            coords={"time": predictors["time"].values, **target_like.coords})

    monkeypatch.setattr(inference, "load_run", load_run)
    monkeypatch.setattr(inference, "predict_ensemble", predict_ensemble)
    return calls


def test_run_predict_fn_checks_runs_and_predicts(sa, fake_inference):
    from ml_benchmark_spategan.submission import run_predict_fn

    exp = "ESD_pseudo_reality"
    with pytest.raises(ValueError, match=r"given for ESD_pseudo_reality:pr, domain SA\): data.domain is 'NZ'; expected 'SA'"):
        run_predict_fn({(exp, "pr"): f"runs/NZ-{exp}-pr"}, 2, domain="SA", data_root=sa.root)
    with pytest.raises(ValueError, match="target variable is 'tasmax'; expected 'pr'"):
        run_predict_fn({(exp, "pr"): f"runs/SA-{exp}-tasmax"}, 2, domain="SA", data_root=sa.root)
    with pytest.raises(ValueError, match="data.experiment is 'Emulator_hist_future'"):
        run_predict_fn({(exp, "pr"): "runs/SA-Emulator_hist_future-pr"}, 2, domain="SA", data_root=sa.root)
    fn = run_predict_fn({(exp, "pr"): f"runs/SA-{exp}-pr"}, 2, domain="SA", data_root=sa.root)
    path = predictor_path(sa.root, "SA", "historical", "imperfect", "NorESM2-MM")
    y = fn(exp, "pr", path)
    assert fake_inference[-1] == (["q_850", "z_500", "u_700"], 3000.0)  # channels by name, orography passed
    with xr.open_dataset(path) as ds:
        raw = ds["q_850"].mean(("lat", "lon")).values - 0.2
    assert (raw < 0).any() and np.allclose(y.isel(member=0, lat=0, lon=0).values, np.maximum(raw, 0), atol=1e-6)
    with pytest.raises(KeyError, match="no run given for ESD_pseudo_reality:tasmax"):
        fn(exp, "tasmax", path)


def test_submit_cli(sa, tmp_path, fake_inference, capsys):
    submit = _load_script("submit")
    with pytest.raises(ValueError, match="expected EXPERIMENT:VARIABLE=RUN_DIR"):
        submit.parse_run_specs(["ESD_pseudo_reality:precip=runs/a"])
    with pytest.raises(ValueError, match=r"given for \['pr'\] only"):
        submit.experiments_with_runs(submit.parse_run_specs(["ESD_pseudo_reality:pr=runs/a"]))
    runs = [f"--run={e}:{v}=runs/SA-{e}-{v}" for e in ("ESD_pseudo_reality",) for v in ("pr", "tasmax")]
    args = ["--name", NAME, "--domain", "SA", "--data-root", str(sa.root), "--members", "2", "--out", str(tmp_path)]
    assert submit.main([*args, *runs, "--zip"]) == 1  # Emulator skipped: 12 missing files, not zipped
    out = capsys.readouterr().out
    assert out.count(": missing file:") == 12 and "12 problem(s)" in out
    emulator = [f"--run=Emulator_hist_future:{v}=runs/SA-Emulator_hist_future-{v}" for v in ("pr", "tasmax")]
    assert submit.main([*args, *runs, *emulator, "--zip"]) == 2  # the 12 ESD files exist: refused before predicting
    assert "already exist" in capsys.readouterr().err
    assert submit.main([*args, *emulator, "--zip"]) == 0  # ESD skipped now, its files are there: complete
    assert (tmp_path / f"{NAME}.zip").is_file()
    assert validate_submission(tmp_path / NAME, ["SA"], members=2, data_root=sa.root) == []


@pytest.mark.parametrize("domain, gcm", [("SA", "NorESM2-MM"), ("SA", "ACCESS-CM2"), ("ALPS", "CNRM-CM5"),
                                         ("NZ", "EC-Earth3")])
def test_files_from_synthetic_generator_predictors(cordex_root, tmp_path, domain, gcm):
    """The synthetic generator's predictor files (conftest's shared 2-year tree): their time encodings
    survive the writer and the file validates against them."""
    predictor = predictor_path(cordex_root, domain, "end_century", "imperfect", gcm)
    pr = fake_predict_fn(domain, 1)("ESD_pseudo_reality", "pr", predictor)
    out = tmp_path / "p.nc"
    write_prediction_file(out, pr, pr + 279.0, domain, predictor_time(predictor), members=1)
    assert _raw_time(out)[1:] == _raw_time(predictor)[1:]
    assert np.array_equal(_raw_time(out)[0], _raw_time(predictor)[0])
    assert validate_file(out, domain, "end_century", members=1, predictor=predictor) == []
