"""The run as one matplotlib figure: a panel per metric against step, phases shaded behind (no torch, no pyplot).

Above the panels a strip names the phases on their bands; inside every panel the same bands are shaded pale.
Vertical lines mark the best step, the first checkpoint at which the CI recipe would have said `stop` and the
first at which it would have said `roll-back` (from the phase report's history), and failed checkpoints.
Failed checkpoints (status "error", null metrics) and steps where a split has no value are plotted as NaN, so
the line breaks there instead of dropping to zero. Panels and their scales: see `panels`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import panels as p
from .bands import PHASE_ALPHA, draw_strip, phase_colour, phase_spans, shade
from .hover import Drawn, HoverRun
from .layout import new_figure, plan, wrap

if TYPE_CHECKING:
    from ..phasing.types import PhaseReport

SPLIT_STYLE = {  # one colour per split, the same in every panel; train drawn wider so test on top of it shows both
    "train": {"color": "#1f5fa8", "linestyle": "-", "linewidth": 2.6, "markersize": 4},
    "test": {"color": "#d9480f", "linestyle": "-", "linewidth": 1.6, "markersize": 3},
    "random": {"color": "#7b4fa6", "linestyle": "--", "linewidth": 1.6, "markersize": 3},
}
LAYER_STYLES = ("-", "--", ":", "-.")  # per-layer lines: layer 1, 2, 3, 4 (more layers: all solid)
FAILED_COLOUR = "#b00020"
MARKS = {  # what the vertical lines mean, and how they look
    "best": {"color": "#1b7837", "linestyle": "--", "linewidth": 1.4},
    "stop": {"color": "#0b6e99", "linestyle": "-.", "linewidth": 1.4},
    "roll-back": {"color": "#c2185b", "linestyle": "-.", "linewidth": 1.4},
}
BEST_COLOUR = MARKS["best"]["color"]
TITLE_FONT, REASON_FONT = 14, 11


class _Overlaid(tuple):
    """Legend artists drawn over one another in one slot (a plain tuple's are drawn side by side)."""


def split_style(split: str, index: int) -> dict:
    """Line style of a split: its own, or for an unknown split one picked by its place."""
    return SPLIT_STYLE.get(split, {"color": f"C{index + 3}", "linestyle": "-.", "linewidth": 1.6, "markersize": 3})


def marks(phase_report) -> dict[str, int]:
    """The steps to mark: the best step, and the first `stop` and first `roll-back` of the history."""
    found = {}
    if phase_report is None:
        return found
    if phase_report.best_step is not None:
        found["best"] = int(phase_report.best_step)
    for verdict in phase_report.history:
        if verdict.advice in ("stop", "roll-back") and verdict.advice not in found:
            found[verdict.advice] = int(verdict.step)
    return found


def mark_label(kind: str, step: int, phase_report) -> str:
    """The legend text of a marked step."""
    if kind == "best":
        return f"best step {step}" + (": roll back here" if phase_report.advice == "roll-back" else "")
    return f"history: first {kind}, step {step}"


def _title(phase_report) -> tuple[str, list[str]]:
    if phase_report is None:
        return "No phase report: metrics only, no phases classified", []
    head = f"Verdict: {phase_report.advice}  ({phase_report.mode} mode, confidence {phase_report.confidence:.2f}"
    if phase_report.best_step is not None:
        head += f", best step {phase_report.best_step}"
    return head + ")", wrap(str(phase_report.reason), REASON_FONT)


def draw_title(fig: Figure, top: float, head: str, lines: list[str]) -> None:
    """The headline and the wrapped reason, left-aligned at the top of the figure."""
    fig.text(0.012, top, head, fontsize=TITLE_FONT, va="top", ha="left", fontweight="bold")
    if lines:
        fig.text(0.012, top - 0.34 / fig.get_size_inches()[1], "\n".join(lines), fontsize=REASON_FONT,
                 va="top", ha="left", linespacing=1.3, color="#333333")


def header_inches(lines: list[str]) -> float:
    """Height of the title block: the headline and `lines` of reason."""
    return 0.34 + 0.22 * len(lines)


def style_panel(ax, column: str, bottom: bool) -> None:
    """Title (with the simplifying direction on the right), labels, grid and ticks of one panel."""
    panel = p.style(column)
    ax.set_title(panel.title, fontsize=12, loc="left")
    note = p.direction_note(column)
    if note:
        ax.set_title(note, fontsize=9.5, loc="right", color="#444444")
    ax.set_ylabel(panel.ylabel, fontsize=10)
    ax.grid(True, which="major", color="#999999", linewidth=0.4, alpha=0.5)
    ax.tick_params(labelsize=9)
    if bottom:
        ax.set_xlabel("step", fontsize=10)


def _plot_panel(ax, index: int, column: str, splits: list[str], run: HoverRun):
    seen, steps = [], run.steps
    layer_column = p.layer_columns().get(column)
    for position, split in enumerate(splits):
        style = split_style(split, position)
        y = p.series(run.parts, split, column, steps)
        se = p.series(run.parts, split, f"{column}_se", steps)
        if np.isfinite(y).any():
            seen.append(y[np.isfinite(y)])
            ax.plot(steps, y, marker="o", zorder=3, **style)
            ax.fill_between(steps, y - se, y + se, color=style["color"], alpha=0.2, linewidth=0, zorder=2)
            run.lines.append((index, split, style["color"], column))
        if layer_column:
            _plot_layers(ax, p.layer_matrix(run.parts, split, layer_column, steps), steps, style["color"])
    p.set_value_axis(ax, column, np.concatenate(seen) if seen else np.empty(0))


def _plot_layers(ax, matrix: np.ndarray, steps: np.ndarray, colour: str) -> None:
    """Thin lines in the split's colour, one per layer, told apart by line style (see `LAYER_STYLES`)."""
    for layer in range(matrix.shape[1]):
        style = LAYER_STYLES[layer] if matrix.shape[1] <= len(LAYER_STYLES) else "-"
        ax.plot(steps, matrix[:, layer], linewidth=1.0, alpha=0.65, color=colour, linestyle=style, zorder=2.5)


def draw_report(df: pd.DataFrame, phase_report: PhaseReport | None) -> Drawn:
    """The report figure with what its HTML hover needs; see `build_figure`."""
    columns = p.panels_for(df)
    steps, splits = p.run_steps(df), p.split_order(df)
    spans = phase_spans(phase_report)
    order = list(dict.fromkeys(phase for phase, _, _ in spans))
    failed = np.unique(df.loc[df["status"] == "error", "step"].to_numpy()) if "status" in df else np.empty(0)
    marked = marks(phase_report)
    head, reason = _title(phase_report)
    legend_rows = -(-(len(splits) + 4 + len(order)) // 4)
    layout = plan(max(1, len(columns)), header_inches(reason), 1 if spans else 0, legend_rows)
    fig = new_figure(layout)
    draw_title(fig, layout.header[0], head, reason)
    run = HoverRun("run", SPLIT_STYLE["train"]["color"], p.by_split(df), steps, p.value_columns(df), splits,
                   phases={int(s): phase for s, phase in phase_report.steps} if phase_report else {},
                   verdicts={int(v.step): v.advice for v in phase_report.history} if phase_report else {})
    axes = [fig.add_axes(rect) for rect in layout.panels]
    if not columns:
        note = f" ({len(failed)} failed checkpoints)" if len(failed) else ""
        axes[0].text(0.5, 0.5, "no metric values to plot" + note, ha="center", va="center", fontsize=14,
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
        return Drawn(fig, [], [run])
    ncols = 1 if len(columns) <= 1 else 2
    for index, (ax, column) in enumerate(zip(axes, columns)):
        shade(ax, spans, order)
        for step in failed:
            ax.axvline(step, color=FAILED_COLOUR, linestyle=":", linewidth=1.2, alpha=0.8)
        for kind, step in marked.items():
            ax.axvline(step, zorder=4, **MARKS[kind])
        _plot_panel(ax, index, column, splits, run)
        p.set_step_axis(ax, steps)
        style_panel(ax, column, bottom=index + ncols >= len(columns))
    unnamed = []
    for column, rect in enumerate(layout.strips):
        strip = fig.add_axes(rect)
        p.set_step_axis(strip, steps)
        unnamed = draw_strip(strip, [("phases", "#333333", spans)], order, rect[2] * layout.width_in, column == 0)
        for kind, step in marked.items():
            strip.axvline(step, **MARKS[kind])
    handles = _legend_handles(df, splits, columns, order, unnamed, failed, marked, phase_report)
    place_legend(fig, layout, handles)
    return Drawn(fig, list(zip(axes, columns)), [run])


def build_figure(df: pd.DataFrame, phase_report: PhaseReport | None) -> Figure:
    """The report figure: verdict and reason at the top, the phase strip, the metric panels two to a row."""
    return draw_report(df, phase_report).figure


def place_legend(fig: Figure, layout, entries: list[tuple]) -> None:
    """The legend, (artist, label) per entry, in the spare cell beside the last panel, else below the grid."""
    if not entries:
        return
    options = {"handles": [artist for artist, _ in entries], "labels": [label for _, label in entries],
               "frameon": False, "handler_map": {tuple: HandlerTuple(ndivide=None), _Overlaid: HandlerTuple(ndivide=1)}}
    if layout.spare is not None:
        cell = fig.add_axes(layout.spare)
        cell.set_axis_off()
        cell.legend(loc="center", ncols=2, fontsize=10, **options)
    elif layout.legend is not None:
        fig.legend(loc="upper center", bbox_to_anchor=(0.5, layout.legend[0]), ncols=4, fontsize=10, **options)


def _legend_handles(df, splits, columns, order, unnamed, failed, marked, phase_report) -> list[tuple]:
    """(artist or tuple of artists, label) per legend entry."""
    handles = []
    for index, split in enumerate(splits):
        if any(np.isfinite(p.numeric(df.loc[df["split"] == split, name])).any() for name in columns if name in df):
            style = split_style(split, index)
            band = Patch(color=style["color"], alpha=0.2, linewidth=0)
            handles.append((_Overlaid((band, Line2D([], [], marker="o", **style))), f"{split}, band ± 1 standard error"))
    for column in columns:
        layer_column = p.layer_columns().get(column)
        if layer_column and p.has_values(df, layer_column):
            width = max(len(p.layers(v)) for v in df[layer_column])
            colours = [split_style(s, i)["color"] for i, s in enumerate(splits)]
            styles = LAYER_STYLES[:width] if width <= len(LAYER_STYLES) else ("-",)
            for layer, linestyle in enumerate(styles):
                lines = tuple(Line2D([], [], color=c, linewidth=1.0, linestyle=linestyle) for c in colours)
                label = f"{column} layer {layer + 1}" if len(styles) > 1 or width == 1 else f"{column} per layer"
                handles.append((lines, label))
    if len(failed):
        handles.append((Line2D([], [], color=FAILED_COLOUR, linestyle=":", linewidth=1.2), "failed checkpoint"))
    for kind, step in marked.items():
        handles.append((Line2D([], [], **MARKS[kind]), mark_label(kind, step, phase_report)))
    for phase in unnamed:
        handles.append((Patch(color=phase_colour(phase, order), alpha=PHASE_ALPHA), phase.replace("_", " ")))
    return handles
