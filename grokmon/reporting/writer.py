"""The run as a picture: a self-contained HTML report or a single figure (no torch; never prints).

The HTML report is one file with nothing to fetch: the figure is embedded as a base64 PNG, the style is
inline, and every value taken from the results or their metadata goes through `html.escape`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from ..results.atomic import atomic_write
from ..columns import LIST_COLUMNS, METRIC_COLUMNS
from ..errors import ConfigError
from .figure import DPI, phase_colour, split_order, build_figure, panels_for

if TYPE_CHECKING:
    from ..phasing.classifier import PhaseReport

__all__ = ["render_report", "panels_for", "flatten_metadata"]

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
HTML_SUFFIXES = (".html", ".htm")
HTML_DPI = 150  # the embedded PNG is drawn at 1.5x so it stays sharp on high-density screens


def render_report(df: pd.DataFrame, metadata: dict, phase_report: PhaseReport | None, output: Path) -> Path:
    """Write a self-contained HTML report (output suffix .html/.htm) or a single figure (.png, .svg, .pdf).

    Raises ConfigError for any other suffix, or when `output` cannot be written. Returns `output`.

    >>> import tempfile, pandas as pd
    >>> df = pd.DataFrame({"step": [0, 10, 100], "split": "train", "status": "ok", "accuracy": [0.1, 0.5, 1.0]})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     text = render_report(df, {"config": {"points": 512}}, None, Path(folder) / "run.html").read_text()
    >>> "<td>points</td>" in text and "data:image/png;base64," in text
    True
    """
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in FIGURE_SUFFIXES + HTML_SUFFIXES:
        raise ConfigError(f"Expected -o to end in .html, .png, .svg or .pdf, but got {str(output)!r}")
    figure = build_figure(df, phase_report)
    page = _html(df, metadata or {}, phase_report, _png_bytes(figure)).encode() if suffix in HTML_SUFFIXES else None

    def write(handle) -> None:
        if page is not None:
            handle.write(page)
        else:
            FigureCanvasAgg(figure)
            figure.savefig(handle, format=suffix[1:], dpi=DPI)

    try:  # atomically: a half-written report never replaces a good one
        atomic_write(output, write)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write the report ({exc.strerror}); choose another path with -o") from exc
    return output


def _png_bytes(figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=HTML_DPI)
    return buffer.getvalue()


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


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], css: str = "") -> str:
    """An HTML table; every cell is escaped here, so callers pass plain text."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    attribute = f' class="{css}"' if css else ""
    return f'<table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _phase_section(phase_report) -> str:
    if phase_report is None:
        return "<h2>Phases</h2><p>No phase report: no phases were classified for this run.</p>"
    order = list(dict.fromkeys(s.phase for s in phase_report.segments))
    rows = []
    for seg in phase_report.segments:
        count = sum(1 for step, _ in phase_report.steps if seg.start_step <= step <= seg.end_step)
        swatch = f'<span class="swatch" style="background:{_esc(phase_colour(seg.phase, order))}"></span>'
        rows.append(
            f"<tr><td>{swatch}{_esc(seg.phase)}</td><td>{seg.start_step}</td><td>{seg.end_step}</td><td>{count}</td></tr>"
        )
    head = "<tr><th>phase</th><th>first step</th><th>last step</th><th>checkpoints</th></tr>"
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
    for name in METRIC_COLUMNS:
        if name.endswith("_se") or name in LIST_COLUMNS or name not in last:
            continue
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
    return f"<h2>Last checkpoint (step {step})</h2>" + _table(["metric", *splits], rows, "numbers")


def _failed_section(df: pd.DataFrame) -> str:
    if "status" not in df:
        return ""
    failed = df[df["status"] == "error"]
    if failed.empty:
        return ""
    seen = failed.drop_duplicates(subset=[c for c in ("step", "error") if c in failed])
    rows = [[str(r.get("step", "")), str(r.get("checkpoint", "") or ""), str(r.get("error", "") or "")] for _, r in seen.iterrows()]
    return "<h2>Failed checkpoints</h2><p>Shown as gaps in the figure.</p>" + _table(["step", "checkpoint", "error"], rows)


def _html(df: pd.DataFrame, metadata: dict, phase_report, png: bytes) -> str:
    if phase_report is None:
        title, verdict = "grokmon report: no phases classified", "<p class=\"verdict\">No phase report: metrics only.</p>"
    else:
        title = f"grokmon report: {phase_report.advice}: {phase_report.reason}"
        details = [f"{phase_report.mode} mode", f"confidence {phase_report.confidence:.2f}"]
        if phase_report.current_phase:
            details.append(f"current phase {phase_report.current_phase}")
        if phase_report.best_step is not None:
            details.append(f"best step {phase_report.best_step}")
        verdict = (
            f'<p class="verdict advice-{_esc(phase_report.advice)}"><strong>{_esc(phase_report.advice)}</strong>: '
            f"{_esc(phase_report.reason)}</p><p class=\"details\">{_esc(' · '.join(details))}</p>"
        )
    steps = df["step"].nunique() if "step" in df else 0
    summary = f"{steps} checkpoints, splits: {', '.join(split_order(df)) or 'none'}; panels: {', '.join(panels_for(df)) or 'none'}"
    config = metadata.get("config")
    provenance = {k: v for k, v in metadata.items() if k != "config"}
    tables = ""
    if config is not None:
        tables += "<h2>Configuration</h2>" + _table(["option", "value"], [list(r) for r in flatten_metadata(config)], "kv")
    if provenance:
        tables += "<h2>Provenance</h2>" + _table(["key", "value"], [list(r) for r in flatten_metadata(provenance)], "kv")
    image = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>grokmon report</h1>
{verdict}
<p class="details">{_esc(summary)}</p>
<figure><img alt="{_esc(title)}" src="data:image/png;base64,{image}"></figure>
{_phase_section(phase_report)}
{_failed_section(df)}
{_last_checkpoint_section(df)}
{tables}
</main>
</body>
</html>
"""


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; background: #fafafa; margin: 0; }
main { max-width: 1440px; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.verdict { font-size: 1.15rem; margin: .3rem 0; }
.verdict strong { padding: .1rem .45rem; border-radius: .3rem; background: #e8e8e8; }
.advice-stop strong { background: #cdebc5; } .advice-keep-training strong { background: #cde3f5; }
.advice-inconclusive strong { background: #f7e7b0; } .advice-roll-back strong { background: #f5c2c2; }
.details { color: #555; margin: .2rem 0; }
figure { margin: 1rem 0; } figure img { width: 100%; height: auto; background: #fff; border: 1px solid #e2e2e2; }
table { border-collapse: collapse; font-size: .9rem; background: #fff; }
th, td { border: 1px solid #e2e2e2; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
table.numbers td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
table.kv td:first-child { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: nowrap; }
table.kv td:last-child { font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all; }
.swatch { display: inline-block; width: .9em; height: .9em; margin-right: .4em; border: 1px solid #bbb; vertical-align: -.1em; }
"""
