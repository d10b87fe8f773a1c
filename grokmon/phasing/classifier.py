"""Phases and advice from a results table: DataFrame in, PhaseReport out (no torch here).

Every checkpoint gets one of PHASES; the last one's phase gives the advice. Each metric series (one
metric on one split) is first cut into straight pieces on the log10(step) axis and judged against the
table's standard errors (`phase_trends`); the phase rules then read those trends (`phase_rules`).
The method and every threshold are documented in docs/phases.md.

>>> import pandas as pd
>>> rows = [{"step": s, "split": sp, "status": "ok", "accuracy": a, "accuracy_se": 0.01}
...         for s, tr, te in [(10, .3, .1), (30, .7, .1), (100, 1., .1), (300, 1., .1), (1000, 1., .1), (3000, 1., .1)]
...         for sp, a in (("train", tr), ("test", te))]
>>> classify(pd.DataFrame(rows)).advice
'keep-training'
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..columns import GROUP_COLUMNS
from ..errors import ConfigError, ResultsError
from .geometry_rules import GROUPS, SPLITS
from .labels import label_run
from .types import MODES, PhaseReport, PhaseThresholds

__all__ = ["classify"]


def classify(df: pd.DataFrame, thresholds: PhaseThresholds | None = None, mode: str = "auto") -> PhaseReport:
    """Label every checkpoint of a results table with a phase and give the verdict for the last one.

    mode "auto": "accuracy" when train and test accuracy are present, else "geometry"; "geometry" ignores
    labels even when they exist; "accuracy" insists on them (ConfigError without them). A table that is not
    grokmon results (no step/split/status, no metric values) or holds no checkpoint analysed without error
    is a ResultsError.
    """
    th = thresholds or PhaseThresholds()
    if mode not in MODES:
        raise ConfigError(f"Expected mode to be one of {', '.join(MODES)}, but got {mode!r}")
    table = _usable_rows(df)
    has_accuracy = all(_has(table, "accuracy", split) for split in ("train", "test"))
    if mode == "accuracy" and not has_accuracy:
        raise ConfigError(
            "mode accuracy needs accuracy on the train and test splits; this table has none (use geometry)")
    chosen = "accuracy" if mode != "geometry" and has_accuracy else "geometry"
    geometry = [metric for members in GROUPS.values() for metric, _ in members]
    if chosen == "geometry" and not any(_has(table, m, s) for m in geometry for s in SPLITS):
        raise ConfigError("mode geometry needs centroid, jacobian or lc columns, and this table has none"
                          + (" (use --mode accuracy)" if has_accuracy else
                             "; analyze with those metrics, or with labelled train and test probes"))
    steps = np.array(sorted(table["step"].unique()), dtype=np.int64)
    report = label_run(table, steps, chosen, th)
    failed = pd.to_numeric(df.loc[df["status"] != "ok", "step"], errors="coerce")
    failed_after = sorted({int(s) for s in failed[failed > steps[-1]]})
    if failed_after:  # the verdict is for the newest checkpoint that was measured: say which ones were not
        listed = ", ".join(map(str, failed_after[:3])) + (", ..." if len(failed_after) > 3 else "")
        report = dataclasses.replace(report, reason=f"{report.reason} (newer checkpoint{'s' if len(failed_after) > 1 else ''} "
                                                    f"failed in analyze and not judged: step {listed})")
    return report


def _has(table: pd.DataFrame, metric: str, split: str) -> bool:
    return metric in table and table.loc[table["split"] == split, metric].notna().any()


def _usable_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with status ok, or ResultsError for a table that is not grokmon's results."""
    if not isinstance(df, pd.DataFrame):
        raise ResultsError(f"Expected a pandas DataFrame of grokmon results, but got {type(df).__name__}")
    missing = [c for c in ("step", "split", "status") if c not in df.columns]
    if missing:
        raise ResultsError(
            f"not a grokmon results table: no column {', '.join(missing)} (write one with `grokmon analyze`)")
    metrics = [m for cols in GROUP_COLUMNS.values() for m in cols if m != "lc_layers" and m in df.columns]
    ok = df[df["status"] == "ok"]
    if len(df) and not len(ok):
        first = df.iloc[0]
        raise ResultsError(f"every checkpoint failed in `grokmon analyze` (step {first['step']}: "
                           f"{first.get('error', 'no message')}); fix that and analyze again")
    if not len(df):
        raise ResultsError("the results table is empty: no checkpoint was analysed")
    if not metrics or (len(ok) and not ok[metrics].notna().any().any()):
        raise ResultsError("not a grokmon results table: no metric column holds a value "
                           f"(expected some of {', '.join(m for cols in GROUP_COLUMNS.values() for m in cols)})")
    steps = pd.to_numeric(ok["step"], errors="coerce")
    if steps.isna().any() or (steps != steps.round()).any():
        raise ResultsError("not a grokmon results table: column step does not hold integers")
    if (steps < 0).any():
        raise ResultsError("not a grokmon results table: negative steps")
    ok = ok.assign(step=steps.astype(np.int64))
    return ok.sort_values("step", kind="stable").drop_duplicates(["step", "split"], keep="last")
