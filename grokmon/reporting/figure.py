"""The run as one matplotlib figure: a panel per metric against step, phases shaded behind (no torch, no pyplot).

Step axis: training runs are read on a log-step axis, but the first checkpoint is often step 0. Rather than
shift every step by one (which would make the tick labels lie), the axis is `symlog` whenever step 0 is present:
logarithmic above the smallest positive step, linear between 0 and it, so step 0 sits just left of the first
decade and every other step stays where a log axis puts it. Without step 0 the axis is a plain log axis.

Failed checkpoints (status "error", null metrics) and steps where a split has no value are plotted as NaN, so
the line breaks there instead of dropping to zero; failed steps are also marked with a dotted vertical line.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..columns import SPLITS

if TYPE_CHECKING:
    from ..phasing.classifier import PhaseReport

SPLIT_STYLE = {  # one colour per split, the same in every panel; train drawn wider so test on top of it shows both
    "train": {"color": "#1f5fa8", "linestyle": "-", "linewidth": 2.6, "markersize": 4},
    "test": {"color": "#d9480f", "linestyle": "-", "linewidth": 1.6, "markersize": 3},
    "random": {"color": "#6b6b6b", "linestyle": "--", "linewidth": 1.6, "markersize": 3},
}
PHASE_COLOURS = {  # pale, so the lines drawn over them stay readable
    "fitting": "#d4d4d4",
    "memorisation": "#fbd9a0",
    "generalisation": "#bfe5b4",
    "robustness_plateau": "#bcd6ee",
    "collapse": "#f3b3b3",
}
_SPARE_COLOURS = ("#e3c9f0", "#f0e6a8", "#c9ece9")
PHASE_ALPHA = 0.75
LAYER_STYLES = ("-", "--", ":", "-.")  # per-layer LC: layer 1, 2, 3, 4 (more layers: all solid)
FAILED_COLOUR = "#b00020"
BEST_COLOUR = "#1b7837"
WIDTH_IN, DPI = 14.0, 100  # about 1400 px wide as a PNG


@dataclass(frozen=True)
class Panel:
    """One metric's axes in the figure."""

    name: str  # the metric column it plots
    title: str
    ylabel: str
    ylim: tuple[float, float] | None = None
    log_y: bool = False  # log y when every value is positive and they span more than `_LOG_SPAN`


PANELS = (
    Panel("accuracy", "Accuracy", "accuracy", ylim=(-0.03, 1.03)),
    Panel("loss", "Loss", "loss", log_y=True),
    Panel("centroid_alignment", r"Centroid alignment  $\cos(\mu(x), x)$", "alignment"),
    Panel("centroid_norm", r"Centroid norm  $\|\mu(x)\|_2$", "norm", log_y=True),
    Panel("jacobian_erank", "Jacobian effective rank", "effective rank"),
    Panel("jacobian_pc1", r"Jacobian top-direction share  $s_1^2 / \Sigma_i\, s_i^2$", "share", ylim=(-0.02, 1.02)),
    Panel("lc", "Local complexity (total; thin: per layer)", "neurons crossed"),
)
_LOG_SPAN = 20.0


def _numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, copy=True)


def _has_values(df: pd.DataFrame, column: str) -> bool:
    if column not in df:
        return False
    if column == "lc_layers":
        return any(np.isfinite(_layers(v)).any() for v in df[column])
    return bool(np.isfinite(_numeric(df[column])).any())


def _layers(value) -> np.ndarray:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return np.empty(0)
    return np.asarray(value, dtype=float).ravel()


def panels_for(df: pd.DataFrame) -> list[str]:
    """The panels the figure of `df` has, in order: one per metric with at least one finite value.

    >>> import pandas as pd
    >>> panels_for(pd.DataFrame({"step": [0, 10], "split": ["train", "train"], "accuracy": [0.1, 0.9], "lc": [None, None]}))
    ['accuracy']
    """
    names = []
    for panel in PANELS:
        if _has_values(df, panel.name) or (panel.name == "lc" and _has_values(df, "lc_layers")):
            names.append(panel.name)
    return names


def split_order(df: pd.DataFrame) -> list[str]:
    """The table's splits, train/test/random first, so each keeps its colour in every panel."""
    present = list(dict.fromkeys(df["split"].dropna())) if "split" in df else []
    return [s for s in SPLITS if s in present] + [s for s in present if s not in SPLITS]


def _style(split: str, index: int) -> dict:
    return SPLIT_STYLE.get(split, {"color": f"C{index + 3}", "linestyle": "-.", "linewidth": 1.6, "markersize": 3})


def _series(df: pd.DataFrame, split: str, column: str, steps: np.ndarray) -> np.ndarray:
    """`column` for `split` at every step of the run: NaN where the row is missing, failed or null."""
    if column not in df:
        return np.full(len(steps), np.nan)
    rows = df[df["split"] == split]
    values = _numeric(rows[column])
    if "status" in rows:
        values[(rows["status"] == "error").to_numpy()] = np.nan
    by_step = pd.Series(values, index=rows["step"].to_numpy()).groupby(level=0).mean()
    return by_step.reindex(steps).to_numpy(dtype=float)


def _layer_matrix(df: pd.DataFrame, split: str, steps: np.ndarray) -> np.ndarray:
    """Per-layer LC of `split`, shape (steps, layers), NaN where missing or failed."""
    rows = df[df["split"] == split]
    ok = (rows["status"] != "error").to_numpy() if "status" in rows else np.ones(len(rows), bool)
    layers = [_layers(v) if good else np.empty(0) for v, good in zip(rows["lc_layers"], ok)]
    width = max((len(v) for v in layers), default=0)
    matrix = np.full((len(steps), width), np.nan)
    position = {int(s): i for i, s in enumerate(steps)}
    for step, values in zip(rows["step"], layers):
        matrix[position[int(step)], : len(values)] = values
    return matrix


def _phase_spans(phase_report) -> list[tuple[str, float, float]]:
    """(phase, left, right) per segment; neighbouring spans meet half-way (geometric mean) between checkpoints."""
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


def phase_colour(phase: str, order: list[str]) -> str:
    """The shading of a phase: its own colour, or for an unknown name one picked by its place in `order`."""
    if phase in PHASE_COLOURS:
        return PHASE_COLOURS[phase]
    return _SPARE_COLOURS[order.index(phase) % len(_SPARE_COLOURS)]


def _title(phase_report) -> str:
    if phase_report is None:
        return "No phase report: metrics only, no phases classified"
    head = f"Verdict: {phase_report.advice}  ({phase_report.mode} mode, confidence {phase_report.confidence:.2f}"
    if phase_report.advice == "roll-back" and phase_report.best_step is not None:
        head += f", best step {phase_report.best_step}"
    return head + ")\n" + textwrap.fill(str(phase_report.reason), width=150)


def _set_step_axis(ax, steps: np.ndarray) -> None:
    positive = steps[steps > 0]
    if len(positive) == 0:
        return  # only step 0: a linear axis is all there is
    if (steps <= 0).any():
        ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.35)
    else:
        ax.set_xscale("log")
    low = 0.0 if (steps <= 0).any() else positive.min() / 1.25
    ax.set_xlim(low, steps.max() * 1.25)


def _plot_panel(ax, panel: Panel, df: pd.DataFrame, splits: list[str], steps: np.ndarray) -> None:
    seen = []
    for index, split in enumerate(splits):
        style = _style(split, index)
        y = _series(df, split, panel.name, steps)
        se = _series(df, split, f"{panel.name}_se", steps)
        if np.isfinite(y).any():
            seen.append(y[np.isfinite(y)])
            ax.plot(steps, y, marker="o", zorder=3, **style)
            ax.fill_between(steps, y - se, y + se, color=style["color"], alpha=0.2, linewidth=0, zorder=2)
        if panel.name == "lc" and "lc_layers" in df:
            _plot_layers(ax, _layer_matrix(df, split, steps), steps, style["color"])
    seen = np.concatenate(seen) if seen else np.empty(0)
    if panel.log_y and len(seen) and seen.min() > 0 and seen.max() / seen.min() > _LOG_SPAN:
        ax.set_yscale("log")  # limits from the lines, not the bands: a band reaching 0 is clipped at the edge
        ax.set_ylim(seen.min() / 1.6, seen.max() * 1.6)
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    ax.set_title(panel.title, fontsize=12, loc="left")
    ax.set_ylabel(panel.ylabel, fontsize=10)
    ax.grid(True, which="major", color="#999999", linewidth=0.4, alpha=0.5)
    ax.tick_params(labelsize=9)


def _plot_layers(ax, matrix: np.ndarray, steps: np.ndarray, colour: str) -> None:
    """Thin lines in the split's colour, one per layer, told apart by line style (see `LAYER_STYLES`)."""
    for layer in range(matrix.shape[1]):
        style = LAYER_STYLES[layer] if matrix.shape[1] <= len(LAYER_STYLES) else "-"
        ax.plot(steps, matrix[:, layer], linewidth=1.0, alpha=0.65, color=colour, linestyle=style, zorder=2.5)


def build_figure(df: pd.DataFrame, phase_report: PhaseReport | None) -> Figure:
    """The report figure: verdict as title, the metric panels two to a row, the legend in a spare cell or below."""
    names = panels_for(df)
    panels = [p for p in PANELS if p.name in names]
    steps = np.unique(df["step"].dropna().to_numpy(dtype=np.int64)) if "step" in df else np.empty(0, np.int64)
    splits = split_order(df)
    ncols = 1 if len(panels) <= 1 else 2
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = Figure(figsize=(WIDTH_IN, 1.0 + (3.0 if nrows > 1 else 3.6) * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    flat = list(axes.ravel())
    spare = flat[len(panels):] if panels else []
    for index in range(len(panels), len(flat)):
        if index >= ncols:  # the panel above an empty cell is the bottom of its column: give it the step axis
            flat[index - ncols].xaxis.set_tick_params(labelbottom=True)
            flat[index - ncols].set_xlabel("step", fontsize=10)
    spans = _phase_spans(phase_report) if phase_report is not None else []
    order = list(dict.fromkeys(phase for phase, _, _ in spans))
    failed = np.unique(df.loc[df["status"] == "error", "step"].to_numpy()) if "status" in df else np.empty(0)
    best = _roll_back_step(phase_report)
    for ax, panel in zip(flat, panels):
        for phase, left, right in spans:
            if right > left:
                ax.axvspan(left, right, color=phase_colour(phase, order), alpha=PHASE_ALPHA, linewidth=0, zorder=0)
            else:
                ax.axvline(left, color=phase_colour(phase, order), linewidth=3, zorder=0)
        for step in failed:
            ax.axvline(step, color=FAILED_COLOUR, linestyle=":", linewidth=1.2, alpha=0.8)
        if best is not None:
            ax.axvline(best, color=BEST_COLOUR, linestyle="--", linewidth=1.4, zorder=4)
        _plot_panel(ax, panel, df, splits, steps)
        _set_step_axis(ax, steps)
    for ax in axes[-1][: len(panels) - (nrows - 1) * ncols]:
        ax.set_xlabel("step", fontsize=10)
    if not panels:
        note = f" ({len(failed)} failed checkpoints)" if len(failed) else ""
        flat[0].text(0.5, 0.5, "no metric values to plot" + note, ha="center", va="center", fontsize=14, transform=flat[0].transAxes)
        flat[0].set_axis_off()
    fig.suptitle(_title(phase_report), fontsize=14, x=0.01, ha="left")
    handles = _legend_handles(df, splits, panels, order, failed, best) if panels else []
    for ax in spare:
        ax.set_axis_off()
    if handles and spare:  # an empty cell: the legend goes there, clear of the data
        spare[0].legend(handles=handles, loc="center", ncols=2, fontsize=11, frameon=False)
    elif handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 7), fontsize=10, frameon=False)
    return fig


def _roll_back_step(phase_report) -> int | None:
    """The step a roll-back verdict names, marked in every panel; None for any other verdict."""
    if phase_report is None or phase_report.advice != "roll-back":
        return None
    return phase_report.best_step


def _legend_handles(df, splits, panels, order, failed, best) -> list:
    plotted = [p.name for p in panels]
    handles = []
    for index, split in enumerate(splits):
        if any(np.isfinite(_numeric(df.loc[df["split"] == split, name])).any() for name in plotted if name in df):
            handles.append(Line2D([], [], marker="o", label=split, **_style(split, index)))
    if handles and any(f"{name}_se" in df and _has_values(df, f"{name}_se") for name in plotted):
        handles.append(Patch(color="#777777", alpha=0.3, label="± 1 standard error"))
    if "lc" in plotted and _has_values(df, "lc_layers"):
        width = max(len(_layers(v)) for v in df["lc_layers"])
        if width <= len(LAYER_STYLES):
            handles.extend(Line2D([], [], color="#555555", linewidth=1.0, linestyle=LAYER_STYLES[i], label=f"LC layer {i + 1}")
                           for i in range(width))
        else:
            handles.append(Line2D([], [], color="#555555", linewidth=1.0, alpha=0.65, label="LC per layer (thin)"))
    if len(failed):
        handles.append(Line2D([], [], color=FAILED_COLOUR, linestyle=":", linewidth=1.2, label="failed checkpoint"))
    if best is not None:
        handles.append(Line2D([], [], color=BEST_COLOUR, linestyle="--", linewidth=1.4, label=f"best step ({best}): roll back here"))
    for phase in sorted(order, key=lambda p: list(PHASE_COLOURS).index(p) if p in PHASE_COLOURS else 99):
        handles.append(Patch(color=phase_colour(phase, order), alpha=PHASE_ALPHA, label=phase.replace("_", " ")))
    return handles
