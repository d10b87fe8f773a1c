"""What accuracy mode remembers of a run as it reads it, checkpoint by checkpoint, and the measurements its rules
(accuracy_mode.py) are made of: when the train set was fitted, the memorisation level, whether and how the run
generalised, the peak and the best checkpoint so far; a series' flatness over a span, a level's distance below a peak
beyond the noise, whether nothing is left to gain."""

from __future__ import annotations

import bisect
import math

import numpy as np

from .accuracy_reading import Reading, median3, window_target
from .series import MIN_TREND_POINTS, Track, despiked, normal_cdf, trends


class AccuracyMemory:
    """A run's accuracy series and what has been seen of them up to the checkpoint being read (`_update`)."""

    def __init__(self, steps: np.ndarray, x: np.ndarray, train: Track, test: Track, robust: Track | None, th,
                 before: tuple[float, float] | None = None):
        self.steps, self.th = steps, th
        self.tr, self.te = train.value.tolist(), test.value.tolist()
        self.tr_noise, self.te_noise = train.sigma.tolist(), test.sigma.tolist()
        self.tr_se, self.te_se = train.se.tolist(), test.se.tolist()  # over probe points: how well each is measured
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
        # where test accuracy was more than `plateau_gain` below train accuracy (or train below 1 by as much), as
        # measured, and the last checkpoint so far where it was once despiked (series.despiked: one that spikes away
        # and back is not short); likewise robust accuracy below 1 by as much (or not measured)
        both = train.present & test.present

        def short_of(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
            return both & ((tr - te > th.plateau_gain) | (tr < 1.0 - th.plateau_gain))

        self.short = short_of(train.value, test.value).tolist()
        self.last_short = _last_where(short_of(_despiked_at(train.value, both), _despiked_at(test.value, both)))
        if robust is None:
            robust_short = despiked_robust_short = np.ones(len(steps), bool)
        else:
            robust_short = ~robust.present | (robust.value < 1.0 - th.plateau_gain)
            despiked_robust_short = ~robust.present | (_despiked_at(robust.value, robust.present) < 1.0 - th.plateau_gain)
        self.robust_short, self.last_robust_short = robust_short.tolist(), _last_where(despiked_robust_short)
        # robust accuracy's checkpoints (with both accuracies) and the median of each three in a row of them (_turned)
        self.robust_at = np.flatnonzero(both & robust.present) if robust is not None else np.zeros(0, int)
        self.robust_medians = despiked(robust.value[self.robust_at])[1:-1] if robust is not None else np.zeros(0)
        # the newest checkpoint at least saturated_decades back: where a saturated span starts (-1: none yet)
        self.saturation_start = (np.searchsorted(x, x - th.saturated_decades, side="right") - 1).tolist()
        self.seen: list[int] = []          # checkpoints with both accuracies
        self.train_seen: list[float] = []
        self.fitted, self.fitted_at = False, -1
        self.test_before: list[float] = []  # test accuracy before the fit, and since
        self.test_low = math.inf            # the lowest of test_before (kept, not searched at every checkpoint)
        self.test_since: list[float] = []
        self.start_level = math.inf         # lowest 3-median of test accuracy before the fit
        self.floor, self.floor_at = math.inf, -1  # memorisation level: lowest 3-median from the fit to generalising
        self.floor_held = False  # whether test accuracy has held a level since the fit (_follow_the_fit)
        self.risen_at = -1       # where the run left its memorisation level ("rose"); -1 otherwise
        self.generalised: str | None = None  # how: "ratio", "ordinary", "rose"
        self.generalised_at_fit = False      # already at the fit (learned as the train set was fitted)
        self.fitted_short = math.inf         # lowest test accuracy before the fit where train was already fitted
        self.peak = -math.inf               # highest 3-median of test accuracy once generalised
        self.peak_windows = 0               # how many 3-medians the peak is the highest of
        self.best: int | None = None        # roll-back target: of the best 3-median (window_target)
        self.best_level = self.best_train = -math.inf  # the best 3-median of test accuracy, and of train there
        self.best_noise = (math.inf, math.inf)  # the noise of test and train differences when the best was set
        self.early: tuple[int | None, float, int] | None = None  # (best, level, 3-medians) before the fit, if learned
        self.train_low, self.train_peak, self.train_peak_at = math.inf, -math.inf, -1
        self.train_peak_last = -1  # the newest checkpoint at that peak (a fit held from train_peak_at to here)
        self.previous: str | None = None   # the phase read at the checkpoint before
        self.standing: tuple[int, Reading] | None = None  # the newest reading not withheld as a spike (_unconfirmed_drop) ...
        self.withheld = False                 # ... and whether the newest one was
        # per seen checkpoint, of test and robust accuracy since the fit: the best median of three so far, the newest
        # checkpoint of its window and how many medians it is the best of (_back_at_best)
        self.held: dict[str, list[tuple[float, int, int]]] = {"test": [], "robust": []}
        self.robust_since: list[float] = []
        if before is not None:  # the run before the table's first checkpoint started from these accuracies
            self.train_low, self.test_low = before
            self.start_level = self.test_low

    def _noise(self, i: int) -> float:
        """Noise of a difference of two test accuracies, as known at checkpoint i."""
        return math.sqrt(2.0) * self.te_noise[i]

    def _update(self, i: int) -> None:
        th, tr, te = self.th, self.tr[i], self.te[i]
        self.seen.append(i)
        self.train_low = min(self.train_low, tr)
        self.train_seen.append(tr)
        if not self.fitted and self._fits(i):
            self.fitted, self.fitted_at = True, i
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
            if self.generalised is None and not self.floor_held and i != self.floor_at:
                self._follow_the_fit(i)
            if tr > self.train_peak:
                self.train_peak, self.train_peak_at = tr, i
            if tr >= self.train_peak:
                self.train_peak_last = i
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
            self.best_noise = (self._noise(i), math.sqrt(2.0) * self.tr_noise[i])
        elif (self.fitted and level >= self.best_level - min(self._noise(i), self.best_noise[0])
              and train >= self.best_train - min(math.sqrt(2.0) * self.tr_noise[i], self.best_noise[1])):
            self.best = target  # ... or of a later three as good within the noise, on train accuracy too (not damaged)
        self._hold(i)
        if self.generalised is None and self.fitted:
            self.generalised = self._risen(i)
            self.risen_at = i if self.generalised == "rose" else -1
        if self.generalised is not None:
            self.peak = max(self.peak, median3(self.test_since or self.test_before))
            self.peak_windows += 1

    def _hold(self, i: int) -> None:
        """Extend `held` by checkpoint i (the newest seen)."""
        for name, pool, present in (("test", self.test_since, self.fitted),
                                    ("robust", self.robust_since, self.fitted and self.robust is not None
                                     and bool(self.robust.present[i]))):
            held = self.held[name]
            best = held[-1] if held else (-math.inf, -1, 0)
            if present:
                if name == "robust":
                    pool.append(float(self.robust.value[i]))
                level = median3(pool)
                best = (level, i, best[2] + 1) if level > best[0] else (best[0], best[1], best[2] + 1)
            held.append(best)

    def _back_at_best(self, i: int, name: str) -> tuple[float, float, int, float] | None:
        """Where series `name` ("test", "test partial", "robust") rose over its span only back to a level it held
        before: its line's level at i within `plateau_gain` of the best median of three since the fit at or before
        the span's first checkpoint, and that best above where the span starts. A line from a dip at the span's start
        rises, but a run whose best has not improved over the span has no gain to train for (patience, on the
        log-step axis). The best is discounted by the expected excess of the highest of m noisy medians (as in
        `_beyond_noise`). (probability that the gain past the best is within `plateau_gain`, that gain, the best's
        checkpoint, the best), or None."""
        key = "robust" if name == "robust" else "test"
        line = self.spans[name]
        start = int(line.start[i])
        pos = bisect.bisect_right(self.seen, start) - 1
        if pos < 0:
            return None
        best, at, windows = self.held[key][pos]
        values = self.robust.value if key == "robust" else self.te
        noise = float(self.robust.sigma[i]) if key == "robust" else self.te_noise[i]
        if not math.isfinite(best) or best <= float(values[start]):
            return None
        excess = noise * math.sqrt(2.0 * math.log(max(windows / 3.0, 1.0)) / 3.0)
        gain = float(line.level[i]) - (best - excess)
        pg = self.th.plateau_gain
        if abs(gain) >= pg:
            return None
        spread = math.sqrt(float(line.level_se[i]) ** 2 + noise ** 2 / 3.0)
        p_flat = normal_cdf((pg - gain) / spread) - normal_cdf((-pg - gain) / spread) if spread > 0 else 1.0
        return p_flat, gain, at, best

    def _fits(self, i: int) -> bool:
        """The train set is fitted at checkpoint i: the median of the last three train accuracies is at
        `fitted_accuracy`, or train accuracy rose there from below significantly (saved sparsely, the fit falls
        between two saves, and the median would date it a checkpoint late)."""
        seen, fitted = self.train_seen, self.th.fitted_accuracy
        if median3(seen) >= fitted:
            return True
        rise = seen[-1] - seen[-2] if len(seen) > 1 else 0.0
        return seen[-1] >= fitted and rise >= self.th.slope_sigma * math.sqrt(2.0) * self.tr_noise[i]

    def _follow_the_fit(self, i: int) -> None:
        """Until test accuracy holds a level after the fit, its memorisation level is where it is: a rise that runs on
        from the fit, checkpoint after checkpoint (significantly and by `onset_gain` each), is the fit's own, not a
        departure from a memorisation stage. The train set is counted fitted at `fitted_accuracy`, which a fast fit
        passes mid-rise: a+b mod 31 split by ordered pair, test accuracy 0.42 at the fit (train 0.97) and 0.47, 0.51
        at the next saves, then flat at 0.53 for a decade before grokking, was read as generalised from 0.42, and its
        memorisation stage as a plateau (`stop` 0.95 from step 524, test 0.53, final 0.98). Only within `trend_decades`
        of the fit: saved every 2,000 steps, test 0.30 at the fit and 0.99 at the next save is a run that memorised
        and grokked between two saves, not one fit."""
        gain = self.te[i] - self.floor
        within = self.x[i] - self.x[self.fitted_at] <= self.th.trend_decades
        if within and gain >= self.th.onset_gain and gain >= self.th.slope_sigma * self._noise(i):
            self.floor, self.floor_at = self.te[i], i
        else:
            self.floor_held = True

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

    def _dip(self, i: int) -> tuple[tuple[float, float], tuple[float, float], float] | None:
        """Whether the model at checkpoint i is in a dip: test accuracy `plateau_gain` or more below the median of the
        three checkpoints before, and train and test accuracy together below theirs by `dip_sigma` standard errors
        over probe points (how well each checkpoint's own accuracy is measured: the question is whether this model
        is worse, not whether the run's scatter could explain it; the two splits' probes are independent, so their
        z-scores add as z_train + z_test over sqrt 2). ((train, train before), (test, test before), z), else None."""
        before = self.seen[-4:-1]
        if len(before) < 3:
            return None
        out, zs = [], []
        for values, se, noise in ((self.tr, self.tr_se, self.tr_noise), (self.te, self.te_se, self.te_noise)):
            ref = sorted(before, key=lambda j: values[j])[1]
            spread = math.hypot(se[i] or noise[i], se[ref] or noise[ref])
            out.append((values[i], values[ref]))
            zs.append((values[ref] - values[i]) / spread)
        z = (zs[0] + zs[1]) / math.sqrt(2.0)
        if out[1][1] - out[1][0] < self.th.plateau_gain or z < self.th.dip_sigma:
            return None
        return out[0], out[1], z

    def _saturated(self, i: int, newest: bool = True) -> bool:
        """Fitted, train accuracy within `plateau_gain` of 1 and test accuracy within `plateau_gain` of it at every
        checkpoint from the newest one `saturated_decades` or more back (the span held, at two checkpoints at least):
        nothing is left to gain. `newest=False`: up to the checkpoint before i."""
        return self.fitted and self._held_saturated(i, self.short if newest else None, self.last_short)

    def _robust_saturated(self, i: int) -> bool:
        """Robust accuracy within `plateau_gain` of 1 at every checkpoint of the saturated span (`_saturated`)."""
        return self._held_saturated(i, self.robust_short, self.last_robust_short)

    def _held_saturated(self, i: int, short: list[bool] | None, last_short: list[int]) -> bool:
        """No checkpoint short of saturation from the newest checkpoint `saturated_decades` or more back to i (at two
        checkpoints at least): those before i despiked (`last_short`: the newest despiked one short so far), as the
        trend lines take them, i as measured (`short`; None: i is not judged). A transformer grokked to 1.000 read
        `keep-training` "rising" for the rest of its run after a spike to 0.80 (and a dip to 0.971 before it) once it
        had read `stop`, its 0.3-decade line still through the grok."""
        start = min(self.saturation_start[i], i - 1)
        return start >= 0 and last_short[i - 1] < start and (short is None or not short[i])

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

    def _turned(self, i: int, rising: bool) -> tuple[float, int, float] | None:
        """Where the median of robust accuracy's newest three checkpoints has fallen from the highest median of
        three of its span (`rising`: its line rises) or climbed from the lowest (its line falls, or is flat), by
        `plateau_gain` or more and by `slope_sigma` noise: the line's sign is that of the older part of its span (a
        new user's modular MLP: robust accuracy 0.754 -> 0.295 read "still rising", its line through the rise before;
        then 0.295 -> 0.69 "falling", then "flat", a plateau). A median now back within `plateau_gain` of the level
        held before the low has recovered from a dip, not turned (a V). (that extreme, the newest checkpoint of its
        window, the median now), else None."""
        start = int(np.searchsorted(self.robust_at, self.spans["robust"].start[i], side="left"))
        end = int(np.searchsorted(self.robust_at, i, side="right"))  # the span's checkpoints: robust_at[start:end]
        if end - start < 4:
            return None
        medians = self.robust_medians[start: end - 2]
        k = int(np.argmax(medians) if rising else np.argmin(medians))
        now = float(medians[-1])
        moved = float(medians[k]) - now if rising else now - float(medians[k])
        if moved < max(self.th.plateau_gain, self.th.slope_sigma * math.sqrt(2.0) * float(self.robust.sigma[i])):
            return None
        if not rising and float(np.max(medians[: k + 1])) - now < self.th.plateau_gain:
            return None  # a dip it climbed back from, to the level held before it: no climb under way (a V)
        return float(medians[k]), int(self.robust_at[start + k + 2]), now

    def _beyond_plateau_gain(self, i: int, name: str, gain: float) -> bool:
        """Whether series `name`'s change over its span, `gain`, exceeds `plateau_gain` by `slope_sigma` of its
        standard errors (from the checkpoints' scatter about the line): what it takes to unsettle a plateau."""
        se = float(self.spans[name].slope_se[i]) * self._width(i, name)
        return abs(gain) - self.th.plateau_gain > self.th.slope_sigma * se

    def _width(self, i: int, name: str) -> float:  # the decades series `name`'s line spans at checkpoint i
        return float(self.x[i] - self.x[self.spans[name].start[i]])


def _despiked_at(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """`values` with those where `present` despiked among themselves (series.despiked), the rest as they are."""
    out = values.astype(float).copy()
    out[present] = despiked(values[present])
    return out


def _last_where(mask: np.ndarray) -> list[int]:
    """At each index, the last index so far where `mask` holds (-1 before the first)."""
    return np.maximum.accumulate(np.where(mask, np.arange(len(mask)), -1)).tolist()
