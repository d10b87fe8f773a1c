"""How accuracy mode's reasons say what its memory knows (accuracy_memory.py): a line's span, a change as seen
beside the trend line's, how sure a flat line is, and the clauses that warn where the advice may turn (test accuracy
lost before the train set is fitted, a collapse climbing back)."""

from __future__ import annotations

import bisect
import math

import numpy as np

from .accuracy_memory import AccuracyMemory
from .accuracy_reading import span_words
from .series import MIN_TREND_POINTS, despiked


class AccuracyWords(AccuracyMemory):
    """The words of accuracy mode's reasons, from what AccuracyMemory has seen up to the checkpoint being read."""

    def _span_words(self, i: int, name: str, threshold: str, line: str = "test accuracy's line") -> tuple[str, str]:
        """accuracy_reading.span_words for series `name`'s line at checkpoint i."""
        width = self._width(i, name) if self.spans[name].count[i] >= MIN_TREND_POINTS else 0.0
        return span_words(width, getattr(self.th, threshold), threshold, line)

    def _seen_change(self, i: int, name: str) -> float:
        """How much series `name` changed from the first checkpoint of its span to checkpoint i. A reason cites it
        beside the trend line's change, which decides but can overshoot a step (+1.02 for a jump from 0 to 1)."""
        values = self.robust.value if name == "robust" else self._series(name.split()[0])[0]
        return float(values[i] - values[int(self.spans[name].start[i])])

    def _change_words(self, i: int, name: str, line: float, span: str, collapse_yet: bool = False) -> str:
        """How a reason says that series `name` is not flat: "rising" or "falling" where its change as seen, from
        the span's first checkpoint to i, goes the trend line's way by `plateau_gain` or more, else "rising (falling)
        on its trend line" (a line tilted by a dip at one end while the checkpoints at its ends are level); both
        changes cited, the one as seen with "though" where it goes the other way by `plateau_gain` or more (a new
        user read "still rising on its trend line (+0.029 ...), -0.037 since step 450" as a contradiction).
        `collapse_yet`: a fall that is not yet a collapse says so."""
        seen, pg = self._seen_change(i, name), self.th.plateau_gain
        first = int(self.spans[name].start[i])
        values = self.robust.value if name == "robust" else self._series(name.split()[0])[0]
        label = "robust accuracy" if name == "robust" else "test accuracy"
        word = "rising" if line > 0 else "falling"
        word = ("still " if name == "robust" and line > 0 else "") + word
        since = f"{seen:+.3f} since step {int(self.steps[first])} ({values[first]:.3f})"
        held = self._held_since(i, values, first) if line > 0 else ""
        if seen >= pg if line > 0 else seen <= -pg:
            head = f"{label} {values[i]:.3f} {word}{' (not yet a collapse)' if collapse_yet else ''}"
            return f"{head}, {since}, trend line {line:+.3f} over the last {span}{held}"
        head = f"{label} {values[i]:.3f} {word} on its trend line{' (not yet a collapse)' if collapse_yet else ''}"
        if (seen <= -pg) if line > 0 else (seen >= pg):  # the ends disagree with the line ("rising", "-0.037 since")
            since = f"though {since}: the checkpoints between them tilt the line"
        return f"{head} ({line:+.3f} over the last {span}), {since}{held}"

    def _held_since(self, i: int, values, first: int, what: str = "rise") -> str:
        """Where a line that rises over its span ends on checkpoints that held within `plateau_gain` of each other
        (at least three, the newest among them, the span's first not), the clause that says since when: the rise is
        older than they are, and the span has not yet held them long enough to be a plateau ("0.782 rising, +0.572
        since step 15422" on a run flat at 0.77-0.78 since step 41,000 read as a rise still going on)."""
        seen = self.seen[bisect.bisect_left(self.seen, first):]  # to i, the newest seen
        low = high = values[i]
        start = None
        for count, j in enumerate(reversed(seen), start=1):
            low, high = min(low, values[j]), max(high, values[j])
            if high - low > self.th.plateau_gain:
                break
            if count >= MIN_TREND_POINTS:
                start = j
        if start is None or start == first:
            return ""
        return (f"; the checkpoints since step {int(self.steps[start])} ({float(self.x[i] - self.x[start]):.2f} "
                f"decades) are within {self.th.plateau_gain:g} of each other: the {what} is older than they are")

    def _flat_doubt(self, i: int, name: str, flat, line: str = "its trend line", span: str = "that span") -> str:
        """The clause that says how sure it is that a line counted flat is flat: its change over the span and that
        change's standard error, against `plateau_gain` (a reading's `doubt`)."""
        se = float(self.spans[name].slope_se[i]) * self._width(i, name)
        return (f" ({line} {flat[2]:+.3f} ± {se:.3f} over {span}, ± one standard error from the "
                f"checkpoints' scatter: within ±{self.th.plateau_gain:g} with probability {flat[1]:.2f})")

    def _loss_before_fit(self, i: int) -> tuple[int, float, float, float] | None:
        """Where the level of test accuracy's last `trend_decades` lies `collapse_drop` or more below its best before
        the fit (its best so far, while the train set is still being fitted) beyond the noise (`_beyond_noise`) and
        beyond the probes' own error: (that best's checkpoint, its level, the line's level now, the drop past the
        best's expected excess), else None."""
        best, level, windows = ((self.best, self.best_level, len(self.test_before)) if not self.fitted
                                else self.early or (None, 0.0, 0))
        if best is None or windows < 3:
            return None
        drop = self._beyond_noise(i, "test", level, windows)
        now = float(self.levels["test"].level[i])
        # and beyond the probes' own error: on 150 test probes (SE 0.04) the scatter of a few early checkpoints
        # about chance made 0.58 a "best" that 0.48 was "beyond the noise" below
        spread = math.hypot(self.te_se[i] or self.te_noise[i], self.te_se[best] or self.te_noise[best])
        if drop is None or drop < self.th.collapse_drop or level - now < self.th.slope_sigma * spread:
            return None
        return best, level, now, drop

    def _lost_before_fit(self, i: int) -> str:
        """Where test accuracy has lost what it had before the fit (`_loss_before_fit`), the clause that says so: while
        the train set is still being fitted (the advice stays: a run can lose test accuracy while fitting and win it
        back), and after, until the loss has held (then it is a collapse: accuracy_mode's `_lost_since_before_fit`).
        A new user's digits MLP on shuffled labels (0.943 at step 182, 0.79 at step 1907) read `fitting` with not a
        word on test accuracy, then "no loss that has held long enough to roll back yet" for 3,000 steps at 0.14
        below it."""
        loss = self._loss_before_fit(i)
        if loss is None:
            return ""
        best, level, now, _ = loss
        step = int(self.steps[best])
        head = (f"; test accuracy {self.te[i]:.3f} (its trend line's end {now:.3f}) is {level - now:.3f} below its best "
                f"{'so far' if not self.fitted else 'before the train set was fitted'}, {level:.3f} (a median of three) "
                f"at step {step}, beyond the noise: ")
        if not self.fitted:
            return head + ("if it is still as low once the train set is fitted, the run has lost what it learned first "
                           f"(noisy labels memorised, if it has them), and the roll-back is to step {step}")
        return head + (f"a collapse once it holds at {self.th.collapse_checkpoints} checkpoints in a row "
                       f"(collapse_checkpoints), and the roll-back is then to step {step}")

    def _climbing_back(self, i: int, best: int) -> str:
        """A collapse whose test accuracy climbs again, significantly (its line over the last `trend_decades`
        `slope_sigma` standard errors up, `plateau_gain` or more above its lowest since `best`): the clause that
        says so. The advice stays roll-back, since `best` is still the better model; but the climb may pass it (a
        new user's a+b mod 23 after an Adam spike: 0.52, 0.58, 0.66, 0.81 against 0.906 before it)."""
        line = self.levels["test"]
        if line.count[i] < MIN_TREND_POINTS or line.z[i] < self.th.slope_sigma:
            return ""  # checked first: the search below runs only on a collapse that climbs
        after = self.seen[bisect.bisect_right(self.seen, best):]
        if len(after) < 2:
            return ""
        # its lowest despiked (with the best before it: a crash at one checkpoint is not where a climb starts; a new
        # user's run that fell 0.988 -> 0.021 -> 0.59 and wandered 0.39-0.70 read "climbing back: +0.557 since" the 0.021)
        levels = despiked(np.array([self.te[j] for j in [best, *after]]))[1:]
        at = min(range(len(after)), key=lambda k: levels[k])
        low, rise, width = after[at], self.te[i] - levels[at], float(self.x[i] - self.x[line.start[i]])
        if low == i or rise < self.th.plateau_gain:
            return ""
        held = self._held_since(i, self.te, low, "climb")  # one that has stopped: since when
        median = ", a median of three" if levels[at] != self.te[low] else ""
        return (f"; climbing back: {rise:+.3f} since step {int(self.steps[low])} ({levels[at]:.3f}{median}), trend line "
                f"{float(line.slope[i]) * width:+.3f} over the last "
                f"{span_words(width, self.th.trend_decades, 'trend_decades', '')[0]} ({float(line.z[i]):.1f} standard "
                f"errors){held}: a later checkpoint may pass "
                f"step {int(self.steps[best])}, so read the run again then; until one does, step "
                f"{int(self.steps[best])} is the better model")
