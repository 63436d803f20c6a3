"""compare.py: one table over evaluated runs, overlay plots, refusals. Uses the session runs of test_evaluate."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from test_evaluate import assert_not_blank, build_runs, load_script

from ml_benchmark_spategan.visualization.evaluation_figures import bars_figure as BARS


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return build_runs(tmp_path_factory)


def _summary(run_dir, label) -> dict:
    return json.loads((run_dir / "evaluation" / label / "summary.json").read_text())


def test_compare_two_runs(runs, tmp_path):
    cli = load_script("compare")
    out = tmp_path / "cmp"
    assert cli.main([str(runs.gan), str(runs.bilinear), "--split", "test", "--out", str(out)]) == 0
    table = json.loads((out / "comparison.json").read_text())
    summaries = [_summary(runs.gan, runs.test_label), _summary(runs.bilinear, runs.test_label)]
    assert [r["run_dir"] for r in table["runs"]] == [str(runs.gan), str(runs.bilinear)]
    assert (table["variable"], table["domain"], table["split"]) == ("pr", "NZ", runs.test_label)
    for row, run_dir, summary in zip(table["runs"], (runs.gan, runs.bilinear), summaries, strict=True):
        assert row["scores"] == summary["scores"]
        assert row["label"] == f"{run_dir.name} (best.pt, epoch 1)"
    with open(out / "comparison.csv", newline="") as fh:
        rows = {r[0]: r[1:] for r in csv.reader(fh)}
    assert rows["model"] == ["spagan", "bilinear"]
    for key in ("rmse/ensemble_mean", "bias_cwd/member0", "crps/fair", "fss/5mm/s11/ensemble_mean"):
        assert [float(v) for v in rows[key]] == pytest.approx([s["scores"][key] for s in summaries], rel=1e-12)
    markdown = (out / "comparison.md").read_text()
    assert runs.gan.name in markdown and runs.bilinear.name in markdown and "| rmse/ensemble_mean |" in markdown
    for name in ("psd.png", "qq.png", "bias_bars.png"):
        assert_not_blank(out / name)


def test_compare_default_out_beside_the_runs_with_bias_panels_per_unit(runs, tmp_path, monkeypatch):
    """Without --out the comparison goes to <runs root>/comparisons/<timestamp>/, never into the CWD; the
    index-bias bars put mm/day and days (CWD) on separate, labelled axes."""
    cli = load_script("compare")
    monkeypatch.chdir(tmp_path)
    root = runs.gan.parent / "comparisons"
    before = set(root.iterdir()) if root.is_dir() else set()
    captured = {}
    monkeypatch.setattr(cli.ef, "bars_figure", lambda *a, **k: captured.setdefault("fig", BARS(*a, **k)))
    assert cli.main([str(runs.gan), str(runs.bilinear), "--split", "test"]) == 0
    new = set(root.iterdir()) - before
    assert len(new) == 1 and (new.pop() / "bias_bars.png").is_file()
    assert list(tmp_path.iterdir()) == []
    axes = captured["fig"].axes
    assert [ax.get_ylabel() for ax in axes] == ["spatial mean |bias| (mm/day)", "spatial mean |bias| (days)"]
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["cwd"]
    assert {t.get_text() for t in axes[0].get_xticklabels()} == {"mean", "sdii", "rx1day"}


def test_compare_refuses_different_variables(runs, tmp_path, capsys):
    cli = load_script("compare")
    out = tmp_path / "cmp"
    before = sorted(runs.tasmax.rglob("*"))
    status = cli.main([str(runs.bilinear), str(runs.tasmax), "--split", "test", "--evaluate", "--members", "1",
                       "--device", "cpu", "--data-root", str(runs.root), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert str(runs.bilinear) in err and str(runs.tasmax) in err and "'pr'" in err and "'tasmax'" in err
    assert not out.exists() and sorted(runs.tasmax.rglob("*")) == before  # refused before evaluating


def test_compare_refuses_summaries_of_different_variables(runs, tmp_path, capsys):
    """Summaries are checked too (e.g. a run folder whose evaluation was copied from elsewhere)."""
    cli = load_script("compare")
    copy = tmp_path / "copy"
    shutil.copytree(runs.bilinear, copy, ignore=shutil.ignore_patterns("*.nc", "*.png"))
    summary = _summary(copy, runs.test_label)
    summary["run"]["variable"] = "tasmax"
    (copy / "evaluation" / runs.test_label / "summary.json").write_text(json.dumps(summary))
    assert cli.main([str(runs.gan), str(copy), "--split", "test", "--out", str(tmp_path / "cmp")]) == 2
    assert "variable 'tasmax'" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()


def test_compare_missing_summary_and_run(runs, tmp_path, capsys):
    cli = load_script("compare")
    copy = tmp_path / "copy"
    shutil.copytree(runs.bilinear, copy, ignore=shutil.ignore_patterns("evaluation", "*.nc", "*.png"))
    out = tmp_path / "cmp"
    assert cli.main([str(runs.gan), str(copy), "--out", str(out)]) == 2
    assert "summary.json not found" in capsys.readouterr().err
    assert cli.main([str(runs.gan), str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()
