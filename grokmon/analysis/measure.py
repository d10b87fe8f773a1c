"""One checkpoint measured: its weights into the session's model, every split's metrics, one row per split."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import GrokmonError, first_line
from ..inputs.models import load_weights
from ..metrics import compute_split_metrics
from .loading import Loaded
from .session import Session

_log = logging.getLogger("grokmon")  # a failed checkpoint's traceback, at DEBUG (the CLI's --debug shows it)


def result_row(step: int, checkpoint: str | None, split: str, n_points: int, error: str | None = None,
               **metrics) -> dict:
    """One results row (see grokmon.columns.ROW_COLUMNS); `seconds` is added once the checkpoint is done."""
    return {"step": step, "checkpoint": checkpoint, "split": split, "n_points": n_points,
            "status": "ok" if error is None else "error", "error": error, **metrics}


def error_message(exc: BaseException) -> str:
    """The one-line message of a failed checkpoint: grokmon's own, or the exception's type and first line."""
    if isinstance(exc, GrokmonError):
        return str(exc)
    return f"{type(exc).__name__}: {first_line(exc, 300)}"


def measure_rows(session: Session, step: int, checkpoint: str | None, failure: BaseException | None = None,
                 prepare: Callable[[], None] = lambda: None) -> list[dict]:
    """Every split's metrics of the session's model as it is after `prepare()`, or one error row per split
    saying why it failed (`failure`: it failed before, nothing is measured)."""
    if failure is None:
        try:
            prepare()
            model = session.model.measured
            return [result_row(step, checkpoint, s.name, len(s.x),
                               **compute_split_metrics(model, s.x, s.y, options=session.options, frame=session.frame))
                    for s in session.splits]
        except Exception as exc:  # keys that do not fit, non-finite outputs, ...: this checkpoint's rows
            failure = exc
    _log.debug("checkpoint %s (step %s) failed", checkpoint, step, exc_info=failure)
    message = error_message(failure)
    return [result_row(step, checkpoint, s.name, len(s.x), message) for s in session.splits]


def measure_checkpoint(session: Session, loaded: Loaded) -> list[dict]:
    """Every split's metrics for one checkpoint, or one error row per split saying why it failed."""
    ckpt = loaded.checkpoint
    return measure_rows(session, ckpt.step, ckpt.name, loaded.error,
                        lambda: load_weights(session.model, loaded.state, ckpt.name))
