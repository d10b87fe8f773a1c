"""Phases and advice from a results table: DataFrame in, PhaseReport out (no torch here).

Every checkpoint gets one of PHASES and a verdict computed from it and the checkpoints before it only
(causal), so the verdict at every checkpoint (`PhaseReport.history`) comes out of one pass and equals what
`classify` on the table cut at that checkpoint says. The method, the corpus it was fitted and checked on,
and every threshold are in docs/phases.md.

>>> import pandas as pd
>>> rows = [{"step": s, "split": sp, "status": "ok", "accuracy": a, "accuracy_se": 0.01}
...         for s, tr, te in [(10, .3, .1), (30, .7, .1), (100, 1., .1), (300, 1., .1), (1000, 1., .1), (3000, 1., .1)]
...         for sp, a in (("train", tr), ("test", te))]
>>> report = classify(pd.DataFrame(rows))
>>> report.advice, report.history[3].phase
('keep-training', 'memorisation')
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from ..errors import ConfigError
from .accuracy_mode import AccuracyJudge
from .accuracy_reading import Reading, calibration_key
from .geometry_features import VOTE_GROUPS, SPLITS
from .geometry_mode import GeometryReading, geometry_readings
from .model import Fitted, shipped
from .table import RunTable
from .types import ADVICE_FOR_PHASE, MODES, PhaseReport, PhaseThresholds
from .verdict import Judged, report

__all__ = ["classify"]


def classify(df: pd.DataFrame, thresholds: PhaseThresholds | None = None, mode: str = "auto", *,
             fitted: Fitted | None = None) -> PhaseReport:
    """Label every checkpoint of a results table with a phase and give the verdict at every checkpoint.

    `thresholds`: the settings (None: the defaults). mode "auto": "accuracy" when train and test accuracy are
    present, else "geometry"; "geometry" ignores labels even when they exist; "accuracy" insists on them
    (ConfigError without them). `fitted`: the fitted model and calibrations (None: the ones shipped, fitted on
    the corpus; the corpus evaluation passes those of each held-out fold). A table that is not grokmon
    results, or holds no checkpoint analysed without error, is a ResultsError.
    """
    th = thresholds or PhaseThresholds()
    if mode not in MODES:
        raise ConfigError(f"Expected mode to be one of {', '.join(MODES)}, but got {mode!r}")
    table = RunTable(df, th.se_floor_fraction)
    has_accuracy = table.has("accuracy", "train") and table.has("accuracy", "test")
    if mode == "accuracy" and not has_accuracy:
        raise ConfigError(f"mode accuracy needs accuracy on the train and test splits; {_accuracy_found(table)}")
    chosen = "accuracy" if mode != "geometry" and has_accuracy else "geometry"
    has_geometry = any(table.has(m, s) for members in VOTE_GROUPS.values() for m, _ in members for s in SPLITS)
    if chosen == "geometry" and not has_geometry:
        raise ConfigError("mode geometry needs centroid, jacobian or lc columns, and this table has none"
                          + (" (use --mode accuracy)" if has_accuracy else
                             "; analyze with those metrics, or with labelled train and test probes"))
    fitted = fitted or shipped()
    geometry = geometry_readings(table, th, fitted.geometry) if has_geometry else None
    if chosen == "accuracy":
        judged = _accuracy_judged(table, th, fitted, geometry)
    else:
        judged = [_geometry_judged(g, th) for g in geometry]
    result = report(chosen, table.steps, judged, table.points_so_far(), th)
    return _with_failures(result, df, int(table.steps[-1]))


def _accuracy_found(table: RunTable) -> str:
    """Which split's accuracy a table without both has, and why the other lacks it, for the error."""
    found = [s for s in ("train", "test") if table.has("accuracy", s)]
    if not found:
        return ("this table has none (use geometry; for accuracy mode, analyze with labelled probes and accuracy "
                "in --metrics)")
    lack = "test" if found == ["train"] else "train"
    why = f"no y_{lack}" if table.has_split(lack) else f"no x_{lack}: no {lack} split"
    return f"this table has it on {found[0]} only (the probe data had {why}; add it, then analyze again)"


def accuracy_readings(table: RunTable, th) -> list[Reading]:
    """The accuracy mode's raw reading of every checkpoint of a RunTable with train and test accuracy (what
    `classify` calibrates, and what corpus/fit.py fits the calibration on)."""
    robust = next((table.track("robust_accuracy", s) for s in ("test", "train") if table.has("robust_accuracy", s)), None)
    return AccuracyJudge(table.steps, table.x, table.track("accuracy", "train"), table.track("accuracy", "test"),
                         robust, th, _start_accuracies(table)).readings()


def _accuracy_judged(table: RunTable, th, fitted: Fitted, geometry: list[GeometryReading] | None) -> list[Judged]:
    out = []
    for i, r in enumerate(accuracy_readings(table, th)):
        if r.phase is None:
            out.append(Judged(None, "inconclusive", 0.0, "no accuracy at this checkpoint", r.best))
            continue
        advice = ADVICE_FOR_PHASE[r.phase]
        key = calibration_key(r)  # a model.json without the stretched-line maps: the phase's
        confidence, note = fitted.accuracy(key if key in fitted.accuracy.maps else r.phase, r.strength), r.note
        if confidence < th.act_confidence:
            note += r.doubt
        g = _geometry_judged(geometry[i], th) if geometry is not None else None
        # a geometry that reads `fitting` where the probes show the train set fitted is wrong on what they measure
        if (g is not None and g.withheld is None and g.advice not in ("inconclusive", advice)
                and g.confidence >= th.min_confidence and not (g.phase == "fitting" and r.train_fitted)):
            confidence *= 1.0 - th.geometry_weight * g.confidence
            note += f"; the geometry disagrees: it reads {g.phase} ({g.advice}, confidence {g.confidence:.2f})"
        out.append(Judged(r.phase, advice, confidence, note, r.best, wants=r.wants))
    return out


def _start_accuracies(table: RunTable) -> tuple[float, float] | None:
    """(train, test) accuracy before the first checkpoint of a table that does not start at step 0: the chance
    level of each split at that checkpoint (`chance_accuracy`, the most common label's share: the most a predictor
    that ignores its input scores), where a run trained from scratch started. Without it, test accuracy already
    well up at the first save would read as the level the run memorised at; a table from step 0 has its own start
    (None), and so does one whose first checkpoint lacks the column (read there, so that every prefix of the table
    reads the same start)."""
    if table.steps[0] == 0:
        return None
    levels = [table.first("chance_accuracy", split) for split in ("train", "test")]
    return None if None in levels else (levels[0], levels[1])


def _geometry_judged(g: GeometryReading, th) -> Judged:
    if g.phase is None:  # nothing moved yet, too few groups measured, or too little of the run seen to read one
        wants = "metric groups" if g.measured < th.min_groups else "start" if g.seen < th.min_seen_share else None
        return Judged(None, "inconclusive", 0.0, g.note, None, wants=wants)
    if g.groups < th.min_groups:
        note = (f"{g.note}; only {g.groups} independent metric group{'s' if g.groups != 1 else ''} of the "
                f"{len(VOTE_GROUPS)} ({', '.join(VOTE_GROUPS)}) moves, and the geometry needs {th.min_groups} to tell")
        return Judged(g.phase, "inconclusive", 0.0, note, g.best, wants="checkpoints")  # groups may move later
    withheld = None
    if len(g.dissent) > th.max_dissent:
        (family, advice), *more = g.dissent
        others = "".join(f", without the {f} runs {a}" for f, a in more)
        withheld = (f"{g.advice} does not hold when one family of the corpus is left out of the fit: fitted without "
                    f"the {family} runs the model reads {advice}{others} (max_dissent={th.max_dissent})")
    return Judged(g.phase, g.advice, g.confidence, g.note, g.best, withheld)


def _with_failures(result: PhaseReport, df: pd.DataFrame, last_step: int) -> PhaseReport:
    """Name the checkpoints newer than the last judged one that failed in analyze."""
    failed = df["step"].to_numpy()[df["status"].to_numpy(dtype=object) != "ok"]
    after = sorted({int(s) for s in failed if s == s and s > last_step})
    if not after:
        return result
    listed = ", ".join(map(str, after[:3])) + (", ..." if len(after) > 3 else "")
    return dataclasses.replace(result, reason=f"{result.reason} (newer checkpoint{'s' if len(after) > 1 else ''} "
                                              f"failed in analyze and not judged: step {listed})")

