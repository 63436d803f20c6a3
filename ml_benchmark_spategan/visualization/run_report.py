"""``report.html`` of a run folder, and the compact score table printed at the end of ``make run``.

The page is one HTML file in the run folder, readable offline: no scripts, no styles or fonts from the
network; figures are ``<img>`` links relative to the run folder (so the page stays small however many
epochs it shows). It holds the run's facts, a summary table (the last epoch and the headline scores of
each evaluation against its baselines), the resolved config, the loss and diagnostic curves, every
per-epoch figure, and each evaluation's figures and full score table. Training rewrites it after every
epoch and ``evaluation/evaluate.py`` after each evaluation.

    python -m ml_benchmark_spategan.visualization.run_report RUN_DIR [--split val]   # (re)write, print the table
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPORT_NAME = "report.html"
#: Scores of the summary table (when present), in this order: key -> what it is.
HEADLINE_SCORES = {
    "rmse/ensemble_mean": "RMSE of the ensemble mean",
    "rmse/member0": "RMSE of member 0",
    "corr/ensemble_mean": "correlation of the ensemble mean",
    "std_ratio/member0": "std ratio of member 0 (ideal 1)",
    "bias_mean/member0": "|bias| of the time mean, member 0",
    "crps/fair": "CRPS (fair)",
    "spread_skill/ratio": "spread/skill (ideal 1)",
    "ralsd/member0": "RALSD of member 0 (dB², ideal 0)",
    "wasserstein/member0": "Wasserstein-1 of member 0",
}
#: Last-epoch values shown for training (history keys).
TRAINING_KEYS = ("epoch", "train/g/loss", "train/d/loss", "val/rmse", "val/crps", "val/spread_skill",
                 "val/std_ratio", "time/epoch_seconds")
_STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1500px;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd;margin:4px 0}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;font-size:12px}figure{margin:0.6em 0}
figcaption{font-size:12px;color:#555}h2{border-bottom:1px solid #ccc;padding-bottom:2px}"""


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def evaluations(run_dir: Path) -> list[tuple[str, dict]]:
    """(label, summary) of every evaluation of the run (``evaluation/<label>/summary.json``), by label."""
    found = []
    for path in sorted((run_dir / "evaluation").glob("*/summary.json")):
        summary = _read_json(path)
        if isinstance(summary, dict) and "scores" in summary:
            found.append((path.parent.name, summary))
    return found


def score_columns(summary: Mapping) -> dict[str, Mapping]:
    """Column label -> scores: this run (its model name) then each baseline (its model name)."""
    model = summary.get("run", {}).get("model", "this run")
    columns = {f"{model} (this run)": summary["scores"]}
    for label, base in summary.get("baselines", {}).items():
        columns[str(base.get("model") or label)] = base.get("scores", {})
    return columns


def compact_table(summary: Mapping, keys: Sequence[str] = tuple(HEADLINE_SCORES)) -> list[list[str]]:
    """Rows ``[score, value per column]`` of the headline scores present in ``summary`` (header first)."""
    columns = score_columns(summary)
    rows = [["score", *columns]]
    for key in keys:
        if key in summary["scores"]:
            rows.append([key, *[_fmt(scores.get(key)) for scores in columns.values()]])
    return rows


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned plain text (first column left, the others right)."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _html_table(rows: Sequence[Sequence], header: bool = True) -> str:
    out = ["<table>"]
    for n, row in enumerate(rows):
        tag = "th" if header and n == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _figure(run_dir: Path, path: Path) -> str:
    rel = path.relative_to(run_dir).as_posix()
    return (f'<figure><img src="{html.escape(rel)}" alt="{html.escape(rel)}" loading="lazy">'
            f"<figcaption>{html.escape(rel)}</figcaption></figure>")


def _epoch_key(path: Path):
    digits = "".join(c for c in path.stem if c.isdigit())
    return (int(digits) if digits else -1, path.name)


def _training_section(run_dir: Path) -> list[str]:
    parts = ["<h2>Training</h2>"]
    history = _read_json(run_dir / "history.json") or []
    if history:
        last = history[-1]
        parts.append(_html_table([["quantity", "last epoch"]] + [[k, _fmt(last.get(k))] for k in TRAINING_KEYS if k in last]))
    for name in ("losses.png", "diagnostics_history.png"):
        if (run_dir / name).is_file():
            parts.append(_figure(run_dir, run_dir / name))
    epochs = sorted(run_dir.glob("diagnostics_epoch_*.png"), key=_epoch_key, reverse=True)
    samples = sorted((run_dir / "sample_plots").glob("*.png"), key=_epoch_key, reverse=True)
    if epochs or samples:
        parts.append("<h3>Per epoch (newest first)</h3>")
        parts += [_figure(run_dir, p) for p in epochs + samples]
    return parts


def _evaluation_section(run_dir: Path, label: str, summary: Mapping) -> list[str]:
    run = summary.get("run", {})
    facts = ", ".join(f"{k} {run[k]}" for k in ("checkpoint_file", "epoch", "members", "years", "n_days") if k in run)
    parts = [f"<h2>Evaluation: {html.escape(label)}</h2>", f"<p>{html.escape(facts)}</p>"]
    parts.append(_html_table(compact_table(summary)))
    columns = score_columns(summary)
    every = [["score", *columns]] + [[k, *[_fmt(s.get(k)) for s in columns.values()]] for k in summary["scores"]]
    parts.append(f"<details><summary>all {len(every) - 1} scores</summary>{_html_table(every)}</details>")
    folder = run_dir / "evaluation" / label
    parts += [_figure(run_dir, p) for p in sorted(folder.glob("*.png"))]
    return parts


def report_html(run_dir: str | Path) -> str:
    """The page of ``run_dir`` (see the module docstring)."""
    run_dir = Path(run_dir)
    evals = evaluations(run_dir)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>run {html.escape(run_dir.name)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Run {html.escape(run_dir.name)}</h1>"]
    if evals:
        parts.append("<h2>Summary</h2>")
        for label, summary in evals:
            run = summary.get("run", {})
            parts.append(f"<h3>{html.escape(label)}: {html.escape(str(run.get('variable', '')))} "
                         f"({html.escape(str(run.get('units', '')))})</h3>")
            parts.append(_html_table(compact_table(summary)))
    parts += _training_section(run_dir)
    for label, summary in evals:
        parts += _evaluation_section(run_dir, label, summary)
    config = run_dir / "config.yaml"
    if config.is_file():
        parts += ["<h2>Configuration (config.yaml)</h2>", f"<pre>{html.escape(config.read_text(encoding='utf-8'))}</pre>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` atomically; returns its path."""
    path = Path(run_dir) / REPORT_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(report_html(run_dir), encoding="utf-8")
    os.replace(tmp, path)
    return path


def closing_note(run_dir: str | Path, label: str = "val") -> str:
    """What ``make run`` prints at the end: the run folder, the headline scores of evaluation ``label``
    against its baselines (on the same days), and where the figures and the report are."""
    run_dir = Path(run_dir)
    summary = dict(evaluations(run_dir)).get(label)
    lines = [f"run folder: {run_dir}"]
    if summary is None:
        lines.append(f"(no evaluation '{label}' yet: python evaluation/evaluate.py {run_dir} --split {label})")
    else:
        run = summary.get("run", {})
        lines += ["", f"scores on {label} ({run.get('n_days')} days {run.get('years', '')}, {run.get('variable')} in "
                  f"{run.get('units')}, {run.get('members')} members; lower is better except corr, ratios ideal 1):",
                  text_table(compact_table(summary))]
    lines += ["", f"figures: {run_dir}/*.png, {run_dir}/sample_plots/, {run_dir}/evaluation/{label}/",
              f"report:  {run_dir / REPORT_NAME}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a run's report.html and print its score summary.")
    parser.add_argument("run_dir", help="run folder (runs/<id>)")
    parser.add_argument("--split", default="val", help="evaluation label whose scores are printed (default val)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        print(f"error: {run_dir} is not a run folder (no config.yaml)", file=sys.stderr)
        return 2
    write_report(run_dir)
    print(closing_note(run_dir, args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
