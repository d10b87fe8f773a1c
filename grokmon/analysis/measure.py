"""One checkpoint measured: its weights into the session's model, every split's metrics, one row per split.

The per-checkpoint columns (weights, llc) are measured once and stand on every split row of the checkpoint;
a session without probe data (data-free groups only) gives one row per checkpoint, split `train`, no points.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import UnreadableCheckpoints, error_message, reraise_interrupt
from ..inputs.models import load_weights
from ..metrics import compute_checkpoint_metrics
from .loading import Loaded
from .session import Session

_log = logging.getLogger("grokmon")  # a failed checkpoint's traceback, at DEBUG (the CLI's --debug shows it)


def result_row(step: int, checkpoint: str | None, split: str, n_points: int, error: str | None = None,
               **metrics) -> dict:
    """One results row (see grokmon.columns.ROW_COLUMNS); `seconds` is added once the checkpoint is done."""
    return {"step": step, "checkpoint": checkpoint, "split": split, "n_points": n_points,
            "status": "ok" if error is None else "error", "error": error, **metrics}


def split_points(splits) -> list[tuple[str, int]]:
    """(split, points) of every row a checkpoint gets: one per split, or a single `train` row without probes."""
    return [(s.name, len(s.x)) for s in splits] or [("train", 0)]


def row_splits(session: Session) -> list[tuple[str, int]]:
    """(split, points) of every row a checkpoint of the session gets."""
    return split_points(session.splits)


def error_rows(ckpt, message: str, identity: dict, splits: list[tuple[str, int]], seconds: float) -> list[dict]:
    """The rows of a checkpoint that failed before anything was measured: one per (split, points) of `splits`."""
    return [{**result_row(ckpt.step, ckpt.name, name, points, message), **identity, "seconds": seconds}
            for name, points in splits]


def _measured(session: Session, step: int, checkpoint: str | None) -> list[dict]:
    model, options = session.model.measured, session.options
    train = next(((s.x, s.y) for s in session.splits if s.name == "train"), None)
    per_checkpoint = compute_checkpoint_metrics(model, train, options=options)
    if not session.splits:
        return [result_row(step, checkpoint, "train", 0, **per_checkpoint)]
    return [result_row(step, checkpoint, s.name, len(s.x), **per_checkpoint, **metrics)
            for s, metrics in session.split_metrics()]


def measure_rows(session: Session, step: int, checkpoint: str | None, failure: BaseException | None = None,
                 prepare: Callable[[], None] = lambda: None) -> list[dict]:
    """Every split's metrics of the session's model as it is after `prepare()`, or one error row per split
    saying why it failed (`failure`: it failed before, nothing is measured)."""
    if failure is None:
        try:
            prepare()
            return _measured(session, step, checkpoint)
        except Exception as exc:  # keys that do not fit, non-finite outputs, ...: this checkpoint's rows
            reraise_interrupt(exc)
            failure = exc
    _log.debug("checkpoint %s (step %s) failed", checkpoint, step, exc_info=failure)
    message = error_message(failure)
    return [result_row(step, checkpoint, name, points, message) for name, points in row_splits(session)]


def measure_checkpoint(session: Session, loaded: Loaded) -> list[dict]:
    """Every split's metrics for one checkpoint, or one error row per split saying why it failed; each row with the
    identity of the checkpoint's files."""
    ckpt = loaded.checkpoint
    rows = measure_rows(session, ckpt.step, ckpt.name, loaded.error,
                        lambda: load_weights(session.model, loaded.state, ckpt.name))
    identity = loaded.identity.columns() if loaded.identity is not None else {}  # its files as they were read
    return [{**row, **identity} for row in rows]


def unreadable_rows(failure: UnreadableCheckpoints, splits: list[tuple[str, int]]) -> list[list[dict]]:
    """The error rows of every checkpoint of a run none of whose checkpoints could be read, one list per checkpoint,
    one row per (split, points) of `splits`; nothing was measured, so `seconds` is 0."""
    return [error_rows(ckpt, message, identity, splits, 0.0) for ckpt, message, identity in failure.failures]
