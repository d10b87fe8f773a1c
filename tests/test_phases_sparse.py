"""Accuracy mode on runs saved sparsely, on hand-made tables: a line stretched past its span (the reason, what the
verdict wants, the calibration map it goes through), a plateau reached in one jump, and the sparse schedules the
corpus is replayed with. Real runs replayed sparsely: test_phases_corpus.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from corpus.load import Run, every, log_spaced
from grokmon.phasing import PhaseThresholds, classify
from grokmon.phasing.accuracy_reading import STRETCHED, calibration_key
from grokmon.phasing.classifier import accuracy_readings
from grokmon.phasing.model import Calibration, shipped
from grokmon.phasing.table import RunTable
from test_phases import accuracy_se, accuracy_table, phases_seen, table

# a fit by step 100, test accuracy up with it and flat; saved ever more sparsely: the last 0.3 decades hold one
STEPS = np.array([0, 10, 30, 100, 300, 1000, 2000, 4000, 10_000, 30_000])
TRAIN = np.array([0.1, 0.5, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
TEST = np.array([0.1, 0.45, 0.8, 0.93, 0.95, 0.95, 0.951, 0.95, 0.952, 0.951])


def test_a_line_stretched_past_its_span_is_named_wanted_denser_and_calibrated_apart():
    frame = accuracy_table(STEPS, TRAIN, TEST)
    report = classify(frame)
    last = report.history[-1]
    assert "; test accuracy's line reaches back to 3 checkpoints, as the last 0.3 decades (plateau_decades) hold fewer: " \
           "saves closer than x1.41 in step fill them" in last.reason
    assert "over the last 0.87 decades" in last.reason  # the span the line judged: from step 4,000
    assert report.wants == "denser saves"  # whether it acts or not
    reading = accuracy_readings(RunTable(frame, PhaseThresholds().se_floor_fraction), PhaseThresholds())[-1]
    assert reading.stretched and calibration_key(reading) == f"{reading.phase}{STRETCHED}"
    wider = classify(frame, PhaseThresholds(plateau_decades=0.6)).history[-1].reason
    assert "as the last 0.6 decades (plateau_decades) hold fewer: saves closer than x1.99 in step" in wider
    dense_steps = np.unique(np.round(np.geomspace(1, 30_000, 60)).astype(int))
    dense = classify(accuracy_table(dense_steps, np.interp(dense_steps, STEPS, TRAIN), np.interp(dense_steps, STEPS, TEST)))
    assert dense.advice == "stop" and dense.wants is None and "reaches back" not in dense.reason


def test_a_model_file_without_the_stretched_line_maps_calibrates_with_the_phases_map():
    frame = accuracy_table(STEPS, TRAIN, TEST)
    fitted = shipped()
    plain = replace(fitted, accuracy=Calibration({k: v for k, v in fitted.accuracy.maps.items() if STRETCHED not in k}))
    reading = accuracy_readings(RunTable(frame, PhaseThresholds().se_floor_fraction), PhaseThresholds())[-1]
    said = classify(frame, fitted=plain).history[-1]
    assert said.confidence == pytest.approx(round(plain.accuracy(reading.phase, reading.strength), 2))
    assert said.confidence != pytest.approx(round(reading.strength, 2))  # not the raw strength


def test_a_plateau_with_robust_accuracy_falling_is_test_accuracys_line_alone():
    """Robust accuracy falling on a plateau is no gain to wait for: the strength is test accuracy's line's alone, so
    on a stretched line it goes through the stretched-line map like any plateau of that line."""
    robust = np.array([0.1, 0.3, 0.6, 0.8, 0.85, 0.85, 0.84, 0.83, 0.80, 0.77])
    series = {("accuracy", "train"): (TRAIN, accuracy_se(TRAIN)), ("accuracy", "test"): (TEST, accuracy_se(TEST)),
              ("robust_accuracy", "test"): (robust, accuracy_se(robust))}
    frame = table(STEPS, series)
    th = PhaseThresholds()
    reading = accuracy_readings(RunTable(frame, th.se_floor_fraction), th)[-1]
    alone = accuracy_readings(RunTable(table(STEPS, {k: v for k, v in series.items() if k[0] == "accuracy"}),
                                       th.se_floor_fraction), th)[-1]
    assert reading.phase == "robustness_plateau" and "robust accuracy" in reading.note and "falling" in reading.note
    assert reading.stretched and reading.wants == "denser saves" and reading.strength == alone.strength


def test_a_plateau_reached_in_one_jump_after_memorising_says_up_from_its_memorisation_level():
    """Saved sparsely, test accuracy can jump from the memorisation level to generalised_ratio x train between two
    saves; the plateau's reason then names the level it rose from, as with dense saves (a new user's modular MLP
    said "learned with the train set" after memorising at 0.006 for a decade)."""
    steps = np.array([0, 10, 30, 100, 300, 1000, 3000, 4000, 5000, 6300, 8000, 10000])
    train = np.array([0.1, 0.5, 0.96, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    test = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99])
    report = classify(accuracy_table(steps, train, test))
    assert report.current_phase == "robustness_plateau" and "memorisation" in phases_seen(report)
    assert "up from 0.100" in report.reason and "learned as the train set was fitted" not in report.reason
    ordinary = classify(accuracy_table(steps, train, np.minimum(train, 0.99)))
    assert ordinary.current_phase == "robustness_plateau" and "learned as the train set was fitted" in ordinary.reason


def _run(steps) -> Run:
    steps = np.asarray(steps)
    values = np.linspace(0.1, 1.0, len(steps))
    return Run("r", "f", "plain", accuracy_table(steps, values, values), steps, values, values)


def test_the_sparse_schedules_keep_the_ends_and_at_most_the_count_asked():
    run = _run(np.unique(np.round(np.geomspace(1, 10_000, 50)).astype(int)))
    last = len(run.steps) - 1
    assert every(run, 4)[:3] == [0, 4, 8] and every(run, 4)[-1] == last
    kept = sorted(set(log_spaced(run, 12)))
    assert kept[0] == 0 and kept[-1] == last and 8 <= len(kept) <= 12
    steps = run.steps[kept]
    assert np.all(np.diff(np.log10(steps[1:])) > 0.15)  # spread along the log-step axis
    short = _run([0, 5])
    assert log_spaced(short, 12) == [0, 1] and len(short.subset(log_spaced(short, 12)).steps) == 2
    thinned = run.subset(every(run, 4))
    assert list(thinned.steps) == list(run.steps[sorted(set(every(run, 4)))])
    assert set(thinned.table["step"]) == set(thinned.steps.tolist())


def test_a_significant_jump_to_a_fitted_train_set_dates_the_fit_at_that_save():
    """Saved every 2000 steps, the train set shows fitted at step 2000 (train 0.02 -> 1.000): the fit is there, not
    a save later where the median of three catches up (a new user's run read `fitting` at train 1.000), so the run
    memorised first at test 0.30 and the reason says so. A train accuracy that creeps over `fitted_accuracy` by less
    than its noise still waits for the median."""
    steps = np.array([0, 2000, 4000, 6000, 8000, 10_000, 12_000])
    train = np.array([0.02, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    test = np.array([0.02, 0.30, 0.99, 0.998, 0.999, 1.0, 1.0])
    report = classify(accuracy_table(steps, train, test))
    assert report.history[1].phase == "memorisation" and "at its memorisation level 0.300" in report.history[1].reason
    assert "up from 0.300" in report.reason and "learned as the train set was fitted" not in report.reason
    # 0.68 at the fit is 0.67 of the way up with train (early_generalised 0.6): learned with it
    along = classify(accuracy_table(steps, train, np.array([0.02, 0.68, 0.99, 0.998, 0.999, 1.0, 1.0])))
    assert "learned as the train set was fitted" in along.reason
    creep = np.array([0.02, 0.5, 0.9, 0.94, 0.955, 0.945, 0.96, 0.97, 0.97, 0.97])
    steps = np.geomspace(100, 10_000, len(creep)).astype(int)
    crept = classify(accuracy_table(steps, creep, creep - 0.5))
    assert crept.history[4].phase == "fitting" and crept.history[6].phase != "fitting"


def test_nothing_left_to_gain_stops_only_once_that_has_held_for_saturated_decades():
    # a new user's transformer saved every 200 steps: test 0.976 at 1,200, then 1.000; 1,400 -> 1,600 is 0.06 decades
    steps = np.arange(0, 3001, 200)
    train = np.where(steps >= 200, 1.0, 0.3)
    test = np.interp(steps, [0, 800, 1000, 1200, 1400, 3000], [0.01, 0.01, 0.60, 0.976, 1.0, 1.0])
    report = classify(accuracy_table(steps, train, test))
    first = next(v for v in report.history if v.advice == "stop")
    assert first.step == 1800 and "over the last 0.1 decades, within 0.02 of train" in first.reason
    assert np.log10(first.step / 1400) >= PhaseThresholds().saturated_decades  # 1,400: the first within 0.02
