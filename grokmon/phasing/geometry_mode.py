"""Geometry mode: labels are not used; the fitted model reads the geometry features (geometry_features.py)
and a forward filter turns them into the probability of each phase at every checkpoint (model.py); the models
fitted without one family each say where that reading does not hold without that family."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry_features import VOTE_GROUPS, SERIES_WORDS, design_matrix, group_evidence
from .model import ADVICE_ORDER, GeometryModel, most_likely
from .types import PHASES


@dataclass(frozen=True)
class GeometryReading:
    """The geometry's view of one checkpoint: its most likely advice and phase, that advice's probability and
    its calibrated confidence, the independent groups present, a note on what each group does, the best
    checkpoint so far (for a roll-back), (family, advice) of each model fitted without one family that reads
    another advice, and the share of the log-step axis up to this checkpoint that the table covers (from its first
    checkpoint, `first_step`: 1 for a table from step 0), and how many of the groups the table measures at all."""

    phase: str | None
    advice: str
    probability: float
    confidence: float
    groups: int
    note: str
    best: int | None
    dissent: tuple[tuple[str, str], ...] = ()
    seen: float = 1.0
    first_step: int = 0
    measured: int = len(VOTE_GROUPS)


def geometry_readings(table, th, model: GeometryModel) -> list[GeometryReading]:
    """The reading at every checkpoint of a RunTable, in one pass."""
    n = len(table.steps)
    evidence = group_evidence(table, th.trend_decades, th.slope_sigma)
    design, count = design_matrix(evidence, n)
    every = model.filtered_with_jackknife(design, table.x, count > 0)
    posterior = every[0]
    advice, phase, probability = most_likely(posterior)
    confidence = np.array([model.calibration(PHASES[k], p) for k, p in zip(phase, probability)])
    # how much each checkpoint's own reading (before the filter) raised the probability of collapse
    damage = np.diff(model.phase_probabilities(design)[:, PHASES.index("collapse")], prepend=0.0)
    damage[count == 0] = 0.0
    words = _words(evidence, n, th.slope_sigma)
    dissent = model.dissent(every[1:], advice)
    out = []
    collapse_from: int | None = None
    first = int(table.steps[0])
    seen = 1.0 - np.divide(table.x[0], table.x, out=np.zeros(n), where=table.x > 0)
    unread = _too_few_measured(evidence, th.min_groups)
    for i in range(n):
        if count[i] == 0 or unread:
            out.append(GeometryReading(None, "inconclusive", 0.0, 0.0, int(count[i]),
                                       unread or "no geometry series has moved yet", None, measured=len(evidence)))
            continue
        if seen[i] < th.min_seen_share:
            out.append(GeometryReading(None, "inconclusive", 0.0, 0.0, int(count[i]),
                                       f"{words[i]}; {_seen_too_little(float(seen[i]), first, th.min_seen_share)}",
                                       None, seen=float(seen[i]), first_step=first, measured=len(evidence)))
            continue
        name = PHASES[phase[i]]
        collapse_from = (collapse_from if collapse_from is not None else i) if name == "collapse" else None
        best = _before_damage(damage[: collapse_from + 1]) if collapse_from else None
        said = ADVICE_ORDER[advice[i]]
        odds = _odds(name, posterior[i, phase[i]], said, probability[i], confidence[i])
        note = f"{words[i]} ({odds})"
        if said == "roll-back":
            best, said, note = _generalised_target(out, best, note)
        out.append(GeometryReading(name, said, float(probability[i]), float(confidence[i]), int(count[i]),
                                   note, best, dissent[i], float(seen[i]), first, len(evidence)))
    return out


GENERALISED = ("generalisation", "robustness_plateau")


def _generalised_target(before: list[GeometryReading], best: int | None, note: str):
    """A collapse is the loss of what a run generalised to: its roll-back goes to a checkpoint the geometry read
    generalised (`GENERALISED`), the newest such at or before the damage (`_before_damage`). Without one there is
    nothing the geometry knows to be better to go back to: `inconclusive` (a new user's digits MLP on 4 % noisy
    labels, test accuracy 0.953 -> 0.940, read roll-back 0.96 to step 50, where it was 0.869 and still fitting).
    (best, advice, note)."""
    last = best if best is not None else len(before) - 1
    target = next((j for j in range(min(last, len(before) - 1), -1, -1) if before[j].phase in GENERALISED), None)
    if target is not None:
        return target, "roll-back", note
    return best, "inconclusive", (f"{note}; no checkpoint before the damage was read generalised "
                                  f"({' or '.join(GENERALISED)}): none the geometry knows to be better to roll back to")


def _seen_too_little(seen: float, first_step: int, min_seen_share: float) -> str:
    """Why a checkpoint of a table that covers less than `min_seen_share` of the log-step axis up to it gets no phase:
    the features place a checkpoint in the part of the run seen (a run seen from its middle reads as one at its
    start: `fitting` at P 0.99 through a new user's grokked run saved from step 250)."""
    return (f"the checkpoints cover {seen:.2f} of the run's log-step axis so far (from step {first_step}), and the "
            f"geometry reads a phase on {min_seen_share:g} or more (min_seen_share): its features place a checkpoint "
            f"in the part of the run seen, and a run seen from its middle looks like one at its start")


def _too_few_measured(evidence, min_groups: int) -> str:
    """Why no checkpoint of a table that measures fewer than `min_groups` groups gets a phase ("" where it measures
    enough): the model was fitted on runs with every group measured, and one group alone is a reading it never saw
    (local complexity falls as a run groks and as it collapses)."""
    if len(evidence) >= min_groups:
        return ""
    names = ", ".join(evidence) or "none"
    return (f"the table measures {len(evidence)} independent metric group{'s' if len(evidence) != 1 else ''} of the "
            f"{len(VOTE_GROUPS)} ({names}), and the geometry reads a phase from {min_groups} or more (min_groups)")


def _odds(phase: str, p_phase: float, advice: str, p_advice: float, confidence: float) -> str:
    """The model's probability of the phase (and of its advice, where other phases share it), and, where the
    calibration moves the advice's, what such readings were worth on families the model was not fitted on (why
    a P of 0.97 can come with a confidence of 0.37)."""
    said = f"P({phase}) {p_phase:.2f}"
    if abs(p_advice - p_phase) > 0.005:
        said += f", P({advice}) {p_advice:.2f}"
    if abs(p_advice - confidence) <= 0.1:
        return said
    return f"{said}; such readings were right {confidence:.0%} of the time on families held out of the fit"


def _before_damage(damage: np.ndarray) -> int:
    """The roll-back target: the checkpoint before the one whose reading raised the probability of collapse
    most, or the one before that when the reading was already rising there (the damage shows in trailing
    trends a checkpoint late)."""
    best = int(np.argmax(damage[1:]))  # index of the checkpoint before the largest rise
    return best - 1 if best > 0 and damage[best] > 0 else best


def _words(evidence, n: int, slope_sigma: float) -> list[str]:
    """What each group present does at every checkpoint, e.g. "local complexity falling, centroid alignment flat"."""
    columns = []
    for group in VOTE_GROUPS:
        ev = evidence.get(group)
        if ev is None:
            continue
        sign = dict(VOTE_GROUPS[group])[ev.metric]
        moving = np.where(ev.z * sign > 0, "rising", "falling")
        state = np.where(np.abs(ev.z) < slope_sigma, "flat", moving)
        columns.append(np.where(ev.present, np.char.add(SERIES_WORDS[ev.metric] + " ", state.astype(str)), ""))
    return [", ".join(part for part in row if part) for row in zip(*columns)] if columns else [""] * n
