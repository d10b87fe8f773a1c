"""What the HTML report needs to show a checkpoint's values under the mouse: the figure's geometry and the values.

The figure stays a PNG; beside it the page holds a small JSON document (built here) and a short inline script
(`hover.js`). For every panel the document has its rectangle in the picture and the metric it plots; for every
run, where each checkpoint falls across the panels, where each drawn line passes at it, and the values (mean
and standard error per split) the tooltip lists. The script snaps the mouse to the nearest checkpoint, marks
it in every panel and lists its values. Nothing is fetched: it works from a file:// URL, offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from .panels import series

SCRIPT = resources.files(__package__).joinpath("hover.js").read_text(encoding="utf-8")


@dataclass
class HoverRun:
    """One run as the tooltip tells it; `lines` are (panel index, split, colour, column) of the lines drawn for it."""

    name: str
    colour: str
    parts: dict  # the run's results, split by split (`panels.by_split`)
    steps: np.ndarray
    columns: list[str]
    splits: list[str]
    phases: dict[int, str] = field(default_factory=dict)
    verdicts: dict[int, str] = field(default_factory=dict)
    lines: list[tuple[int, str, str, str]] = field(default_factory=list)


@dataclass
class Drawn:
    """A figure and what its HTML hover needs: the panel axes with their metric, and the runs drawn."""

    figure: object
    panels: list[tuple[object, str]]
    runs: list[HoverRun]


def _round(values: np.ndarray, digits: int) -> list:
    return [None if not np.isfinite(v) else float(f"{v:.{digits}g}") for v in np.asarray(values, dtype=float)]


def _fractions(ax, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Data points as fractions of the axes (0..1 from the left and from the bottom); NaN stays NaN."""
    points = np.column_stack([x, y]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ax.transScale + ax.transLimits).transform(points)


def hover_document(drawn: Drawn) -> dict:
    """The JSON-ready document the page's script reads (fractions of the picture measured from its top left)."""
    panels = []
    for ax, column in drawn.panels:
        box = ax.get_position()
        panels.append({"column": column, "title": ax.get_title(loc="left"),
                       "box": [round(box.x0, 5), round(1 - box.y1, 5), round(box.x1, 5), round(1 - box.y0, 5)]})
    runs = []
    reference = drawn.panels[0][0] if drawn.panels else None
    for run in drawn.runs:
        u = _fractions(reference, run.steps, np.ones(len(run.steps)))[:, 0] if reference is not None else []
        checkpoints = _checkpoint_names(run)
        values = {column: {split: [_round(series(run.parts, split, column, run.steps), 4),
                                   _round(series(run.parts, split, f"{column}_se", run.steps), 2)]
                           for split in run.splits}
                  for column in run.columns}
        lines = []
        for panel, split, colour, column in run.lines:
            ax = drawn.panels[panel][0]
            y = series(run.parts, split, column, run.steps)
            v = _fractions(ax, run.steps, y)[:, 1]
            v[(v < -0.02) | (v > 1.02)] = np.nan  # off the axes (clipped by the limits): no mark
            lines.append({"panel": panel, "split": split, "colour": colour, "v": _round(v, 4)})
        runs.append({"name": run.name, "colour": run.colour, "steps": [int(s) for s in run.steps],
                     "u": _round(u, 5), "checkpoints": checkpoints,
                     "phases": [run.phases.get(int(s)) for s in run.steps],
                     "verdicts": [run.verdicts.get(int(s)) for s in run.steps] if run.verdicts else None,
                     "columns": run.columns, "splits": run.splits, "values": values, "lines": lines})
    return {"panels": panels, "runs": runs}


def _checkpoint_names(run: HoverRun) -> list[str | None]:
    """The checkpoint file of every step, from the first split that names it."""
    names: dict[int, str] = {}
    for rows in run.parts.values():
        if "checkpoint" in rows:
            for step, name in rows["checkpoint"].dropna().items():
                names.setdefault(int(step), str(name))
    return [names.get(int(s)) for s in run.steps]


def embed(document: dict) -> str:
    """The document and the script as HTML: JSON in a data block (`</` escaped), then the inline script."""
    text = json.dumps(document, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (f'<script type="application/json" id="grokmon-hover">{text}</script>\n'
            f"<script>{SCRIPT}</script>")
