"""Accuracy mode on the regression runs (corpus/trials.py: digits MLPs trained with too high a learning rate, whose
train and test accuracy drop together and recover every few hundred steps) and, for the words of its reasons, on
every stored run: a stop is not given on a checkpoint in a dip, a line that rose only by recovering from a dip is
no rise to train for, and a reason's "rising" or "falling" agrees with the numbers it cites."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from corpus import checks
from corpus.load import FIXTURES, TRIALS, VALIDATION, corpus_runs, sample_run
from grokmon.phasing import PhaseThresholds, classify


@pytest.fixture(scope="module")
def trials():
    found = {run.name: run for run in corpus_runs(TRIALS)}
    if not found:
        pytest.skip(f"no trial fixtures in {TRIALS}: python -m corpus.build --trials")
    return found


def _verdicts(run):
    return {v.step: v for v in classify(run.table, mode="accuracy").history}


def _probe(run, split: str) -> dict[int, float]:
    rows = run.table[run.table["split"] == split]
    return dict(zip(rows["step"].astype(int), rows["accuracy"]))


def test_no_stop_on_a_checkpoint_whose_model_is_in_a_dip(trials):
    run = trials["adam-lr0.06-b32-every50"]
    verdicts, test, train = _verdicts(run), _probe(run, "test"), _probe(run, "train")
    # 1550 and 1600: test 0.906 and 0.901, train 0.917 and 0.906, after 0.97-0.98 and 0.99 (the whole test set:
    # 0.863 and 0.883 against 0.952-0.964); a stop there kept the worst models of the run
    for step in (1550, 1600):
        v = verdicts[step]
        assert (v.advice, v.phase, v.wants) == ("inconclusive", "robustness_plateau", "checkpoints"), v
        assert f"test accuracy {test[step]:.3f} and train {train[step]:.3f} at step {step} are below" in v.reason
        assert "this checkpoint is in a dip" in v.reason
    assert run.test[list(run.steps).index(1550)] < run.test[-1] - 0.05  # the truth: the dip is real


def test_a_dip_short_of_slope_sigma_still_withholds_the_stop(trials):
    """A dip needs `dip_sigma` (2) probe standard errors, both splits together, not `slope_sigma` (3): a stop keeps the
    newest model. adam-lr0.03 at step 950 (probes: test 0.906, train 0.958, after 0.958 and 0.990; whole test set
    0.911, final 0.961) read `stop` 1.00 at 2.8 standard errors; so did adam-lr0.06 at step 1350."""
    for name, step in (("adam-lr0.03-b32-s2-every50", 950), ("adam-lr0.06-b32-every50", 1350)):
        run = trials[name]
        v = _verdicts(run)[step]
        assert (v.advice, v.phase, v.wants) == ("inconclusive", "robustness_plateau", "checkpoints"), v
        z = float(re.search(r"\(([\d.]+) probe standard errors, both splits together\)", v.reason).group(1))
        assert 2.0 <= z < 3.0, v.reason  # between dip_sigma and slope_sigma: what this case is about
        stop = classify(run.prefix(list(run.steps).index(step)), mode="accuracy",
                        thresholds=PhaseThresholds(dip_sigma=3.0))
        assert stop.advice == "stop"  # with the old evidence asked of a dip, the stop on it came back


def test_a_line_that_rose_only_by_recovering_from_a_dip_is_no_rise(trials):
    """adam-lr0.03-b32-s2 holds test accuracy 0.964-0.969 and train 1.000 from step 1,700 to its end at 2,500 (the
    whole test set: 0.960-0.961); the span then starts among the dips of steps 950-1,200, so its line rose +0.02 to
    +0.03 and the verdict was `inconclusive` (0.20-0.45) at every checkpoint from 1,700 to 2,150."""
    run = trials["adam-lr0.03-b32-s2-every50"]
    verdicts = _verdicts(run)
    late = [v for step, v in verdicts.items() if step >= 1800]
    assert all(v.advice == "stop" for v in late), [(v.step, v.advice, v.reason) for v in late if v.advice != "stop"]
    assert any("only by recovering from a dip" in v.reason for v in late)


def test_a_run_still_below_the_best_it_held_is_not_read_back_at_it():
    """A rise back towards a best held before the span, still short of it by more than `plateau_gain`, is a recovery
    under way: there is still a gain to train for (built on the sample's shape: flat 0.95, a dip to 0.80, rising)."""
    steps = np.arange(0, 2001, 50)
    test = np.where(steps < 1000, 0.95, np.where(steps < 1100, 0.80, 0.80 + (steps - 1100) / 8000.0))
    rows = [{"step": int(s), "split": split, "status": "ok", "accuracy": float(a), "accuracy_se": 0.01}
            for s, te in zip(steps, test) for split, a in (("train", 1.0), ("test", te))]
    report = classify(pd.DataFrame(rows), mode="accuracy")
    last = report.history[-1]
    assert "back at the best" not in last.reason
    assert last.advice != "stop", last.reason


def _all_stored_runs():
    return [*corpus_runs(FIXTURES), *corpus_runs(VALIDATION), *corpus_runs(TRIALS), sample_run()]


WORDS = re.compile(r"(test|robust) accuracy \d\.\d{3} (still )?(rising|falling)( on its trend line)?"
                   r"(?: \(not yet a collapse\))?(?:, ([+-]\d\.\d{3}) since step \d+ \(\d\.\d{3}\), trend line "
                   r"([+-]\d\.\d{3})| \(([+-]\d\.\d{3}) over the last [^)]*\), (though )?([+-]\d\.\d{3}) since)")


def test_every_reasons_rising_or_falling_agrees_with_the_numbers_it_cites():
    """A bare "rising" ("falling") where the change from the span's first checkpoint is `plateau_gain` or more that
    way and the trend line goes that way too; "rising on its trend line" where only the line does. A new user's
    run read "test accuracy 0.891 rising, +0.004 over the last 0.3 decades" while test accuracy fell from 0.936."""
    gain = PhaseThresholds().plateau_gain
    found = 0
    for run in _all_stored_runs():
        for v in classify(run.table, mode="accuracy").history:
            for m in WORDS.finditer(v.reason):
                found += 1
                _, _, word, on_line, seen, line, line2, though, seen2 = m.groups()
                sign = 1 if word == "rising" else -1
                if on_line:
                    assert sign * float(line2) > 0 and sign * float(seen2) < gain, (run.name, v.step, m.group(0))
                    # "though" exactly where the ends go the other way by plateau_gain or more
                    assert bool(though) == (sign * float(seen2) <= -gain), (run.name, v.step, m.group(0))
                else:
                    assert sign * float(seen) >= gain and sign * float(line) > 0, (run.name, v.step, m.group(0))
    assert found > 100  # the pattern matches the reasons it checks


DOUBT = re.compile(r"\((?:its|train accuracy's|test accuracy's) trend line ([+-]\d\.\d{3}) ± (\d\.\d{3}) over [^,]*, [^:]*: within ±([\d.]+) "
                   r"with probability (\d\.\d{2})\)")


def test_a_plateau_held_with_little_confidence_says_why_and_its_numbers_agree():
    """A plateau whose flatness is in doubt (a new user's d20-bce run: "flat at 0.979" at confidence 0.43, with no
    word on why) cites its trend line's change and standard error; the probability it states is the one those give
    (within rounding), and the clause is there only where the confidence is short of act_confidence."""
    th, found = PhaseThresholds(), 0
    for run in _all_stored_runs():
        for v in classify(run.table, mode="accuracy").history:
            for m in DOUBT.finditer(v.reason):
                found += 1
                change, se, gain, stated = (float(g) for g in m.groups())
                cdf = lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))  # noqa: E731
                worst = min(cdf((gain - c) / s) - cdf((-gain - c) / s)
                            for c in (change - 5e-4, change + 5e-4) for s in (max(se - 5e-4, 1e-6), se + 5e-4))
                best = max(cdf((gain - c) / s) - cdf((-gain - c) / s)
                           for c in (change - 5e-4, change, change + 5e-4) for s in (max(se - 5e-4, 1e-6), se + 5e-4))
                assert worst - 0.006 <= stated <= best + 0.006, (run.name, v.step, m.group(0))
                assert v.confidence < th.act_confidence and v.advice != "stop", (run.name, v.step, m.group(0))
    assert found > 10  # the pattern matches the clauses it checks


def _memorising(last_step: int) -> pd.DataFrame:
    """Fitted at step 100, test accuracy flat at 0.02 (a modular task memorised without weight decay)."""
    steps = np.unique(np.round(np.geomspace(1, last_step, 60)).astype(int))
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"step": int(s), "split": split, "status": "ok", "accuracy": a, "accuracy_se": 0.01}
                         for s in [0, *steps] for split, a in
                         (("train", min(1.0, 0.05 + s / 100.0)), ("test", 0.02 + 0.005 * rng.standard_normal()))])


def test_a_memorisation_longer_than_the_corpus_grokking_delays_says_so():
    long = classify(_memorising(60_000), mode="accuracy").history[-1]
    assert (long.phase, long.advice) == ("memorisation", "keep-training")
    assert "memorising for 2.75 decades of steps, since the fit at step 106" in long.reason, long.reason
    assert "may never generalise" in long.reason and "The confidence is that this is memorisation" in long.reason
    short = classify(_memorising(8_000), mode="accuracy").history[-1]
    assert short.phase == "memorisation" and "memorising for" not in short.reason
    later = PhaseThresholds(memorisation_decades=3.0)
    assert "memorising for" not in classify(_memorising(60_000), later, mode="accuracy").history[-1].reason


def test_noisy_labels_from_the_start_warn_while_fitting_and_roll_back_to_the_best_before_the_fit(trials):
    """A digits MLP on a train set 30 % of whose labels are random (its probes too): test accuracy peaks at 0.947
    while the train set is still being fitted and settles at 0.76 once the noise is memorised. While fitting, the
    reason warns of the loss where the whole test set shows one (a new user's such run read `fitting` with not a
    word on test accuracy); once it settled, a roll-back to a checkpoint within 0.02 of the peak (before the fit,
    the best is the highest median of three, not a later one within the noise: it named step 634, 0.925)."""
    run = trials["adam-w256-noisy-labels"]
    history = classify(run.table, mode="accuracy").history
    warned = [i for i, v in enumerate(history) if "below its best so far" in v.reason]
    assert len(warned) >= 3
    for i in warned:
        best = int(re.search(r"below its best so far, \d\.\d{3} \(a median of three\) at step (\d+)",
                             history[i].reason).group(1))
        peak = float(run.test[: i + 1].max())
        assert run.test[i] <= peak - 0.1 and run.test[list(run.steps).index(best)] >= peak - 0.02, history[i].step
    assert not [v.step for v in history if v.advice == "stop"]
    first = next(i for i, v in enumerate(history) if v.advice == "roll-back")
    assert {v.advice for v in history[first:]} <= {"roll-back", "inconclusive"}
    report = classify(run.table, mode="accuracy")
    assert report.advice == "roll-back" and not checks.best_step(run, report) and not checks.false_roll_backs(
        run, report.history)


@pytest.mark.parametrize("name", ["adam-w256-noisy25-every75", "sgd-m0.9-lr0.05-noisy25-every75"])
def test_noisy_labels_still_falling_after_the_fit_roll_back_from_the_fit(trials, name):
    """Digits MLPs on 25 % noisy labels (probes too), cut at step 3,000: test accuracy peaks at 0.93-0.96 while the
    train set is being fitted and is 0.13-0.17 lower at the fit, its line still falling for a few hundred steps. Such
    a new user's run read `inconclusive` "falling (not yet a collapse)" from the fit to its end, --json naming a best
    step after the fit (0.848) while the reason named one before it (0.962). The loss has held once the train set is
    fitted: roll-back from there to the end, to a checkpoint within 0.02 of the peak, the one the reason names."""
    run = trials[name]
    report = classify(run.table, mode="accuracy")
    history = report.history
    train = pd.Series(_probe(run, "train")).rolling(3).median()
    fitted = list(run.steps).index(int(train[train >= 0.95].index[0]))
    first = next(i for i, v in enumerate(history) if v.advice == "roll-back")
    assert first <= fitted + 1, (history[first].step, run.steps[fitted])
    assert [v.advice for v in history[first:]] == ["roll-back"] * (len(history) - first)
    assert report.advice == "roll-back" and not checks.best_step(run, report)
    assert not checks.false_roll_backs(run, history)
    assert f"at step {report.best_step}: what the run learned first was lost" in report.reason, report.reason
    assert float(run.test[list(run.steps).index(report.best_step)]) >= run.test.max() - 0.02


def _lost_before_and_after_the_fit() -> pd.DataFrame:
    """Learned to 0.92 by step 200 while fitting noisy labels, 0.75 at the fit (step 1,600), then 0.05 lower."""
    steps = np.unique(np.round(np.geomspace(10, 4000, 60)).astype(int))
    rng = np.random.default_rng(2)

    def test(s):
        if s <= 200:
            return 0.1 + 0.82 * s / 200
        return float(np.interp(np.log(s), np.log([200, 1600, 2000, 4000]), [0.92, 0.75, 0.69, 0.69]))
    return pd.DataFrame([{"step": int(s), "split": split, "status": "ok", "accuracy_se": 0.01,
                          "accuracy": float(np.clip(a + 0.004 * rng.standard_normal(), 0, 1))}
                         for s in [0, *steps]
                         for split, a in (("train", min(1.0, 0.1 + 0.9 * s / 1600)), ("test", test(s)))])


def test_a_run_lost_from_before_and_after_its_fit_rolls_back_to_the_better_best():
    """A new user's digits MLP on 35 % noisy labels (0.924 at step 200, 0.738 at its fit at step 1,700, 0.688 at
    1,900) was rolled back at step 1,900 to step 1,700, the worse of the two bests it had lost from."""
    report = classify(_lost_before_and_after_the_fit(), mode="accuracy")
    rolled = [v for v in report.history if v.advice == "roll-back"]
    assert rolled and report.advice == "roll-back" and 180 <= report.best_step <= 260  # the peak: 0.92 at 200
    assert all(f"best step {report.best_step}" in v.reason for v in rolled), [
        (v.step, v.reason) for v in rolled if f"best step {report.best_step}" not in v.reason]


def test_a_plateau_below_its_best_before_the_fit_names_one_model_to_keep():
    """A new user's digits MLP: 0.969 before the fit, 0.961 after it, 0.922 flat at the end: the reason said both
    "keep step 1200's model" and "the best step is 700", and called 0.052 "short of a collapse (0.05)" (the
    comparison is after the best's expected excess, which the reason did not give)."""
    steps = np.unique(np.round(np.geomspace(10, 8000, 70)).astype(int))
    rng = np.random.default_rng(3)

    def test(s):
        return float(np.interp(np.log(max(s, 1)), np.log([1, 300, 1000, 1500, 2000, 8000]),
                               [0.1, 0.97, 0.958, 0.958, 0.924, 0.924]))
    table = pd.DataFrame([{"step": int(s), "split": split, "status": "ok", "accuracy_se": 0.008,
                           "accuracy": float(np.clip(a + 0.003 * rng.standard_normal(), 0, 1))}
                          for s in [0, *steps] for split, a in (("train", min(1.0, 0.1 + 0.9 * s / 1000)),
                                                                ("test", test(s)))])
    report = classify(table, mode="accuracy")
    assert report.advice == "stop" and report.best_step <= 600, (report.advice, report.best_step, report.reason)
    assert f"the best step is {report.best_step}, before the train set was fitted" in report.reason
    assert "keep step" not in report.reason
    said, excess = map(float, re.search(r"is (\d\.\d{3}) below the best before it, \d\.\d{3} \(a median of three; "
                                        r"(\d\.\d{3}) once the expected excess", report.reason).groups())
    assert excess < 0.05 and excess < said, report.reason


def _collapse_then_climb(until: int = 8000) -> pd.DataFrame:
    """Learned with the fit to 0.93, collapsed to 0.45 at step 1,500, climbing back from step 3,000 to `until`."""
    steps = np.unique(np.round(np.geomspace(1, 8000, 70)).astype(int))
    rng = np.random.default_rng(1)

    def test(s):
        if s < 1500:
            return 0.93 * min(1.0, s / 50)
        return 0.45 if s < 3000 else 0.45 + 0.4 * np.log(min(s, until) / 3000) / np.log(8000 / 3000)
    return pd.DataFrame([{"step": int(s), "split": split, "status": "ok", "accuracy_se": 0.01,
                          "accuracy": float(np.clip(a + 0.005 * rng.standard_normal(), 0, 1))}
                         for s in [0, *steps] for split, a in (("train", min(1.0, 0.05 + s / 50)), ("test", test(s)))])


def test_a_collapse_that_climbs_back_says_so_and_keeps_its_roll_back():
    """A new user's a+b mod 23 after an Adam spike read "roll-back 1.00" at 0.52, 0.58, 0.66, 0.81 against 0.906
    before it, with no word on the climb: the reason now cites it (the advice stays, the best step is still the
    better model); a collapse that holds flat has no such clause."""
    history = classify(_collapse_then_climb(), mode="accuracy").history
    collapsed = [v for v in history if v.phase == "collapse"]
    flat = [v for v in collapsed if v.step < 3000]
    climbing = [v for v in collapsed if "climbing back" in v.reason]
    assert flat and not any("climbing back" in v.reason for v in flat)
    assert climbing and all(v.step > 3000 and v.advice == "roll-back" for v in climbing)
    last = history[-1]
    rise, since, low = re.search(r"climbing back: \+(\d\.\d{3}) since step (\d+) \((\d\.\d{3})(?:, a median of three)?\)",
                                 last.reason).groups()
    assert float(rise) >= 0.3 and int(since) < 3000 and "until one does, step" in last.reason
    assert "the climb is older" not in last.reason  # still climbing at the end


def test_a_climb_back_is_not_counted_from_a_crash_at_one_checkpoint():
    """A new user's a+b mod 59 MLP, its learning rate raised at step 12,000: test accuracy 0.988 -> 0.021 at the next
    save -> 0.59, then wandering 0.39-0.70, read "climbing back: +0.557 since step 12066 (0.021)". The climb is counted
    from the lowest median of three since the best (the crash among its neighbours), not from the crash itself."""
    steps = [*range(0, 12_001, 800), 12_066, *range(12_800, 24_001, 800)]
    after = [0.59, 0.60, 0.61, 0.39, 0.52, 0.64, 0.66, 0.63, 0.52, 0.58, 0.69, 0.68, 0.58, 0.68, 0.70, 0.58]
    test = [min(0.988, 0.1 + s / 2000) for s in steps[:16]] + [0.021] + after
    train = [min(1.0, 0.2 + s / 1000) for s in steps[:16]] + [0.29] + [min(1.0, a + 0.25) for a in after]
    rows = [{"step": s, "split": split, "status": "ok", "accuracy": a, "accuracy_se": 0.01}
            for s, tr, te in zip(steps, train, test) for split, a in (("train", tr), ("test", te))]
    history = classify(pd.DataFrame(rows), mode="accuracy").history
    assert history[-1].advice == "roll-back" and history[-1].phase == "collapse", history[-1].reason
    clauses = [v.reason for v in history if "climbing back" in v.reason]
    assert not [r for r in clauses if "since step 12066" in r], clauses


def test_a_climb_back_that_has_stopped_says_since_when():
    """A new user's digits MLP after a learning-rate blow-up: test accuracy crashed to 0.28, climbed back to 0.76 and
    held there; "climbing back: +0.477 since step 3100, trend line +0.344 over the last 0.3 decades" read as a climb
    still going on, the crash inside the line's window. The clause now says since when the checkpoints have held."""
    last = classify(_collapse_then_climb(until=5000), mode="accuracy").history[-1]
    assert last.advice == "roll-back" and "climbing back" in last.reason, last.reason
    since = int(re.search(r"the checkpoints since step (\d+) \([\d.]+ decades\) are within 0\.02 of each other: the "
                          r"climb is older than they are", last.reason).group(1))
    assert 4500 <= since <= 5500, last.reason  # flat from 5,000 (saved at x1.14: 4,755, 5,412)


def test_a_lost_fit_names_the_last_checkpoint_at_its_peak_too(trials):
    """Labels made noisy at step 1,500 of a run fitted since step 600: the diverged reason named only step 600 as
    where train accuracy was 1.000, as though it had been falling since; it held there to step 1,500."""
    run = trials["sgd-m0.9-noise0.5-then-clean-every100"]
    train = _probe(run, "train")
    diverged = [v for v in classify(run.table, mode="accuracy").history if "the training diverged" in v.reason]
    assert diverged
    for v in diverged:
        peak, first, last = re.search(r"down from (\d\.\d{3}) \(first at step (\d+), last at (\d+)\)", v.reason).groups()
        before = {s: a for s, a in train.items() if s < v.step}
        assert f"{max(before.values()):.3f}" == peak
        at_peak = [s for s, a in before.items() if a >= max(before.values())]
        assert (int(first), int(last)) == (min(at_peak), max(at_peak)) and int(last) == 1500


def test_a_split_by_ordered_pair_is_not_stopped_on_its_memorisation_stage(trials):
    """a+b mod 31 split by ordered pair: test accuracy rises with the fit to ~0.5 (the held-out pairs whose swap is
    trained), holds it for a decade, then groks to 0.98. Its memorisation level was taken mid-rise at the fit (0.42),
    the run read as generalised from it, and the stage as a plateau: `stop` from step 412 at test 0.53. The level
    now follows a rise that runs on from the fit, and a plateau of a run that rose holds its span since it rose."""
    run = trials["p31-wd1-lr3e-3-f0.6-ordered"]
    report = classify(run.table, mode="accuracy")
    assert not checks.early_stops(run, report.history) and not checks.memorisation_advice(run, report.history)
    assert all(v.advice != "stop" for v in report.history if v.step < 5000)
    young = [v for v in report.history if "left its memorisation level" in v.reason]
    assert young and all(v.advice != "stop" for v in young)
    for v in young:
        at, ago, need = re.search(r"only at step (\d+), (\d\.\d\d) decades ago: a plateau holds (\d\.\d+) decades",
                                  v.reason).groups()
        assert abs(math.log10((1 + v.step) / (1 + int(at))) - float(ago)) < 0.006 and float(ago) < float(need)
    slow = classify(trials["p31-wd1-lr1e-3-f0.6-ordered"].table, mode="accuracy")
    assert all(v.advice != "stop" for v in slow.history)  # creeping from 0.47 to 0.58: never settled


HELD = re.compile(r"(test|robust) accuracy (\d\.\d{3}) (?:still )?rising[^;]*?since step (\d+) \(\d\.\d{3}\)[^;]*; the "
                  r"checkpoints since step (\d+) \((\d\.\d\d) decades\) are within ([\d.]+) of each other: the rise is "
                  r"older than they are")


def test_a_rise_that_ended_inside_its_span_says_since_when_it_held():
    """'0.782 rising, +0.572 since step 15422' on a run flat at 0.77-0.78 since step 41,000 read as a rise still going
    on: the reason now names the newest stretch of at least three checkpoints within `plateau_gain` of each other,
    and every such clause agrees with the probes' numbers (the advice does not change)."""
    found = 0
    for run in _all_stored_runs():
        values = {"test": _probe(run, "test")}
        rows = run.table[run.table["split"] == "test"]
        if "robust_accuracy" in rows:
            values["robust"] = dict(zip(rows["step"].astype(int), rows["robust_accuracy"]))
        for v in classify(run.table, mode="accuracy").history:
            standing = re.search(r"the reading of step (\d+) stands", v.reason)  # a spike quotes the reading before
            for m in HELD.finditer(v.reason):
                found += 1
                label, now, first, start, decades, gain = m.groups()
                step = int(standing.group(1)) if standing and standing.end() < m.start() else v.step
                held = [a for s, a in values[label].items() if int(start) <= s <= step]
                before = max(s for s in values[label] if s < int(start))
                assert len(held) >= 3 and max(held) - min(held) <= float(gain) + 1e-9, (run.name, v.step)
                wider = [*held, values[label][before]]  # one checkpoint further back leaves the band (or the span)
                assert max(wider) - min(wider) > float(gain) or before < int(first), (run.name, v.step)
                assert int(first) < int(start) and f"{values[label][step]:.3f}" == now
                assert abs(math.log10((1 + step) / (1 + int(start))) - float(decades)) < 0.006
    assert found > 20
