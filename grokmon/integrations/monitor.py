"""What both training-loop callbacks do, whatever the framework: when to measure and within what time, where the
rows go, what the loggers get, and when the verdict stops the run. Imports neither Lightning nor transformers.

The time budget (`max_seconds`): measuring takes at most `max_seconds` per call on average over the run. A call
runs only when the seconds saved up by the calls before it (`max_seconds` each, skipped calls included, banked
up to one call's cost) cover what the last measurement took; the others are skipped and logged. One call can
take longer than `max_seconds` (the first, or one that costs more than the last), never two in a row: the
calls after it are skipped until the budget has caught up. The rows of a skipped step that has a checkpoint
are left to `grokmon analyze`, which resumes the same file.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..api import DEFAULT_OUTPUT_NAME, phases
from ..columns import CHECKPOINT_COLUMNS, LIST_COLUMNS, METRIC_COLUMNS
from ..errors import ConfigError, GrokmonError
from ..phasing import ADVICE, PHASES, PhaseReport, PhaseThresholds

STOP_VERDICTS = ("stop", "roll-back")
# analyze's options that a callback takes as keyword arguments (`metrics` is a parameter of its own).
ANALYZE_OPTIONS = ("model", "model_kwargs", "activation", "embedding", "position", "points", "lc_directions",
                   "lc_radius", "robust_eps", "robust_steps", "noise_sigma", "seed", "dtype", "overwrite")


@dataclass
class CallBudget:
    """Which calls may measure so that measuring takes at most `max_seconds` per call on average (None: all).

    >>> budget = CallBudget(1.0)
    >>> runs = []
    >>> for _ in range(7):
    ...     runs.append(budget.allows())
    ...     if runs[-1]:
    ...         budget.spent(2.0)
    >>> runs  # a call costs 2 s and 1 s is allowed: every second call, once the first one's overrun is paid
    [True, False, False, True, False, True, False]
    """

    max_seconds: float | None
    credit: float = 0.0
    cost: float | None = None  # seconds of the last measurement

    def allows(self) -> bool:
        """Whether this call may measure; every call, skipped or not, adds `max_seconds` to the budget."""
        if self.max_seconds is None:
            return True
        self.credit = min(self.credit + self.max_seconds, max(self.max_seconds, self.cost or 0.0))
        return self.cost is None or self.credit >= self.cost

    def spent(self, seconds: float) -> None:
        """A measurement took `seconds`."""
        self.cost = seconds
        self.credit -= seconds if self.max_seconds is not None else 0.0


@dataclass(frozen=True)
class Measurement:
    """What one call did: the values for the loggers, the verdict, and whether the run should stop."""

    step: int
    seconds: float | None = None  # None: skipped
    logged: dict[str, float] = field(default_factory=dict)  # grokmon/<split>/<metric>, grokmon/phase, ...
    report: PhaseReport | None = None
    stop: str | None = None  # why the run should stop (the verdict reached stop_on `patience` times in a row)
    skipped: str | None = None


def _stop_verdicts(stop_on) -> tuple[str, ...]:
    verdicts = () if stop_on is None else (stop_on,) if isinstance(stop_on, str) else tuple(stop_on)
    wrong = [v for v in verdicts if v not in STOP_VERDICTS]
    if wrong:
        raise ConfigError(f"Expected stop_on to be {' or '.join(STOP_VERDICTS)} (or both), but got {stop_on!r}")
    return verdicts


def _check_arguments(every_n_steps, patience, max_seconds, options: dict) -> None:
    for name, value in (("every_n_steps", every_n_steps), ("patience", patience)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"Expected {name} to be a positive integer, but got {value!r}")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise ConfigError(f"Expected max_seconds to be a positive number of seconds, but got {max_seconds!r}")
    unknown = sorted(set(options) - set(ANALYZE_OPTIONS))
    if unknown:
        raise ConfigError(f"Expected analyze's options ({', '.join(ANALYZE_OPTIONS)}), but got {', '.join(unknown)}")


def logged_values(rows: list[dict], seconds: float, report: PhaseReport | None) -> dict[str, float]:
    """The loggers' values of one measurement: `grokmon/<split>/<metric>` (means), `grokmon/<metric>` for the
    metrics of the whole checkpoint (weights, llc: the same on every split row), `grokmon/seconds`, and with a
    verdict `grokmon/phase` and `grokmon/advice` (indices into grokmon.phasing PHASES and ADVICE) and
    `grokmon/confidence`.

    >>> rows = [{"split": s, "status": "ok", "lc": 3.0, "lc_se": 0.1, "loss": None, "weight_norm": 2.0}
    ...         for s in ("train", "test")]
    >>> logged_values(rows, 0.5, None)
    {'grokmon/train/lc': 3.0, 'grokmon/weight_norm': 2.0, 'grokmon/test/lc': 3.0, 'grokmon/seconds': 0.5}
    """
    values = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        for name in METRIC_COLUMNS:
            value = row.get(name)
            if name.endswith("_se") or name in LIST_COLUMNS or value is None or not math.isfinite(value):
                continue
            values[f"grokmon/{name}" if name in CHECKPOINT_COLUMNS else f"grokmon/{row['split']}/{name}"] = float(value)
    values["grokmon/seconds"] = seconds
    if report is not None:
        values["grokmon/phase"] = float(PHASES.index(report.current_phase)) if report.current_phase in PHASES else math.nan
        values["grokmon/advice"] = float(ADVICE.index(report.advice))
        values["grokmon/confidence"] = float(report.confidence)
    return values


class LiveMonitor:
    """Measures a training loop's live model and keeps the results file; the callbacks tell it when.

    `open` at the start of training (the model on its device, the run's checkpoint folder known) and
    `measure_start`, then `due` and `measure` at every step or save, and `finish` at the end.
    """

    def __init__(self, probes, output=None, every_n_steps=None, metrics=None, stop_on=None, patience=1,
                 max_seconds=None, log: logging.Logger | None = None, **options):
        _check_arguments(every_n_steps, patience, max_seconds, options)
        self.probes = probes if isinstance(probes, dict) else Path(probes)
        self.output = None if output is None else Path(output)
        self.every_n_steps, self.stop_on, self.patience = every_n_steps, _stop_verdicts(stop_on), patience
        self.overwrite = bool(options.pop("overwrite", False))
        self.options = {**options, "metrics": metrics}
        self.budget = CallBudget(max_seconds)
        self.log = log or logging.getLogger("grokmon")
        self.session = self.store = self.thresholds = None
        self.seen: set[int] = set()  # steps this run measured or skipped
        self.streak = 0  # measurements in a row whose verdict is in stop_on
        self.last: tuple | None = None  # (phase, advice) of the last verdict
        self.stopped: str | None = None

    def open(self, module, run_dir: str | Path) -> None:
        """Set up the session over `module` and the results file (resumed when its settings match, as analyze
        resumes it); `run_dir` is the folder of the run's checkpoints (by default the file goes there)."""
        from ..analysis.live import open_live_session
        from ..analysis.store import ResultsStore

        run_dir = Path(run_dir)
        self.session = open_live_session(module, self.probes, run_dir, self.options)
        self.store = ResultsStore(self.output or run_dir / DEFAULT_OUTPUT_NAME, self.session.inputs, self.overwrite)
        self.thresholds = PhaseThresholds().with_overrides(self.session.config.phases)

    def measure_start(self, step: int) -> Measurement | None:
        """Training starts, or resumes, at `step` (a second `fit`/`train` in the same process too: its own run).
        The file's rows of later steps are another run's (an earlier run in the same folder, or what followed the
        checkpoint this run resumes from): the file is copied aside and they are dropped, with a warning, so that
        no verdict reads them. A run from step 0 is measured before its first step (None: a resumed run, or no
        session here): the classifier reads a run from its start, its corpus runs all begin at step 0, and no
        framework saves a checkpoint there. A verdict on one checkpoint is `inconclusive`: no stop."""
        self.seen = {s for s in self.seen if 0 < s <= step}
        self.streak, self.last, self.stopped = 0, None, None
        self.budget = CallBudget(self.budget.max_seconds)
        if self.session is None:
            return None
        gone, aside = self.store.drop_after(step if step else -1, self.session.metadata)
        if gone:
            self.log.warning("grokmon: training starts at step %s: the rows of %d step(s) from %s to %s in %s are "
                             "another run's and are dropped (the file as it was: %s)", step, len(gone), gone[0],
                             gone[-1], self.store.output, aside)
        return self.measure(0) if step == 0 else None

    def is_measure_step(self, step: int, saving: bool) -> bool:
        """The rule alone, the same on every rank: a save (every_n_steps None) or a multiple of every_n_steps."""
        return saving if self.every_n_steps is None else step > 0 and step % self.every_n_steps == 0

    def due(self, step: int, saving: bool) -> bool:
        """Whether `step` is one to measure here: a measure step, not measured yet, with a session open."""
        return self.session is not None and step not in self.seen and self.is_measure_step(step, saving)

    def measure(self, step: int) -> Measurement:
        """Measure the live model at `step` (within the time budget), write its rows, judge the run so far."""
        self.seen.add(step)
        if not self.budget.allows():
            reason = (f"grokmon: skipped step {step}: measuring took {self.budget.cost:.2f} s, more than "
                      f"max_seconds={self.budget.max_seconds:g} allows per call; the next calls catch up")
            self.log.info(reason)
            return Measurement(step, skipped=reason)
        from ..analysis.live import measure_live

        start = time.perf_counter()
        names = self._checkpoint_names()
        self.store.name_checkpoints(names)
        rows = measure_live(self.session, step, names.get(step))
        for row in rows:
            row["seconds"] = time.perf_counter() - start
        self.store.add(rows, self.session.metadata)
        report = self._verdict()
        seconds = time.perf_counter() - start
        self.budget.spent(seconds)
        if rows[0]["status"] != "ok":
            self.log.warning("grokmon: step %s: %s", step, rows[0]["error"])
        return Measurement(step, seconds, logged_values(rows, seconds, report), report, self._stop(step, report))

    def finish(self) -> None:
        """Name the rows whose checkpoints were saved after they were measured, and write the file once more."""
        if self.store is None or all(row["checkpoint"] is not None for row in self.store.rows):
            return
        if self.store.name_checkpoints(self._checkpoint_names()):
            self.store.write(self.session.metadata)

    def _checkpoint_names(self) -> dict[int, str]:
        """Step -> name of the checkpoints in the run folder so far, as analyze of that folder names them."""
        from ..inputs.checkpoints import find_checkpoints

        probes, config = self.session.inputs.probes.path, self.session.config
        try:  # as resolve_inputs finds them: the manifest's weights and [steps] count
            found = find_checkpoints(self.session.inputs.ckpt_dir, set() if probes is None else {probes},
                                     config.weights, config.steps).checkpoints
        except (GrokmonError, OSError):  # nothing saved yet, or a layout analyze would refuse: no names
            return {}
        return {c.step: c.name for c in found}

    def _verdict(self) -> PhaseReport | None:
        try:
            report = phases(self.store.frame(), self.thresholds)  # judged as `grokmon phases` judges the file
        except GrokmonError:  # no measured checkpoint yet, or no metric the classifier reads
            return None
        now = (report.current_phase, report.advice)
        if now != self.last:
            self.log.info("grokmon: step %s: %s, %s (confidence %.2f): %s", report.steps[-1][0],
                          report.current_phase or "no phase yet", report.advice, report.confidence, report.reason)
            self.last = now
        return report

    def _stop(self, step: int, report: PhaseReport | None) -> str | None:
        self.streak = self.streak + 1 if report is not None and report.advice in self.stop_on else 0
        if self.stopped is None and self.streak >= self.patience:
            self.stopped = (f"grokmon: stopping at step {step}: the verdict has been {report.advice} "
                            f"{self.streak} time(s) in a row ({report.reason})")
            self.log.warning(self.stopped)  # training ends early: shown at every framework's default verbosity
        return self.stopped


class MonitorCallback:
    """The arguments both callbacks take (a framework's callback class comes after this one in its bases).

    probes: a probe file (as `--data`) or a dict of tensors (`x_train`, and `y_train`, `x_test`, `y_test`).
    output: the results file [default: grokmon.parquet in the folder of the run's checkpoints].
    every_n_steps: None measures at every checkpoint save, N every N optimiser steps.
    metrics: analyze's metric groups [default: all]; options: analyze's (points, lc_radius, model, ...).
    stop_on: "stop", "roll-back" or both: stop training once the verdict is one of them `patience` times in a row.
    max_seconds: measuring takes at most this many seconds per call on average (calls over it are skipped).
    """

    log = logging.getLogger("grokmon")  # where stops, skips and verdicts are said: the framework's log

    def __init__(self, probes, output=None, every_n_steps=None, metrics=None, stop_on=None, patience=1,
                 max_seconds=None, **options):
        super().__init__()
        self.monitor = LiveMonitor(probes, output, every_n_steps, metrics, stop_on, patience, max_seconds,
                                   log=self.log, **options)
