"""The truth of a corpus run, read with hindsight from its truth curve (accuracy on the whole train and test
sets at every saved step): the phase of every checkpoint, the advice that was right there, the onset of
generalisation, and what a verdict must never do on it. The geometry model is fitted to these labels, and
the tests and the evaluation judge both modes against them.

The phases (docs/phases.md, "The corpus"), with FIT = 0.95, SETTLED = 0.05, DROP = 0.05:

- collapse: the run had generalised, and test accuracy is now DROP or more below the best it had since
  then (a run that generalised as it fitted its train set: since its start, so that test accuracy that peaked
  while noisy labels were still being fitted and fell as they were is lost, as `never_loses` counts it); or the
  train set was fitted and train accuracy is now below FIT and DROP below its best (diverged);
- robustness_plateau: not collapse, the run has generalised (or train accuracy settled short of FIT after
  rising), and test accuracy is within SETTLED of the best it will ever reach from here on. Beyond the last
  checkpoint the run is taken to gain again what it gained over its last doubling of steps (capped at the
  train accuracy, or 1): a run cut mid-rise is still generalising at its end. Where the results measure
  robust accuracy (`robust_accuracy` on the test probes), it must be within SETTLED of the best it will reach
  too (delayed robustness is not settled: docs/phases.md, accuracy mode);
- fitting: the train set has not been fitted yet;
- generalisation: fitted (or generalised before), test accuracy has left its memorisation level (ONSET
  above it, and it stays above until its peak) and will still gain more than SETTLED;
- memorisation: the rest: fitted, test accuracy still at its memorisation level.

"Generalised" means test accuracy reached 0.9 x train accuracy, or gained a quarter of the gap between its
memorisation level and train accuracy, or had come most (0.6) of the way up with train accuracy by the fit
(ordinary learning).
"""

from __future__ import annotations

import numpy as np

from grokmon.phasing.series import log_steps

FIT = 0.95
SETTLED = 0.05
DROP = 0.05
NEVER_LOST = 0.03  # a run whose test accuracy never drops more than this below its best "never loses" it
BEST_WITHIN = 0.02  # a roll-back's best step must be within this of the peak test accuracy
ADVICE = {"fitting": "keep-training", "memorisation": "keep-training", "generalisation": "keep-training",
          "robustness_plateau": "stop", "collapse": "roll-back"}


ONSET = 0.02  # test accuracy this far above its memorisation level, for good, has left it
MEMORISED_DECADES = 0.3  # ... after staying at that level this long (a memorisation stage to leave) ...
RISE = 0.1  # ... in a rise that gains this much within MEMORISED_DECADES (a datable, grokking-like departure)


def generalised_flags(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Whether the run has generalised by each checkpoint (latched)."""
    n = len(train)
    out = np.zeros(n, dtype=bool)
    fitted_at = next((i for i in range(n) if train[i] >= FIT), None)
    if fitted_at is None:
        return out
    start = float(np.min(test[: fitted_at + 1]))
    ordinary = test[fitted_at] - start >= 0.6 * (train[fitted_at] - start)
    floor = np.minimum.accumulate(test[fitted_at:])
    for k, i in enumerate(range(fitted_at, n)):
        reached = test[i] >= 0.9 * train[i] or test[i] - floor[k] >= 0.25 * (train[i] - floor[k])
        out[i] = ordinary or reached or (i > 0 and out[i - 1])
    return out


def beyond_end(values: np.ndarray, cap: np.ndarray, steps: np.ndarray) -> float:
    """What `values` would reach if it gained again what it gained over the run's last doubling of steps."""
    earlier = np.flatnonzero(steps <= steps[-1] / 2)
    gain = max(0.0, float(values[-1] - values[earlier[-1]])) if len(earlier) else 0.0
    return min(float(values[-1]) + gain, max(float(cap[-1]), float(values[-1])), 1.0)


def settled(values: np.ndarray, cap: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Whether `values` is within SETTLED of the best it will reach from each checkpoint on (`beyond_end`)."""
    future = np.maximum(np.flip(np.maximum.accumulate(np.flip(values))), beyond_end(values, cap, steps))
    return values >= future - SETTLED


def phases(train: np.ndarray, test: np.ndarray, steps: np.ndarray, robust: np.ndarray | None = None) -> list[str]:
    """The true phase of every checkpoint (see the module docstring); `robust`: the measured robust accuracy
    at every checkpoint, where the results have it."""
    n = len(train)
    train, test, steps = np.asarray(train, float), np.asarray(test, float), np.asarray(steps)
    flat = settled(test, train, steps)
    if robust is not None:
        flat &= settled(np.asarray(robust, float), np.ones(n), steps)
    general = generalised_flags(train, test)
    fitted = np.logical_or.accumulate(train >= FIT)
    future_train = np.maximum(np.flip(np.maximum.accumulate(np.flip(train))), beyond_end(train, np.ones(n), steps))
    best_since_general = np.maximum.accumulate(np.where(general, test, -np.inf))
    at_fit = int(np.argmax(fitted)) if fitted.any() else None
    if at_fit is not None and general[at_fit]:  # generalised as it fitted: its best before the fit counts
        best_since_general = np.maximum(best_since_general, np.where(general, float(np.max(test[: at_fit + 1])),
                                                                     -np.inf))
    best_train = np.maximum.accumulate(np.where(fitted, train, -np.inf))
    onset = rise_index(train, test)
    out = []
    for i in range(n):
        lost = general[i] and test[i] <= best_since_general[i] - DROP
        diverged = fitted[i] and train[i] < FIT and train[i] <= best_train[i] - DROP
        short = (not fitted[i] and train[i] >= future_train[i] - SETTLED and train[i] - train[: i + 1].min() >= 0.1)
        if lost or diverged:
            out.append("collapse")
        elif (general[i] or short) and flat[i]:
            out.append("robustness_plateau")
        elif not fitted[i]:
            out.append("fitting")
        elif general[i] or (onset is not None and i >= onset):
            out.append("generalisation")
        else:
            out.append("memorisation")
    return out


def onset_index(train: np.ndarray, test: np.ndarray, steps: np.ndarray) -> int | None:
    """The onset of generalisation after a memorisation stage: where test accuracy rises (`rise_index`) after
    staying at its memorisation level for MEMORISED_DECADES since the fit, in a rise that gains RISE within
    MEMORISED_DECADES (a grokking-like departure, not a slow creep whose start is a matter of noise); None
    without such a stage."""
    rise = rise_index(train, test)
    if rise is None:
        return None
    x = log_steps(steps)
    test = np.asarray(test, float)
    first = int(np.flatnonzero(np.asarray(train) >= FIT)[0])
    floor = float(np.min(test[first: rise + 1]))
    soon = (x >= x[rise]) & (x <= x[rise] + MEMORISED_DECADES)
    fast = bool(np.any(test[soon] >= floor + RISE))
    return rise if fast and x[rise - 1] - x[first] >= MEMORISED_DECADES else None


def rise_index(train: np.ndarray, test: np.ndarray) -> int | None:
    """Where test accuracy leaves its memorisation level for good: the first fitted checkpoint from which it
    stays ONSET above the level until its peak (None when it rose with train accuracy)."""
    train, test = np.asarray(train, float), np.asarray(test, float)
    fitted = np.flatnonzero(train >= FIT)
    if not len(fitted) or generalised_flags(train, test)[fitted[0]]:
        return None
    first = int(fitted[0])
    peak_at = first + int(np.argmax(test[first:]))
    floor = float(np.min(test[first: peak_at + 1]))
    above = test[first: peak_at + 1] >= floor + ONSET
    if not above[-1] or test[peak_at] - floor < SETTLED:
        return None
    below = np.flatnonzero(~above)
    return first + (int(below[-1]) + 1 if len(below) else 0)


def ambiguous_end(train: np.ndarray, test: np.ndarray) -> bool:
    """A generalised run whose last test accuracy is between NEVER_LOST and DROP below its best: whether it
    lost something is within the noise of the definitions."""
    general = generalised_flags(np.asarray(train, float), np.asarray(test, float))
    if not general[-1]:
        return False
    lost = float(np.max(np.asarray(test)[general])) - float(test[-1])
    return NEVER_LOST < lost < DROP


def never_loses(train: np.ndarray, test: np.ndarray) -> bool:
    """The run never loses test accuracy (more than NEVER_LOST below its best once generalised) nor a fitted
    train set. A run that generalised as it fitted (ordinary learning) counts its best before the fit too: test
    accuracy that peaked at 0.947 while the train set's noisy labels were still being fitted, and settled at 0.76
    once they were, was lost (`phases` calls it a collapse)."""
    train, test = np.asarray(train, float), np.asarray(test, float)
    general = generalised_flags(train, test)
    fitted = np.logical_or.accumulate(train >= FIT)
    best = np.maximum.accumulate(np.where(general, test, -np.inf))
    at_fit = int(np.argmax(fitted)) if fitted.any() else None
    if at_fit is not None and general[at_fit]:  # generalised as it fitted: its best before the fit counts
        best = np.maximum(best, np.where(general, float(np.max(test[: at_fit + 1])), -np.inf))
    best_train = np.maximum.accumulate(np.where(fitted, train, -np.inf))
    lost_test = general & (test < best - NEVER_LOST)
    lost_train = fitted & (train < best_train - NEVER_LOST)
    return not (lost_test.any() or lost_train.any())
