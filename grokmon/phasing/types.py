"""What the phase classifier works with and returns: the phases, the advice, the thresholds, the report."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import ConfigError

PHASES = ("fitting", "memorisation", "generalisation", "robustness_plateau", "collapse")
ADVICE = ("keep-training", "stop", "roll-back", "inconclusive")
MODES = ("auto", "accuracy", "geometry")
SCHEMA = "grokmon.phases/1"
# what a verdict's evidence lacks, where one thing is (StepVerdict.wants; docs/phases.md): an `inconclusive` verdict's
# what would let it act; a verdict that acts on a stretched line, what would make it surer (denser saves):
# more checkpoints at all; the run's start (step 0); checkpoints saved closer together on the log-step axis;
# more independent metric groups
WANTS = ("checkpoints", "start", "denser saves", "metric groups")
ADVICE_FOR_PHASE = {"fitting": "keep-training", "memorisation": "keep-training", "generalisation": "keep-training",
                    "robustness_plateau": "stop", "collapse": "roll-back"}


@dataclass(frozen=True)
class PhaseThresholds:
    """Every threshold of the classifier, named, with its default. docs/phases.md explains each one.

    Both modes:

    - `min_checkpoints` (5): fewer analysed checkpoints than this: advice `inconclusive`.
    - `se_floor_fraction` (0.25): a series' noise is the scatter of its checkpoints about their local trend,
      but at least this fraction of the table's standard error.
    - `slope_sigma` (3.0): significance, in noise units, of a trend or of a difference between checkpoints.
    - `trend_decades` (0.3): trends are judged over the checkpoints of the last this many decades of steps.
    - `min_confidence` (0.5): a verdict less confident than this (calibrated: right this often) is
      `inconclusive`.
    - `act_confidence` (0.7): `stop` and `roll-back`, which a CI job acts on, need at least this confidence;
      below it they are `inconclusive`.
    - `min_points` (32): with fewer probe points per split than this, confidence is scaled by points / this.
    - `min_phase_checkpoints` (2): in the labels of past checkpoints, a run of one phase shorter than this
      between two runs of another phase is absorbed by them.

    Accuracy mode:

    - `fitted_accuracy` (0.95): the median of the last three train accuracies at or above this, or the newest
      risen to it significantly from the one before: the train set is fitted (from then on, until it is lost:
      collapse).
    - `generalised_ratio` (0.9): test accuracy at this fraction of train accuracy counts as generalised.
    - `onset_gain` (0.02): test accuracy has left its memorisation level once it is above it significantly and
      by at least this much (a few probe points changing their answer is not generalisation yet).
    - `min_gain` (0.1): a rise of test accuracy over its memorisation level generalises once it covers this
      fraction of the gap up to train accuracy.
    - `early_generalised` (0.6): test accuracy that came this fraction of the way from its lowest level to
      train accuracy by the time the train set was fitted rose with it (ordinary learning).
    - `collapse_drop` (0.05): losing this much test accuracy from its peak once generalised (or train accuracy
      once fitted), at `collapse_checkpoints` checkpoints in a row and significantly, is collapse.
    - `collapse_checkpoints` (2): a drop must hold at this many checkpoints in a row (a loss spike does not).
    - `plateau_decades` (0.3): `stop` only once test accuracy has been flat over this many decades of steps
      (0.3: while the step count doubled).
    - `plateau_gain` (0.02): flat means gaining (or losing) less than this accuracy over that span.
    - `dip_sigma` (2.0): no `stop` on a checkpoint whose train and test accuracy are together this many of the
      probes' standard errors below the three checkpoints before (test by `plateau_gain` or more): a stop keeps
      the newest model, and a worse one costs more than waiting one checkpoint does, so the evidence asked of a
      dip is less than `slope_sigma` asks of a change.
    - `partial_decades` (0.6): a run that generalised from a memorisation stage but whose test accuracy is still
      below `generalised_ratio` x train accuracy may pause and climb again (slow grokking climbs in steps): its
      plateau must hold this long.
    - `saturated_decades` (0.1): train accuracy within `plateau_gain` of 1 and test accuracy within
      `plateau_gain` of it for this many decades (nothing left to gain) is a plateau after this shorter span
      (checkpoints before the newest despiked; the newest alone short of it reads `inconclusive`).
    - `memorisation_decades` (2.0): memorising for longer than this many decades of steps, past the longest grokking
      delay of the corpus (2.04 decades, p37-wd1-s1), the reason says so: `keep-training` stays the advice, but a
      run without weight decay may never generalise, and the accuracies cannot tell.
    - `unfitted_decades` (1.0): train accuracy that rose, stopped short of `fitted_accuracy` and stayed flat for
      this many decades, with test accuracy risen with it and flat too, has settled without fitting (an early
      stall of training is shorter).
    - `geometry_weight` (0.2): in accuracy mode, where the geometry gives another verdict (at `min_confidence`
      or more), the confidence is multiplied by 1 - this x the geometry's confidence.

    Geometry mode:

    - `min_groups` (2): fewer independent metric groups (complexity, alignment, rank, scale) that move: the
      geometry verdict is `inconclusive`.
    - `max_dissent` (0): a geometry verdict that more than this many of the models fitted without one family
      of the corpus do not share is `inconclusive` (5, the number of families, or more: never).
    - `min_seen_share` (0.5): a geometry verdict at a checkpoint whose table covers less than this share of the
      log-step axis up to it, 1 - log10(1 + first step) / log10(1 + step), is `inconclusive` (the run is seen
      from its middle; a table from step 0 covers all of it; 0: always judged).

    >>> PhaseThresholds().slope_sigma
    3.0
    """

    min_checkpoints: int = 5
    se_floor_fraction: float = 0.25
    slope_sigma: float = 3.0
    trend_decades: float = 0.3
    min_confidence: float = 0.5
    act_confidence: float = 0.7
    min_points: int = 32
    min_phase_checkpoints: int = 2
    fitted_accuracy: float = 0.95
    generalised_ratio: float = 0.9
    onset_gain: float = 0.02
    min_gain: float = 0.1
    early_generalised: float = 0.6
    collapse_drop: float = 0.05
    collapse_checkpoints: int = 2
    plateau_decades: float = 0.3
    plateau_gain: float = 0.02
    dip_sigma: float = 2.0
    partial_decades: float = 0.6
    saturated_decades: float = 0.1
    unfitted_decades: float = 1.0
    memorisation_decades: float = 2.0
    geometry_weight: float = 0.2
    min_groups: int = 2
    max_dissent: int = 0
    min_seen_share: float = 0.5

    def with_overrides(self, overrides: dict[str, str | float]) -> "PhaseThresholds":
        """Return a copy with fields replaced, values coerced to the field type.

        >>> PhaseThresholds().with_overrides({"min_checkpoints": "8"}).min_checkpoints
        8
        """
        names = {f.name for f in dataclasses.fields(self)}
        changes = {}
        for key, value in (overrides or {}).items():
            if key not in names:
                raise ConfigError(
                    f"Expected a phase threshold, one of {', '.join(sorted(names))}, but got {key!r}")
            kind = type(getattr(self, key))
            try:
                if isinstance(value, bool):  # `true` in a manifest is not a number
                    raise ValueError
                number = float(value)
                if not math.isfinite(number) or (kind is int and number != int(number)):
                    raise ValueError
            except (TypeError, ValueError):
                raise ConfigError(
                    f"Expected phase threshold {key} to be a finite {kind.__name__}, but got {value!r}") from None
            low, high, low_open = _RANGES[key]
            if number < low or (low_open and number == low) or number > high:
                bound = f"{'(' if low_open else '['}{low:g}, {high:g}]" if high < math.inf else \
                    f"{'>' if low_open else '>='} {low:g}"
                raise ConfigError(f"Expected phase threshold {key} to be {bound}, but got {value!r}")
            changes[key] = kind(number)
        return dataclasses.replace(self, **changes)


_POSITIVE, _FRACTION, _SHARE = (0.0, math.inf, True), (0.0, 1.0, True), (0.0, 1.0, False)
_RANGES = {  # (lowest, highest, lowest excluded) of each threshold
    "min_checkpoints": (1, math.inf, False), "se_floor_fraction": _POSITIVE, "slope_sigma": _POSITIVE,
    "trend_decades": _POSITIVE, "min_confidence": _SHARE, "act_confidence": _SHARE, "min_points": (1, math.inf, False),
    "min_phase_checkpoints": (1, math.inf, False), "fitted_accuracy": _FRACTION, "generalised_ratio": _FRACTION,
    "onset_gain": _SHARE, "min_gain": _SHARE, "early_generalised": _FRACTION, "collapse_drop": _FRACTION,
    "collapse_checkpoints": (1, math.inf, False), "plateau_decades": _POSITIVE, "plateau_gain": _SHARE,
    "dip_sigma": _POSITIVE,
    "partial_decades": _POSITIVE, "saturated_decades": _POSITIVE, "unfitted_decades": _POSITIVE,
    "memorisation_decades": _POSITIVE,
    "geometry_weight": _SHARE, "min_groups": (1, 4, False), "max_dissent": (0, math.inf, False),
    "min_seen_share": (0.0, 1.0, False),
}


@dataclass(frozen=True)
class PhaseSegment:
    """A run of consecutive checkpoints with the same phase, first and last step inclusive."""

    phase: str
    start_step: int
    end_step: int


@dataclass(frozen=True)
class StepVerdict:
    """The verdict `grokmon phases` gave, or would have given, when `step` was the newest checkpoint."""

    step: int
    phase: str | None
    advice: str
    confidence: float
    reason: str
    wants: str | None = None  # the one of WANTS the evidence lacks, where the reason names one


@dataclass(frozen=True)
class PhaseReport:
    """The phases of a run, the verdict for its last checkpoint, and the verdict at every checkpoint."""

    mode: str                            # "accuracy" | "geometry"
    advice: str                          # one of ADVICE
    reason: str                          # one line citing the evidence (numbers, steps)
    confidence: float                    # 0..1, calibrated: right this often on the corpus
    current_phase: str | None            # phase of the last checkpoint
    segments: tuple[PhaseSegment, ...]
    steps: tuple[tuple[int, str | None], ...]  # (step, phase) for every analysed checkpoint (None: no evidence yet)
    best_step: int | None                # roll-back: the best earlier step; else the best step seen (accuracy
                                         # mode), None (geometry mode)
    history: tuple[StepVerdict, ...] = ()  # the verdict with each checkpoint the newest (causal)
    wants: str | None = None             # what the evidence lacks (one of WANTS), where known

    def counts(self, segment: PhaseSegment) -> tuple[int, int | None]:
        """How many checkpoints a segment spans, and how many of their verdicts were `inconclusive` (a label that
        no verdict acted on rests on weak evidence); None for a report without its history."""
        def within(step: int) -> bool:
            return segment.start_step <= step <= segment.end_step

        weak = sum(within(v.step) and v.advice == "inconclusive" for v in self.history) if self.history else None
        return sum(within(step) for step, _ in self.steps), weak

    def to_dict(self, history: bool = False) -> dict:
        """The `grokmon phases --json` document (JSON-serialisable); `history` adds the verdict at every step."""
        doc = {
            "schema": SCHEMA,
            "mode": self.mode,
            "advice": self.advice,
            "reason": self.reason,
            "confidence": float(self.confidence),
            "current_phase": self.current_phase,
            "segments": [
                {"phase": s.phase, "start_step": int(s.start_step), "end_step": int(s.end_step)} for s in self.segments
            ],
            "steps": [{"step": int(step), "phase": phase} for step, phase in self.steps],
            "best_step": None if self.best_step is None else int(self.best_step),
            "wants": self.wants,
        }
        if history:
            doc["history"] = [{"step": int(v.step), "phase": v.phase, "advice": v.advice,
                               "confidence": float(v.confidence), "reason": v.reason, "wants": v.wants}
                              for v in self.history]
        return doc
