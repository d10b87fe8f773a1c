"""Accuracy mode: train and test accuracy decide, one checkpoint at a time, from that checkpoint and the ones
before it (the rules and their thresholds: docs/phases.md, "Accuracy mode").

Loss spikes and probe noise: the levels that decide something (the memorisation level, the peak) are
medians of three checkpoints, so one checkpoint that dips does not set them; a drop is a collapse only when
it holds at `collapse_checkpoints` checkpoints in a row; and every difference is judged against the noise of
the series (series.py), which includes the scatter of the checkpoints about their trend.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .accuracy_reading import Reading, median3, span_words, window_target
from .series import MIN_TREND_POINTS, Track, normal_cdf, strength_of, trends


class AccuracyJudge:
    """Reads a run's checkpoints in step order, remembering what the rules need: when the train set was
    fitted, the memorisation level, whether and how the run generalised, the peak, the best checkpoint."""

    def __init__(self, steps: np.ndarray, x: np.ndarray, train: Track, test: Track, robust: Track | None, th,
                 before: tuple[float, float] | None = None):
        self.steps, self.th = steps, th
        self.tr, self.te = train.value.tolist(), test.value.tolist()
        self.tr_noise, self.te_noise = train.sigma.tolist(), test.sigma.tolist()
        self.present = (train.present & test.present).tolist()
        self.robust = robust
        # robust trends: one checkpoint that spikes away and back does not tilt them
        plateau, unfitted, partial, level = trends(
            x, test, (th.plateau_decades, th.unfitted_decades, th.partial_decades, th.trend_decades), robust=True)
        train_unfitted, self.train_trend = trends(x, train, (th.unfitted_decades, th.trend_decades), robust=True)
        self.spans = {"test": plateau, "test unfitted": unfitted, "test partial": partial,
                      "train unfitted": train_unfitted}
        if robust is not None:
            self.spans["robust"], = trends(x, robust, (th.plateau_decades,), robust=True)
        self.levels = {"train": self.train_trend, "test": level}
        self.x = x
        # the last checkpoint so far where test accuracy was more than `plateau_gain` below train accuracy, and
        # the first checkpoint of the last `saturated_decades`
        short = np.where(train.present & test.present, (train.value - test.value > th.plateau_gain)
                         | (train.value < 1.0 - th.plateau_gain), False)
        self.last_short = np.maximum.accumulate(np.where(short, np.arange(len(steps)), -1)).tolist()
        # the newest checkpoint at least saturated_decades back: where a saturated span starts (-1: none yet)
        self.saturation_start = (np.searchsorted(x, x - th.saturated_decades, side="right") - 1).tolist()
        self.seen: list[int] = []          # checkpoints with both accuracies
        self.train_seen: list[float] = []
        self.fitted = False
        self.test_before: list[float] = []  # test accuracy before the fit, and since
        self.test_low = math.inf            # the lowest of test_before (kept, not searched at every checkpoint)
        self.test_since: list[float] = []
        self.start_level = math.inf         # lowest 3-median of test accuracy before the fit
        self.floor, self.floor_at = math.inf, -1  # memorisation level: lowest 3-median from the fit to generalising
        self.generalised: str | None = None  # how: "ratio", "ordinary", "rose"
        self.generalised_at_fit = False      # already at the fit (learned as the train set was fitted)
        self.fitted_short = math.inf         # lowest test accuracy before the fit where train was already fitted
        self.peak = -math.inf               # highest 3-median of test accuracy once generalised
        self.peak_windows = 0               # how many 3-medians the peak is the highest of
        self.best: int | None = None        # roll-back target: of the best 3-median (window_target)
        self.best_level = self.best_train = -math.inf  # the best 3-median of test accuracy, and of train there
        self.early: tuple[int | None, float, int] | None = None  # (best, level, 3-medians) before the fit, if learned
        self.train_low, self.train_peak, self.train_peak_at = math.inf, -math.inf, -1
        self.previous: str | None = None   # the phase read at the checkpoint before
        if before is not None:  # the run before the table's first checkpoint started from these accuracies
            self.train_low, self.test_low = before
            self.start_level = self.test_low

    def readings(self) -> list[Reading]:
        """The reading at every checkpoint, in one pass."""
        out = []
        for i in range(len(self.steps)):
            if not self.present[i]:
                out.append(Reading(None, 0.0, "", self.best))
                continue
            self._update(i)
            out.append(dataclasses.replace(self._read(i), train_fitted=self._fits(i)))
            self.previous = out[-1].phase
        return out

    # ------------------------------------------------------------------ what is remembered
    def _noise(self, i: int) -> float:
        """Noise of a difference of two test accuracies, as known at checkpoint i."""
        return math.sqrt(2.0) * self.te_noise[i]

    def _update(self, i: int) -> None:
        th, tr, te = self.th, self.tr[i], self.te[i]
        self.seen.append(i)
        self.train_low = min(self.train_low, tr)
        self.train_seen.append(tr)
        if not self.fitted and self._fits(i):
            self.fitted = True
            self.generalised = self._ordinary(i)
            # a sparse save before the fit (dated by a median of three) showing it fitted, test far below: memorised
            gain = te - self.fitted_short
            memorised = (self.generalised == "ratio" and self.fitted_short < th.generalised_ratio * tr
                         and gain >= th.slope_sigma * self._noise(i) and gain >= th.min_gain * (tr - self.fitted_short))
            self.generalised_at_fit = self.generalised is not None and not memorised
            self.floor = self.fitted_short if memorised else self.floor
            if self.generalised_at_fit:  # what it had learned before the fit (label noise can take it away)
                self.early = (self.best, self.best_level, len(self.test_before))
            self.best, self.best_level = None, -math.inf  # the roll-back target is taken from the fit on
        if self.fitted:
            self.test_since.append(te)
            level = median3(self.test_since)
            if level < self.floor and self.generalised is None:  # the level it generalised from stays
                self.floor, self.floor_at = level, i
            if tr > self.train_peak:
                self.train_peak, self.train_peak_at = tr, i
        else:
            self.test_before.append(te)
            self.test_low = min(self.test_low, te)
            if tr >= th.fitted_accuracy:
                self.fitted_short = min(self.fitted_short, te)
            self.start_level = min(self.start_level, median3(self.test_before))
        pool = self.test_since if self.fitted else self.test_before
        level, target = median3(pool), window_target(pool, self.seen)
        train = median3(self.train_seen)
        if self.best is None or level > self.best_level:  # the best three in a row ...
            self.best, self.best_level, self.best_train = target, level, train
        elif level >= self.best_level - self._noise(i) and train >= self.best_train - math.sqrt(2.0) * self.tr_noise[i]:
            self.best = target  # ... or of a later three as good within the noise, on train accuracy too (not damaged)
        if self.generalised is None and self.fitted:
            self.generalised = self._risen(i)
        if self.generalised is not None:
            self.peak = max(self.peak, median3(self.test_since or self.test_before))
            self.peak_windows += 1

    def _fits(self, i: int) -> bool:
        """The train set is fitted at checkpoint i: the median of the last three train accuracies is at
        `fitted_accuracy`, or train accuracy rose there from below significantly (saved sparsely, the fit falls
        between two saves, and the median would date it a checkpoint late)."""
        seen, fitted = self.train_seen, self.th.fitted_accuracy
        if median3(seen) >= fitted:
            return True
        rise = seen[-1] - seen[-2] if len(seen) > 1 else 0.0
        return seen[-1] >= fitted and rise >= self.th.slope_sigma * math.sqrt(2.0) * self.tr_noise[i]

    def _ordinary(self, i: int) -> str | None:
        """At the fit: test accuracy at `generalised_ratio` of train, or most of the way up with it."""
        th, tr, te = self.th, self.tr[i], self.te[i]
        if te >= th.generalised_ratio * tr:
            return "ratio"
        start = self.start_level if math.isfinite(self.start_level) else te
        learned = te - start
        if learned >= th.slope_sigma * self._noise(i) and learned >= th.early_generalised * (tr - start):
            return "ordinary"
        return None

    def _risen(self, i: int) -> str | None:
        """After the fit: the 3-median of test accuracy at `generalised_ratio` of train, or risen over the
        memorisation level significantly and by `min_gain` of the gap to train accuracy."""
        th, tr = self.th, self.tr[i]
        level = median3(self.test_since)
        if level >= th.generalised_ratio * tr:
            return "ratio"
        gain = level - self.floor
        if gain >= th.slope_sigma * self._noise(i) and gain >= max(th.onset_gain, th.min_gain * (tr - self.floor)):
            return "rose"
        return None

    # ------------------------------------------------------------------ the rules, in order of precedence
    def _read(self, i: int) -> Reading:
        for rule in (self._diverged, self._collapsed):
            reading = rule(i)
            if reading is not None:
                return reading
        if not self.fitted:
            return self._unfitted(i)
        if self.generalised is None:
            return self._unconfirmed_drop(i, self._memorised(i))
        reading = self._generalised(i)
        if reading.phase == "robustness_plateau" and reading.strength > 0:  # settled (a fall it holds over has none)
            reading = self._settled_below_early_best(i) or reading
        return self._unconfirmed_drop(i, reading)

    def _settled_below_early_best(self, i: int) -> Reading | None:
        """Learned as the train set was fitted, and settled (a plateau) `collapse_drop` or more below its best test
        accuracy before the fit, significantly (as in `_lost`): lost as it fitted the rest (label noise memorised).
        Only a plateau decides: a dip while fitting that recovers is no loss."""
        if self.early is None or self.early[0] is None:
            return None
        best, peak, windows = self.early
        drop = self._beyond_noise(i, "test", peak, windows)
        if drop is None or drop < self.th.collapse_drop:
            return None
        note = (f"test accuracy flat at {self.te[i]:.3f} (train {self.tr[i]:.3f}), below {self.te[best]:.3f} at step "
                f"{int(self.steps[best])}, before the train set was fitted: what the run learned first was lost as it "
                "fitted the rest of its train set (noisy labels memorised, if it has them)")
        return Reading("collapse", min(1.0, drop / (2 * self.th.collapse_drop)), note, best)

    def _unconfirmed_drop(self, i: int, reading: Reading) -> Reading:
        """The newest checkpoint alone `collapse_drop` below the peak, and significantly: test accuracy once the run
        generalised, train accuracy once it was fitted. Until the drop holds for `collapse_checkpoints` checkpoints
        in a row it is a spike or the start of a collapse, which only the next checkpoints tell apart: the reading
        stands with no strength (no confidence: `inconclusive`)."""
        th = self.th
        for name, peak in (("test", self.peak if self.generalised else -math.inf),
                           ("train", self.train_peak if self.fitted else -math.inf)):
            values, noise = self._series(name)
            drop = peak - values[i]
            below = self._held_below(values, peak)
            if drop < th.slope_sigma * math.sqrt(2.0) * noise[i] or not 0 < below < th.collapse_checkpoints:
                continue  # no drop, or one that held (the collapse rules decide)
            left = th.collapse_checkpoints - below
            note = (f"{reading.note}; but {name} accuracy {values[i]:.3f} at step {int(self.steps[i])} is {drop:.3f} "
                    f"below its peak {peak:.3f} (a median of three): a spike, or the start of a collapse if it is as "
                    f"low at the next {left} checkpoint{'s' if left > 1 else ''}")
            return Reading(reading.phase, 0.0, note, reading.best, wants="checkpoints")
        return reading

    def _series(self, name: str) -> tuple[list[float], list[float]]:
        """The values and noise of "train" or "test" accuracy."""
        return (self.tr, self.tr_noise) if name == "train" else (self.te, self.te_noise)

    def _held_below(self, values: list[float], peak: float) -> int:
        """How many of the newest checkpoints in a row are `collapse_drop` or more below `peak` (at most
        `collapse_checkpoints`: enough to say the drop held)."""
        below = 0
        for j in reversed(self.seen[-self.th.collapse_checkpoints:]):
            if peak - values[j] < self.th.collapse_drop:
                break
            below += 1
        return below

    def _lost(self, i: int, name: str, peak: float) -> float | None:
        """How much series `name` ("train" or "test") has lost from `peak`, if it is a collapse: at least
        `collapse_drop` at each of the last `collapse_checkpoints` checkpoints (a spike does not), and the level
        of its last `trend_decades` significantly below the peak (a 3-median: `_beyond_noise`). None otherwise."""
        if self._held_below(self._series(name)[0], peak) < self.th.collapse_checkpoints:
            return None
        return self._beyond_noise(i, name, peak, self.peak_windows if name == "test" else 1)

    def _beyond_noise(self, i: int, name: str, peak: float, windows: int) -> float | None:
        """How far the level of series `name`'s last `trend_decades` lies below `peak`, the highest of `windows`
        medians of three, past the peak's expected excess (the highest of m noisy 3-medians stands about
        sqrt(2 ln m' / 3) noise above the level they share, m' = m / 3 windows that share no checkpoint), where that
        is `slope_sigma` x the spread of both (the line's error at its newest end, the peak's); None where it is not."""
        line, noise = self.levels[name], self._series(name)[1][i]
        spread = math.sqrt(float(line.level_se[i]) ** 2 + noise ** 2 / 3.0)
        excess = noise * math.sqrt(2.0 * math.log(max(windows / 3.0, 1.0)) / 3.0)
        drop = peak - float(line.level[i]) - excess
        return drop if drop >= self.th.slope_sigma * spread else None

    def _diverged(self, i: int) -> Reading | None:
        """The train set was fitted and train accuracy has since been lost on the probes' labels (the training
        diverged, or the labels it trains on changed: grokmon cannot tell which); not while test accuracy climbs
        significantly to its best so far (strong weight decay can trade some of the fit for generalisation)."""
        th = self.th
        if not self.fitted or self.tr[i] >= th.fitted_accuracy:
            return None
        if self.levels["test"].z[i] >= th.slope_sigma and median3(self.test_since) >= self.best_level - self._noise(i):
            return None
        drop = self._lost(i, "train", self.train_peak)
        if drop is None:
            return None
        note = (f"train accuracy {self.tr[i]:.3f}, down from {self.train_peak:.3f} at step "
                f"{int(self.steps[self.train_peak_at])} after the train set was fitted (test {self.te[i]:.3f}): "
                "the training diverged, or the labels it trains on are not the probes' any more")
        return Reading("collapse", min(1.0, drop / (2 * th.collapse_drop)), note, self.best)

    def _collapsed(self, i: int) -> Reading | None:
        """Generalised, and test accuracy has lost `collapse_drop` from its peak (`_lost`)."""
        if self.generalised is None:
            return None
        drop = self._lost(i, "test", self.peak)
        if drop is None:
            return None
        note = (f"test accuracy {self.te[i]:.3f}, down from {self.te[self.best]:.3f} at step "
                f"{int(self.steps[self.best])} while train is {self.tr[i]:.3f}")
        return Reading("collapse", min(1.0, drop / (2 * self.th.collapse_drop)), note, self.best)

    def _unfitted(self, i: int) -> Reading:
        """Before the fit: fitting, unless train and test accuracy rose together and both have stayed flat
        (settled short of a fitted train set: label noise, too small a network)."""
        th, tr, te = self.th, self.tr[i], self.te[i]
        rise, learned = tr - self.train_low, te - self.test_low
        if (rise >= th.slope_sigma * math.sqrt(2) * self.tr_noise[i] and rise >= th.min_gain * (1 - self.train_low)
                and learned >= th.slope_sigma * self._noise(i) and learned >= th.early_generalised * rise):
            train_flat, test_flat = self._flat(i, "train unfitted"), self._flat(i, "test unfitted")
            if train_flat and test_flat and train_flat[0] and test_flat[0]:
                return Reading("robustness_plateau", min(train_flat[1], test_flat[1]),
                               f"train accuracy flat at {tr:.3f} (< {th.fitted_accuracy}) after rising from "
                               f"{self.train_low:.3f}, test accuracy flat at {te:.3f} after rising with it: settled "
                               "without fitting", self.best)
        z = float(self.train_trend.z[i]) if self.train_trend.count[i] >= MIN_TREND_POINTS else 0.0
        climbing = "climbing" if z >= th.slope_sigma else "not climbing significantly"
        level = median3(self.train_seen)
        return Reading("fitting", max(0.5, strength_of(z, th.slope_sigma)),
                       f"train accuracy {tr:.3f} (median of the last three {level:.3f} < {th.fitted_accuracy}), {climbing}",
                       self.best)

    def _memorised(self, i: int) -> Reading:
        """Fitted, not generalised: generalisation has begun once test accuracy leaves its memorisation level
        significantly and by `onset_gain`; memorisation while it has not."""
        th, tr, te = self.th, self.tr[i], self.te[i]
        gain = te - self.floor
        z = gain / self._noise(i)
        level = f"{self.floor:.3f} (step {int(self.steps[self.floor_at])})"
        if z >= th.slope_sigma and gain >= th.onset_gain:
            return Reading("generalisation", strength_of(z, th.slope_sigma),
                           f"test accuracy {te:.3f}, up from its memorisation level {level}", self.best)
        return Reading("memorisation", 1.0 - strength_of(max(z, 0.0), th.slope_sigma) / 2,
                       f"train accuracy {tr:.3f}, test accuracy {te:.3f} at its memorisation level {level}", self.best)

    def _saturated(self, i: int) -> bool:
        """Fitted, train accuracy within `plateau_gain` of 1 and test accuracy within `plateau_gain` of it at every
        checkpoint from the newest one `saturated_decades` or more back (the span held, at two checkpoints at least):
        nothing is left to gain."""
        start = min(self.saturation_start[i], i - 1)
        return self.fitted and start >= 0 and self.last_short[i] < start

    def _seen_change(self, i: int, name: str) -> float:
        """How much series `name` changed from the first checkpoint of its span to checkpoint i. A reason cites it
        beside the trend line's change, which decides but can overshoot a step (+1.02 for a jump from 0 to 1)."""
        values = self.robust.value if name == "robust" else self._series(name.split()[0])[0]
        return float(values[i] - values[int(self.spans[name].start[i])])

    def _flat(self, i: int, name: str) -> tuple[bool, float, float] | None:
        """Whether series `name` gained or lost less than `plateau_gain` over its span (`plateau_decades`;
        "... unfitted": `unfitted_decades`; "test partial": `partial_decades`): (flat, probability that it is,
        change); None before the run spans that long."""
        th, span = self.th, self.spans[name]
        if not span.covers[i] or span.count[i] < MIN_TREND_POINTS:
            return None
        width = self._width(i, name)
        gain, gain_se = float(span.slope[i]) * width, float(span.slope_se[i]) * width
        flat = abs(gain) < th.plateau_gain
        if gain_se > 0:
            p_flat = normal_cdf((th.plateau_gain - gain) / gain_se) - normal_cdf((-th.plateau_gain - gain) / gain_se)
        else:
            p_flat = float(flat)
        return flat, p_flat, gain

    def _width(self, i: int, name: str) -> float:  # the decades series `name`'s line spans at checkpoint i
        return float(self.x[i] - self.x[self.spans[name].start[i]])

    def _span_words(self, i: int, name: str, threshold: str, line: str = "test accuracy's line") -> tuple[str, str]:
        """accuracy_reading.span_words for series `name`'s line at checkpoint i."""
        width = self._width(i, name) if self.spans[name].count[i] >= MIN_TREND_POINTS else 0.0
        return span_words(width, getattr(self.th, threshold), threshold, line)

    def _generalised(self, i: int) -> Reading:
        """Generalised: a plateau once test accuracy (and robust accuracy, where measured) stayed flat over
        `plateau_decades` (`partial_decades` while it is short of `generalised_ratio` x train accuracy after
        rising from a memorisation stage), else still generalising."""
        th, tr, te = self.th, self.tr[i], self.te[i]
        partial = self.generalised == "rose" and median3(self.test_since) < th.generalised_ratio * tr
        name = "test partial" if partial else "test"
        flat = self._flat(i, name)
        span, stretch = self._span_words(i, name, "partial_decades" if partial else "plateau_decades")
        if self._saturated(i) and (flat is None or not flat[0]):  # nothing is left to gain: no span decides
            flat, stretch = (True, 1.0, 0.0), ""
            span = f"{th.saturated_decades:g} decades, within {th.plateau_gain:g} of train"
        wants, stretched = ("denser saves" if stretch else None), bool(stretch)
        if flat is None or not flat[0]:
            if flat is None:
                return Reading("generalisation", 0.5, f"test accuracy {te:.3f} with train at {tr:.3f}; the run is "
                               f"shorter than {span} so far", self.best)
            seen = self._seen_change(i, name)
            falling = seen < 0 and flat[2] < 0
            moving = "falling (not yet a collapse)" if falling else "moving" if seen * flat[2] <= 0 else "rising"
            note = (f"test accuracy {te:.3f} {moving}, {seen:+.3f} over the last {span} (trend line {flat[2]:+.3f}), "
                    f"with train at {tr:.3f}")
            if falling:  # keep-training rests on a gain still to come; a fall is evidence against it
                note += ": no gain to train for, and no loss that has held long enough to roll back yet"
            # a fall from a plateau leaves it a plateau until it tells a spike from a collapse (no strength either way)
            phase = "robustness_plateau" if falling and self.previous == "robustness_plateau" else "generalisation"
            return Reading(phase, 0.0 if falling else max(0.5, 1.0 - flat[1]), note + stretch, self.best,
                           wants=wants, stretched=stretched)
        robust = self._flat(i, "robust") if self.robust is not None and self.robust.present[i] else None
        since = (", learned as the train set was fitted (no memorisation stage)" if self.generalised_at_fit
                 else f", up from {self.floor:.3f}")
        note = f"test accuracy flat at {te:.3f} (train {tr:.3f}) over the last {span}{since}"
        robust_span, robust_stretch = (self._span_words(i, "robust", "plateau_decades", "robust accuracy's line")
                                       if robust is not None else ("", ""))
        stretch += robust_stretch
        wants = "denser saves" if stretch else None
        if robust is None or robust[0]:  # the strength is test accuracy's line's alone
            return Reading("robustness_plateau", flat[1], note + stretch, self.best, wants=wants, stretched=stretched)
        seen = self._seen_change(i, "robust")
        rising = robust[2] > 0
        agrees = seen > 0 if rising else seen < 0  # the change as seen goes the trend line's way
        word = ("rising" if rising else "falling") + ("" if agrees else " on its trend line")
        change = (f"robust accuracy {self.robust.value[i]:.3f} {'still ' if rising else ''}{word} ({seen:+.3f} over "
                  f"the last {robust_span}, trend line {robust[2]:+.3f})")
        if rising:
            return Reading("generalisation", max(0.5, 1.0 - robust[1]),
                           f"delayed robustness: {change} while test accuracy settled at {te:.3f}{stretch}", self.best,
                           wants=wants)
        # robust accuracy falling: no gain to wait for, but the run has not settled either
        return Reading("robustness_plateau", flat[1] * robust[1], f"{note}; {change}{stretch}", self.best, wants=wants)
