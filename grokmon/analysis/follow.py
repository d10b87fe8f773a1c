"""Following a running job: `analyze` again every `interval` seconds, the verdict after every pass.

Each pass is one `grokmon.analyze` of the folder: it resumes the results file, so it measures only the
checkpoints saved since the last pass (and retries those that failed: a file met while the job was still
writing it is measured on a later pass), and it writes the file after every checkpoint. The folder is the job's
and changes under the watch, so a pass that fails on it (no checkpoint yet, none readable, a file without a
step) is tried again at the next look; other errors (probe data, model, options) end the watch. A pass that
measured something new is judged with `grokmon.phases`; its verdict's history says what changed at each of the
pass's checkpoints (a first pass over a job's saved checkpoints covers many).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, ConfigError, GrokmonError, NoCheckpointsError
from ..phasing import ADVICE, PhaseReport, StepVerdict
from .events import ProgressEvent


@dataclass(frozen=True)
class WatchEvent:
    """One pass that measured something new (or the first), or the end of the watch (`finished`)."""

    measured: tuple[ProgressEvent, ...] = ()  # the checkpoints of this pass, in order (failed ones too)
    report: PhaseReport | None = None  # the verdict after the pass; None while no checkpoint could be judged
    changes: tuple[StepVerdict, ...] = ()  # the verdicts of this pass's checkpoints whose phase or advice changed
    error: str | None = None  # why this pass could not read the checkpoint folder (tried again next time)
    waiting: bool = False  # the folder holds no checkpoint yet (the first pass says so; the watch waits)
    finished: str | None = None  # "until": the verdict is one of `until`; "timeout": `timeout` seconds passed


def parse_verdicts(until) -> tuple[str, ...]:
    """Verdicts from a list or a comma-separated string, each one of grokmon.phasing.ADVICE.

    >>> parse_verdicts("stop,roll-back")
    ('stop', 'roll-back')
    """
    names = [v.strip() for v in until.split(",")] if isinstance(until, str) else list(until or ())
    wrong = [v for v in names if v not in ADVICE]
    if wrong:
        raise ConfigError(f"Expected verdicts from {', '.join(ADVICE)}, but got {', '.join(wrong)}")
    return tuple(names)


def _judge(output: Path) -> PhaseReport | None:
    """The verdict on the results so far, with the run's manifest `[phases]` as `grokmon phases` reads it."""
    from ..api import phases
    from ..inputs.config import phase_thresholds
    from ..results.parquet import read_metadata

    try:
        return phases(output, phase_thresholds(read_metadata(output)))
    except GrokmonError:  # no file yet, or every checkpoint so far failed
        return None


def changed_verdicts(report: PhaseReport | None, last: StepVerdict | None) -> tuple[tuple[StepVerdict, ...],
                                                                                  StepVerdict | None]:
    """The verdicts of `report`'s history after `last` (the newest one said before) whose phase or advice differs
    from the one before them, and the newest verdict now. With nothing said before, the newest verdict closes the
    list too: a watch started on a job's saved checkpoints says where the run stands now."""
    if report is None or not report.history:
        return (), last
    newest = report.history[-1]
    out, before = [], last
    for verdict in (v for v in report.history if last is None or v.step > last.step):
        if before is None or (verdict.phase, verdict.advice) != (before.phase, before.advice):
            out.append(verdict)
        before = verdict
    if last is None and out[-1] is not newest:
        out.append(newest)
    return tuple(out), newest


def watch(ckpt_dir: str | Path, output: str | Path | None = None, *, until=(), interval: float = 10.0,
          timeout: float | None = None, overwrite: bool = False, progress: Callable[[ProgressEvent], None] | None = None,
          clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
          **options) -> Iterator[WatchEvent]:
    """Analyse the checkpoints of a running job as they are saved; yield after every pass that measured something.

    `options` are analyze's (model, data, points, ...); `overwrite` replaces the results file on the first pass
    only. The watch ends with an event whose `finished` says why: "until" once the verdict is one of `until`
    (verdicts, or a comma-separated string of them), "timeout" after `timeout` seconds; without either it runs
    until interrupted (everything measured so far is in the results file). The timeout is looked at between
    passes; `clock` and `sleep` (default: time.monotonic, time.sleep) are what the watch tells time and waits with.
    """
    from ..api import DEFAULT_OUTPUT_NAME, analyze

    stop_at = parse_verdicts(until)
    if not interval > 0 or (timeout is not None and not timeout > 0):
        raise ConfigError(f"Expected interval and timeout to be positive seconds, but got {interval!r}, {timeout!r}")
    output = Path(output) if output is not None else Path(ckpt_dir) / DEFAULT_OUTPUT_NAME
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    start, last, first = clock(), None, True
    while True:
        measured: list[ProgressEvent] = []

        def collect(event: ProgressEvent) -> None:
            if event.step is not None:
                measured.append(event)
            if progress is not None:
                progress(event)

        error, waiting = None, False
        try:
            analyze(ckpt_dir, output, overwrite=overwrite and first, progress=collect, **options)
        except NoCheckpointsError:
            waiting = True  # nothing saved yet
        except CheckpointError as exc:
            error = str(exc)
        if measured or first or error:
            report = _judge(output)
            changes, now = changed_verdicts(report, last)
            yield WatchEvent(tuple(measured), report, changes=changes, error=error, waiting=waiting)
            last = now
            if report is not None and report.advice in stop_at:
                yield WatchEvent(report=report, finished="until")
                return
        first = False
        left = None if timeout is None else timeout - (clock() - start)
        if left is not None and left <= 0:
            yield WatchEvent(report=_judge(output), finished="timeout")
            return
        sleep(interval if left is None else min(interval, left))
