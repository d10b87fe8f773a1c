"""From the readings of every checkpoint to the report: the verdict with each checkpoint the newest
(history), the labels of past checkpoints, the segments."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .types import PhaseReport, PhaseSegment, StepVerdict

FEW_CHECKPOINTS_CAP = 0.2  # the most confidence a verdict on fewer than min_checkpoints checkpoints gets


@dataclass(frozen=True)
class Judged:
    """One checkpoint's reading in a form both modes share: phase, advice, calibrated confidence (before the
    verdict's own caps), the reason's body, the best checkpoint so far, why the advice is withheld whatever
    its confidence (None: it is not), and what the evidence lacks where it is weak (one of WANTS, or None)."""

    phase: str | None
    advice: str
    confidence: float
    note: str
    best: int | None
    withheld: str | None = None
    wants: str | None = None


def history(steps: np.ndarray, judged: list[Judged], points: np.ndarray, th) -> list[StepVerdict]:
    """The verdict at every checkpoint, as `classify` on the checkpoints up to it would give it."""
    out, last = [], None
    for i, j in enumerate(judged):
        if j.phase is None and last is not None and last.phase is not None:  # no evidence here: the last verdict
            j = last                                                          # stands
        else:
            last = j
        best = None if j.best is None else int(steps[j.best])
        out.append(_verdict(int(steps[i]), i + 1, j, best, float(points[i]), th))
    return out


def _verdict(step: int, count: int, j: Judged, best: int | None, points: float, th) -> StepVerdict:
    confidence, note = j.confidence, j.note
    if math.isfinite(points) and 0 < points < th.min_points:
        confidence *= points / th.min_points
        note += f"; only {int(points)} probe points per split (min_points={th.min_points})"
    confidence = round(float(np.clip(confidence, 0.0, 1.0)), 2)
    if j.phase is None:
        return StepVerdict(step, None, "inconclusive", 0.0, f"no phase at step {step}: {note}", j.wants)
    if count < th.min_checkpoints:
        reason = (f"only {count} checkpoint{'s' if count != 1 else ''} (min_checkpoints={th.min_checkpoints}): too "
                  f"few to tell; step {step} looks like {j.phase} ({note})")
        return StepVerdict(step, j.phase, "inconclusive", min(confidence, FEW_CHECKPOINTS_CAP), reason, "checkpoints")
    needed = th.act_confidence if j.advice in ("stop", "roll-back") else th.min_confidence
    weak = j.advice == "inconclusive" or confidence < needed
    if weak or j.withheld:
        name = "act_confidence" if j.advice in ("stop", "roll-back") else "min_confidence"
        why = "" if j.advice == "inconclusive" or not weak else \
            f" (confidence {confidence:.2f} < {name}={needed:g} for {j.advice})"
        head = "too little evidence to act on" if weak else "no verdict the corpus agrees on"
        tail = f"; {j.withheld}" if j.withheld else ""
        reason = f"{head} at step {step}: {j.phase}, {note}{why}{tail}"
        return StepVerdict(step, j.phase, "inconclusive", confidence, reason, j.wants)
    reason = f"{j.phase} at step {step}: {note}"
    if j.advice == "roll-back" and best is not None:
        reason += f"; best step {best}"
    return StepVerdict(step, j.phase, j.advice, confidence, reason, j.wants)


def labels(verdicts: list[StepVerdict], min_run: int) -> list[str | None]:
    """The phase of every past checkpoint, as the newest checkpoint sees it (docs/phases.md, "Labels"):
    the phase each verdict gave, except that a generalisation that fell back to memorisation was a false start
    (memorisation), and then a run of one phase shorter than `min_run` between two runs of the same other
    phase takes theirs."""
    out = [v.phase for v in verdicts]
    for i in range(1, len(out)):
        if out[i] is None:
            out[i] = out[i - 1]
    runs = _runs(out)
    for (phase, start, end), after in zip(runs, runs[1:]):
        if phase == "generalisation" and after[0] == "memorisation":
            out[start:end + 1] = ["memorisation"] * (end - start + 1)
    changed = True
    while changed:
        changed = False
        runs = _runs(out)
        for before, (phase, start, end), after in zip(runs, runs[1:], runs[2:]):
            if end - start + 1 < min_run and before[0] == after[0]:
                out[start:end + 1] = [before[0]] * (end - start + 1)
                changed = True
                break
    return out


def _runs(labels: list) -> list[tuple[str, int, int]]:
    """(label, first index, last index) of each run of equal labels."""
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append((labels[start], start, i - 1))
            start = i
    return runs


def report(mode: str, steps: np.ndarray, judged: list[Judged], points: np.ndarray, th) -> PhaseReport:
    """The PhaseReport: the last checkpoint's verdict, the labels and segments, and the history."""
    verdicts = history(steps, judged, points, th)
    last = verdicts[-1]
    best = next((j.best for j in reversed(judged) if j.phase is not None), None)
    # geometry's best is where its damage began, a guess without accuracies: named only by a roll-back that acts on
    # it (an inconclusive geometry reading named step 200 of a run whose test accuracy was 0.000 there)
    if mode == "geometry" and last.advice != "roll-back":
        best = None
    best_step = None if best is None else int(steps[best])
    phases = labels(verdicts, th.min_phase_checkpoints)
    pairs = tuple((int(s), p) for s, p in zip(steps, phases))  # None where no evidence had come yet
    segments = tuple(PhaseSegment(p, int(steps[a]), int(steps[b])) for p, a, b in _runs(phases) if p is not None)
    return PhaseReport(mode, last.advice, last.reason, last.confidence, last.phase, segments, pairs, best_step,
                       tuple(verdicts), last.wants)
