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

from .accuracy_words import AccuracyWords
from .accuracy_reading import Reading, median3
from .series import MIN_TREND_POINTS, strength_of


class AccuracyJudge(AccuracyWords):
    """Reads a run's checkpoints in step order and gives the reading of each by the rules, in order of precedence
    (`_read`), from what it remembers (AccuracyMemory), in words of its own (AccuracyWords)."""

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
            if not self.withheld:
                self.standing = (i, out[-1])
        return out

    # ------------------------------------------------------------------ the rules, in order of precedence
    def _read(self, i: int) -> Reading:
        self.withheld = False
        for rule in (self._diverged, self._collapsed):
            reading = rule(i)
            if reading is not None:
                return reading
        if not self.fitted:
            return self._no_stop_in_dip(i, self._unfitted(i))
        if self.generalised is None:
            return self._unconfirmed_drop(i, self._memorised(i))
        return self._no_stop_in_dip(i, self._unconfirmed_drop(i, self._generalised(i)))

    def _no_stop_in_dip(self, i: int, reading: Reading) -> Reading:
        """A plateau read at a checkpoint whose own model is in a dip (`_dip`): a stop there would keep a worse model
        than the run has had, and only the next checkpoint tells a dip that recovers from a fall. The plateau stands
        with no strength (`inconclusive`), its reason after the dip's."""
        if reading.phase != "robustness_plateau" or reading.strength <= 0:
            return reading
        dip = self._dip(i)
        if dip is None:
            return reading
        (train, train_before), (test, test_before), z = dip
        note = (f"test accuracy {test:.3f} and train {train:.3f} at step {int(self.steps[i])} are below {test_before:.3f} "
                f"and {train_before:.3f}, the medians of the three checkpoints before ({z:.1f} probe standard errors, "
                "both splits together): this checkpoint is in a dip, which the next one tells from a fall; a stop on it "
                f"would keep a worse model than the run has had. Until then: {reading.note}")
        self.withheld = True
        return Reading(reading.phase, 0.0, note, reading.best, wants="checkpoints")

    def _recovered(self, i: int, name: str, flat, span: str):
        """A line of series `name` that rose over its span only back to the best level held before it
        (`_back_at_best`) is flat for the plateau rules: (the flatness to judge by, the clause a reason adds, ""
        where it is the line's own). A line that falls is left to the rules for falls: a dip late in the span that
        recovered cannot be told from a fall that goes on by its newest checkpoints alone."""
        if flat is None or flat[0] or flat[2] <= 0:
            return flat, ""
        back = self._back_at_best(i, name)
        if back is None:
            return flat, ""
        p_flat, gain, at, best = back
        values = self.robust.value if name == "robust" else self.te
        first = int(self.spans[name].start[i])
        clause = (f", back at the best it held before the last {span} ({best:.3f}, the median of the three "
                  f"checkpoints to step {int(self.steps[at])}; {gain:+.3f} from it at its trend line's end, within "
                  f"{self.th.plateau_gain:g}): "
                  f"its line rose {flat[2]:+.3f} from {values[first]:.3f} at step {int(self.steps[first])} only by "
                  "recovering from a dip")
        return (True, p_flat, gain), clause

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
            # the reading before the drop stands: read with it, its words contradict it ("0.047 rising" after 0.508)
            at, stands = self.standing or (i, reading)
            plural = "s" if left > 1 else ""
            since = "the run generalised" if name == "test" else "the train set was fitted"
            note = (f"{name} accuracy {values[i]:.3f} at step {int(self.steps[i])} is {drop:.3f} below its peak since "
                    f"{since}, {peak:.3f} (a median of three), from {values[at]:.3f} at step {int(self.steps[at])}: "
                    f"a spike, or the start of a collapse if it is as low at the next {left} checkpoint{plural}; "
                    f"until then the reading of step {int(self.steps[at])} stands: {stands.note}")
            self.withheld = True
            return Reading(stands.phase, 0.0, note, reading.best, wants="checkpoints")
        return reading

    def _lost(self, i: int, name: str, peak: float) -> float | None:
        """How much series `name` ("train" or "test") has lost from `peak`, if it is a collapse: at least
        `collapse_drop` at each of the last `collapse_checkpoints` checkpoints (a spike does not), and the level
        of its last `trend_decades` significantly below the peak (a 3-median: `_beyond_noise`). None otherwise."""
        if self._held_below(self._series(name)[0], peak) < self.th.collapse_checkpoints:
            return None
        return self._beyond_noise(i, name, peak, self.peak_windows if name == "test" else 1)

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
        first, last = int(self.steps[self.train_peak_at]), int(self.steps[self.train_peak_last])
        at = f"at step {first}" if first == last else f"(first at step {first}, last at {last})"  # not only its first
        note = (f"train accuracy {self.tr[i]:.3f}, down from {self.train_peak:.3f} {at} after the train set was "
                f"fitted (test {self.te[i]:.3f}): "
                "the training diverged, or the labels it trains on are not the probes' any more"
                f"{self._climbing_back(i, self.best)}")
        return Reading("collapse", min(1.0, drop / (2 * th.collapse_drop)), note, self.best)

    def _collapsed(self, i: int) -> Reading | None:
        """Generalised, and test accuracy has lost `collapse_drop` from its peak (`_lost`), or from its best before
        the fit (`_lost_since_before_fit`): where both, from the higher, the better model to roll back to (a new
        user's digits MLP on 35% noisy labels, its best 0.924 before the fit, was rolled back at one checkpoint to
        step 1,700, 0.738, from which it had fallen 0.05 as well)."""
        if self.generalised is None:
            return None
        early = self._lost_since_before_fit(i)
        if early is not None and self.early[1] >= self.peak:
            return early
        drop = self._lost(i, "test", self.peak)
        if drop is None:
            return early
        note = (f"test accuracy {self.te[i]:.3f}, down from {self.te[self.best]:.3f} at step "
                f"{int(self.steps[self.best])} while train is {self.tr[i]:.3f}{self._climbing_back(i, self.best)}")
        return Reading("collapse", min(1.0, drop / (2 * self.th.collapse_drop)), note, self.best)

    def _lost_since_before_fit(self, i: int) -> Reading | None:
        """A run that learned as it fitted its train set, whose test accuracy has since lost `collapse_drop` from its
        best before the fit: at each of the last `collapse_checkpoints` checkpoints, its line's level beyond the noise
        (`_beyond_noise`) and beyond the probes' own error (`_loss_before_fit`). A collapse, rolled back to that best,
        whether the line still falls or has settled: the loss has held, and a fall that goes on only adds to it (a
        new user's digits MLP on 25% noisy labels, 0.962 at step 675, read `inconclusive` "falling, not yet a
        collapse" from the fit at step 2475 to its end at 0.828, while --json named step 2175 as the best)."""
        if self.early is None or self.early[0] is None:
            return None
        if self._held_below(self.te, self.early[1]) < self.th.collapse_checkpoints:
            return None
        loss = self._loss_before_fit(i)
        if loss is None:
            return None
        best, level, now, beyond = loss
        line = self.levels["test"]
        trend = "falling" if line.count[i] >= MIN_TREND_POINTS and line.z[i] <= -self.th.slope_sigma else "flat"
        note = (f"test accuracy {self.te[i]:.3f} ({trend}, train {self.tr[i]:.3f}; its trend line's end {now:.3f}) is "
                f"{level - now:.3f} below its best before the train set was fitted, {level:.3f} (a median of three) at "
                f"step {int(self.steps[best])}: what the run learned first was lost as it fitted the rest of its train "
                f"set (noisy labels memorised, if it has them){self._climbing_back(i, best)}")
        return Reading("collapse", min(1.0, beyond / (2 * self.th.collapse_drop)), note, best)

    def _unfitted(self, i: int) -> Reading:
        """Before the fit: fitting, unless train and test accuracy rose together and both have stayed flat
        (settled short of a fitted train set: label noise, too small a network)."""
        th, tr, te = self.th, self.tr[i], self.te[i]
        rise, learned = tr - self.train_low, te - self.test_low
        if (rise >= th.slope_sigma * math.sqrt(2) * self.tr_noise[i] and rise >= th.min_gain * (1 - self.train_low)
                and learned >= th.slope_sigma * self._noise(i) and learned >= th.early_generalised * rise):
            train_flat, test_flat = self._flat(i, "train unfitted"), self._flat(i, "test unfitted")
            if train_flat and test_flat and train_flat[0] and test_flat[0]:
                weaker, flat = min((("train", train_flat), ("test", test_flat)), key=lambda named: named[1][1])
                doubt = self._flat_doubt(i, f"{weaker} unfitted", flat, f"{weaker} accuracy's trend line",
                                         "the last " + self._span_words(i, f"{weaker} unfitted", "unfitted_decades")[0])
                return Reading("robustness_plateau", flat[1],
                               f"train accuracy flat at {tr:.3f} (< {th.fitted_accuracy}) after rising from "
                               f"{self.train_low:.3f}, test accuracy flat at {te:.3f} after rising with it: settled "
                               "without fitting", self.best, doubt=doubt)
        z = float(self.train_trend.z[i]) if self.train_trend.count[i] >= MIN_TREND_POINTS else 0.0
        # a step in train accuracy (an LR drop) tilts the line for a span after it: say when the climb ended
        held = self._held_since(i, self.tr, int(self.train_trend.start[i]), "climb") if z >= th.slope_sigma else ""
        climbing = ("not climbing significantly" if z < th.slope_sigma
                    else f"climbing on its trend line over the last {th.trend_decades:g} decades, though" if held
                    else "climbing")
        strength = 0.0 if held else strength_of(z, th.slope_sigma)
        level = median3(self.train_seen)
        return Reading("fitting", max(0.5, strength),
                       f"train accuracy {tr:.3f} (median of the last three {level:.3f} < {th.fitted_accuracy}), {climbing}"
                       f"{held.removeprefix(';')}{self._lost_before_fit(i)}", self.best)

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
        note = f"train accuracy {tr:.3f}, test accuracy {te:.3f} at its memorisation level {level}"
        decades = float(self.x[i] - self.x[self.fitted_at])
        if decades > th.memorisation_decades:
            note += (f"; memorising for {decades:.2f} decades of steps, since the fit at step "
                     f"{int(self.steps[self.fitted_at])}: longer than memorisation_decades ({th.memorisation_decades:g}, "
                     "past the corpus's longest grokking delay). The confidence is that this is memorisation, whose "
                     "advice is keep-training; whether more training makes it generalise is not in the accuracy curves: "
                     "grokking can come later still, and a run without weight decay may never generalise")
        return Reading("memorisation", 1.0 - strength_of(max(z, 0.0), th.slope_sigma) / 2, note, self.best)

    def _generalised(self, i: int) -> Reading:
        """Generalised: a plateau once test accuracy (and robust accuracy, where measured) stayed flat over
        `plateau_decades` (`partial_decades` while it is short of `generalised_ratio` x train accuracy after
        rising from a memorisation stage), else still generalising."""
        th, tr, te = self.th, self.tr[i], self.te[i]
        partial = self.generalised == "rose" and median3(self.test_since) < th.generalised_ratio * tr
        name = "test partial" if partial else "test"
        flat = self._flat(i, name)
        span, stretch = self._span_words(i, name, "partial_decades" if partial else "plateau_decades")
        if flat is None or not flat[0]:
            if self._saturated(i):  # nothing is left to gain: no span decides
                flat, stretch = (True, 1.0, 0.0), ""
                span = f"{th.saturated_decades:g} decades, within {th.plateau_gain:g} of train"
            elif self._saturated(i, newest=False):  # the newest checkpoint alone short of it
                train_short = tr < 1 - th.plateau_gain
                short = (f"train accuracy {tr:.3f} is more than {th.plateau_gain:g} below 1" if train_short
                         else f"test accuracy {te:.3f} is more than {th.plateau_gain:g} below train ({tr:.3f})")
                return Reading("robustness_plateau", 0.0, (
                    f"{short} at this checkpoint only, after {th.saturated_decades:g} decades within "
                    f"{th.plateau_gain:g} of {'1' if train_short else 'train'} (nothing left to gain): "
                    "a dip, or the start of a fall, which the next checkpoint tells"), self.best, wants="checkpoints")
        wants, stretched = ("denser saves" if stretch else None), bool(stretch)
        flat, back = self._recovered(i, name, flat, span)
        if flat is None or not flat[0]:
            if flat is None:
                return Reading("generalisation", 0.5, f"test accuracy {te:.3f} with train at {tr:.3f}; the run is "
                               f"shorter than {span} so far", self.best)
            falling = flat[2] < 0  # a line that fell more than plateau_gain: no gain to train for
            note = f"{self._change_words(i, name, flat[2], span, falling)}, with train at {tr:.3f}"
            if falling:  # keep-training rests on a gain still to come; a fall is evidence against it
                lost = self._lost_before_fit(i)
                note += ": no gain to train for" + (lost or ", and no loss that has held long enough to roll back yet")
            # a fall from a plateau leaves it a plateau until it tells a spike from a collapse (no strength either way)
            phase = "robustness_plateau" if falling and self.previous == "robustness_plateau" else "generalisation"
            return Reading(phase, 0.0 if falling else max(0.5, 1.0 - flat[1]), note + stretch, self.best,
                           wants=wants, stretched=stretched)
        young = self._young_plateau(i, partial, span)
        if young is not None:
            return young
        robust = self._flat(i, "robust") if self.robust is not None and self.robust.present[i] else None
        since = (", learned as the train set was fitted (no memorisation stage)" if self.generalised_at_fit
                 else f", up from {self.floor:.3f}")
        note = (f"test accuracy flat at {te:.3f} (train {tr:.3f}) over the last {span}{since}" if not back
                else f"test accuracy {te:.3f} (train {tr:.3f}){since}{back}")
        doubt = self._flat_doubt(i, name, flat) if not back and not stretch and not self._saturated(i) else ""
        robust_span, robust_stretch = (self._span_words(i, "robust", "plateau_decades", "robust accuracy's line")
                                       if robust is not None else ("", ""))
        stretch += robust_stretch
        wants = "denser saves" if stretch else None
        change = ""
        robust, robust_back = self._recovered(i, "robust", robust, robust_span) if robust else (robust, "")
        change = f"; robust accuracy {self.robust.value[i]:.3f}{robust_back}" if robust_back else ""
        # the line's reading against its newest checkpoints': a rise (gain to wait for) that has fallen since, a fall
        # or a flat line (none) that has climbed since; a flat line that has fallen since has no gain either way
        from_high = robust is not None and not robust[0] and robust[2] > 0
        turned = self._turned(i, from_high) if robust is not None else None
        if turned is not None:
            return self._robust_turned(i, robust[2], robust_span, from_high, turned, stretch)
        if robust is not None and not robust[0]:
            rising = robust[2] > 0
            change = self._change_words(i, "robust", robust[2], robust_span)
            settled = self.previous == "robustness_plateau" and not self._beyond_plateau_gain(i, "robust", robust[2])
            if rising and not self._robust_saturated(i) and not settled:
                return Reading("generalisation", max(0.5, 1.0 - robust[1]),
                               f"delayed robustness: {change} while test accuracy settled at {te:.3f}{stretch}",
                               self.best, wants=wants)
            # at its ceiling, or falling: no robustness left to gain by training on (the strength is test accuracy's)
            if rising and settled:  # a plateau already read: a creep within the noise of plateau_gain leaves it
                se = float(self.spans["robust"].slope_se[i]) * self._width(i, "robust")
                change = (f"; robust accuracy {self.robust.value[i]:.3f} creeping up: its trend line "
                          f"{robust[2]:+.3f} ± {se:.3f} over the last {robust_span}, not beyond "
                          f"{th.plateau_gain:g} (plateau_gain) by {th.slope_sigma:g} standard errors (slope_sigma): "
                          "the plateau stands")
            elif rising:
                change = (f"; {change}, within {th.plateau_gain:g} of 1 over the last {th.saturated_decades:g} "
                          "decades: nothing left to gain")
            else:
                change = f"; {change}: no robustness to gain by training on"
        plateau = self._below_early_best(i, Reading("robustness_plateau", flat[1], note + change, self.best,
                                                    wants=wants, stretched=stretched, doubt=doubt))
        if plateau.phase != "robustness_plateau":
            return plateau
        # the model to keep is the best step's: one before the fit is named by its own clause
        worse = self._worse_than_best(i) if plateau.best == self.best else ""
        return dataclasses.replace(plateau, note=plateau.note + worse + stretch)

    def _robust_turned(self, i: int, line: float, span: str, from_high: bool, turned, stretch: str) -> Reading:
        """Robust accuracy's line rises over its span, but its newest checkpoints have fallen from the span's high since
        (`from_high`), or it falls or is flat, and they have climbed from its low (`_turned`): the line says there is
        robustness to gain and they say there is none, or the other way round. No strength (`inconclusive`) until
        the line agrees with them."""
        extreme, at, now = turned
        turn = "high" if from_high else "low"
        way = "is flat," if abs(line) < self.th.plateau_gain else "rises" if line > 0 else "falls"
        note = (f"robust accuracy {self.robust.value[i]:.3f}: its trend line {way} {line:+.3f} over the last {span}, but "
                f"the median of its newest three checkpoints, {now:.3f}, is {now - extreme:+.3f} from its {turn} in that "
                f"span, {extreme:.3f} (a median of three, to step {int(self.steps[at])}): it has turned since, and the "
                f"line's sign is its older part's; the next checkpoints tell, while test accuracy settled at "
                f"{self.te[i]:.3f}{stretch}")
        return Reading("generalisation", 0.0, note, self.best, wants="checkpoints")

    def _worse_than_best(self, i: int) -> str:
        """On a plateau, where the newest checkpoint's test accuracy is below the best level since the fit by
        `slope_sigma` of its own standard errors (how well the probes measure this model), the clause that names the
        better checkpoint to keep: a `stop` says only that training need not go on (a new user's OneCycle CNN said
        `stop` at 0.944, 0.04 below step 250, which only --json named)."""
        if self.best is None or self.best == i or not math.isfinite(self.best_level):
            return ""
        below, se = self.best_level - float(self.te[i]), float(self.te_se[i])
        if se <= 0 or below < self.th.slope_sigma * se or below < self.th.plateau_gain:
            return ""
        return (f"; this checkpoint is {below:.3f} below the level of step {int(self.steps[self.best])}, "
                f"{self.best_level:.3f} (a median of three), {below / se:.1f} of its standard errors: keep step "
                f"{int(self.steps[self.best])}'s model")

    def _young_plateau(self, i: int, partial: bool, span: str) -> Reading | None:
        """A plateau of a run that left its memorisation level ("rose") must hold its span since it left it: a level
        that crept past `min_gain` of the gap after a decade of memorisation is no plateau of the generalised run
        yet, however long it was flat (the flat span is the memorisation stage itself). Still generalising, with the
        strength of a run shorter than its span; nothing is left to gain where it is saturated."""
        if self.risen_at < 0 or self._saturated(i):
            return None
        th = self.th
        held = float(self.x[i] - self.x[self.risen_at])
        need, name = (th.partial_decades, "partial_decades") if partial else (th.plateau_decades, "plateau_decades")
        if held >= need - 1e-9:
            return None
        return Reading("generalisation", 0.5,
                       f"test accuracy flat at {self.te[i]:.3f} (train {self.tr[i]:.3f}) over the last {span}, but it "
                       f"left its memorisation level {self.floor:.3f} only at step {int(self.steps[self.risen_at])}, "
                       f"{held:.2f} decades ago: a plateau holds {need:g} decades ({name}) since", self.best)

    def _below_early_best(self, i: int, reading: Reading) -> Reading:
        """A plateau of a run that learned as the train set was fitted, settled below its best test accuracy before
        the fit, significantly (`_beyond_noise`, as in `_lost`). By `collapse_drop` or more (and a plateau with a
        strength: a fall it holds over has none) what it learned first was lost as it fitted the rest (label noise
        memorised): a collapse, rolled back to that best. By less, a stop whose best step is that earlier checkpoint
        (a digits MLP on 15% noisy labels: 0.908 at step 100, settled at 0.863). Only a plateau decides: a dip while
        fitting that recovers is no loss."""
        if self.early is None or self.early[0] is None:
            return reading
        best, peak, windows = self.early
        drop = self._beyond_noise(i, "test", peak, windows)
        if drop is None:
            return reading
        th = self.th
        if drop >= th.collapse_drop and reading.strength > 0:
            note = (f"test accuracy flat at {self.te[i]:.3f} (train {self.tr[i]:.3f}), below {self.te[best]:.3f} at "
                    f"step {int(self.steps[best])}, before the train set was fitted: what the run learned first was "
                    "lost as it fitted the rest of its train set (noisy labels memorised, if it has them)")
            return Reading("collapse", min(1.0, drop / (2 * th.collapse_drop)), note, best)
        if peak <= self.best_level:
            return reading
        level = float(self.levels["test"].level[i])
        note = (f"{reading.note}; the best step is {int(self.steps[best])}, before the train set was fitted: the level "
                f"held since, {level:.3f}, is {peak - level:.3f} below the best before it, {peak:.3f} (a median of "
                f"three; {drop:.3f} once the expected excess of the highest of {windows} medians is taken off), beyond "
                f"the noise but short of a collapse ({th.collapse_drop:g}, collapse_drop)")
        return dataclasses.replace(reading, note=note, best=best)
