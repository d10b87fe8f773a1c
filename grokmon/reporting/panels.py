"""Which panels a figure has and what goes in them, read off the row layout in grokmon/columns.py (no pyplot).

Every scalar metric column of every group in `GROUP_COLUMNS` gets a panel when the table has a finite value
in it, in the order the groups list them, so a metric group added there is plotted without more code here.
`STYLES` only adds what the column name cannot say (a title with the formula, fixed limits, a log axis); a
column without an entry gets its name as title. A list column `<metric>_layers` is drawn as thin lines in
`<metric>`'s panel. The columns of `NOT_PLOTTED` stay in the tables and the hover text, but get no panel.

Step axis: training runs are read on a log-step axis, but the first checkpoint is often step 0. Rather than
shift every step by one (which would make the tick labels lie), the axis is `symlog` whenever step 0 is present:
logarithmic above the smallest positive step, linear between 0 and it, so step 0 sits just left of the first
decade and every other step stays where a log axis puts it. Without step 0 the axis is a plain log axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import columns
from ..columns import SPLITS
from ..phasing.geometry_features import VOTE_GROUPS as GEOMETRY_VOTES


@dataclass(frozen=True)
class PanelStyle:
    """How one metric's panel is labelled and scaled."""

    title: str
    ylabel: str
    ylim: tuple[float, float] | None = None
    log_y: bool = False  # log y when every value is positive and they span more than `LOG_SPAN`


_FRACTION = (-0.03, 1.03)
STYLES = {
    "accuracy": PanelStyle("Accuracy", "accuracy", ylim=_FRACTION),
    "loss": PanelStyle("Loss", "loss", log_y=True),
    "centroid_alignment": PanelStyle("Centroid alignment  cos(μ(x), x)", "alignment"),
    "centroid_alignment_min": PanelStyle("Centroid alignment, lowest over positions", "alignment"),
    "centroid_alignment_max": PanelStyle("Centroid alignment, highest over positions", "alignment"),
    "centroid_norm": PanelStyle("Centroid norm  ‖μ(x)‖₂", "norm", log_y=True),
    "jacobian_erank": PanelStyle("Jacobian effective rank", "effective rank"),
    "jacobian_pc1": PanelStyle("Jacobian top-direction share  s₁² / Σ s²", "share", ylim=(-0.02, 1.02)),
    "lc": PanelStyle("Local complexity (total; thin: per layer)", "neurons crossed"),
    "robust_accuracy": PanelStyle("Accuracy under an adversarial perturbation", "accuracy", ylim=_FRACTION),
    "noise_accuracy": PanelStyle("Accuracy under input noise", "accuracy", ylim=_FRACTION),
    "weight_norm": PanelStyle("Weight norm", "norm", log_y=True),
    "weight_entropy": PanelStyle("Weight entropy", "entropy"),
    "grad_norm": PanelStyle("Gradient norm", "norm", log_y=True),
    "grad_entropy": PanelStyle("Gradient entropy", "entropy"),
    "llc": PanelStyle("Local learning coefficient", "LLC"),
}
# In the tables and the hover text, not worth a panel: redundant with a plotted one, a setting, or a property of
# the probes (chance_accuracy), not of the network.
NOT_PLOTTED = ("centroid_inner", "jacobian_fro", "lc_radius", "llc_chain_ok", "chance_accuracy")
LOG_SPAN = 20.0
# Which way each series moves when the network simplifies, as the geometry mode of the classifier reads it.
SIMPLIFYING = {metric: sign for members in GEOMETRY_VOTES.values() for metric, sign in members}


def style(column: str) -> PanelStyle:
    """The panel style of `column`; a column without an entry in `STYLES` is titled by its name.

    >>> style("grad_norm").log_y, style("new_metric").title
    (True, 'New metric')
    """
    return STYLES.get(column) or PanelStyle(column.replace("_", " ").capitalize(), column)


def direction_note(column: str) -> str | None:
    """'↑ simplifying' or '↓ simplifying' for a series the geometry mode votes with, else None.

    >>> direction_note("lc"), direction_note("centroid_alignment"), direction_note("accuracy")
    ('↓ simplifying', '↑ simplifying', None)
    """
    sign = SIMPLIFYING.get(column)
    return None if sign is None else ("↑" if sign > 0 else "↓") + " simplifying"


def layer_columns() -> dict[str, str]:
    """metric -> its per-layer list column, for every `<metric>_layers` in LIST_COLUMNS."""
    return {name[: -len("_layers")]: name for name in columns.LIST_COLUMNS if name.endswith("_layers")}


def scalar_columns() -> list[tuple[str, str]]:
    """(group, column) of every scalar metric column in GROUP_COLUMNS, in order."""
    return [(group, name) for group, names in columns.GROUP_COLUMNS.items() for name in names
            if name not in columns.LIST_COLUMNS]


def numeric(series: pd.Series) -> np.ndarray:
    """A column as floats: NaN for nulls and anything that is not a number."""
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, copy=True)


def layers(value) -> np.ndarray:
    """One row's list value as floats (empty for a null)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return np.empty(0)
    return np.asarray(value, dtype=float).ravel()


def has_values(df: pd.DataFrame, column: str) -> bool:
    """Whether `column` holds at least one finite number (a list column: in any of its lists)."""
    if column not in df:
        return False
    if column in columns.LIST_COLUMNS:
        return any(np.isfinite(layers(v)).any() for v in df[column])
    return bool(np.isfinite(numeric(df[column])).any())


def _plottable(df: pd.DataFrame, column: str) -> bool:
    return has_values(df, column) or has_values(df, layer_columns().get(column, ""))


def panels_for(df: pd.DataFrame) -> list[str]:
    """The panels the figure of `df` has, in order: one per metric column with at least one finite value.

    >>> import pandas as pd
    >>> panels_for(pd.DataFrame({"step": [0, 10], "split": ["train", "train"], "accuracy": [0.1, 0.9], "lc": [None, None]}))
    ['accuracy']
    """
    return [name for _, name in scalar_columns() if name not in NOT_PLOTTED and _plottable(df, name)]


def group_panels(frames: list[pd.DataFrame]) -> list[str]:
    """One panel per metric group for a comparison: the group's first plotted column that any frame has.

    >>> import pandas as pd
    >>> group_panels([pd.DataFrame({"step": [1], "split": ["test"], "loss": [0.3], "lc": [4.0]})])
    ['loss', 'lc']
    """
    chosen = {}
    for group, name in scalar_columns():
        if group not in chosen and name not in NOT_PLOTTED and any(_plottable(df, name) for df in frames):
            chosen[group] = name
    return list(chosen.values())


def value_columns(df: pd.DataFrame) -> list[str]:
    """Every scalar metric column of `df` with a value: what the hover text and the tables show."""
    return [name for _, name in scalar_columns() if has_values(df, name)]


def split_order(df: pd.DataFrame) -> list[str]:
    """The table's splits, train/test/random first, so each keeps its colour in every panel."""
    present = list(dict.fromkeys(df["split"].dropna())) if "split" in df else []
    return [s for s in SPLITS if s in present] + [s for s in present if s not in SPLITS]


def run_steps(df: pd.DataFrame) -> np.ndarray:
    """The table's distinct steps, ascending."""
    return np.unique(df["step"].dropna().to_numpy(dtype=np.int64)) if "step" in df else np.empty(0, np.int64)


def by_split(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each split's rows indexed by step (a repeated step: its last row), split once for all the series drawn."""
    if "split" not in df or "step" not in df:
        return {}
    return {split: rows.drop_duplicates("step", keep="last").set_index("step")
            for split, rows in df.groupby("split", sort=False)}


def series(parts: dict[str, pd.DataFrame], split: str, column: str, steps: np.ndarray) -> np.ndarray:
    """`column` for `split` at every step of the run: NaN where the row is missing, failed or null."""
    rows = parts.get(split)
    if rows is None or column not in rows:
        return np.full(len(steps), np.nan)
    values = numeric(rows[column])
    if "status" in rows:
        values[(rows["status"] == "error").to_numpy()] = np.nan
    return pd.Series(values, index=rows.index.to_numpy()).reindex(steps).to_numpy(dtype=float)


def layer_matrix(parts: dict[str, pd.DataFrame], split: str, column: str, steps: np.ndarray) -> np.ndarray:
    """A list column of `split`, shape (steps, layers), NaN where missing or failed."""
    rows = parts.get(split)
    if rows is None or column not in rows:
        return np.full((len(steps), 0), np.nan)
    ok = (rows["status"] != "error").to_numpy() if "status" in rows else np.ones(len(rows), bool)
    values = [layers(v) if good else np.empty(0) for v, good in zip(rows[column], ok)]
    width = max((len(v) for v in values), default=0)
    matrix = np.full((len(steps), width), np.nan)
    position = {int(s): i for i, s in enumerate(steps)}
    for step, row in zip(rows.index, values):
        matrix[position[int(step)], : len(row)] = row
    return matrix


def set_step_axis(ax, steps: np.ndarray) -> None:
    """Log step axis (symlog when step 0 is present) spanning `steps` with a little room either side."""
    positive = steps[steps > 0]
    if len(positive) == 0:
        return  # only step 0: a linear axis is all there is
    if (steps <= 0).any():
        ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.35)
    else:
        ax.set_xscale("log")
    low = 0.0 if (steps <= 0).any() else positive.min() / 1.25
    ax.set_xlim(low, steps.max() * 1.25)


def set_value_axis(ax, column: str, seen: np.ndarray) -> None:
    """Limits and scale of a panel's y axis from its style and the values drawn (`seen`)."""
    panel = style(column)
    if panel.log_y and len(seen) and seen.min() > 0 and seen.max() / seen.min() > LOG_SPAN:
        ax.set_yscale("log")  # limits from the lines, not the bands: a band reaching 0 is clipped at the edge
        ax.set_ylim(seen.min() / 1.6, seen.max() * 1.6)
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
