"""The phase rules: read the trends of a run's series, label every checkpoint, tidy, and give the verdict."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .accuracy_rules import accuracy_labels
from .geometry_rules import geometry_labels
from .trends import Trend, analyse, empty_trend, log_steps
from .types import ADVICE_FOR_PHASE, PhaseReport, PhaseSegment, PhaseThresholds


def label_run(table: pd.DataFrame, steps: np.ndarray, mode: str, th: PhaseThresholds) -> PhaseReport:
    """Label every checkpoint in `steps` from the ok rows in `table`, in `mode`; verdict for the last one."""
    x = log_steps(steps)

    def trend(metric: str, *splits: str, log: bool = False) -> Trend:
        """The Trend of `metric` on the first of `splits` that has it (an empty one if none does).

        `log`: the series is log10 of the metric (a norm, whose changes are relative), its SE carried over.
        """
        if metric not in table:
            return empty_trend(len(steps))
        for split in splits:
            rows = table[table["split"] == split].set_index("step")
            if rows[metric].notna().any():
                value = pd.to_numeric(rows[metric], errors="coerce").reindex(steps).to_numpy(dtype=float)
                se_name = f"{metric}_se"
                se = (pd.to_numeric(rows[se_name], errors="coerce").reindex(steps).to_numpy(dtype=float)
                      if se_name in rows else np.zeros(len(steps)))
                if log:
                    with np.errstate(all="ignore"):
                        value, se = np.where(value > 0, np.log10(value), np.nan), se / (value * math.log(10))
                return analyse(x, value, se, th)
        return empty_trend(len(steps))

    if mode == "accuracy":
        train, test = trend("accuracy", "train"), trend("accuracy", "test")
        labels, notes, strength, best = accuracy_labels(steps, train, test, th)
    else:
        labels, notes, strength, best = geometry_labels(steps, trend, th)
    labels = tidy(labels, th.min_phase_checkpoints)
    points = pd.to_numeric(table["n_points"], errors="coerce").min() if "n_points" in table else math.nan
    return verdict(steps, labels, notes, strength, best, mode, th, points)


def fill_gaps(labels: list[str | None]) -> list[str | None]:
    """Checkpoints with no evidence take the previous label (the next one at the start)."""
    out = list(labels)
    for i in range(1, len(out)):
        if out[i] is None:
            out[i] = out[i - 1]
    for i in range(len(out) - 2, -1, -1):
        if out[i] is None:
            out[i] = out[i + 1]
    return out


def _runs(labels: list[str]) -> list[tuple[str, int, int]]:
    """(label, first index, last index) of each run of equal labels."""
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append((labels[start], start, i - 1))
            start = i
    return runs


def tidy(labels: list[str | None], min_run: int) -> list[str | None]:
    """Absorb short interior flickers and out-of-order labels into their neighbours.

    A run shorter than `min_run` between two runs of the same phase takes that phase; a plateau that
    generalisation resumes after is part of the generalisation; a memorisation or fitting run after
    generalisation has started takes the previous phase. A collapse before generalisation stays: the rules
    only call one there for a training that diverged (accuracy) or a settled geometry that was damaged.
    """
    labels = fill_gaps(labels)
    if not labels or labels[0] is None:
        return labels
    changed = True
    while changed:
        changed = False
        runs = _runs(labels)
        for k in range(1, len(runs) - 1):
            phase, start, end = runs[k]
            if end - start + 1 < min_run and runs[k - 1][0] == runs[k + 1][0]:
                labels[start:end + 1] = [runs[k - 1][0]] * (end - start + 1)
                changed = True
                break
    # a plateau that generalisation resumes after was a pause in generalisation
    resumed = [i for i, phase in enumerate(labels) if phase == "generalisation"]
    if resumed:
        first, last = resumed[0], resumed[-1]
        labels[first:last + 1] = ["generalisation" if p == "robustness_plateau" else p for p in labels[first:last + 1]]
    seen_general = False
    for i, phase in enumerate(labels):
        if phase in ("generalisation", "robustness_plateau"):
            seen_general = True
        elif phase in ("fitting", "memorisation") and seen_general and i > 0:
            labels[i] = labels[i - 1]
    return labels


def segments(steps: np.ndarray, labels: list[str]) -> tuple[PhaseSegment, ...]:
    """The runs of one phase as (phase, first step, last step), in order."""
    return tuple(PhaseSegment(phase, int(steps[a]), int(steps[b])) for phase, a, b in _runs(labels))


def verdict(steps, labels, notes, strength, best, mode, th, points: float = math.nan) -> PhaseReport:
    """Advice for the last checkpoint, with a one-line reason and a confidence in [0, 1].

    `points`: the fewest probe points of any split (NaN when unknown); below `min_points` it scales confidence.
    """
    n = len(steps)
    pairs = tuple((int(s), p) for s, p in zip(steps, labels) if p is not None)
    segs = segments(steps, labels) if labels and labels[0] is not None else ()
    current = labels[-1] if labels else None
    if current == "collapse":
        collapse_start = _runs(labels)[-1][1]
        if (best is None or best >= collapse_start) and collapse_start > 0:
            best = collapse_start - 1  # nothing better measured: the last checkpoint before the collapse
    best_step = None if best is None else int(steps[best])
    if current is None:
        return PhaseReport(mode, "inconclusive", f"no {mode} evidence at step {int(steps[-1])}", 0.0, None, segs, pairs,
                           best_step)
    run_length = _runs(labels)[-1][2] - _runs(labels)[-1][1] + 1
    coverage = min(1.0, n / (2.0 * th.min_checkpoints))
    persistence = min(1.0, 0.4 + 0.2 * run_length)
    sample = min(1.0, points / th.min_points) if math.isfinite(points) and points > 0 else 1.0
    confidence = coverage * persistence * sample * (0.25 + 0.75 * strength[-1])
    confidence = round(float(np.clip(confidence, 0.0, 1.0)), 2)
    note = notes[-1] or current
    if sample < 1.0:
        note += f"; only {int(points)} probe points per split (min_points={th.min_points})"
    if n < th.min_checkpoints:
        reason = (f"only {n} checkpoint{'s' if n != 1 else ''} (min_checkpoints={th.min_checkpoints}): too few to "
                  f"tell; the last looks like {current} ({note})")
        return PhaseReport(mode, "inconclusive", reason, min(confidence, 0.2), current, segs, pairs, best_step)
    if confidence < th.min_confidence:
        reason = (f"too noisy or too little evidence to tell at step {int(steps[-1])}: {note} "
                  f"(confidence {confidence:.2f} < min_confidence={th.min_confidence})")
        return PhaseReport(mode, "inconclusive", reason, confidence, current, segs, pairs, best_step)
    advice = ADVICE_FOR_PHASE[current]
    reason = f"{current} at step {int(steps[-1])}: {note}"
    if advice == "roll-back" and best_step is not None:
        reason += f"; best step {best_step}"
    return PhaseReport(mode, advice, reason, confidence, current, segs, pairs, best_step)
