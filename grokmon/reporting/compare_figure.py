"""Several runs in one figure: one colour per run, shared log-step axes, one panel per metric group.

Each panel plots its group's first column (accuracy, centroid alignment, effective rank, local complexity, ...;
see `panels.group_panels`): the test split solid, the train split dashed (a column measured on neither: the
first split that has it). The random split is left out: it would double the lines without telling runs apart.
Above the panels, one thin row of phase bands per run, in the run's colour on the left.
"""

from __future__ import annotations


import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import panels as p
from .bands import PHASE_ALPHA, draw_strip, phase_colour, phase_spans
from .figure import REASON_FONT, draw_title, header_inches, place_legend, style_panel
from .hover import Drawn, HoverRun
from .layout import LEFT_IN, new_figure, plan, text_inches, wrap

RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
               "#7f7f7f", "#bcbd22")
COMPARED_SPLITS = {"test": "-", "train": "--"}  # split -> line style


def run_colour(index: int) -> str:
    """The colour of the `index`-th run (the palette repeats after ten runs)."""
    return RUN_COLOURS[index % len(RUN_COLOURS)]


def drawn_splits(parts: dict, column: str) -> list[tuple[str, str]]:
    """(split, line style) of the lines drawn for one run (its rows `by_split`) in `column`'s panel."""
    chosen = [(split, style) for split, style in COMPARED_SPLITS.items()
              if split in parts and p.has_values(parts[split], column)]
    if chosen:
        return chosen
    others = [split for split, rows in parts.items() if p.has_values(rows, column)]
    return [(others[0], "-")] if others else []


def draw_comparison(comparison) -> Drawn:
    """The comparison figure of a `Comparison`, with what its HTML hover needs."""
    runs = comparison.runs
    frames = [run.frame for run in runs]
    columns = p.group_panels(frames)
    steps = np.unique(np.concatenate([p.run_steps(frame) for frame in frames])) if frames else np.empty(0, np.int64)
    spans = [phase_spans(run.phase_report) for run in runs]
    order = list(dict.fromkeys(phase for row in spans for phase, _, _ in row))
    head = f"Comparison of {len(runs)} run{'s' if len(runs) != 1 else ''}"
    lines = wrap(comparison.headline(), REASON_FONT)
    legend_rows = -(-(len(runs) + len(COMPARED_SPLITS) + len(order)) // 4)
    names_in = max((text_inches(run.summary.name, 9) for run in runs), default=0.0)
    layout = plan(max(1, len(columns)), header_inches(lines), len(runs), legend_rows, max(LEFT_IN, names_in + 0.2))
    fig = new_figure(layout)
    draw_title(fig, layout.header[0], head, lines)
    hover_runs = [HoverRun(run.summary.name, run_colour(i), p.by_split(run.frame), p.run_steps(run.frame),
                           p.value_columns(run.frame), p.split_order(run.frame),
                           phases={int(s): phase for s, phase in run.phase_report.steps},
                           verdicts={int(v.step): v.advice for v in run.phase_report.history})
                  for i, run in enumerate(runs)]
    axes = [fig.add_axes(rect) for rect in layout.panels]
    ncols = 1 if len(columns) <= 1 else 2
    for index, (ax, column) in enumerate(zip(axes, columns)):
        seen = []
        for hover in hover_runs:
            for split, linestyle in drawn_splits(hover.parts, column):
                y = p.series(hover.parts, split, column, hover.steps)
                se = p.series(hover.parts, split, f"{column}_se", hover.steps)
                ax.plot(hover.steps, y, color=hover.colour, linestyle=linestyle, marker="o", markersize=2.5,
                        linewidth=1.8 if split == "test" else 1.3, zorder=3)
                ax.fill_between(hover.steps, y - se, y + se, color=hover.colour, alpha=0.12, linewidth=0, zorder=2)
                hover.lines.append((index, split, hover.colour, column))
                seen.append(y[np.isfinite(y)])
        p.set_value_axis(ax, column, np.concatenate(seen) if seen else np.empty(0))
        p.set_step_axis(ax, steps)
        style_panel(ax, column, bottom=index + ncols >= len(columns))
    unnamed = []
    rows = [(run.summary.name, run_colour(i), row) for i, (run, row) in enumerate(zip(runs, spans))]
    for column, rect in enumerate(layout.strips):
        strip = fig.add_axes(rect)
        p.set_step_axis(strip, steps)
        unnamed = draw_strip(strip, rows, order, rect[2] * layout.width_in, column == 0)
    place_legend(fig, layout, _legend_entries(runs, order, unnamed))
    return Drawn(fig, list(zip(axes, columns)), hover_runs)


def _legend_entries(runs, order, unnamed) -> list[tuple]:
    entries = [(Line2D([], [], color=run_colour(i), linewidth=2.2), run.summary.name) for i, run in enumerate(runs)]
    entries += [(Line2D([], [], color="#333333", linestyle=style, linewidth=1.5), f"{split} split")
                for split, style in COMPARED_SPLITS.items()]
    entries += [(Patch(color=phase_colour(phase, order), alpha=PHASE_ALPHA), phase.replace("_", " ")) for phase in unnamed]
    return entries
