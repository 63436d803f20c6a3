"""report.html of a run folder: every training and evaluation figure, the summary table, the config; opened
in headless Chromium to check that every image loads. Uses the session runs of test_evaluate."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from test_evaluate import build_runs

from ml_benchmark_spategan.visualization.run_report import closing_note, compact_table, evaluations, write_report

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return build_runs(tmp_path_factory)


def _image_links(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_report_lists_every_figure_scores_and_config(runs):
    """evaluate.py rewrote the GAN's report after its evaluation: training figures, the val figures, the
    headline scores against the bilinear baseline, and the resolved config."""
    run = runs.gan
    page = (run / "report.html").read_text(encoding="utf-8")
    pngs = sorted(p.relative_to(run).as_posix() for p in run.rglob("*.png"))
    assert any(p.startswith("evaluation/val/") for p in pngs) and "losses.png" in pngs
    assert sorted(_image_links(page)) == pngs
    assert "http://" not in page and "https://" not in page and "<script" not in page  # offline, no scripts
    summary = dict(evaluations(run))["val"]
    rows = compact_table(summary)
    assert rows[0] == ["score", "spagan (this run)", "bilinear"]
    rmse = next(r for r in rows if r[0] == "rmse/ensemble_mean")
    assert rmse[1] == f"{summary['scores']['rmse/ensemble_mean']:.4g}"
    assert rmse[2] == f"{next(iter(summary['baselines'].values()))['scores']['rmse/ensemble_mean']:.4g}"
    assert f"<td>rmse/ensemble_mean</td><td>{rmse[1]}</td><td>{rmse[2]}</td>" in page
    assert "Configuration (config.yaml)" in page and "train_years" in page
    note = closing_note(run)
    assert f"run folder: {run}" in note and "rmse/ensemble_mean" in note and str(run / "report.html") in note


def test_report_opens_in_chromium_with_every_image_loaded(runs, tmp_path):
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(f"no headless browser: {CHROMIUM} / {CHROMEDRIVER} not installed (Debian package chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    run = tmp_path / runs.gan.name  # a copy: the screenshot does not land in the shared run folder
    shutil.copytree(runs.gan, run, ignore=shutil.ignore_patterns("*.nc", "*.pt"))
    write_report(run)
    expected = sorted(p.relative_to(run).as_posix() for p in run.rglob("*.png"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.get((run / "report.html").as_uri())
        driver.execute_script("Array.from(document.images).forEach(i => i.loading = 'eager');")  # load all now
        images = _loaded(driver)
        driver.save_screenshot(str(tmp_path / "report.png"))  # the top: title, summary table, first figures
    finally:
        driver.quit()
    assert sorted(src for src, _ in images) == expected
    broken = [src for src, width in images if not width]
    assert broken == [], f"images that did not load: {broken}"
    assert (tmp_path / "report.png").stat().st_size > 10_000


def _loaded(driver, tries: int = 50) -> list[tuple[str, int]]:
    """(src, naturalWidth) of every image once all have finished loading (or failed)."""
    import time

    script = "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
    for _ in range(tries):
        state = driver.execute_script(script)
        if all(done for _, done, _ in state):
            break
        time.sleep(0.2)
    return [(src, width) for src, _, width in state]
