"""One checkpoint's reading in accuracy mode (what accuracy_mode.py gives for it) and the pure parts it is made of:
the calibration map its strength goes through, the median of three that dates the levels the rules compare
against, the checkpoint a window of three stands for as a roll-back target, and how a reason names a line's span."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .series import MIN_TREND_POINTS


@dataclass(frozen=True)
class Reading:
    """What one checkpoint looks like: a phase (None without evidence), the raw strength of the evidence in
    [0, 1] (calibrated later), a note citing it, the best checkpoint so far (roll-back target), whether the train
    set is fitted there (`AccuracyJudge._fits`), what the evidence lacks (types.WANTS; None: nothing the reading can
    name), and whether its strength is that of test accuracy's line stretched past its span (calibrated apart:
    `calibration_key`), and the clause its reason adds where the calibrated confidence falls short of
    `act_confidence` (why the evidence is weak; "" where the note says it already)."""

    phase: str | None
    strength: float
    note: str
    best: int | None
    train_fitted: bool = False
    wants: str | None = None
    stretched: bool = False
    doubt: str = ""


STRETCHED = " (stretched line)"  # the suffix of the calibration maps of readings on a stretched line


def calibration_key(reading: Reading) -> str | None:
    """The calibration map a reading's strength goes through: its phase's, or, where it is that of test accuracy's
    line stretched past its span, the map of such readings (fitted on the corpus runs replayed with sparse saves)."""
    return f"{reading.phase}{STRETCHED}" if reading.stretched else reading.phase


def median3(values: list[float]) -> float:
    """Median of the last three values (of all, when fewer)."""
    last = sorted(values[-3:])
    return last[len(last) // 2] if len(last) != 2 else 0.5 * (last[0] + last[1])


def span_words(width: float, decades: float, threshold: str, line: str) -> tuple[str, str]:
    """How a reason names the span of a line `width` decades wide (0: no line) judged over the last `decades`
    (`threshold`: the field that sets it), and the clause it adds where the span holds fewer than MIN_TREND_POINTS
    checkpoints, so that the line reaches back further, over a stretch where the run may still have moved ("" where
    it does not)."""
    if width <= decades + 1e-9:
        return f"{decades:g} decades", ""
    # MIN_TREND_POINTS saves in the span, its ends included; rounded down, so that saves at it fill the span
    spacing = math.floor(100 * 10 ** (decades / (MIN_TREND_POINTS - 1))) / 100
    shown = f"{width:.2f}" if f"{width:.2f}" != f"{decades:.2f}" else f"{width:.3f}"  # not "0.30" against "0.3"
    return (f"{shown} decades", f"; {line} reaches back to {MIN_TREND_POINTS} checkpoints, as the last "
            f"{decades:g} decades ({threshold}) hold fewer: saves closer than x{spacing:.2f} in step fill them")


def window_target(pool: list[float], seen: list[int]) -> int:
    """The roll-back target the window of the newest three of `pool` (test accuracies, of checkpoints `seen`) stands
    for: its middle checkpoint; its newest where the three rise (saved sparsely, the middle of a rise lags the best);
    its first where the middle is a dip below both neighbours (saved sparsely: 0.66 between 0.98 and 0.92). Of two,
    the first."""
    if len(pool) < 3:
        return seen[-2] if len(pool) == 2 else seen[-1]
    first, middle, last = pool[-3:]
    if first <= middle <= last:
        return seen[-1]
    return seen[-3] if middle < min(first, last) else seen[-2]
