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
ADVICE_FOR_PHASE = {"fitting": "keep-training", "memorisation": "keep-training", "generalisation": "keep-training",
                    "robustness_plateau": "stop", "collapse": "roll-back"}


@dataclass(frozen=True)
class PhaseThresholds:
    """Every threshold of the classifier, named, with its default. docs/phases.md explains each one.

    Series (each metric on one split, on the log10(step) axis, judged in units of its noise):

    - `min_checkpoints` (5): fewer analysed checkpoints than this: advice `inconclusive`.
    - `se_floor_fraction` (0.25): a checkpoint's noise is at least this fraction of the series' 90th percentile
      SE (an accuracy of exactly 0 or 1 has SE 0); it grows when neighbouring checkpoints scatter more than
      their SEs allow.
    - `changepoint_penalty` (3.0): ruptures Pelt penalty per change point, times ln(checkpoints), in
      chi-square units: a new straight piece must explain this much squared noise.
    - `min_piece_checkpoints` (3): shortest straight piece (fewer in runs under 12 checkpoints, never under 2).
    - `slope_sigma` (3.0): significance, in noise units, of a piece's slope and of any difference between two
      checkpoints (a gain, a drop, a jump between pieces).
    - `min_relative_change` (0.1): a significant piece also has to move at least this fraction of the series'
      range over the run per decade of steps to count as rising or falling.

    Accuracy mode:

    - `fitted_accuracy` (0.95): train accuracy at or above this (within its noise): the train set is fitted.
    - `generalised_ratio` (0.9): test accuracy at this fraction of train accuracy counts as generalised.
    - `min_gain` (0.1): a significant rise of test accuracy over its memorisation level must also cover this
      fraction of the gap up to train accuracy to count as generalisation (same for train accuracy's rise).
    - `early_generalised` (0.6): test accuracy that has come this fraction of the way from its lowest level to
      train accuracy by the time the train set is fitted rose with it (ordinary learning: flat afterwards is a
      plateau, not memorisation); before the fit, test accuracy at `generalised_ratio` of train accuracy that
      has come this fraction of the way to the run's best train accuracy has generalised already (a run then
      fitting label noise loses it: collapse). Test and train rising together near chance is neither.
    - `collapse_drop` (0.1): after generalising, losing this fraction of the gain (peak minus memorisation level)
      of test accuracy (centroid alignment in geometry mode), significantly, is collapse.

    Geometry mode:

    - `peak_band` (0.25): before local complexity's peak, more than this fraction of its range below the peak is
      fitting; closer is memorisation.
    - `geometry_min_votes` (1.0): net votes of the four groups (complexity, alignment, rank, scale; +1 each
      simplifying, -1 complicating) that make a checkpoint generalising; -2x this after generalisation is collapse.
    - `settle_fraction` (0.5): after generalisation, a series still moves when its slope is at least this
      fraction of its fastest since generalisation began; with at most `geometry_min_votes` groups still moving
      (and no net simplification) the geometry has settled: robustness plateau. Before generalisation, no group
      moving at this fraction of its fastest pace in the run is a settled geometry that cannot tell a converged
      run from a memorising one (no confidence: `inconclusive`).
    - `dead_rank_drop` (0.1): once the geometry has settled, a mean effective rank that falls below 1 and by this
      much is collapse (the Jacobian vanished at some probe points: dead units).
    - `lc_jump` (0.25), `jump_decades` (0.3): once the geometry has settled, local complexity rising by this
      fraction of its level within this many decades of steps is collapse (the function is being rebuilt).

    Verdict:

    - `min_phase_checkpoints` (2): a run of one phase shorter than this between two runs of another phase is
      absorbed by them; generalisation must last this long before a plateau or collapse can follow (geometry).
    - `min_confidence` (0.35): a verdict less confident than this becomes `inconclusive`.
    - `min_points` (32): with fewer probe points per split than this, confidence is scaled by points / this
      (a handful of points makes every mean noisy, however flat it looks).

    >>> PhaseThresholds().slope_sigma
    3.0
    """

    min_checkpoints: int = 5
    se_floor_fraction: float = 0.25
    changepoint_penalty: float = 3.0
    min_piece_checkpoints: int = 3
    slope_sigma: float = 3.0
    min_relative_change: float = 0.1
    fitted_accuracy: float = 0.95
    generalised_ratio: float = 0.9
    min_gain: float = 0.1
    early_generalised: float = 0.6
    collapse_drop: float = 0.1
    peak_band: float = 0.25
    geometry_min_votes: float = 1.0
    settle_fraction: float = 0.5
    dead_rank_drop: float = 0.1
    lc_jump: float = 0.25
    jump_decades: float = 0.3
    min_phase_checkpoints: int = 2
    min_confidence: float = 0.35
    min_points: int = 32

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


_POSITIVE, _FRACTION = (0.0, math.inf, True), (0.0, 1.0, True)
_RANGES = {  # (lowest, highest, lowest excluded) of each threshold
    "min_checkpoints": (1, math.inf, False), "se_floor_fraction": _POSITIVE, "changepoint_penalty": _POSITIVE,
    "min_piece_checkpoints": (2, math.inf, False), "slope_sigma": _POSITIVE,
    "min_relative_change": (0.0, math.inf, False), "fitted_accuracy": _FRACTION, "generalised_ratio": _FRACTION,
    "min_gain": (0.0, 1.0, False), "early_generalised": _FRACTION, "collapse_drop": _FRACTION, "peak_band": (0.0, 1.0, False),
    "geometry_min_votes": (0.0, 4.0, True), "settle_fraction": _FRACTION, "dead_rank_drop": _POSITIVE,
    "lc_jump": _POSITIVE, "jump_decades": _POSITIVE, "min_phase_checkpoints": (1, math.inf, False),
    "min_confidence": (0.0, 1.0, False), "min_points": (1, math.inf, False),
}


@dataclass(frozen=True)
class PhaseSegment:
    """A run of consecutive checkpoints with the same phase, first and last step inclusive."""

    phase: str
    start_step: int
    end_step: int


@dataclass(frozen=True)
class StepVerdict:
    """The verdict the CI recipe would have given at one checkpoint, judged from it and the earlier ones."""

    step: int
    phase: str | None
    advice: str
    confidence: float
    reason: str


@dataclass(frozen=True)
class PhaseReport:
    """The phases of a run and the verdict for its last checkpoint."""

    mode: str                            # "accuracy" | "geometry"
    advice: str                          # one of ADVICE
    reason: str                          # one line citing the evidence (numbers, steps)
    confidence: float                    # 0..1
    current_phase: str | None            # phase of the last checkpoint
    segments: tuple[PhaseSegment, ...]
    steps: tuple[tuple[int, str], ...]   # (step, phase) for every analysed checkpoint, in step order
    best_step: int | None                # roll-back: the best earlier step; else the best step seen
    history: tuple[StepVerdict, ...] = ()  # the verdict at every checkpoint, in step order (empty: not computed)

    def to_dict(self) -> dict:
        """The `grokmon phases --json` document (JSON-serialisable)."""
        return {
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
        }
