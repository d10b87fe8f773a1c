"""Phases drawn on a figure: pale bands behind a run's panels, and a strip of named bands, one row per run."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import NullLocator

PHASE_COLOURS = {  # pale, so the lines drawn over them stay readable
    "fitting": "#d4d4d4",
    "memorisation": "#fbd9a0",
    "generalisation": "#bfe5b4",
    "robustness_plateau": "#bcd6ee",
    "collapse": "#f3b3b3",
}
_SPARE_COLOURS = ("#e3c9f0", "#f0e6a8", "#c9ece9")
PHASE_ALPHA = 0.75
STRIP_FONT = 8.5
_GLYPH_EM = 0.6  # mean width of a DejaVu Sans glyph, in em: enough to tell whether a name fits its band


def phase_colour(phase: str, order: list[str]) -> str:
    """The shading of a phase: its own colour, or for an unknown name one picked by its place in `order`."""
    if phase in PHASE_COLOURS:
        return PHASE_COLOURS[phase]
    return _SPARE_COLOURS[order.index(phase) % len(_SPARE_COLOURS)]


def phase_spans(phase_report) -> list[tuple[str, float, float]]:
    """(phase, left, right) per segment; neighbouring spans meet half-way (geometric mean) between checkpoints."""
    if phase_report is None:
        return []
    segments = sorted(phase_report.segments, key=lambda s: s.start_step)
    spans = []
    for i, seg in enumerate(segments):
        left, right = float(seg.start_step), float(seg.end_step)
        if i > 0:
            left = _midpoint(segments[i - 1].end_step, seg.start_step)
        if i + 1 < len(segments):
            right = _midpoint(seg.end_step, segments[i + 1].start_step)
        spans.append((seg.phase, left, right))
    return spans


def _midpoint(a: int, b: int) -> float:
    return math.sqrt(a * b) if a > 0 and b > 0 else (a + b) / 2


def shade(ax, spans, order: list[str]) -> None:
    """Pale bands behind everything else in `ax`, one per phase span (a line for a one-step span)."""
    for phase, left, right in spans:
        if right > left:
            ax.axvspan(left, right, color=phase_colour(phase, order), alpha=PHASE_ALPHA, linewidth=0, zorder=0)
        else:
            ax.axvline(left, color=phase_colour(phase, order), linewidth=3, zorder=0)


def draw_strip(ax, rows: list[tuple[str, str, list]], order: list[str], width_in: float, labels: bool = True) -> list[str]:
    """One row of bands per run in `ax` (x: steps, scale and limits already set), names written where they fit.

    `rows` holds (label, label colour, spans); row 0 is drawn on top; `labels`: the row labels on the left.
    Returns the phases whose name fitted on none of their bands, for the legend to name instead.
    """
    named, unnamed = set(), set()
    low, high = ax.get_xlim()
    for index, (_, _, spans) in enumerate(rows):
        bottom = len(rows) - index - 1
        for phase, left, right in spans:
            left, right = max(left, low), min(right, high)
            ax.axvspan(left, right, ymin=(bottom + 0.08) / len(rows), ymax=(bottom + 0.92) / len(rows),
                       color=phase_colour(phase, order), linewidth=0)
            label = phase.replace("_", " ")
            room = (_axis_fraction(ax, right) - _axis_fraction(ax, left)) * width_in
            if room >= len(label) * STRIP_FONT * _GLYPH_EM / 72 + 0.08:
                ax.text(_centre(ax, left, right), bottom + 0.5, label, ha="center", va="center",
                        fontsize=STRIP_FONT, color="#333333", clip_on=True)
                named.add(phase)
            else:
                unnamed.add(phase)
    ax.set_ylim(0, len(rows))
    if labels:
        ax.set_yticks(np.arange(len(rows)) + 0.5, [label for label, _, _ in reversed(rows)], fontsize=9)
        for tick, (_, colour, _) in zip(ax.get_yticklabels(), reversed(rows)):
            tick.set_color(colour)
    else:
        ax.set_yticks([])
    ax.tick_params(axis="y", length=0)
    ax.xaxis.set_major_locator(NullLocator())  # the panels below carry the step ticks
    ax.xaxis.set_minor_locator(NullLocator())
    for spine in ax.spines.values():
        spine.set_visible(False)
    return sorted(unnamed - named, key=lambda p: list(PHASE_COLOURS).index(p) if p in PHASE_COLOURS else 99)


def _axis_fraction(ax, x: float) -> float:
    """Where step `x` falls across the axes, 0 at the left edge and 1 at the right (any x scale)."""
    return float((ax.transScale + ax.transLimits).transform((x, 0.5))[0])


def _centre(ax, left: float, right: float) -> float:
    """The step half-way between `left` and `right` as the axis shows them (log or symlog)."""
    middle = (_axis_fraction(ax, left) + _axis_fraction(ax, right)) / 2
    return float((ax.transScale + ax.transLimits).inverted().transform((middle, 0.5))[0])
