"""Judging a run: a results table in, a phase and a verdict for every checkpoint out (numpy and pandas, no torch)."""

from .classifier import classify
from .types import (ADVICE, ADVICE_FOR_PHASE, MODES, PHASES, SCHEMA, PhaseReport, PhaseSegment, PhaseThresholds,
                    StepVerdict)

__all__ = ["ADVICE", "ADVICE_FOR_PHASE", "MODES", "PHASES", "SCHEMA", "PhaseReport", "PhaseSegment",
           "PhaseThresholds", "StepVerdict", "classify"]
