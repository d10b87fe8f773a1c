"""Phases and advice on hand-made results tables (log-spaced steps, realistic standard errors): the rules of
each mode, causality, the thresholds, the report's JSON, input checks. Real runs: test_phases_corpus.py."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from grokmon.errors import ConfigError, ResultsError
from grokmon.phasing import ADVICE, PHASES, PhaseReport, PhaseSegment, PhaseThresholds, StepVerdict, classify

STEPS = np.unique(np.round(np.geomspace(1, 100_000, 36)).astype(int))
N_POINTS = 512


def sigmoid(steps, centre_decade, width=0.15):
    """0 -> 1 in log10(step), centred at 10**centre_decade."""
    return 1.0 / (1.0 + np.exp(-(np.log10(np.maximum(steps, 1)) - centre_decade) / width))


def accuracy_se(p, n=N_POINTS):
    return np.sqrt(np.clip(p * (1 - p), 0, None) / n)


def table(steps, series: dict, status=None, points=N_POINTS) -> pd.DataFrame:
    """Rows of a grokmon results table. `series[(metric, split)] = (values, ses)`; missing metrics absent."""
    rows = []
    for i, step in enumerate(steps):
        for split in ("train", "test", "random"):
            row = {"step": int(step), "checkpoint": f"step_{step:06d}.safetensors", "split": split,
                   "n_points": points, "seconds": 0.5, "status": "ok", "error": None}
            for (metric, where), (values, ses) in series.items():
                if where == split:
                    row[metric], row[f"{metric}_se"] = float(values[i]), float(ses[i])
            if status is not None and status[i] != "ok":
                row.update({"status": "error", "error": "boom"})
                for (metric, where) in series:
                    row[metric] = row[f"{metric}_se"] = None
            rows.append(row)
    return pd.DataFrame(rows)


def accuracy_series(train, test) -> dict:
    return {("accuracy", "train"): (train, accuracy_se(train)), ("accuracy", "test"): (test, accuracy_se(test))}


def accuracy_table(steps, train, test, **kwargs) -> pd.DataFrame:
    return table(steps, accuracy_series(train, test), **kwargs)


def grokking(steps, fit_at=2.2, grok_at=3.6):
    train = 0.02 + 0.98 * sigmoid(steps, fit_at)
    test = 0.02 + 0.97 * sigmoid(steps, grok_at, 0.12)
    return train, test


def phases_seen(report: PhaseReport) -> list[str]:
    return [seg.phase for seg in report.segments]


def first_step(report: PhaseReport, phase: str) -> int:
    return next(step for step, p in report.steps if p == phase)


def advice_at(report: PhaseReport) -> dict[int, str]:
    return {v.step: v.advice for v in report.history}


# ---------------------------------------------------------------- accuracy mode


@pytest.mark.parametrize(("last_step", "phase", "advice"), [
    (160, "fitting", "keep-training"), (1000, "memorisation", "keep-training"),
    (3000, "generalisation", "keep-training"), (100_000, "robustness_plateau", "stop"),
])
def test_accuracy_run_ending_in_each_phase(last_step, phase, advice):
    steps = STEPS[STEPS <= last_step]
    report = classify(accuracy_table(steps, *grokking(steps)))
    assert (report.mode, report.current_phase, report.advice) == ("accuracy", phase, advice), report.reason
    assert 0.5 <= report.confidence <= 1.0
    assert [p for p in PHASES if p in phases_seen(report)] == phases_seen(report)  # in order, none repeated
    assert report.steps[-1] == (int(steps[-1]), phase)


def test_onset_within_one_checkpoint_and_stop_only_after_the_plateau_held():
    train, test = grokking(STEPS)
    report = classify(accuracy_table(STEPS, train, test))
    assert phases_seen(report) == ["fitting", "memorisation", "generalisation", "robustness_plateau"]
    floor = test[train > 0.95].min()
    leaves = int(np.flatnonzero((test - floor >= 0.01) & (train > 0.95))[0])
    assert abs(list(STEPS).index(first_step(report, "generalisation")) - leaves) <= 1
    first_stop = next(v.step for v in report.history if v.advice == "stop")
    th = PhaseThresholds()
    # test accuracy gained less than plateau_gain over the plateau_decades before the first stop
    held = STEPS[(np.log10(STEPS + 1) >= np.log10(first_stop + 1) - th.plateau_decades) & (STEPS <= first_stop)]
    assert np.ptp(test[np.isin(STEPS, held)]) < th.plateau_gain
    assert test[list(STEPS).index(first_stop)] >= test[-1] - 0.05


def test_collapse_rolls_back_to_the_peak():
    steps = STEPS[STEPS <= 60_000]
    train, test = grokking(steps)
    test = test - 0.39 * sigmoid(steps, 4.35, 0.1)  # rises to ~0.99, then falls to ~0.6 while train stays at 1
    report = classify(accuracy_table(steps, train, test))
    assert (report.current_phase, report.advice) == ("collapse", "roll-back")
    assert test[list(steps).index(report.best_step)] >= test.max() - 0.02
    assert f"best step {report.best_step}" in report.reason and "test accuracy" in report.reason


def test_a_roll_back_never_targets_a_dip_between_sparse_saves():
    """Saved sparsely, the best three in a row can have a dip in the middle (a loss spike caught by one save):
    the target is the checkpoint before it, not the dip."""
    steps = np.array([1, 4, 8, 16, 30, 57, 80, 133, 252, 477, 903, 1520, 1600, 2420, 2940, 3234, 3660, 4000])
    train = np.array([.05, .07, .14, .25, .52, .61, .85, .91, .96, .98, 1.0, .67, .95, .84, .69, .67, .58, .56])
    test = np.array([.08, .07, .12, .22, .45, .59, .85, .92, .95, .96, .97, .66, .93, .79, .66, .66, .57, .57])
    report = classify(accuracy_table(steps, train, test))
    assert report.advice == "roll-back"
    assert test[list(steps).index(report.best_step)] >= test.max() - 0.02, report.best_step


def test_training_that_diverges_after_the_fit_is_collapse():
    steps = STEPS[STEPS <= 60_000]
    train, test = grokking(steps)
    fall = sigmoid(steps, 4.35, 0.1)
    report = classify(accuracy_table(steps, train - 0.5 * fall, test - 0.09 * fall))
    assert (report.current_phase, report.advice) == ("collapse", "roll-back"), report.reason
    assert "the training diverged" in report.reason


def test_a_loss_spike_is_not_a_collapse_nor_a_memorisation_level():
    steps = STEPS[STEPS <= 60_000]
    train, test = grokking(steps)
    spike = np.zeros(len(steps))
    spike[[8, 30]] = 0.5  # one checkpoint in memorisation, one on the plateau, lose half their accuracy
    report = classify(accuracy_table(steps, train * (1 - spike), test * (1 - spike)))
    assert "collapse" not in {v.phase for v in report.history}
    assert report.advice == "stop"
    smooth = classify(accuracy_table(steps, train, test))
    assert first_step(report, "generalisation") == first_step(smooth, "generalisation")


def test_probe_noise_around_a_flat_memorisation_level_is_neither_generalisation_nor_collapse():
    rng = np.random.default_rng(3)
    steps = STEPS[STEPS >= 300]
    test = 0.3 + rng.normal(0, 0.04, len(steps))
    assert (np.diff(test) > 0).any() and (np.diff(test) < 0).any()
    frame = table(steps, {("accuracy", "train"): (np.ones(len(steps)), np.zeros(len(steps))),
                          ("accuracy", "test"): (test, np.full(len(steps), 0.05))})
    report = classify(frame)
    assert not {v.phase for v in report.history} & {"collapse", "robustness_plateau"}
    assert set(advice_at(report).values()) <= {"keep-training", "inconclusive"}


def test_a_tiny_climb_from_below_chance_is_not_generalisation():
    steps = STEPS[STEPS <= 3_000]
    train = np.clip(sigmoid(steps, 1.3, 0.2) * 1.02, 0, 1)
    test = 0.006 * sigmoid(steps, 2.8, 0.15)  # memorised at 0, three probe points come back
    report = classify(accuracy_table(steps, train, test))
    assert phases_seen(report) == ["fitting", "memorisation"] and report.advice == "keep-training"


def test_a_step_in_train_accuracy_before_the_fit_is_not_read_as_a_climb_going_on():
    # linear saves; train settles at 0.80, an LR drop at step 2,600 lifts it to 0.89, flat after (a new user's run
    # read "climbing" for 1,400 steps at 0.887-0.891)
    steps = np.arange(0, 4_001, 100)
    noise = np.random.default_rng(0).normal(0, 0.002, len(steps))
    train = np.where(steps < 2_600, 0.1 + 0.7 * (1 - np.exp(-steps / 300)), 0.89) + noise
    history = {v.step: v for v in classify(accuracy_table(steps, train, train - 0.05)).history}
    assert history[2_600].reason.endswith("), climbing")  # the jump itself is a climb
    for step in range(2_800, 4_001, 100):
        assert history[step].phase == "fitting"
        assert ", though the checkpoints since step 2600" in history[step].reason
        assert "the climb is older than they are" in history[step].reason


def test_test_accuracy_that_rose_with_train_and_stays_flat_is_a_plateau():
    steps = STEPS[STEPS <= 20_000]
    train, test = 0.1 + 0.89 * sigmoid(steps, 2.5), 0.1 + 0.72 * sigmoid(steps, 2.5)  # no memorisation stage
    report = classify(accuracy_table(steps, train, test))
    assert report.advice == "stop", report.reason
    assert "memorisation" not in phases_seen(report)


def robust_series(steps, delayed: bool) -> dict:
    train, test = grokking(steps, grok_at=3.0)
    robust = 0.1 + 0.8 * sigmoid(steps, 4.4 if delayed else 3.2, 0.15)
    series = accuracy_series(train, test)
    series[("robust_accuracy", "test")] = (robust, accuracy_se(robust))
    return series


@pytest.mark.parametrize("delayed", [True, False])
def test_robust_accuracy_still_rising_after_test_settled_is_delayed_robustness(delayed):
    steps = STEPS[STEPS <= 20_000]
    series = robust_series(steps, delayed)
    report = classify(table(steps, series))
    without = classify(table(steps, {k: v for k, v in series.items() if k[0] != "robust_accuracy"}))
    assert without.advice == "stop"
    if delayed:
        assert (report.current_phase, report.advice) == ("generalisation", "keep-training")
        assert "delayed robustness: robust accuracy" in report.reason
    else:
        assert report.advice == "stop" and "delayed robustness" not in report.reason


def test_robust_accuracy_that_turned_within_its_span_is_neither_still_rising_nor_done():
    # a new user's a-b mod 61 MLP, saved every 200 steps: test accuracy at 0.99 from step 5,000; robust accuracy rose
    # 0.11 -> 0.75 to step 6,200, fell to 0.30 by step 7,000 and climbed back to 0.70. Its 0.3-decade line still rose
    # through the fall ("still rising", keep-training at 0.295) and fell through the climb back ("no robustness to
    # gain by training on", stop at 0.43-0.65), then was flat ("stop" at 0.69-0.70, still climbing)
    steps = np.arange(0, 10_001, 200)
    train = np.where(steps < 600, 0.3, 1.0)
    test = np.clip(0.02 + (steps - 2_000) / 3_000, 0.02, 0.99)
    robust = np.interp(steps, [0, 3_400, 6_200, 7_000, 7_200, 10_000], [0.1, 0.11, 0.75, 0.3, 0.3, 0.70])
    series = accuracy_series(train, test)
    series[("robust_accuracy", "test")] = (robust, accuracy_se(robust))
    said = {v.step: v for v in classify(table(steps, series)).history}
    for step in (6_800, 7_000, 8_200, 9_000, 10_000):
        v = said[step]
        assert v.advice == "inconclusive" and v.wants == "checkpoints", v
        assert "it has turned since" in v.reason, v.reason
        assert "still rising" not in v.reason and "no robustness to gain" not in v.reason, v.reason
    assert "its high in that span" in said[7_000].reason and "its low in that span" in said[9_000].reason
    assert "its trend line is flat" in said[10_000].reason  # climbing back, not yet at 0.75, through a flat line


def test_a_run_grokked_to_its_ceiling_is_not_unsettled_by_one_checkpoint_short_of_it():
    # a grokking transformer's shape (a new user's, 512 probes): fitted early, test 0 -> 1 in two saves at step
    # 4,000, then at 0.99-1.00 but for 0.971 at one checkpoint and a spike to 0.80 at another. It read `stop`, then
    # `keep-training` "rising" from the 0.971 on: its 0.3-decade line still went through the grok
    steps = np.arange(0, 8_001, 250)
    train = np.where(steps < 250, 0.3, 1.0)
    test = np.where(steps < 3_750, 0.01, np.where(steps < 4_000, 0.58, 0.997))
    test[steps == 6_500], test[steps == 7_250] = 0.971, 0.804
    history = classify(accuracy_table(steps, train, test)).history
    said = {v.step: v for v in history if v.step >= 5_500}
    assert said[5_500].advice == "stop", said[5_500].reason
    assert all(v.advice == "stop" for step, v in said.items() if step not in (6_500, 7_250)), \
        [(step, v.advice, v.reason) for step, v in said.items() if v.advice != "stop"]
    assert said[7_250].advice == "inconclusive" and "a spike, or the start of a collapse" in said[7_250].reason
    assert said[6_500].advice == "inconclusive" and said[6_500].phase == "robustness_plateau"
    assert ("test accuracy 0.971 is more than 0.02 below train (1.000) at this checkpoint only, after 0.1 decades "
            "within 0.02 of train (nothing left to gain): a dip, or the start of a fall") in said[6_500].reason


def test_a_robust_creep_within_the_noise_of_plateau_gain_leaves_a_plateau_standing():
    """A new user's a+b mod 47 MLP (256 probe points, saved every 300 steps): test accuracy 1.000 from step 8,700,
    robust accuracy 0.91-0.93 from step 5,700. The plateau was read from step 9,000; at 10,800 robust accuracy's
    line over the span rose +0.021 ± 0.006, and the run went back to "delayed robustness", `inconclusive`, to the
    end: a CI job's `watch --until stop` started after step 10,500 never stopped. A plateau already read stands
    until such a rise is beyond `plateau_gain` by `slope_sigma` standard errors; a rise that is still unsettles it."""
    steps = np.arange(0, 12_001, 300)
    train = np.r_[0.023, np.ones(40)]
    test = np.r_[0.039, 0.0, 0.004, 0.121, 0.543, 0.879, 0.938, 0.961, 0.965, 0.965, 0.965, 0.961, 0.957, 0.969, 0.969,
                 0.973, 0.977, 0.984, 0.992, 0.996, 0.996, 0.996, 0.992, 0.992, 0.992, 0.992, 0.992, 0.992, 0.996, 1.0,
                 1.0, 0.996, 0.996, 0.996, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.996]
    robust = np.r_[0.023, 0.0, 0.0, 0.012, 0.188, 0.492, 0.695, 0.766, 0.805, 0.84, 0.84, 0.844, 0.859, 0.863, 0.875,
                   0.879, 0.902, 0.902, 0.914, 0.914, 0.91, 0.902, 0.902, 0.91, 0.91, 0.918, 0.922, 0.918, 0.922, 0.922,
                   0.91, 0.918, 0.914, 0.926, 0.93, 0.93, 0.926, 0.922, 0.922, 0.926, 0.93]
    series = accuracy_series(train, test)
    series[("robust_accuracy", "test")] = (robust, accuracy_se(robust, 256))
    history = classify(table(steps, series, points=256)).history
    first = next(v for v in history if v.advice == "stop")
    assert first.step == 9000, first
    assert all(v.advice == "stop" for v in history if v.step >= first.step), [v.step for v in history
                                                                               if v.step > first.step and v.advice != "stop"]
    assert "creeping up" in history[-1].reason and "the plateau stands" in history[-1].reason
    # the same run with robust accuracy climbing on after the plateau was read: delayed robustness
    later = steps > 9_000
    climbing = np.where(later, np.minimum(robust + 2.5 * np.log10(np.maximum(steps, 1) / 9_000), 0.99), robust)
    series[("robust_accuracy", "test")] = (climbing, accuracy_se(climbing, 256))
    last = classify(table(steps, series, points=256)).history[-1]
    assert (last.phase, last.advice) == ("generalisation", "keep-training") and "delayed robustness" in last.reason


def test_a_stop_on_a_checkpoint_well_below_the_best_names_the_model_to_keep():
    """A new user's BatchNorm CNN on OneCycle (512 probe points, saved every 50 steps) said `stop` at step 500 with
    test accuracy 0.945, 0.04 below step 250's level; only --json named the best step. The reason now names the
    model to keep; a stop on a checkpoint within the probes' noise of the best says nothing of the kind."""
    steps = np.arange(0, 501, 50)
    train = np.array([0.113, 0.936, 0.982, 0.99, 1.0, 0.998, 0.994, 0.959, 0.984, 0.949, 0.971])
    test = np.array([0.109, 0.947, 0.961, 0.961, 0.984, 0.984, 0.959, 0.938, 0.971, 0.93, 0.945])
    robust = np.array([0.104, 0.928, 0.947, 0.947, 0.969, 0.971, 0.953, 0.918, 0.951, 0.891, 0.918])
    series = accuracy_series(train, test)
    series[("robust_accuracy", "test")] = (robust, accuracy_se(robust))
    report = classify(table(steps, series))
    assert report.advice == "stop" and report.best_step == 250, report.reason
    assert "this checkpoint is 0.039 below the level of step 250, 0.984 (a median of three)" in report.reason
    assert report.reason.endswith("keep step 250's model")
    settled = classify(accuracy_table(STEPS[STEPS <= 20_000], *grokking(STEPS[STEPS <= 20_000], grok_at=3.0)))
    assert settled.advice == "stop" and "keep step" not in settled.reason


def test_damage_does_not_widen_the_noise_that_lets_a_later_window_be_the_best():
    """A new user's CNN whose OneCycle learning rate rose to 0.5 (512 probe points, saved every 50 steps): test
    accuracy peaked at 0.963 at step 200, then 0.941, 0.939, 0.824 (the damage begins), ... 0.215 at 500. The roll-back
    named step 300 (0.939 on the whole test set against 0.963): the window of 250-350 counted as good as the best
    within a noise estimate the damage had itself widened. The noise allowed is the one known when the best was set."""
    steps = np.arange(0, 801, 50)
    train = np.array([0.113, 0.889, 0.949, 0.949, 0.998, 0.955, 0.967, 0.85, 0.936, 0.848, 0.223, 0.328, 0.334, 0.09,
                      0.105, 0.094, 0.104])
    test = np.array([0.109, 0.879, 0.916, 0.924, 0.963, 0.941, 0.939, 0.824, 0.891, 0.812, 0.215, 0.352, 0.326, 0.096,
                     0.102, 0.104, 0.098])
    history = classify(accuracy_table(steps, train, test)).history
    rolled = [v for v in history if v.advice == "roll-back"]
    assert rolled and all(v.reason.endswith("best step 200") for v in rolled), [(v.step, v.reason[-20:]) for v in rolled]


def test_robust_accuracy_falling_after_test_settled_is_no_gain_to_wait_for():
    """Test accuracy flat and robust accuracy falling: more training gains nothing, robustness included: a plateau
    whose strength is test accuracy's (on the validation runs such readings were right 40 times in 43; taken as the
    product of both flatnesses they were all `inconclusive`)."""
    steps = STEPS[STEPS <= 20_000]
    train, test = grokking(steps, grok_at=3.0)
    robust = 0.9 - 0.3 * sigmoid(steps, 4.1, 0.1)  # robust accuracy lost while test accuracy stays flat
    series = accuracy_series(train, test)
    series[("robust_accuracy", "test")] = (robust, accuracy_se(robust))
    report = classify(table(steps, series))
    assert (report.current_phase, report.advice) == ("robustness_plateau", "stop"), report.reason
    assert "robust accuracy" in report.reason and "falling" in report.reason
    assert "no robustness to gain" in report.reason
    assert "delayed robustness" not in report.reason and "still rising" not in report.reason


def test_robust_accuracy_risen_to_its_ceiling_is_nothing_left_to_gain():
    """Sparse parity (a new user's MLP, saved every 50 steps): test accuracy 1.000 from step 1650, robust accuracy
    from 1700. Its line over the plateau span still rose (+0.28) until step 2700, and the run read "delayed
    robustness: robust accuracy 1.000 still rising" there; at 1 it has nothing left to gain, as test accuracy does
    not (saturated_decades)."""
    steps = np.r_[0, 1, 2, 4, 8, 16, 32, np.arange(50, 4001, 50)]
    test = np.r_[0.539, 0.504, 0.492, 0.473, 0.482, 0.463, 0.49, 0.479, 0.484, 0.49, 0.502, 0.502, 0.502, 0.506,
                 0.51, 0.52, 0.529, 0.535, 0.543, 0.561, 0.578, 0.611, 0.637, 0.65, 0.684, 0.717, 0.746, 0.791, 0.824,
                 0.855, 0.877, 0.908, 0.934, 0.963, 0.979, 0.988, 0.992, 0.994, 0.996, np.ones(48)]
    robust = np.r_[0.496, 0.469, 0.443, 0.445, 0.441, 0.439, 0.443, 0.424, 0.436, 0.443, 0.441, 0.436, 0.445, 0.449,
                   0.463, 0.467, 0.475, 0.467, 0.486, 0.494, 0.516, 0.539, 0.574, 0.617, 0.629, 0.662, 0.697, 0.723,
                   0.768, 0.82, 0.857, 0.877, 0.908, 0.936, 0.963, 0.982, 0.988, 0.994, 0.994, 0.996, np.ones(47)]
    train = np.r_[0.525, 0.52, 0.557, 0.598, 0.625, 0.691, 0.85, 0.934, np.ones(79)]
    series = accuracy_series(train, test)
    series[("robust_accuracy", "test")] = (robust, accuracy_se(robust))
    history = classify(table(steps, series)).history
    first = next(v for v in history if v.advice == "stop")
    assert 1700 < first.step <= 2000, first
    assert "nothing left to gain" in first.reason and "delayed robustness" not in first.reason
    assert all(v.advice == "stop" for v in history if v.step >= first.step)
    # short of its ceiling, a rise is still delayed robustness
    series[("robust_accuracy", "test")] = (0.9 * robust, accuracy_se(0.9 * robust))
    assert "delayed robustness" in next(v for v in classify(table(steps, series)).history if v.step == 2000).reason


def test_test_accuracy_falling_short_of_a_collapse_is_not_advice_to_keep_training():
    """Generalised, then losing test accuracy steadily but less than `collapse_drop`: no gain to train for and
    no collapse to roll back from yet: `inconclusive`, with no confidence. The run was on a plateau, and the fall
    leaves it one until the next checkpoints tell (not `generalisation`, "moving to the general solution")."""
    steps = STEPS[STEPS <= 60_000]
    train, test = grokking(steps, grok_at=3.0)
    x = np.log10(steps + 1)
    test = test - np.clip(x - (x[-1] - 0.5), 0, None) * 0.08  # -0.04 over the last 0.5 decades
    report = classify(accuracy_table(steps, train, test))
    assert (report.current_phase, report.advice, report.confidence) == ("robustness_plateau", "inconclusive", 0.0)
    assert report.segments[-1].phase == "robustness_plateau" and "generalisation" not in phases_seen(report)[-1:]
    assert "falling (not yet a collapse)" in report.reason and "no gain to train for" in report.reason
    rising = classify(accuracy_table(steps, train, 0.3 + 0.69 * sigmoid(steps, 4.4, 0.3)))
    assert rising.advice == "keep-training"  # a rise is still advice to keep training


def test_a_drop_at_the_newest_checkpoint_only_is_too_weak_to_act_on_until_it_holds():
    steps = STEPS[STEPS <= 60_000]
    train, test = grokking(steps)
    dropped = test.copy()
    dropped[-1] -= 0.3
    report = classify(accuracy_table(steps, train, dropped))
    assert report.advice == "inconclusive" and report.current_phase != "collapse", report.reason
    assert report.confidence == 0.0
    assert f"test accuracy {dropped[-1]:.3f} at step {steps[-1]} is" in report.reason
    assert "a spike, or the start of a collapse if it is as low at the next 1 checkpoint" in report.reason
    held = test.copy()
    held[-2:] -= 0.3
    confirmed = classify(accuracy_table(steps, train, held))
    assert confirmed.advice == "roll-back" and "a spike" not in confirmed.reason
    assert classify(accuracy_table(steps, train, test)).advice == "stop"


def test_a_drop_at_the_newest_checkpoint_is_not_read_as_a_rise():
    """A transformer mid-grokking (a new user's run): test accuracy 0.498 at step 3600, 0.047 at 3700. Read with the
    drop the rise said "test accuracy 0.047 rising"; the reading before the drop stands, and the reason says so."""
    steps = STEPS[STEPS <= 6_000]
    train, test = grokking(steps, grok_at=3.5)
    test = test.copy()
    test[-1] = 0.05
    report = classify(accuracy_table(steps, train, test))
    assert report.advice == "inconclusive" and report.confidence == 0.0
    assert "0.050 rising" not in report.reason, report.reason
    assert f"the reading of step {steps[-2]} stands: test accuracy {test[-2]:.3f}" in report.reason


def test_a_fitted_train_set_lost_at_the_newest_checkpoint_only_is_too_weak_to_act_on():
    steps = STEPS[STEPS <= 3_000]
    train, test = grokking(steps)  # memorising: fitted, test accuracy still at chance
    dropped = train.copy()
    dropped[-1] -= 0.4
    report = classify(accuracy_table(steps, dropped, test))
    assert report.advice == "inconclusive", report.reason
    assert f"train accuracy {dropped[-1]:.3f} at step" in report.reason
    assert classify(accuracy_table(steps, train, test)).advice == "keep-training"


def test_three_checkpoints_are_inconclusive():
    steps = np.array([100, 1000, 10_000])
    report = classify(accuracy_table(steps, np.array([0.5, 1.0, 1.0]), np.array([0.1, 0.5, 0.99])))
    assert report.advice == "inconclusive" and report.confidence <= 0.2
    assert "3 checkpoints" in report.reason and len(report.steps) == 3


def test_error_rows_are_gaps_not_zeros():
    train, test = grokking(STEPS)
    status = ["ok"] * len(STEPS)
    status[-3] = "error"
    report = classify(accuracy_table(STEPS, train, test, status=status))
    assert len(report.steps) == len(STEPS) - 1 and len(report.history) == len(STEPS) - 1
    assert "collapse" not in phases_seen(report) and report.advice == "stop"


def test_failed_newest_checkpoints_are_named_in_the_reason():
    steps = STEPS[STEPS <= 100_000]
    report = classify(accuracy_table(steps, *grokking(steps), status=["ok"] * (len(steps) - 2) + ["error"] * 2))
    assert report.steps[-1][0] == steps[-3]
    assert f"not judged: step {steps[-2]}, {steps[-1]}" in report.reason


def test_few_probe_points_lower_the_confidence():
    train, test = grokking(STEPS)
    many, few = classify(accuracy_table(STEPS, train, test)), classify(accuracy_table(STEPS, train, test, points=8))
    assert many.advice == "stop" and few.advice == "inconclusive"
    assert few.confidence == pytest.approx(many.confidence * 8 / 32, abs=0.01)
    assert "only 8 probe points per split" in few.reason


# ---------------------------------------------------------------- causality: the history


@pytest.mark.parametrize("mode", ["accuracy", "geometry"])
def test_the_history_is_what_every_prefix_says(mode):
    train, test = grokking(STEPS)
    series = {**accuracy_series(train, test), **geometry_series(STEPS)}
    frame = table(STEPS, series)
    full = classify(frame, mode=mode)
    assert [v.step for v in full.history] == list(STEPS)
    for i in range(len(STEPS)):
        cut = classify(frame[frame["step"] <= STEPS[i]], mode=mode)
        assert cut.history == full.history[: i + 1]
        last = cut.history[-1]
        assert (cut.advice, cut.current_phase, cut.confidence, cut.reason) == (
            last.advice, last.phase, last.confidence, last.reason)


def test_later_checkpoints_never_change_what_was_said():
    steps = STEPS[STEPS <= 60_000]
    train, test = grokking(steps)
    healthy = classify(accuracy_table(steps, train, test))
    collapsing = classify(accuracy_table(steps, train, test - 0.39 * sigmoid(steps, 4.35, 0.1)))
    same = int(np.flatnonzero(sigmoid(steps, 4.35, 0.1) > 1e-4)[0])
    assert healthy.history[:same] == collapsing.history[:same]


# ---------------------------------------------------------------- geometry mode


def geometry_series(steps, groups=("lc", "centroid_alignment", "jacobian_erank", "centroid_norm"), rng=None):
    """LC rising while fitting and falling with generalisation; alignment up, rank and norm down with it."""
    rng = rng or np.random.default_rng(0)
    general = sigmoid(steps, 3.6, 0.12)
    curves = {"lc": 10 + 30 * sigmoid(steps, 2.2, 0.2) - 32 * general, "centroid_alignment": 0.05 + 0.55 * general,
              "jacobian_erank": 30 - 28 * general, "centroid_norm": 5.0 * (1 - 0.8 * general)}
    noise = {"lc": 0.4, "centroid_alignment": 0.003, "jacobian_erank": 0.1, "centroid_norm": 0.01}
    return {(m, split): (curves[m] + rng.normal(0, noise[m], len(steps)), np.full(len(steps), 2 * noise[m]))
            for m in groups for split in ("train", "test")}


def test_geometry_with_one_group_is_inconclusive_and_says_why():
    report = classify(table(STEPS, geometry_series(STEPS, groups=("lc",))))
    assert report.mode == "geometry"
    assert {v.advice for v in report.history} == {"inconclusive"}
    # the model never saw one group alone (lc falls as a run groks and as it collapses): no label, not a guess
    assert {p for _, p in report.steps} == {None} and report.segments == () and report.current_phase is None
    assert "measures 1 independent metric group of the 4 (complexity)" in report.reason
    assert report.wants == "metric groups"  # the others were not measured: analyze with them
    assert classify(table(STEPS, geometry_series(STEPS, groups=("lc",))), PhaseThresholds(min_groups=1)).segments
    flat = geometry_series(STEPS)
    flat.update({k: (np.full(len(STEPS), 0.3), v[1]) for k, v in flat.items() if k[0] != "lc"})  # measured, unmoved
    unmoved = classify(table(STEPS, flat))
    assert "only 1 independent metric group" in unmoved.reason and unmoved.wants == "checkpoints"


def test_a_single_logit_network_counts_its_norms_once_and_has_no_rank():
    from grokmon.phasing.geometry_features import group_evidence
    from grokmon.phasing.table import RunTable

    series = geometry_series(STEPS, groups=("lc", "centroid_alignment", "centroid_norm"))
    n = len(STEPS)
    for split in ("train", "test"):
        series[("jacobian_fro", split)] = series[("centroid_norm", split)]  # one output: the centroid is the row
        series[("jacobian_erank", split)] = series[("jacobian_pc1", split)] = (np.ones(n), np.zeros(n))
    evidence = group_evidence(RunTable(table(STEPS, series), 0.25), 0.3, 3.0)
    assert not evidence["rank"].present.any()
    assert evidence["scale"].metric == "centroid_norm"
    assert sum(ev.present[-1] for ev in evidence.values()) == 3


def test_geometry_evidence_counts_per_decade_not_per_checkpoint():
    """The same readings saved four times as densely (as a run saved every N steps is, late on the log-step
    axis) give the filter no more evidence than the corpus's spacing would."""
    from grokmon.phasing.model import shipped

    model = shipped().geometry
    rng = np.random.default_rng(0)
    row = rng.normal(0, 1, len(model.features)) * model.scale + model.mean
    for dense in (40, 160):
        x = np.linspace(3.0, 3.0 + 40 * model.reference_gap, dense)
        posterior = model.filtered(np.tile(row, (dense, 1)), x, np.ones(dense, bool))[-1]
        if dense == 40:
            sparse = posterior
    assert np.abs(posterior - sparse).max() < 0.05, (sparse, posterior)
    counted_in_full = replace(model, reference_gap=0.0).filtered(np.tile(row, (160, 1)), x, np.ones(160, bool))[-1]
    assert np.abs(counted_in_full - sparse).max() > np.abs(posterior - sparse).max()


def test_geometry_mode_is_forced_even_with_labels():
    train, test = grokking(STEPS)
    frame = table(STEPS, {**geometry_series(STEPS), **accuracy_series(train, test)})
    assert classify(frame).mode == "accuracy"
    assert classify(frame, mode="geometry").mode == "geometry"


def test_geometry_that_never_moves_is_never_a_confident_stop_or_roll_back():
    steps = STEPS[STEPS >= 100]
    n = len(steps)
    flat = {(metric, split): (np.full(n, level), np.full(n, level / 100))
            for metric, level in [("lc", 30.0), ("centroid_alignment", 0.1), ("centroid_norm", 5.0),
                                  ("jacobian_erank", 4.0)] for split in ("train", "test")}
    report = classify(table(steps, flat))
    assert {v.advice for v in report.history} == {"inconclusive"}


def test_the_features_of_an_absent_group_are_no_evidence():
    from grokmon.phasing.geometry_features import FEATURES, VOTE_GROUPS, design_matrix, group_evidence
    from grokmon.phasing.model import shipped
    from grokmon.phasing.table import RunTable

    run = RunTable(table(STEPS, geometry_series(STEPS)), 0.25)
    design, _ = design_matrix(group_evidence(run, 0.3, 3.0), len(STEPS))
    model = shipped().geometry
    width, rank = len(FEATURES) + 1, list(VOTE_GROUPS).index("rank")
    absent = design.copy()
    absent[:, rank * width:(rank + 1) * width] = 0.0  # rank absent: its features 0, its flag 0
    garbage = absent.copy()
    garbage[:, rank * width:(rank + 1) * width - 1] = np.random.default_rng(0).normal(0, 5, (len(STEPS), width - 1))
    np.testing.assert_array_equal(model.phase_probabilities(garbage), model.phase_probabilities(absent))
    assert not np.any(model.standardised(absent)[:, rank * width:(rank + 1) * width - 1])
    assert not np.allclose(model.phase_probabilities(design), model.phase_probabilities(absent))
    assert np.any(model.standardised(design)[:, width - 1::width])  # the presence flags are evidence


def test_a_geometry_verdict_that_a_model_fitted_without_one_family_does_not_give_is_inconclusive():
    import dataclasses

    from grokmon.phasing.model import Fitted, shipped

    frame = table(STEPS, geometry_series(STEPS))
    base = shipped()
    main = dataclasses.replace(base.geometry, jackknife=())

    def history(*jackknife, th=None):
        fitted = Fitted(dataclasses.replace(main, jackknife=jackknife), base.accuracy)
        return classify(frame, th, mode="geometry", fitted=fitted).history

    alone = history()
    acted = [i for i, v in enumerate(alone) if v.advice != "inconclusive"]
    assert acted
    agreeing = dataclasses.replace(main, left_out="same")
    assert history(agreeing) == alone
    collapse = np.full(len(PHASES), -50.0)
    collapse[PHASES.index("collapse")] = 50.0
    dissenting = dataclasses.replace(main, left_out="toy", intercept=collapse, coef=np.zeros_like(main.coef))
    gated = history(agreeing, dissenting)
    for i in acted:
        assert gated[i].advice == "inconclusive" and gated[i].phase == alone[i].phase
        assert gated[i].confidence == alone[i].confidence
        assert gated[i].reason.startswith(f"no verdict the corpus agrees on at step {alone[i].step}")
        assert gated[i].reason.endswith(f"{alone[i].advice} does not hold when one family of the corpus is left "
                                        "out of the fit: fitted without the toy runs the model reads roll-back "
                                        "(max_dissent=0)")
    strict = history(agreeing, dissenting, th=PhaseThresholds(min_confidence=0.99, act_confidence=0.99))
    weak = [i for i in acted if alone[i].confidence < 0.99]
    assert weak
    for i in weak:  # a verdict too weak anyway says so, and that the corpus is split too
        assert strict[i].reason.startswith("too little evidence to act on")
        assert "< min_confidence=0.99" in strict[i].reason
        assert "without the toy runs the model reads roll-back" in strict[i].reason
    other = dataclasses.replace(dissenting, left_out="other")
    both = history(other, dissenting)
    assert all("without the other runs the model reads roll-back, without the toy runs roll-back (max_dissent=0)"
               in both[i].reason for i in acted)
    assert history(other, dissenting, th=PhaseThresholds(max_dissent=2)) == alone
    assert [v.advice for v in history(other, dissenting, th=PhaseThresholds(max_dissent=1))] == [v.advice for v in both]


def test_accuracy_mode_does_not_count_a_geometry_verdict_that_the_corpus_does_not_agree_on():
    import dataclasses

    from grokmon.phasing.model import Calibration, Fitted, shipped

    train, test = grokking(STEPS)
    frame = table(STEPS, {**geometry_series(STEPS), **accuracy_series(train, test)})
    base = shipped()

    def reading(phase, **changes):  # a model that reads `phase` everywhere, with confidence 1 (no calibration)
        intercept = np.full(len(PHASES), -50.0)
        intercept[PHASES.index(phase)] = 50.0
        return dataclasses.replace(base.geometry, intercept=intercept, coef=np.zeros_like(base.geometry.coef),
                                   calibration=Calibration({}), jackknife=(), **changes)

    def accuracy_history(geometry):
        return classify(frame, mode="accuracy", fitted=Fitted(geometry, base.accuracy)).history

    stop = reading("robustness_plateau")
    alone = accuracy_history(stop)
    disagreeing = [i for i, v in enumerate(alone) if "the geometry disagrees: it reads robustness_plateau" in v.reason]
    assert disagreeing
    assert accuracy_history(dataclasses.replace(stop, jackknife=(reading("robustness_plateau", left_out="a"),))) == alone
    gated = accuracy_history(dataclasses.replace(stop, jackknife=(reading("collapse", left_out="b"),)))
    assert not any("the geometry disagrees" in v.reason for v in gated)
    assert all(g.confidence >= a.confidence and g.phase == a.phase for g, a in zip(gated, alone))
    judged = [i for i in disagreeing if i + 1 >= PhaseThresholds().min_checkpoints]  # fewer: capped at 0.2 anyway
    assert judged and all(gated[i].confidence > alone[i].confidence for i in judged)


def test_the_shipped_model_carries_a_model_fitted_without_each_family_and_survives_its_file():
    from corpus.fit import to_json
    from grokmon.phasing.model import Fitted, shipped

    fitted = shipped()
    assert {m.left_out for m in fitted.geometry.jackknife} == {"cnn", "modular", "omnigrok", "transformer", "xor"}
    assert all(not m.jackknife and not m.calibration.maps for m in fitted.geometry.jackknife)
    again = Fitted.from_dict(json.loads(json.dumps(to_json(fitted, 0.03))))
    frame = table(STEPS, geometry_series(STEPS))
    assert classify(frame, mode="geometry", fitted=again).history == classify(frame, mode="geometry").history


def test_geometry_mode_without_geometry_columns_is_an_error():
    steps = STEPS[STEPS <= 20_000]
    with pytest.raises(ConfigError, match="mode geometry needs centroid, jacobian or lc.*--mode accuracy"):
        classify(accuracy_table(steps, *grokking(steps)), mode="geometry")


# ---------------------------------------------------------------- thresholds, output, input checks


def test_threshold_overrides_are_coerced_and_checked():
    th = PhaseThresholds().with_overrides({"min_checkpoints": "8", "slope_sigma": 2, "fitted_accuracy": "0.99"})
    assert (th.min_checkpoints, th.slope_sigma, th.fitted_accuracy) == (8, 2.0, 0.99)
    assert isinstance(th.min_checkpoints, int) and isinstance(th.slope_sigma, float)
    with pytest.raises(ConfigError, match="min_checkpoints.*but got 'min_checkpointz'"):
        PhaseThresholds().with_overrides({"min_checkpointz": 3})
    with pytest.raises(ConfigError, match="min_checkpoints to be a finite int, but got '2.5'"):
        PhaseThresholds().with_overrides({"min_checkpoints": "2.5"})


@pytest.mark.parametrize(("name", "value", "bound"), [
    ("slope_sigma", "-3", "> 0"), ("se_floor_fraction", -1, "> 0"), ("min_checkpoints", 0, ">= 1"),
    ("plateau_decades", 0, "> 0"), ("fitted_accuracy", 1.5, r"\(0, 1\]"), ("min_confidence", -0.1, r"\[0, 1\]"),
    ("min_groups", 5, r"\[1, 4\]"),
])
def test_thresholds_out_of_range_are_config_errors(name, value, bound):
    with pytest.raises(ConfigError, match=f"{name} to be {bound}, but got"):
        PhaseThresholds().with_overrides({name: value})


def test_every_threshold_has_a_range_and_its_default_is_in_it():
    from grokmon.phasing.types import _RANGES

    defaults = PhaseThresholds()
    assert set(_RANGES) == set(defaults.__dataclass_fields__)
    assert PhaseThresholds().with_overrides(dict(vars(defaults))) == defaults


def test_thresholds_are_taken_as_given():
    steps = STEPS[STEPS <= 1000][-6:]
    frame = accuracy_table(steps, np.ones(6), np.full(6, 0.02))
    assert classify(frame).advice == "keep-training"
    assert classify(frame, PhaseThresholds(min_checkpoints=8)).advice == "inconclusive"


def test_to_dict_round_trips_and_adds_the_history_only_when_asked():
    report = classify(accuracy_table(STEPS, *grokking(STEPS)))
    doc = json.loads(json.dumps(report.to_dict()))
    assert list(doc) == ["schema", "mode", "advice", "reason", "confidence", "current_phase", "segments", "steps",
                         "best_step", "wants"]
    assert doc["schema"] == "grokmon.phases/1" and doc["advice"] in ADVICE
    rebuilt = PhaseReport(doc["mode"], doc["advice"], doc["reason"], doc["confidence"], doc["current_phase"],
                          tuple(PhaseSegment(**s) for s in doc["segments"]),
                          tuple((s["step"], s["phase"]) for s in doc["steps"]), doc["best_step"], report.history,
                          doc["wants"])
    assert rebuilt == report
    with_history = json.loads(json.dumps(report.to_dict(history=True)))
    assert tuple(StepVerdict(**v) for v in with_history["history"]) == report.history


@pytest.mark.parametrize(("frame", "match"), [
    (pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.4]}), "no column step, split, status"),
    (pd.DataFrame({"step": [1, 2], "split": ["train"] * 2, "status": ["ok"] * 2, "foo": [1.0, 2.0]}),
     "no metric column holds a value"),
])
def test_foreign_table_is_a_results_error(frame, match):
    with pytest.raises(ResultsError, match=match):
        classify(frame)


def test_a_table_where_every_checkpoint_failed_is_an_error_not_a_verdict():
    frame = accuracy_table([0, 10, 100, 1000, 5000], np.full(5, 0.5), np.full(5, 0.5))
    frame["status"], frame["error"] = "error", "step_0.pt: weights do not fit the model"
    with pytest.raises(ResultsError, match="every checkpoint failed in `grokmon analyze`.*weights do not fit"):
        classify(frame)
    with pytest.raises(ResultsError, match="empty"):
        classify(frame.iloc[:0])


def test_unknown_or_impossible_mode():
    frame = table(STEPS, geometry_series(STEPS))
    with pytest.raises(ConfigError, match="mode to be one of auto, accuracy, geometry, but got 'labels'"):
        classify(frame, mode="labels")
    with pytest.raises(ConfigError, match="mode accuracy needs accuracy"):
        classify(frame, mode="accuracy")



def test_a_geometry_roll_back_goes_to_a_checkpoint_read_generalised_or_is_inconclusive():
    """A new user's digits MLP on 4 % noisy labels read roll-back 0.96 with best step 50, a checkpoint still fitting
    (test 0.869, final 0.940): a collapse loses what a run generalised to, so the target is the newest checkpoint
    read generalised at or before the damage, and without one the roll-back has nowhere to go."""
    from grokmon.phasing.geometry_mode import GeometryReading, _generalised_target

    def read(*phases):
        return [GeometryReading(p, "keep-training", 0.9, 0.9, 4, "", None) for p in phases]

    best, said, note = _generalised_target(read("fitting", "fitting", "memorisation", "memorisation"), 1,
                                           "collapse words")
    assert said == "inconclusive" and note.startswith("collapse words; no checkpoint before the damage was read")
    before = read("fitting", "generalisation", "robustness_plateau", "memorisation", "collapse")
    assert _generalised_target(before, 3, "w") == (2, "roll-back", "w")
    assert _generalised_target(before, 1, "w") == (1, "roll-back", "w")
    assert _generalised_target(before, None, "w") == (2, "roll-back", "w")
