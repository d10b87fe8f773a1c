"""Phase rules with labels: train and test accuracy decide; the geometry is not needed."""

from __future__ import annotations

import math

import numpy as np

from .trends import Trend, running, strength_of


def accuracy_labels(steps: np.ndarray, train: Trend, test: Trend, th):
    """Per checkpoint: phase (None without evidence), a short note, evidence strength in [0, 1]; best index.

    - fitting: train accuracy below `fitted_accuracy`;
    - generalisation: fitted, and test accuracy on a significantly rising piece (or just jumped);
    - collapse: generalised before, and test accuracy has lost `collapse_drop` of its gain since its peak; or
      the train set was fitted and train accuracy has fallen below `fitted_accuracy`, losing `collapse_drop` of
      its gain (the training diverged);
    - robustness_plateau: test accuracy flat after a significant gain over its memorisation level (at least
      `min_gain` of the gap to train accuracy), or at `generalised_ratio` of train accuracy;
    - memorisation: fitted, test accuracy flat (or falling) at its memorisation level.
    """
    n = len(steps)
    labels: list[str | None] = [None] * n
    notes = [""] * n
    strength = np.zeros(n)
    both = train.present & test.present
    level = np.clip(test.level(th.slope_sigma), 0.0, 1.0)  # a fitted piece may overshoot an accuracy's range
    fitted_at = train.value + np.nan_to_num(train.sigma) >= th.fitted_accuracy
    since_fit = both & np.logical_or.accumulate(fitted_at & both)
    at_start = running(np.where(both, level, np.nan), min)  # the lowest test accuracy so far, fit or not
    # memorisation level so far: the lowest test accuracy once the train set is fitted (before: while fitting)
    at_floor = np.where(since_fit, running(np.where(since_fit, level, np.nan), min), at_start)
    # the peak a collapse is measured from: since the fit, unless test accuracy had generalised before it
    peak_ever = running(np.where(both, level, np.nan), max)
    peak_since_fit = np.where(since_fit, running(np.where(since_fit, level, np.nan), max), peak_ever)
    fit = np.clip(test.fit, 0.0, 1.0)
    # the highest test accuracy from each checkpoint on: an onset counts when the rise it starts goes somewhere
    later_peak = np.flip(np.fmax.accumulate(np.flip(np.where(both, level, np.nan))))
    floor = level[at_floor]
    # a difference between two checkpoints is judged against the noise of both
    floor_noise = np.hypot(test.sigma, test.sigma[at_floor])
    train_level = np.clip(train.level(th.slope_sigma), 0.0, 1.0)
    at_train_floor = running(np.where(both, train_level, np.nan), min)
    train_floor = train_level[at_train_floor]
    train_gain = train_level - train_floor
    at_train_peak = running(np.where(both, train_level, np.nan), max)
    train_drop = train_level[at_train_peak] - train_level
    train_lost = since_fit & (train_drop >= th.slope_sigma * np.hypot(train.sigma, train.sigma[at_train_peak])) & (
        train_drop >= th.collapse_drop * (train_level[at_train_peak] - train_floor))
    train_risen = (train_gain >= th.slope_sigma * np.hypot(train.sigma, train.sigma[at_train_floor])) & (
        train_gain >= th.min_gain * (1.0 - train_floor))
    # settled: from here to the end neither accuracy climbs and the train set is never fitted (it stopped short)
    climbing = (train.direction > 0) | (test.direction > 0) | (fitted_at & both)
    settled = ~np.flip(np.logical_or.accumulate(np.flip(climbing)))
    generalised = seen_rise = general_before_fit = False
    best_train = float(np.nanmax(np.where(both, train.value, np.nan))) if both.any() else math.nan
    risen_at_fit = None
    gain_at_peak = 0.0
    for i in np.flatnonzero(both):
        tr, te, se = train.value[i], test.value[i], test.sigma[i]
        at_peak = peak_ever[i] if general_before_fit else peak_since_fit[i]
        peak, peak_noise = level[at_peak], math.hypot(se, test.sigma[at_peak])
        # the reasons quote measured accuracies; the decisions use the fitted levels
        measured_floor, measured_peak = test.value[at_floor[i]], test.value[at_peak]
        gap = max(tr - floor[i], se)
        gain = level[i] - floor[i]
        # once fitted, the train set counts as fitted until it is significantly lost
        fitted = tr + train.sigma[i] >= th.fitted_accuracy or (since_fit[i] and not train_lost[i])
        risen = fitted and ((gain >= th.slope_sigma * floor_noise[i] and gain >= th.min_gain * gap)
                            or te >= th.generalised_ratio * tr)
        if fitted and risen_at_fit is None:
            # test accuracy came `early_generalised` of the way up with train accuracy while the train set was
            # being fitted: ordinary learning, no memorisation stage to wait out
            start = at_start[i]
            learned = level[i] - level[start]
            risen_at_fit = risen or (learned >= th.slope_sigma * math.hypot(se, test.sigma[start])
                                     and learned >= th.early_generalised * (tr - level[start]))
            generalised = generalised or risen_at_fit
        # test accuracy at `generalised_ratio` of train accuracy before the train set is fitted, and most of the
        # way (`early_generalised`) from where it started to the run's best train accuracy: what it loses from
        # here on (while fitting label noise, say) is lost generalisation. Test and train rising together at a
        # low level is not this.
        general_before_fit = general_before_fit or (
            not fitted and since_fit.any() and te >= th.generalised_ratio * tr
            and gain >= th.slope_sigma * floor_noise[i] and gain >= th.early_generalised * (best_train - floor[i]))
        generalised = generalised or risen or general_before_fit
        if generalised:
            gain_at_peak = max(gain_at_peak, peak - floor[i])
        drop = peak - level[i]
        collapsed = generalised and drop >= th.slope_sigma * peak_noise and drop >= th.collapse_drop * gain_at_peak
        rising_z, falling = test.slope_z[i], test.direction[i] < 0
        if collapsed:
            labels[i] = "collapse"
            notes[i] = (f"test accuracy {te:.3f}, down from its peak {measured_peak:.3f} at step {steps[at_peak]} "
                        f"while train is {tr:.3f}")
            strength[i] = min(1.0, drop / (2 * th.slope_sigma * peak_noise))
        elif not fitted and train_lost[i]:
            labels[i] = "collapse"
            notes[i] = (f"train accuracy {tr:.3f}, down from {train.value[at_train_peak[i]]:.3f} at step "
                        f"{steps[at_train_peak[i]]} after the train set was fitted (test {te:.3f}): the training "
                        "diverges")
            strength[i] = min(1.0, train_drop[i] / (2 * th.slope_sigma * np.hypot(train.sigma[i],
                                                                                   train.sigma[at_train_peak[i]])))
        elif not fitted and not (train_risen[i] and settled[i]):
            labels[i] = "fitting"
            train_rising = train.direction[i] > 0
            notes[i] = (f"train accuracy {tr:.3f} < {th.fitted_accuracy}, "
                        + ("climbing" if train_rising else "not climbing significantly"))
            strength[i] = strength_of(train.slope_z[i], th) if train_rising else 0.3
        elif not fitted:
            labels[i] = "robustness_plateau"
            notes[i] = (f"train accuracy flat at {tr:.3f} (< {th.fitted_accuracy}) after rising from "
                        f"{train.value[at_train_floor[i]]:.3f}, test accuracy flat at {te:.3f}: settled without fitting")
            strength[i] = 0.6
        elif test.direction[i] > 0 and max(_piece_rise(test, fit, i), later_peak[i] - floor[i]) >= th.min_gain * gap:
            seen_rise = True
            labels[i] = "generalisation"
            notes[i] = (f"test accuracy rising ({te:.3f}, {test.slope[i]:+.3f} per decade of steps) "
                        f"with train at {tr:.3f}")
            strength[i] = strength_of(rising_z, th) if math.isfinite(rising_z) and abs(rising_z) > 0 else 0.6
        elif risen and not (seen_rise or risen_at_fit or te >= th.generalised_ratio * tr):
            labels[i] = "generalisation"
            notes[i] = f"test accuracy {te:.3f}, up from its memorisation level {measured_floor:.3f}"
            strength[i] = 0.6
        elif risen or generalised:
            labels[i] = "robustness_plateau"
            notes[i] = f"test accuracy flat at {te:.3f} (train {tr:.3f}), up from {measured_floor:.3f}"
            strength[i] = 1.0 - strength_of(rising_z, th) / 2
        else:
            labels[i] = "memorisation"
            notes[i] = (f"train accuracy {tr:.3f}, test accuracy {te:.3f} "
                        + ("falling" if falling else "flat") + f" near its memorisation level {measured_floor:.3f}")
            strength[i] = 1.0 - strength_of(rising_z, th) / 2
    # not a lucky checkpoint from before the fit, unless the run had generalised by then
    candidates = since_fit if since_fit.any() and not general_before_fit else both
    best = int(np.nanargmax(np.where(candidates, test.value, np.nan))) if candidates.any() else None
    return labels, notes, strength, best


def _piece_rise(test: Trend, fit: np.ndarray, i: int) -> float:
    """How much test accuracy gains over the straight piece holding checkpoint i (a jump into it included).
    A significant but tiny rise that goes no further (from below chance back to chance, say) is not
    generalisation."""
    members = np.flatnonzero(test.piece == test.piece[i])
    first = members[0] - 1 if members[0] > 0 and np.isfinite(fit[members[0] - 1]) else members[0]
    return float(fit[members[-1]] - fit[first])
