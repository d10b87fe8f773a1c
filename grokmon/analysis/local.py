"""The loop of one process: load (one checkpoint ahead) -> measure -> write -> notify, in step order."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..inputs.checkpoints import Checkpoint
from .events import ProgressEvent, finished
from .loading import Loaded, prefetched
from .measure import measure_checkpoint
from .session import Session
from .store import ResultsStore


def run_local(session: Session, pending: list[Checkpoint], preloaded: list[Loaded], store: ResultsStore,
              notify: Callable[[ProgressEvent], None], done: int, total: int) -> None:
    """Measure `pending` checkpoints in order, writing the results after each; `done` of `total` are done already.

    `seconds` of a checkpoint is the wall time from the end of the previous one: waiting for its load (which
    overlaps with measuring the previous one) and measuring every split.
    """
    device = session.inputs.device
    start = time.perf_counter()
    for index, loaded in enumerate(prefetched(pending, preloaded, device)):
        rows = measure_checkpoint(session, loaded)
        loaded.state = None  # the weights are in the model now; the next checkpoint may load
        seconds = time.perf_counter() - start
        for row in rows:
            row["seconds"] = seconds
        store.add(rows, session.metadata)
        notify(finished(rows, done + index + 1, total, str(device)))
        start = time.perf_counter()
