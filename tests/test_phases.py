"""Phases and advice on hand-made results tables (log-spaced steps, realistic standard errors)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grokmon.errors import ConfigError, GrokmonError, ResultsError
from grokmon.phasing import ADVICE, PHASES, PhaseReport, PhaseSegment, PhaseThresholds, classify

STEPS = np.unique(np.round(np.geomspace(1, 100_000, 36)).astype(int))
N_POINTS = 512


def sigmoid(steps, centre_decade, width=0.15):
    """0 -> 1 in log10(step), centred at 10**centre_decade."""
    return 1.0 / (1.0 + np.exp(-(np.log10(np.maximum(steps, 1)) - centre_decade) / width))


def accuracy_se(p, n=N_POINTS):
    return np.sqrt(np.clip(p * (1 - p), 0, None) / n)


def table(steps, series: dict, status=None) -> pd.DataFrame:
    """Rows of a grokmon results table. `series[(metric, split)] = (values, ses)`; missing metrics absent."""
    rows = []
    for i, step in enumerate(steps):
        for split in ("train", "test", "random"):
            row = {"step": int(step), "checkpoint": f"step_{step:06d}.safetensors", "split": split,
                   "n_points": N_POINTS, "seconds": 0.5, "status": "ok", "error": None}
            for (metric, where), (values, ses) in series.items():
                if where == split:
                    row[metric], row[f"{metric}_se"] = float(values[i]), float(ses[i])
            if status is not None and status[i] != "ok":
                row.update({"status": "error", "error": "boom"})
                for (metric, where) in series:
                    row[metric] = row[f"{metric}_se"] = None
            rows.append(row)
    return pd.DataFrame(rows)


def accuracy_table(steps, train, test) -> pd.DataFrame:
    return table(steps, {("accuracy", "train"): (train, accuracy_se(train)),
                         ("accuracy", "test"): (test, accuracy_se(test))})


def grokking(steps, fit_at=2.2, grok_at=3.6):
    train = 0.02 + 0.98 * sigmoid(steps, fit_at)
    test = 0.02 + 0.97 * sigmoid(steps, grok_at, 0.12)
    return train, test


def phases_seen(report: PhaseReport) -> list[str]:
    return [seg.phase for seg in report.segments]


def first_step(report: PhaseReport, phase: str) -> int:
    return next(step for step, p in report.steps if p == phase)


# ---------------------------------------------------------------- accuracy mode


@pytest.mark.parametrize(
    ("last_step", "phase", "advice"),
    [
        (160, "fitting", "keep-training"),
        (700, "memorisation", "keep-training"),
        (3000, "generalisation", "keep-training"),
        (100_000, "robustness_plateau", "stop"),
    ],
)
def test_accuracy_run_ending_in_each_phase(last_step, phase, advice):
    steps = STEPS[STEPS <= last_step]
    report = classify(accuracy_table(steps, *grokking(steps)))
    assert report.mode == "accuracy"
    assert report.current_phase == phase
    assert report.advice == advice
    assert 0.3 <= report.confidence <= 1.0
    assert [p for p in PHASES if p in phases_seen(report)] == phases_seen(report)  # in order, none repeated
    assert report.steps[-1] == (int(steps[-1]), phase)


def test_accuracy_grokking_transition_within_one_checkpoint():
    train, test = grokking(STEPS)
    report = classify(accuracy_table(STEPS, train, test))
    assert phases_seen(report) == ["fitting", "memorisation", "generalisation", "robustness_plateau"]
    # test accuracy leaves its memorisation level (more than 2 SEs above it) at
    memorised = test[(train > 0.95)][0]
    leaves = int(np.flatnonzero((test - memorised > 2 * accuracy_se(test)) & (train > 0.95))[0])
    start = list(STEPS).index(first_step(report, "generalisation"))
    assert abs(start - leaves) <= 1
    assert first_step(report, "memorisation") == STEPS[np.flatnonzero(train + accuracy_se(train) >= 0.95)[0]]


def test_accuracy_collapse_rolls_back_to_the_peak():
    steps = STEPS[STEPS <= 60_000]
    train, test = grokking(steps)
    fall = sigmoid(steps, 4.35, 0.1)
    test = test - 0.39 * fall  # rises to ~0.99, then falls to ~0.6 while train stays at 1
    report = classify(accuracy_table(steps, train, test))
    assert report.current_phase == "collapse"
    assert report.advice == "roll-back"
    assert report.best_step == int(steps[np.argmax(test)])
    assert phases_seen(report)[-2:] == ["robustness_plateau", "collapse"]
    assert str(report.best_step) in report.reason
    assert "test accuracy" in report.reason


@pytest.mark.parametrize("test_follows", [True, False])
def test_train_accuracy_falling_after_the_fit_is_collapse_not_a_plateau(test_follows):
    steps = STEPS[STEPS <= 60_000]
    train, test = grokking(steps)
    fall = sigmoid(steps, 4.35, 0.1)
    train = train - 0.5 * fall  # the training diverges: the fitted train set is lost
    test = test - (0.5 if test_follows else 0.09) * fall
    report = classify(accuracy_table(steps, train, test))
    assert report.current_phase == "collapse", report.reason
    assert report.advice == "roll-back"
    assert "train" in report.reason and "0.5" in report.reason
    assert report.best_step == int(steps[np.argmax(test)])


def test_a_memorising_run_that_diverges_rolls_back_to_its_fitted_state():
    steps = STEPS[STEPS <= 60_000]
    train, _ = grokking(steps)
    test = np.full(len(steps), 0.05)
    train = train - 0.6 * sigmoid(steps, 4.35, 0.1)
    report = classify(accuracy_table(steps, train, test))
    assert "generalisation" not in phases_seen(report)
    assert phases_seen(report)[-2:] == ["memorisation", "collapse"], report.steps
    assert report.advice == "roll-back"
    assert report.best_step < 20_000


def test_test_accuracy_lost_while_fitting_label_noise_rolls_back_to_its_early_peak():
    steps = STEPS[STEPS <= 5000]
    train = 0.1 + 0.9 * sigmoid(steps, 2.0, 0.25)  # noisy labels: fitted late
    test = 0.1 + 0.8 * sigmoid(steps, 1.0, 0.15) - 0.25 * sigmoid(steps, 1.8, 0.15)  # up with train, then down
    report = classify(accuracy_table(steps, train, test))
    assert report.advice == "roll-back", report.reason
    assert report.best_step == int(steps[np.argmax(test)]) < 100


def test_test_accuracy_rising_with_train_at_chance_is_not_an_early_generalisation():
    steps = STEPS[STEPS <= 20_000]
    train, test = grokking(steps)
    test = np.where(steps < 50, train, test)  # both at chance early on
    report = classify(accuracy_table(steps, train, test))
    assert phases_seen(report)[:3] == ["fitting", "memorisation", "generalisation"], report.steps


def _early_bump(steps, bump=0.45):
    """Grokking where test accuracy first rises a little with train, sinks while the train set is memorised,
    then groks at 10^4."""
    train = 0.1 + 0.9 * sigmoid(steps, 2.3)
    test = 0.1 + bump * sigmoid(steps, 2.0) * (1 - sigmoid(steps, 2.8)) + 0.15 * sigmoid(steps, 2.8) \
        + 0.7 * sigmoid(steps, 4.0, 0.12)
    return train, test


@pytest.mark.parametrize("cut", [1000, 3000, 8000])
def test_an_early_bump_of_test_accuracy_lost_while_memorising_is_not_a_collapse(cut):
    steps = STEPS[(STEPS >= 10) & (STEPS <= cut)]
    report = classify(accuracy_table(steps, *_early_bump(steps)))
    assert report.advice == "keep-training", report.reason
    assert "collapse" not in phases_seen(report)


def test_test_accuracy_that_rose_with_train_and_stays_flat_is_a_plateau_not_memorisation():
    steps = STEPS[STEPS <= 20_000]
    train = 0.1 + 0.89 * sigmoid(steps, 2.5)
    test = 0.1 + 0.72 * sigmoid(steps, 2.5)  # ordinary learning to 0.82: no memorisation stage
    report = classify(accuracy_table(steps, train, test))
    assert report.advice == "stop", report.reason
    assert "memorisation" not in phases_seen(report)


def test_three_checkpoints_are_inconclusive():
    steps = np.array([100, 1000, 10_000])
    report = classify(accuracy_table(steps, np.array([0.5, 1.0, 1.0]), np.array([0.1, 0.5, 0.99])))
    assert report.advice == "inconclusive"
    assert report.confidence <= 0.2
    assert "3 checkpoints" in report.reason
    assert len(report.steps) == 3


def test_noisy_flat_test_accuracy_is_not_generalisation_or_collapse():
    rng = np.random.default_rng(3)
    steps = STEPS[STEPS >= 300]
    train = np.ones(len(steps))
    se = np.full(len(steps), 0.05)
    test = 0.3 + rng.normal(0, 0.04, len(steps))
    naive = np.sign(np.diff(test))
    assert (naive > 0).any() and (naive < 0).any()  # a slope between neighbours flips sign
    frame = table(steps, {("accuracy", "train"): (train, np.zeros(len(steps))), ("accuracy", "test"): (test, se)})
    report = classify(frame)
    labels = {p for _, p in report.steps}
    assert not labels & {"generalisation", "collapse"}
    assert report.advice in ("keep-training", "inconclusive")


def test_noisy_plateau_dips_within_the_errors_do_not_collapse():
    rng = np.random.default_rng(4)
    steps = STEPS[STEPS <= 30_000]
    train, test = grokking(steps)
    noise = rng.normal(0, 0.015, len(steps)) * (steps > 5000)
    se = np.maximum(accuracy_se(test), 0.02)
    frame = table(steps, {("accuracy", "train"): (train, accuracy_se(train)), ("accuracy", "test"): (test + noise, se)})
    report = classify(frame)
    assert "collapse" not in phases_seen(report)
    assert report.advice == "stop"


def test_error_rows_are_gaps_not_zeros():
    train, test = grokking(STEPS)
    status = ["ok"] * len(STEPS)
    status[-3] = "error"
    report = classify(accuracy_table(STEPS, train, test).assign(
        status=np.repeat(status, 3), accuracy=lambda d: d["accuracy"].where(np.repeat(status, 3) == "ok")))
    assert len(report.steps) == len(STEPS) - 1
    assert "collapse" not in phases_seen(report)
    assert report.advice == "stop"


def test_step_zero_is_handled():
    steps = np.concatenate([[0], STEPS[STEPS <= 800]])
    report = classify(accuracy_table(steps, *grokking(steps)))
    assert report.steps[0] == (0, "fitting")
    assert report.current_phase == "memorisation"


# ---------------------------------------------------------------- geometry mode


def geometry_series(steps, grok_at=3.4, fit_at=2.0, collapse_at=None, rng=None):
    """LC rising to a peak while fitting, falling with generalisation; alignment rising with generalisation."""
    rng = rng or np.random.default_rng(0)
    general = sigmoid(steps, grok_at)
    lc = 10 + 30 * sigmoid(steps, fit_at, 0.2) - 32 * general
    alignment = 0.05 + 0.55 * general
    if collapse_at is not None:
        alignment = alignment - 0.3 * sigmoid(steps, collapse_at, 0.1)
    erank = 30 - 28 * general
    series = {}
    for split, shift in (("train", 0.0), ("test", 0.02)):
        series[("lc", split)] = (lc * (1 + shift) + rng.normal(0, 0.4, len(steps)), np.full(len(steps), 0.6))
        series[("centroid_alignment", split)] = (alignment - shift + rng.normal(0, 0.003, len(steps)),
                                                 np.full(len(steps), 0.006))
        series[("jacobian_erank", split)] = (erank, np.full(len(steps), 0.3))
    series[("lc", "random")] = (np.full(len(steps), 4.0) + rng.normal(0, 0.1, len(steps)), np.full(len(steps), 0.1))
    return series, general


def test_geometry_memorisation_generalisation_plateau():
    series, general = geometry_series(STEPS)
    report = classify(table(STEPS, series))
    assert report.mode == "geometry"
    assert phases_seen(report) == ["fitting", "memorisation", "generalisation", "robustness_plateau"]
    assert report.advice == "stop"
    start = first_step(report, "generalisation")
    truth = STEPS[np.flatnonzero(general > 0.05)[0]]
    assert truth / 2 <= start <= truth * 2


@pytest.mark.parametrize(("last_step", "phase", "advice"), [
    (600, "memorisation", "inconclusive"),  # settled, not simplifying: converged or memorising, labels would tell
    (3000, "generalisation", "keep-training"),
])
def test_geometry_run_ending_mid_way(last_step, phase, advice):
    steps = STEPS[STEPS <= last_step]
    series, _ = geometry_series(steps)
    report = classify(table(steps, series))
    assert report.current_phase == phase
    assert report.advice == advice
    if advice == "inconclusive":
        assert "converged or still memorising" in report.reason


def test_geometry_collapse_when_alignment_falls_after_rising():
    steps = STEPS[STEPS <= 60_000]
    series, _ = geometry_series(steps, collapse_at=4.35)
    report = classify(table(steps, series))
    assert report.current_phase == "collapse"
    assert report.advice == "roll-back"
    alignment = series[("centroid_alignment", "train")][0]
    peak = int(np.argmax(alignment))
    assert abs(list(steps).index(report.best_step) - peak) <= 1
    assert "alignment" in report.reason


def test_geometry_mode_is_forced_even_with_labels():
    series, _ = geometry_series(STEPS)
    train, test = grokking(STEPS)
    series[("accuracy", "train")] = (train, accuracy_se(train))
    series[("accuracy", "test")] = (test, accuracy_se(test))
    frame = table(STEPS, series)
    assert classify(frame).mode == "accuracy"
    forced = classify(frame, mode="geometry")
    assert forced.mode == "geometry"
    assert forced.advice == "stop"


@pytest.mark.parametrize("group", ["lc", "centroid_alignment"])
def test_geometry_from_one_metric_group(group):
    series, general = geometry_series(STEPS)
    report = classify(table(STEPS, {key: value for key, value in series.items() if key[0] == group}))
    assert phases_seen(report)[-2:] == ["generalisation", "robustness_plateau"]
    assert report.advice == "stop"
    full = classify(table(STEPS, series))
    assert report.confidence <= full.confidence
    truth = STEPS[np.flatnonzero(general > 0.05)[0]]
    assert truth / 2 <= first_step(report, "generalisation") <= truth * 2


def test_geometry_noise_without_change_is_not_a_transition():
    rng = np.random.default_rng(5)
    steps = STEPS[STEPS >= 100]
    n = len(steps)
    series = {("lc", "train"): (30 + rng.normal(0, 0.5, n), np.full(n, 0.6)),
              ("centroid_alignment", "train"): (0.1 + rng.normal(0, 0.005, n), np.full(n, 0.006))}
    report = classify(table(steps, series))
    assert not {p for _, p in report.steps} & {"generalisation", "collapse", "robustness_plateau"}
    assert report.advice == "inconclusive", report.reason


@pytest.mark.filterwarnings("error")
def test_a_group_missing_at_some_checkpoints_is_a_gap_without_warnings():
    steps = STEPS[STEPS >= 100]
    n = len(steps)
    lc = 30 + np.linspace(0, 5, n)
    rank = np.where(np.arange(n) % 3 == 0, np.nan, 4.0)
    report = classify(table(steps, {("lc", "train"): (lc, np.full(n, 0.5)),
                                    ("jacobian_erank", "train"): (rank, np.full(n, 0.05))}))
    assert report.mode == "geometry"


def test_geometry_mode_without_geometry_columns_is_an_error_not_an_empty_verdict():
    steps = STEPS[STEPS <= 20_000]
    with pytest.raises(ConfigError, match="mode geometry needs centroid, jacobian or lc.*--mode accuracy"):
        classify(accuracy_table(steps, *grokking(steps)), mode="geometry")


def test_failed_newest_checkpoints_are_named_in_the_reason():
    steps = STEPS[STEPS <= 100_000]
    status = ["ok"] * (len(steps) - 2) + ["error", "error"]
    report = classify(table(steps, {("accuracy", "train"): (grokking(steps)[0], accuracy_se(grokking(steps)[0])),
                                    ("accuracy", "test"): (grokking(steps)[1], accuracy_se(grokking(steps)[1]))},
                            status=status))
    assert report.steps[-1][0] == steps[-3]
    assert f"not judged: step {steps[-2]}, {steps[-1]}" in report.reason


def test_geometry_that_never_moves_is_inconclusive():
    steps = STEPS[STEPS >= 100]
    n = len(steps)
    flat = {(metric, split): (np.full(n, level), np.full(n, level / 100))
            for metric, level in [("lc", 30.0), ("centroid_alignment", 0.1), ("centroid_norm", 5.0),
                                  ("jacobian_erank", 4.0)] for split in ("train", "test")}
    report = classify(table(steps, flat))
    assert report.advice == "inconclusive", report.reason


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
    ("changepoint_penalty", -1, "> 0"), ("fitted_accuracy", 1.5, r"\(0, 1\]"), ("min_confidence", -0.1, r"\[0, 1\]"),
])
def test_thresholds_out_of_range_are_config_errors(name, value, bound):
    with pytest.raises(ConfigError, match=f"{name} to be {bound}, but got"):
        PhaseThresholds().with_overrides({name: value})


def test_every_threshold_has_a_range_and_its_default_is_in_it():
    from grokmon.phasing.types import _RANGES

    defaults = PhaseThresholds()
    assert set(_RANGES) == {f for f in defaults.__dataclass_fields__}
    assert PhaseThresholds().with_overrides(dict(vars(defaults))) == defaults


def test_overrides_change_the_verdict():
    steps = STEPS[STEPS <= 1000][-6:]
    frame = accuracy_table(steps, np.ones(6), np.full(6, 0.02))
    assert classify(frame).advice == "keep-training"
    assert classify(frame, PhaseThresholds().with_overrides({"min_checkpoints": 8})).advice == "inconclusive"


def test_to_dict_round_trips_through_json():
    report = classify(accuracy_table(STEPS, *grokking(STEPS)))
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["schema"] == "grokmon.phases/1"
    assert doc["mode"] == "accuracy" and doc["advice"] in ADVICE
    assert doc["steps"] == [{"step": s, "phase": p} for s, p in report.steps]
    rebuilt = PhaseReport(doc["mode"], doc["advice"], doc["reason"], doc["confidence"], doc["current_phase"],
                          tuple(PhaseSegment(**s) for s in doc["segments"]),
                          tuple((s["step"], s["phase"]) for s in doc["steps"]), doc["best_step"])
    assert rebuilt == report


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.4]}), "no column step, split, status"),
        (pd.DataFrame({"step": [1, 2], "split": ["train"] * 2, "status": ["ok"] * 2, "foo": [1.0, 2.0]}),
         "no metric column holds a value"),
    ],
)
def test_foreign_table_is_a_results_error(frame, match):
    with pytest.raises(ResultsError, match=match):
        classify(frame)


def test_unknown_or_impossible_mode():
    series, _ = geometry_series(STEPS)
    with pytest.raises(ConfigError, match="mode to be one of auto, accuracy, geometry, but got 'labels'"):
        classify(table(STEPS, series), mode="labels")
    with pytest.raises(ConfigError, match="mode accuracy needs accuracy"):
        classify(table(STEPS, series), mode="accuracy")


# ---------------------------------------------------------------- the sample run (a real grokking run)

SAMPLE = Path(__file__).resolve().parents[1] / "sample_checkpoints"


@pytest.fixture(scope="session")
def sample_table(tmp_path_factory):
    """The sample run through `grokmon.api.analyze` (resumes a cached sample_checkpoints/grokmon.parquet)."""
    if not (SAMPLE / "training_curve.csv").exists() or not any(SAMPLE.glob("step_*.safetensors")):
        pytest.skip("no sample run: python sample_checkpoints/make_samples.py")
    from grokmon.api import analyze

    output = tmp_path_factory.mktemp("sample") / "grokmon.parquet"
    if (SAMPLE / "grokmon.parquet").exists():
        shutil.copyfile(SAMPLE / "grokmon.parquet", output)
    try:
        return analyze(SAMPLE, output, device="cpu")
    except GrokmonError:  # cached with other options: compute afresh
        return analyze(SAMPLE, output, device="cpu", overwrite=True)


def test_sample_run_accuracy_mode(sample_table):
    report = classify(sample_table)
    assert report.mode == "accuracy"
    seen = phases_seen(report)
    assert seen[:3] == ["fitting", "memorisation", "generalisation"]
    assert [p for p in PHASES if p in seen] == seen
    # where test accuracy leaves its memorisation level: from there on it stays 3 SEs above the level
    rows = sample_table[(sample_table["split"] == "test") & (sample_table["status"] == "ok")].set_index("step")
    train = sample_table[(sample_table["split"] == "train")].set_index("step")["accuracy"]
    steps = [s for s, _ in report.steps]
    fitted = [s for s in steps if train[s] >= 0.99]
    level = float(np.median(rows.loc[fitted[: max(3, len(fitted) // 3)], "accuracy"]))
    noise = np.maximum(rows["accuracy_se"], 1.0 / rows["n_points"])
    above = (rows["accuracy"] > level + 3 * noise).loc[fitted]
    leaves = next(s for s in fitted if above.loc[s:].all())
    assert abs(steps.index(first_step(report, "generalisation")) - steps.index(leaves)) <= 1


def test_sample_run_geometry_mode_agrees_within_a_factor_of_two(sample_table):
    by_accuracy = classify(sample_table)
    geometry = classify(sample_table, mode="geometry")
    assert geometry.mode == "geometry"
    seen = phases_seen(geometry)
    assert "generalisation" in seen and [p for p in PHASES if p in seen] == seen
    start, truth = first_step(geometry, "generalisation"), first_step(by_accuracy, "generalisation")
    assert truth / 2 <= start <= truth * 2
    if by_accuracy.advice != "roll-back":
        assert geometry.advice != "roll-back"  # no collapse read into a real run that did not collapse


def test_a_table_where_every_checkpoint_failed_is_an_error_not_a_verdict():
    steps = [0, 10, 100, 1000, 5000]
    frame = accuracy_table(steps, np.full(5, 0.5), np.full(5, 0.5))
    frame["status"], frame["error"] = "error", "step_0.pt: weights do not fit the model"
    with pytest.raises(ResultsError, match="every checkpoint failed in `grokmon analyze`.*weights do not fit"):
        classify(frame)
    with pytest.raises(ResultsError, match="empty"):
        classify(frame.iloc[:0])


def normal_run_series(steps, shock=None, rng=None):
    """A run that learns without grokking: the geometry moves while fitting (LC and rank fall, the norm grows),
    then settles. `shock`: ("dead" | "lc_jump", decade) damages it there."""
    rng = rng or np.random.default_rng(3)
    fitted = sigmoid(steps, 1.5, 0.25)
    lc = 160 - 85 * fitted
    erank = 9.4 - 2.7 * fitted
    alignment = 0.05 - 0.6 * fitted
    norm = 0.4 + 5 * fitted
    if shock is not None:
        kind, decade = shock
        hit = sigmoid(steps, decade, 0.03)
        if kind == "dead":
            lc, erank, alignment = lc * (1 - 0.93 * hit), erank - (erank - 0.4) * hit, alignment * (1 - hit)
        else:
            lc = lc * (1 + 0.6 * hit)
    series = {}
    for split in ("train", "test"):
        series[("lc", split)] = (lc + rng.normal(0, 0.3, len(steps)), np.full(len(steps), 0.5))
        series[("jacobian_erank", split)] = (erank + rng.normal(0, 0.01, len(steps)), np.full(len(steps), 0.03))
        series[("centroid_alignment", split)] = (alignment + rng.normal(0, 0.002, len(steps)), np.full(len(steps), 0.005))
        series[("centroid_norm", split)] = (norm * (1 + rng.normal(0, 0.005, len(steps))), norm * 0.01)
    return series


def test_geometry_settled_without_simplifying_is_inconclusive_not_a_guess():
    report = classify(table(STEPS, normal_run_series(STEPS)))
    assert report.mode == "geometry" and report.current_phase == "memorisation"
    assert report.advice == "inconclusive" and "converged or still memorising" in report.reason


@pytest.mark.parametrize(("kind", "words"), [("dead", "dead units"), ("lc_jump", "local complexity jumped")])
def test_geometry_collapse_when_a_settled_run_is_damaged(kind, words):
    report = classify(table(STEPS, normal_run_series(STEPS, shock=(kind, 4.0))))
    assert report.current_phase == "collapse" and report.advice == "roll-back"
    assert words in report.reason
    assert 1_000 <= report.best_step < first_step(report, "collapse")
    assert 7_000 <= first_step(report, "collapse") <= 15_000


def test_a_tiny_climb_from_below_chance_that_goes_nowhere_is_not_generalisation():
    steps = STEPS[STEPS <= 3_000]
    train = np.clip(sigmoid(steps, 1.3, 0.2) * 1.02, 0, 1)
    test = 0.012 * sigmoid(steps, 2.8, 0.15)  # memorised at 0, creeping back towards chance (1/47)
    report = classify(accuracy_table(steps, train, test))
    assert phases_seen(report) == ["fitting", "memorisation"] and report.advice == "keep-training"


def test_few_probe_points_lower_the_confidence():
    train, test = grokking(STEPS)
    many = classify(accuracy_table(STEPS, train, test))
    few_table = accuracy_table(STEPS, train, test).assign(n_points=8)
    few = classify(few_table)
    assert many.advice == "stop" and few.advice == "inconclusive"
    assert few.confidence == pytest.approx(many.confidence * 8 / 32, abs=0.01)
    assert "only 8 probe points per split" in few.reason
