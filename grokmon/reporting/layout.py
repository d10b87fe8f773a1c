"""Where everything sits in a figure, in inches: a header, a phase strip, a grid of panels, a legend.

Fixed margins instead of matplotlib's constrained layout: the panels' places are known before anything is
drawn (the hover text of the HTML report maps the mouse onto them), and drawing is three times faster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from matplotlib.figure import Figure

WIDTH_IN, DPI = 14.0, 100  # about 1400 px wide as a PNG
LEFT_IN, RIGHT_IN, COLUMN_GAP_IN = 0.9, 0.3, 1.0  # room for the y tick labels and the axis label
PANEL_IN, ROW_GAP_IN = 2.5, 0.85                   # a panel's height; below it: tick labels, "step", the next title
STRIP_ROW_IN, STRIP_GAP_IN = 0.24, 0.45           # one phase row per run; the gap holds the first panels' titles
TOP_IN, BOTTOM_IN = 0.15, 0.6
LEGEND_ROW_IN = 0.28


@dataclass(frozen=True)
class Layout:
    """Rectangles (left, bottom, width, height) in figure fractions, and the figure's size."""

    width_in: float
    height_in: float
    header: tuple[float, float]             # (top, bottom) of the title block
    strips: list[tuple[float, ...]]         # one strip above each column (none without phase rows)
    panels: list[tuple[float, ...]]         # row by row, left to right
    spare: tuple[float, ...] | None         # an empty cell beside the last panel, for the legend
    legend: tuple[float, float] | None      # (top, bottom) of the legend below the grid, when there is no spare cell


def plan(n_panels: int, header_in: float, strip_rows: int, legend_rows: int, left_in: float = LEFT_IN) -> Layout:
    """The layout of `n_panels` panels two to a row (one when there is a single panel); `left_in` is the left
    margin (wider for long run names beside the phase strip).

    >>> layout = plan(3, header_in=0.8, strip_rows=1, legend_rows=2)
    >>> len(layout.panels), layout.spare is not None, layout.legend
    (3, True, None)
    """
    ncols = 1 if n_panels <= 1 else 2
    nrows = max(1, math.ceil(n_panels / ncols))
    spare_cell = n_panels % ncols != 0
    legend_in = 0.0 if spare_cell or legend_rows == 0 else 0.25 + LEGEND_ROW_IN * legend_rows
    strip_in = STRIP_ROW_IN * strip_rows + STRIP_GAP_IN if strip_rows else 0.0
    top_gap = 0.0 if strip_rows else STRIP_GAP_IN
    height = TOP_IN + header_in + strip_in + top_gap + nrows * PANEL_IN + (nrows - 1) * ROW_GAP_IN + BOTTOM_IN + legend_in
    column_in = (WIDTH_IN - left_in - RIGHT_IN - (ncols - 1) * COLUMN_GAP_IN) / ncols

    def rect(left_in: float, top_in: float, height_in: float) -> tuple[float, ...]:
        return (left_in / WIDTH_IN, 1 - (top_in + height_in) / height, column_in / WIDTH_IN, height_in / height)

    lefts = [left_in + c * (column_in + COLUMN_GAP_IN) for c in range(ncols)]
    strip_top = TOP_IN + header_in
    strips = [rect(left, strip_top, STRIP_ROW_IN * strip_rows) for left in lefts] if strip_rows else []
    grid_top = strip_top + strip_in + top_gap
    cells = [rect(lefts[i % ncols], grid_top + (i // ncols) * (PANEL_IN + ROW_GAP_IN), PANEL_IN)
             for i in range(nrows * ncols)]
    legend = None
    if legend_in:
        legend_top = grid_top + nrows * PANEL_IN + (nrows - 1) * ROW_GAP_IN + BOTTOM_IN
        legend = (1 - legend_top / height, 1 - (legend_top + legend_in) / height)
    header = (1 - TOP_IN / height, 1 - (TOP_IN + header_in) / height)
    return Layout(WIDTH_IN, height, header, strips, cells[:n_panels], cells[n_panels] if spare_cell else None, legend)


def new_figure(layout: Layout) -> Figure:
    """An empty figure of the layout's size (no layout engine: the rectangles are final)."""
    return Figure(figsize=(layout.width_in, layout.height_in), dpi=DPI)


def text_inches(text: str, fontsize: float) -> float:
    """The width of `text` at `fontsize` in inches (DejaVu Sans, measured)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    return TextToPath().get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=False)[0] / 72


def wrap(text: str, fontsize: float, width_in: float = WIDTH_IN - 0.4) -> list[str]:
    """`text` broken at spaces into lines no wider than `width_in` inches at `fontsize` (measured, DejaVu Sans).

    >>> len(wrap("word " * 200, 11)) > 1, wrap("short", 11)
    (True, ['short'])
    """
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and text_inches(candidate, fontsize) <= width_in:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines
