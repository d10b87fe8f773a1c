"""What a verdict must never do on a corpus run, checked against its truth (the tests and the evaluation
share these): every check returns the violations it found, as lines naming the step."""

from __future__ import annotations

import numpy as np

from . import truth
from .load import Run

WITHIN_FINAL = 0.05  # no stop before test accuracy is within this of its final level (runs that end generalised)
GEOMETRY_ONSET_FACTOR = 2.0


def ends_generalised(run: Run) -> bool:
    return run.phases[-1] in ("generalisation", "robustness_plateau")


def early_stops(run: Run, history) -> list[str]:
    """`stop` before test accuracy is within WITHIN_FINAL of its final level (runs that end generalised), or
    while the run memorises."""
    out = []
    for i, v in enumerate(history):
        if v.advice != "stop":
            continue
        if ends_generalised(run) and run.test[i] < run.test[-1] - WITHIN_FINAL:
            out.append(f"stop at step {v.step}: test accuracy {run.test[i]:.3f}, final {run.test[-1]:.3f}")
        elif run.phases[i] == "memorisation":
            out.append(f"stop at step {v.step} while memorising")
    return out


def false_roll_backs(run: Run, history) -> list[str]:
    """`roll-back` on a run that never loses test accuracy."""
    if not run.never_loses:
        return []
    return [f"roll-back at step {v.step} on a run that never loses test accuracy" for v in history
            if v.advice == "roll-back"]


def memorisation_advice(run: Run, history) -> list[str]:
    """Through memorisation only `keep-training` or `inconclusive`."""
    return [f"{v.advice} at step {v.step} while memorising" for v, phase in zip(history, run.phases)
            if phase == "memorisation" and v.advice not in ("keep-training", "inconclusive")]


def final_verdict(run: Run, report, mode: str) -> list[str]:
    """The right verdict at the end (geometry mode may say `inconclusive` instead). A run that ends between
    NEVER_LOST and DROP below its best has no single right verdict: stop, roll-back or inconclusive."""
    right = run.advice[-1]
    accepted = {right} | ({"inconclusive"} if mode == "geometry" else set())
    if truth.ambiguous_end(run.train, run.test):
        accepted |= {"stop", "roll-back", "inconclusive"}
    if report.advice in accepted:
        return []
    return [f"final verdict {report.advice} ({report.reason}), truth {right}"]


def best_step(run: Run, report) -> list[str]:
    """A roll-back's best step at a checkpoint whose test accuracy is within BEST_WITHIN of the peak."""
    if report.advice != "roll-back" or report.best_step is None:
        return []
    i = int(np.searchsorted(run.steps, report.best_step))
    peak = float(np.max(run.test[: len(report.history)]))
    if run.test[i] >= peak - truth.BEST_WITHIN:
        return []
    return [f"best step {report.best_step}: test accuracy {run.test[i]:.3f}, peak {peak:.3f}"]


def onset(run: Run, report, mode: str) -> list[str]:
    """Generalisation labelled from within one saved checkpoint of its true onset (accuracy mode), or within a
    factor GEOMETRY_ONSET_FACTOR in step (geometry mode)."""
    if run.onset is None:
        return []
    truth_step = int(run.steps[run.onset])
    first = next((s for s, p in report.steps if p == "generalisation"), None)
    if first is None:
        return [f"no generalisation labelled; it starts at step {truth_step}"]
    if mode == "accuracy":
        gap = abs(int(np.searchsorted(run.steps, first)) - run.onset)
        return [] if gap <= 1 else [f"generalisation labelled from step {first}, truth {truth_step} ({gap} checkpoints)"]
    ratio = first / truth_step
    if 1 / GEOMETRY_ONSET_FACTOR <= ratio <= GEOMETRY_ONSET_FACTOR:
        return []
    return [f"generalisation labelled from step {first}, truth {truth_step} (x{ratio:.2f})"]


def all_checks(run: Run, report, mode: str) -> list[str]:
    """Every check on the verdicts of every prefix (the report's history) and on the full run's report."""
    history = report.history
    return (early_stops(run, history) + false_roll_backs(run, history) + memorisation_advice(run, history)
            + final_verdict(run, report, mode) + best_step(run, report) + onset(run, report, mode))
