"""Accuracy mode on runs saved sparsely, on hand-made tables: a line stretched past its span (the reason, what the
verdict wants, the calibration map it goes through), a plateau reached in one jump, and the sparse schedules the
corpus is replayed with. Real runs replayed sparsely: test_phases_corpus.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from corpus.load import Run, every, log_spaced
from grokmon.phasing import PhaseThresholds, classify
from grokmon.phasing.accuracy_mode import STRETCHED, calibration_key
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


def test_a_plateau_weakened_by_robust_accuracy_falling_keeps_its_phases_map():
    """The stretched-line maps are fitted on test accuracy's line alone (the corpus measures no robust accuracy):
    a plateau whose strength is also robust accuracy's, falling, goes through the phase's map."""
    robust = np.array([0.1, 0.3, 0.6, 0.8, 0.85, 0.85, 0.84, 0.83, 0.80, 0.77])
    series = {("accuracy", "train"): (TRAIN, accuracy_se(TRAIN)), ("accuracy", "test"): (TEST, accuracy_se(TEST)),
              ("robust_accuracy", "test"): (robust, accuracy_se(robust))}
    frame = table(STEPS, series)
    reading = accuracy_readings(RunTable(frame, PhaseThresholds().se_floor_fraction), PhaseThresholds())[-1]
    assert reading.phase == "robustness_plateau" and "robust accuracy" in reading.note and "falling" in reading.note
    assert not reading.stretched and reading.wants == "denser saves"
    assert classify(frame).advice != "stop"


def test_a_plateau_reached_in_one_jump_after_memorising_says_up_from_its_memorisation_level():
    """Saved sparsely, test accuracy can jump from the memorisation level to generalised_ratio x train between two
    saves; the plateau's reason then names the level it rose from, as with dense saves (a new user's modular MLP
    said "learned with the train set" after memorising at 0.006 for a decade)."""
    steps = np.array([0, 10, 30, 100, 300, 1000, 3000, 4000, 5000, 6300, 8000, 10000])
    train = np.array([0.1, 0.5, 0.96, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    test = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99])
    report = classify(accuracy_table(steps, train, test))
    assert report.current_phase == "robustness_plateau" and "memorisation" in phases_seen(report)
    assert "up from 0.100" in report.reason and "learned with the train set" not in report.reason
    ordinary = classify(accuracy_table(steps, train, np.minimum(train, 0.99)))
    assert ordinary.current_phase == "robustness_plateau" and "learned with the train set" in ordinary.reason


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


def test_a_run_fitted_between_sparse_saves_that_memorised_first_says_up_from_its_level():
    """Saved every 2000 steps, the train set shows fitted at step 2000 (test 0.68) a save before the median of three
    dates the fit, by when test accuracy is up with it: the run memorised first, and the reason says so (a new
    user's modular MLP read "learned with the train set")."""
    steps = np.array([0, 2000, 4000, 6000, 8000, 10_000, 12_000])
    train = np.array([0.02, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    test = np.array([0.02, 0.68, 0.99, 0.998, 0.999, 1.0, 1.0])
    reason = classify(accuracy_table(steps, train, test)).reason
    assert "up from 0.680" in reason and "learned with the train set" not in reason
    together = classify(accuracy_table(steps, train, np.minimum(train, [0.02, 0.97, 0.99, 0.998, 0.999, 1.0, 1.0])))
    assert "learned with the train set" in together.reason
