"""The HTML pages: one run's report and the comparison of several, each a single file with nothing to fetch.

The figure is an embedded PNG; the hover text comes from a JSON block and an inline script (`hover`); the
style is inline. Every value taken from the results or their metadata goes through `html.escape`, and the
script writes it with `textContent`, never as markup.
"""

from __future__ import annotations

import base64
import html
import json

import numpy as np
import pandas as pd

from .bands import phase_colour
from .hover import embed, hover_document
from .panels import panels_for, split_order, value_columns

HOVER_NOTE = ("Hover a checkpoint to see its values, or click the figure and step through the checkpoints with "
              "the ← → keys. An arrow at a panel's top right says which way that measure moves when the network "
              "simplifies (as the geometry mode of the classifier reads it).")


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def table(header: list[str], rows: list[list[str]], css: str = "") -> str:
    """An HTML table; every cell is escaped here, so callers pass plain text."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    attribute = f' class="{css}"' if css else ""
    return f'<table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def flatten_metadata(value, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as (dotted key, text) rows; lists and other JSON values as compact JSON.

    >>> flatten_metadata({"config": {"lc": {"radius": 0.05}, "metrics": ["lc"]}, "device": "cpu"})
    [('config.lc.radius', '0.05'), ('config.metrics', '["lc"]'), ('device', 'cpu')]
    """
    if isinstance(value, dict) and value:
        rows = []
        for key, item in value.items():
            rows.extend(flatten_metadata(item, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(value, str):
        return [(prefix, value)]
    return [(prefix, json.dumps(value, default=str))]


def config_rows(metadata: dict) -> list[list[str]]:
    """The configuration as (option, value) rows; `data` shows the probe file used when none was named.

    >>> config_rows({"config": {"data": None, "points": 512}, "probe_file": "/runs/a/probes.safetensors"})
    [['data', '/runs/a/probes.safetensors (none named: the default file in the checkpoint directory)'], ['points', '512']]
    """
    config = dict(metadata.get("config") or {})
    if config.get("data") is None and metadata.get("probe_file"):
        config["data"] = f"{metadata['probe_file']} (none named: the default file in the checkpoint directory)"
    return [list(row) for row in flatten_metadata(config)] if config else []


def figure_block(drawn, png: bytes, alt: str, note: str) -> str:
    """The figure with its hover layer and script, and a caption."""
    image = base64.b64encode(png).decode("ascii")
    return (f'<figure><div class="plot" id="grokmon-figure" tabindex="0">'
            f'<img alt="{esc(alt)}" src="data:image/png;base64,{image}">'
            f'<div class="marks"></div><div class="tip" hidden></div></div>'
            f"<figcaption>{esc(note)}</figcaption></figure>\n{embed(hover_document(drawn))}")


def page(title: str, body: str) -> str:
    """A whole HTML document around `body` (already markup)."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""


def _phase_section(phase_report) -> str:
    if phase_report is None:
        return "<h2>Phases</h2><p>No phase report: no phases were classified for this run.</p>"
    order = list(dict.fromkeys(s.phase for s in phase_report.segments))
    rows = []
    for seg in phase_report.segments:
        count, weak = phase_report.counts(seg)
        swatch = f'<span class="swatch" style="background:{esc(phase_colour(seg.phase, order))}"></span>'
        rows.append(f"<tr><td>{swatch}{esc(seg.phase)}</td><td>{seg.start_step}</td><td>{seg.end_step}</td>"
                    f"<td>{count}</td><td>{'-' if weak is None else weak}</td></tr>")
    head = ("<tr><th>phase</th><th>first step</th><th>last step</th><th>checkpoints</th>"
            "<th title=\"verdicts that did not act: a weak label\">inconclusive</th></tr>")
    return f"<h2>Phases</h2><table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _last_checkpoint_section(df: pd.DataFrame) -> str:
    """Mean ± standard error of every metric at the last checkpoint that did not fail, one column per split."""
    if "step" not in df or df.empty:
        return ""
    ok = df[df["status"] != "error"] if "status" in df else df
    if ok.empty:
        return ""
    step = int(ok["step"].max())
    last = ok[ok["step"] == step]
    splits = [s for s in split_order(df) if s in set(last["split"])]
    rows = []
    for name in value_columns(last):
        cells = []
        for split in splits:
            row = last[last["split"] == split].iloc[0]
            value = pd.to_numeric(pd.Series([row[name]]), errors="coerce").iloc[0]
            se = pd.to_numeric(pd.Series([row.get(f"{name}_se")]), errors="coerce").iloc[0]
            cells.append("" if not np.isfinite(value) else f"{value:.4g}" + (f" ± {se:.2g}" if np.isfinite(se) else ""))
        if any(cells):
            rows.append([name, *cells])
    if not rows:
        return ""
    return f"<h2>Last checkpoint (step {step})</h2>" + table(["metric", *splits], rows, "numbers")


def _failed_section(df: pd.DataFrame) -> str:
    if "status" not in df:
        return ""
    failed = df[df["status"] == "error"]
    if failed.empty:
        return ""
    seen = failed.drop_duplicates(subset=[c for c in ("step", "error") if c in failed])
    rows = [[str(r.get("step", "")), str(r.get("checkpoint", "") or ""), str(r.get("error", "") or "")] for _, r in seen.iterrows()]
    return "<h2>Failed checkpoints</h2><p>Shown as gaps in the figure.</p>" + table(["step", "checkpoint", "error"], rows)


def _verdict(phase_report) -> tuple[str, str]:
    if phase_report is None:
        return "grokmon report: no phases classified", '<p class="verdict">No phase report: metrics only.</p>'
    details = [f"{phase_report.mode} mode", f"confidence {phase_report.confidence:.2f}"]
    if phase_report.current_phase:
        details.append(f"current phase {phase_report.current_phase}")
    if phase_report.best_step is not None:
        details.append(f"best step {phase_report.best_step}")
    return (f"grokmon report: {phase_report.advice}: {phase_report.reason}",
            f'<p class="verdict advice-{esc(phase_report.advice)}"><strong>{esc(phase_report.advice)}</strong>: '
            f"{esc(phase_report.reason)}</p><p class=\"details\">{esc(' · '.join(details))}</p>")


def report_page(df: pd.DataFrame, metadata: dict, phase_report, drawn, png: bytes, left_out: int = 0) -> str:
    """One run's report: verdict, figure with hover, phases, failures, last checkpoint, configuration;
    `left_out`: how many checkpoints deleted since measured were left out."""
    title, verdict = _verdict(phase_report)
    steps = df["step"].nunique() if "step" in df else 0
    gone = f" ({left_out} more deleted since measured, left out: --with-deleted judges the whole run)" if left_out else ""
    summary = (f"{steps} checkpoints{gone}, splits: {', '.join(split_order(df)) or 'none'}; "
               f"panels: {', '.join(panels_for(df)) or 'none'}")
    provenance = {k: v for k, v in metadata.items() if k != "config"}
    tables = ""
    if metadata.get("config") is not None:
        tables += "<h2>Configuration</h2>" + table(["option", "value"], config_rows(metadata), "kv")
    if provenance:
        tables += "<h2>Provenance</h2>" + table(["key", "value"], [list(r) for r in flatten_metadata(provenance)], "kv")
    body = (f"<h1>grokmon report</h1>\n{verdict}\n<p class=\"details\">{esc(summary)}</p>\n"
            f"{figure_block(drawn, png, title, HOVER_NOTE)}\n{_phase_section(phase_report)}\n{_failed_section(df)}\n"
            f"{_last_checkpoint_section(df)}\n{tables}")
    return page(title, body)


def _step(value) -> str:
    return "never" if value is None else str(value)


def comparison_page(comparison, drawn, png: bytes) -> str:
    """Several runs: the steps each one reached, the figure with hover, and where each run's results came from."""
    rows = [[s.name, s.mode, s.advice, f"{s.confidence:.2f}", s.reached("fit_step", "never"),
             _step(s.generalisation_step), s.reached("test_50_step", "never"), s.reached("test_95_step", "never"),
             _step(s.best_step), _step(s.last_step),
             "" if "test_accuracy" not in s.final else f"{s.final['test_accuracy']:.3f}"]
            for s in comparison.summaries]
    header = ["run", "mode", "advice", "confidence", "fitted", "generalising", "test ≥ 0.5", "test ≥ 0.95",
              "best step", "last step", "final test accuracy"]
    sources = [[run.summary.name, run.summary.path or "(a DataFrame)", str(run.metadata.get("probe_file", "")),
                str(run.metadata.get("created", ""))] for run in comparison.runs]
    headline = comparison.headline()
    body = (f"<h1>grokmon compare</h1>\n<p class=\"verdict\">{esc(headline)}</p>\n"
            + table(header, rows, "numbers")
            + "<p class=\"details\">Steps are the first checkpoint that got there; see the README for each one.</p>\n"
            + figure_block(drawn, png, headline, HOVER_NOTE)
            + "<h2>Runs</h2>" + table(["run", "results", "probe file", "analysed"], sources, "kv"))
    return page(f"grokmon compare: {headline}", body)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; background: #fafafa; margin: 0; }
main { max-width: 1440px; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.verdict { font-size: 1.15rem; margin: .3rem 0; }
.verdict strong { padding: .1rem .45rem; border-radius: .3rem; background: #e8e8e8; }
.advice-stop strong { background: #cdebc5; } .advice-keep-training strong { background: #cde3f5; }
.advice-inconclusive strong { background: #f7e7b0; } .advice-roll-back strong { background: #f5c2c2; }
.details { color: #555; margin: .2rem 0; }
figure { margin: 1rem 0; } figcaption { color: #555; font-size: .9rem; margin-top: .3rem; }
.plot { position: relative; outline: none; }
.plot img { display: block; width: 100%; height: auto; background: #fff; border: 1px solid #e2e2e2; }
.plot:focus-visible img { border-color: #1f5fa8; }
.marks { position: absolute; inset: 0; pointer-events: none; }
.marks .rule { position: absolute; border-left: 1px solid #222; opacity: .55; }
.marks .dot { position: absolute; width: 9px; height: 9px; margin: -5px 0 0 -5px; border-radius: 50%;
  border: 1.5px solid #fff; box-shadow: 0 0 0 1px #222; }
.tip { position: absolute; z-index: 2; pointer-events: none; background: rgba(255,255,255,.97); border: 1px solid #bbb;
  border-radius: .3rem; padding: .35rem .5rem; font-size: .8rem; box-shadow: 0 2px 8px rgba(0,0,0,.15); max-width: 34rem; }
.tip table { font-size: .78rem; margin-top: .2rem; }
.tip th, .tip td { padding: .05rem .4rem; border: none; border-bottom: 1px solid #eee; }
.tip td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.tip tr.here td { background: #fff3c4; font-weight: 600; }
.tip-head { font-weight: 600; margin-top: .15rem; } .tip-facts { color: #555; }
table { border-collapse: collapse; font-size: .9rem; background: #fff; }
th, td { border: 1px solid #e2e2e2; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
table.numbers td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
table.kv td:first-child { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: nowrap; }
table.kv td:last-child { font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all; }
.swatch { display: inline-block; width: .9em; height: .9em; margin-right: .4em; border: 1px solid #bbb; vertical-align: -.1em; }
"""
