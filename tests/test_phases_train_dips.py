"""Accuracy mode where train accuracy falls after the fit: a divergence (roll back) unless test accuracy is climbing
to its best so far, as when strong weight decay trades some of the fit for generalisation while a run groks."""

from __future__ import annotations

import numpy as np

from grokmon.phasing import classify

from test_phases import accuracy_table

STEPS = np.unique(np.geomspace(10, 4000, 30).astype(int))


def _train_dips(test_after_fit: np.ndarray):
    train = np.clip(0.1 + 0.9 * (STEPS / 200), 0, 1.0)
    train = np.where(STEPS >= 600, 0.92, train)  # fitted by 200, then 0.08 of it lost
    test = np.where(STEPS < 200, 0.02 + 0.03 * STEPS / 200, test_after_fit)
    return classify(accuracy_table(STEPS, train, test))


def test_a_train_dip_while_test_accuracy_climbs_to_its_best_is_not_a_divergence():
    # a transformer with weight decay 3 in the corpus (p47-wd3-s2) rolled back at train 0.922 and test 0.25, rising
    climbing = _train_dips(np.clip(0.05 + 0.6 * np.log10(STEPS / 200 + 1e-9).clip(0), 0, 0.9))
    assert not [v.step for v in climbing.history if v.advice == "roll-back"]


def test_a_train_dip_while_test_accuracy_falls_is_still_a_divergence():
    falling = _train_dips(np.where(STEPS >= 600, 0.5, 0.9))
    assert falling.advice == "roll-back" and "the training diverged" in falling.reason
