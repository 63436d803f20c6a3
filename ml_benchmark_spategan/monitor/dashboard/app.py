"""The dashboard's pages (Panel): ``/`` the run list, ``/run?run=NAME`` one run live, ``/start`` a new
run, ``/evaluation?run=NAME`` a run's evaluation results. Every page redraws from the run folders on a
timer; only the Stop and Start buttons write anything (a STOP file; a new run)."""

from __future__ import annotations

import html
import time
from pathlib import Path

import pandas as pd
import panel as pn

from ml_benchmark_spategan.monitor.dashboard import folder as rf
from ml_benchmark_spategan.monitor.dashboard import launch
from ml_benchmark_spategan.monitor.dashboard.plots import curves, loss_keys, small_multiples, validation_keys
from ml_benchmark_spategan.monitor.files import request_stop
from ml_benchmark_spategan.monitor.status import ACTIVE_STATES, read_status, scan_runs
from ml_benchmark_spategan.monitor.table import COLUMNS, progress_fraction, status_row

STATE_COLORS = {"training": "#1f77b4", "validating": "#9467bd", "evaluating": "#9467bd", "starting": "#7f7f7f",
                "finished": "#2ca02c", "stopped": "#ff7f0e", "requeued": "#ff7f0e", "failed": "#d62728",
                "lost": "#d62728"}
# Panel renders each pane in its own shadow root: a pane's HTML carries the styles it uses.
CSS = """<style>
.state-badge {display:inline-block; padding:3px 12px; border-radius:4px; color:white; font-weight:bold; font-size:15px}
.facts td {padding:2px 14px 2px 0; font-size:13px} .facts td:first-child {color:#555}
pre.log {font-size:11px; background:#f6f6f6; padding:6px; margin:0; white-space:pre-wrap}
</style>"""


def _nav(*links: tuple[str, str]) -> pn.pane.HTML:
    return pn.pane.HTML(" · ".join(f'<a href="{href}">{html.escape(text)}</a>' for text, href in links))


def _query(name: str) -> str:
    values = pn.state.session_args.get(name) or [b""]
    return values[0].decode("utf-8", errors="replace")


def badge(state: str) -> str:
    color = STATE_COLORS.get(state.split(":")[0], "#7f7f7f")
    return f'<span class="state-badge state-{html.escape(state.split(":")[0])}" style="background:{color}">{html.escape(state)}</span>'


# --- run list -------------------------------------------------------------------------------------------
def runs_frame(root: Path) -> pd.DataFrame:
    launch.reap()
    rows = [status_row(s) for s in scan_runs(root)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["run"] = [f'<a href="run?run={html.escape(r)}">{html.escape(r)}</a>' for r in frame["run"]]
    return frame


def index_page(root: Path, refresh_ms: int) -> pn.viewable.Viewable:
    table = pn.widgets.Tabulator(runs_frame(root), disabled=True, show_index=False, sortable=True,
                                 formatters={"run": {"type": "html"}}, sizing_mode="stretch_width",
                                 pagination=None, layout="fit_data_table")
    stamp = pn.pane.HTML("")

    def refresh() -> None:
        table.value = runs_frame(root)
        stamp.object = f"<small>{len(table.value)} run(s) under {html.escape(str(root))}, updated {time.strftime('%H:%M:%S')}</small>"

    refresh()
    pn.state.add_periodic_callback(refresh, period=refresh_ms)
    return pn.Column(pn.pane.HTML("<h2>Runs</h2>"), _nav(("start a run", "start")), stamp, table,
                     sizing_mode="stretch_width")


# --- one run --------------------------------------------------------------------------------------------
def facts_html(status: dict | None) -> str:
    if status is None:
        return "<p>no status.json in this folder (a run from before status files, or not started yet)</p>"
    row = status_row(status)
    items = [("epoch", row["epoch"]), ("step", row["step"]), ("progress", row["progress"]), ("samples/s", row["samples/s"]),
             ("ETA", row["eta"] + (f" (ends {status['eta_time'][11:19]} UTC)" if status.get("eta_time") and row["eta"] != "-" else "")),
             ("best", row["best"]), ("last checkpoint", Path(status.get("last_checkpoint") or "-").name
                                     + (f" at {status['last_checkpoint_time'][11:19]} UTC" if status.get("last_checkpoint_time") else "")),
             ("model", str(status.get("model", "-"))), ("where", row["where"]), ("heartbeat", row["heartbeat"])]
    if status.get("error"):
        items.append(("error", status["error"]))
    if status.get("stop_requested"):
        items.append(("stop", "requested: checkpoint at the next step"))
    cells = "".join(f'<tr class="fact-{html.escape(k.replace("/", "_").replace(" ", "_"))}"><td>{html.escape(k)}</td>'
                    f"<td>{html.escape(str(v))}</td></tr>" for k, v in items)
    return f'{CSS}<div>{badge(status["state"])}</div><table class="facts">{cells}</table>'


class RunView:
    """The live page of one run; ``refresh`` re-reads the folder and updates only what changed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.progress = pn.indicators.Progress(value=0, max=1000, width=420, bar_color="primary")
        self.facts = pn.pane.HTML("")
        self.stop = pn.widgets.Button(name="Stop", button_type="danger", width=120)
        self.stop.on_click(self._stop)
        self.message = pn.pane.HTML("")
        self.loss_plot = pn.pane.Bokeh(sizing_mode="stretch_width", height=300)
        self.val_plot = pn.pane.Bokeh(sizing_mode="stretch_width")
        self.sample = pn.pane.PNG(None, width=640)
        self.diagnostics = pn.pane.PNG(None, width=640)
        self.log = pn.pane.HTML("", sizing_mode="stretch_width")
        self.config = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._seen: dict[str, object] = {}

    def layout(self) -> pn.viewable.Viewable:
        name = self.folder.name
        return pn.Column(
            pn.pane.HTML(f"<h2>{html.escape(name)}</h2>"),
            _nav(("all runs", "./"), ("evaluation results", f"evaluation?run={name}"), ("start a run", "start")),
            pn.Row(pn.Column(self.progress, self.facts), pn.Column(self.stop, self.message, width=360)),
            pn.Row(self.loss_plot, self.val_plot, sizing_mode="stretch_width"),
            pn.Row(pn.Column("**latest sample maps**", self.sample), pn.Column("**latest diagnostics**", self.diagnostics)),
            pn.pane.HTML("<b>training.log</b> (last lines)"), self.log,
            pn.Card(self.config, title="config.yaml", collapsed=True, sizing_mode="stretch_width"),
            sizing_mode="stretch_width")

    def _stop(self, event=None) -> None:
        request_stop(self.folder, "stop requested from the dashboard")
        self.message.object = ("<p>Stop requested: the run writes checkpoints/last.pt after its next step and "
                               f"exits (state <i>stopped</i>); continue it with <code>--resume {html.escape(str(self.folder))}</code></p>")
        self.refresh()

    def _changed(self, key: str, value) -> bool:
        if self._seen.get(key) == value:
            return False
        self._seen[key] = value
        return True

    def refresh(self) -> None:
        status = read_status(self.folder)
        frac = progress_fraction(status) if status else None
        self.progress.value = int(1000 * frac) if frac is not None else 0
        self.facts.object = facts_html(status)
        self.stop.disabled = status is None or status["state"] not in ACTIVE_STATES or bool(status.get("stop_requested"))
        self._refresh_curves()
        for pane, pattern, key in ((self.sample, "sample_plots/epoch_*.png", "sample"),
                                   (self.diagnostics, "diagnostics_epoch_*.png", "diagnostics")):
            path = rf.latest(self.folder, pattern)
            if path is not None and self._changed(key, (path, path.stat().st_mtime)):
                pane.object = path.read_bytes()
        self.log.object = f'{CSS}<pre class="log">{html.escape(rf.log_tail(self.folder, lines=20))}</pre>'
        if self._changed("config", (self.folder / "config.yaml").exists()):
            self.config.object = f"```yaml\n{rf.read_text(self.folder / 'config.yaml')}\n```"

    def _refresh_curves(self) -> None:
        path = self.folder / "metrics.csv"
        if not path.is_file() or not self._changed("metrics", path.stat().st_mtime):
            return
        columns = rf.metrics(self.folder)
        self.loss_plot.object = curves(columns, loss_keys(columns), "losses")
        self.val_plot.object = small_multiples(columns, validation_keys(columns))


def run_page(root: Path, refresh_ms: int) -> pn.viewable.Viewable:
    folder = rf.run_folder(root, _query("run"))
    if folder is None:
        return pn.Column(_nav(("all runs", "./")), pn.pane.HTML(f"<p>no run {html.escape(_query('run'))!s} under {html.escape(str(root))}</p>"))
    view = RunView(folder)
    view.refresh()
    pn.state.add_periodic_callback(view.refresh, period=refresh_ms)
    return view.layout()


# --- start a run ----------------------------------------------------------------------------------------
def start_page(root: Path, repo: Path) -> pn.viewable.Viewable:
    config = pn.widgets.TextInput(name="config file (relative to the checkout or absolute)", value="config.yml", width=500)
    overrides = pn.widgets.TextAreaInput(name="overrides, one key.path=value per line (as --set)", height=180, width=500,
                                         placeholder="training.epochs=3\ndata.domain=NZ")
    where = pn.widgets.RadioButtonGroup(name="where", options=["local process", "sbatch"],
                                        value="sbatch" if launch.shutil.which("sbatch") else "local process")
    button = pn.widgets.Button(name="Start", button_type="primary", width=120)
    result = pn.pane.HTML("")

    def on_start(event=None) -> None:
        try:
            sets = launch.parse_overrides(overrides.value)
        except ValueError as err:
            result.object = f'<p style="color:#d62728">{html.escape(str(err))}</p>'
            return
        button.disabled = True
        result.object = "<p>checking the config (training_v2.py --dry-run) ...</p>"
        try:
            done = launch.start(repo, root, config.value.strip(), sets, use_sbatch=where.value == "sbatch")
        finally:
            button.disabled = False
        color = "#2ca02c" if done.ok else "#d62728"
        link = f' <a href="run?run={done.run_dir.name}">open {done.run_dir.name}</a>' if done.ok and done.run_dir else ""
        result.object = f'<p style="color:{color}"><pre>{html.escape(done.message)}</pre>{link}</p>'

    button.on_click(on_start)
    return pn.Column(pn.pane.HTML("<h2>Start a run</h2>"), _nav(("all runs", "./")),
                     pn.pane.HTML(f"<p>checkout: {html.escape(str(repo))}; new runs go to {html.escape(str(root))}</p>"),
                     config, overrides, where, button, result)


# --- evaluation results ---------------------------------------------------------------------------------
def evaluation_page(root: Path) -> pn.viewable.Viewable:
    folder = rf.run_folder(root, _query("run"))
    if folder is None:
        return pn.Column(_nav(("all runs", "./")), pn.pane.HTML("<p>no such run</p>"))
    found = rf.evaluations(folder)
    nav = _nav(("all runs", "./"), (f"run {folder.name}", f"run?run={folder.name}"))
    if not found:
        return pn.Column(pn.pane.HTML(f"<h2>{html.escape(folder.name)}: evaluation</h2>"), nav,
                         pn.pane.HTML(f"<p>not evaluated yet: <code>python evaluation/evaluate.py {html.escape(str(folder))}</code></p>"))
    tabs = pn.Tabs(*[(label, pn.Column(pn.pane.Markdown(item["summary"], sizing_mode="stretch_width"),
                                       *[pn.Column(f"**{png.name}**", pn.pane.PNG(str(png), width=900)) for png in item["figures"]]))
                     for label, item in found.items()])
    return pn.Column(pn.pane.HTML(f"<h2>{html.escape(folder.name)}: evaluation</h2>"), nav, tabs, sizing_mode="stretch_width")


def pages(root: Path, repo: Path, refresh_ms: int) -> dict:
    return {"/": lambda: index_page(root, refresh_ms), "/run": lambda: run_page(root, refresh_ms),
            "/start": lambda: start_page(root, repo), "/evaluation": lambda: evaluation_page(root)}


def serve(root: Path, repo: Path, port: int, address: str = "127.0.0.1", refresh_ms: int = 2000, show: bool = False):
    origins = [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    return pn.serve(pages(root, repo, refresh_ms), port=port, address=address, websocket_origin=origins, show=show,
                    title="ml_benchmark_spategan runs", verbose=True)


