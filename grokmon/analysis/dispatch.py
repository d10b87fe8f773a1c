"""The driver of a run spread over workers (devices.py: threads, one per device; on_ray.py: Ray actors).

Checkpoints go out in step order, one at a time to each worker, with the one it will get next named so that it
loads ahead; rows come back in whatever order the workers finish, and are written as they come, through the
same ResultsStore as the local loop (it sorts them, writes atomically, and resumes). A checkpoint whose worker
dies (or raises outside the measuring, which catches everything else) is retried on another worker, up to
MAX_ATTEMPTS times in all, and then becomes error rows; the dead worker is replaced, up to REPLACEMENTS times
the number of workers in one run. When no worker is left the run stops with ExecutorError, keeping every row
written so far.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Protocol

from ..errors import ExecutorError, GrokmonError, death_cause
from ..inputs.checkpoints import Checkpoint
from ..inputs.identity import identity_of
from .events import ProgressEvent, finished
from .measure import error_rows
from .store import ResultsStore
from .worker import WorkerInfo

MAX_ATTEMPTS = 2  # a checkpoint whose worker died is tried once more, on another worker
REPLACEMENTS = 2  # dead workers replaced per run: this many times the number of workers


class WorkerHandle(Protocol):
    """A worker as the driver sees it: calls run one at a time, in the order they are made."""

    def info(self) -> Future: ...  # WorkerInfo or the GrokmonError that kept the session from opening

    def measure(self, ckpt: Checkpoint, following: Checkpoint | None) -> Future: ...  # the rows of ckpt

    def stop(self) -> None: ...


class Driver:
    """Hands `pending` to workers made by `spawn`, writes their rows to `store` and reports to `notify`."""

    def __init__(self, spawn: Callable[[int], WorkerHandle], store: ResultsStore,
                 notify: Callable[[ProgressEvent], None], done: int, total: int, device: str,
                 opening: ProgressEvent | None = None):
        self.spawn, self.store, self.notify, self.opening = spawn, store, notify, opening
        self.done, self.total, self.device = done, total, device
        self.queue: deque[Checkpoint] = deque()
        self.attempts: Counter[Checkpoint] = Counter()
        self.running: dict[Future, tuple[WorkerHandle, Checkpoint | None, float]] = {}
        self.ahead: dict[WorkerHandle, Checkpoint] = {}  # the checkpoint each worker loads ahead
        self.workers: dict[WorkerHandle, int] = {}  # each live worker's slot (a replacement takes the dead one's)
        self.info: WorkerInfo | None = None
        self.replacements = 0
        self.last_death: Exception | None = None  # what the last worker to die raised (said if they all die)

    def run(self, pending: list[Checkpoint], workers: int) -> None:
        """Measure every checkpoint of `pending` on `workers` workers; stops them all however it ends."""
        self.queue.extend(pending)
        self.replacements = REPLACEMENTS * workers
        try:
            for slot in range(workers):
                self._start(slot)
            while self._work_left():
                done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                measured = [rows for rows in map(self._finished, done) if rows is not None]
                self._assign_idle()
                if measured:
                    self._write(measured)
                if self.queue and not self.workers:
                    raise ExecutorError(f"every worker died{self._last_words()}; {len(self.queue)} checkpoints are "
                                        "not measured (rows written so far are kept): run again to resume, or use "
                                        "the local executor to see why")
        finally:
            for worker in self.workers:
                worker.stop()

    def _last_words(self) -> str:
        exc = self.last_death
        return "" if exc is None else f" (the last raised {death_cause(exc)})"

    def _work_left(self) -> bool:
        """Checkpoints waiting or being measured (a worker still starting, with nothing left for it, is not)."""
        return bool(self.queue or self.ahead or any(ckpt is not None for _, ckpt, _ in self.running.values()))

    def _start(self, slot: int) -> None:
        worker = self.spawn(slot)
        self.workers[worker] = slot
        self.running[worker.info()] = (worker, None, time.perf_counter())

    def _finished(self, future: Future) -> list[dict] | None:
        """The rows of a finished checkpoint (None for a worker's start, or a death to retry); the worker gets
        its next checkpoint first, so that it works while the driver writes."""
        worker, ckpt, started = self.running.pop(future)
        try:
            result = future.result()
        except Exception as exc:  # the worker died (or broke outside the measuring): its checkpoint goes on
            return self._lost(worker, ckpt, exc, time.perf_counter() - started)
        if ckpt is None:
            self._opened(result)
            result = None
        self._assign(worker)
        return result

    def _opened(self, info: WorkerInfo | GrokmonError) -> None:
        if isinstance(info, GrokmonError):
            raise info
        if self.info is None:
            self.info = info
            if self.opening is not None:
                self.notify(self.opening)  # the run starts once a session is open (the model built, probes fit)

    def _write(self, measured: list[list[dict]]) -> None:
        """Every checkpoint finished since the last write, in one rewrite of the results file (its cost grows
        with the file: on a fast cluster several checkpoints finish while one is written)."""
        self.store.add([row for rows in measured for row in rows], {**self.info.metadata, "device": self.device})
        for rows in measured:
            self.done += 1
            self.notify(finished(rows, self.done, self.total, self.device))

    def _assign(self, worker: WorkerHandle) -> None:
        """The worker's next checkpoint: the one it loaded ahead, else the first waiting one (else one that
        another worker loads ahead: at the end of a run, an idle worker takes it)."""
        ckpt = self.ahead.pop(worker, None)
        if ckpt is None and self.queue:
            ckpt = self.queue.popleft()
        if ckpt is None and self.ahead:
            ckpt = self.ahead.pop(next(iter(self.ahead)))
        if ckpt is None:
            return
        following = self.queue.popleft() if self.queue else None
        if following is not None:
            self.ahead[worker] = following
        self.running[worker.measure(ckpt, following)] = (worker, ckpt, time.perf_counter())

    def _assign_idle(self) -> None:
        busy = {worker for worker, _, _ in self.running.values()}
        for worker in self.workers:
            if worker not in busy and self.info is not None:
                self._assign(worker)

    def _lost(self, worker: WorkerHandle, ckpt: Checkpoint | None, exc: Exception,
              seconds: float) -> list[dict] | None:
        """A dead worker: its checkpoints go back to the front of the queue (or, after MAX_ATTEMPTS, its
        checkpoint's error rows are returned), and a new worker takes its place while replacements last."""
        worker.stop()
        self.last_death = exc
        slot = self.workers.pop(worker)
        following = self.ahead.pop(worker, None)
        if following is not None:
            self.queue.appendleft(following)
        rows = None
        if ckpt is not None:
            self.attempts[ckpt] += 1
            if self.attempts[ckpt] < MAX_ATTEMPTS:
                self.queue.appendleft(ckpt)
            else:
                rows = self._error_rows(ckpt, exc, seconds)
        if self.replacements > 0 and (self.queue or self.ahead):
            self.replacements -= 1
            self._start(slot)
        return rows

    def _error_rows(self, ckpt: Checkpoint, exc: Exception, seconds: float) -> list[dict]:
        message = (f"the worker measuring it died {self.attempts[ckpt]} times (last: {death_cause(exc)}); it may "
                   "need more memory than a worker has: analyse it with the local executor to see why")
        try:
            identity = identity_of(ckpt.files).columns()  # as measure_checkpoint records it for every row
        except OSError:  # gone meanwhile: the next run drops its rows
            identity = {}
        return error_rows(ckpt, message, identity, list(self.info.splits), seconds)


def run_workers(spawn: Callable[[int], WorkerHandle], workers: int, pending: list[Checkpoint], store: ResultsStore,
                notify: Callable[[ProgressEvent], None], done: int, total: int, device: str,
                opening: ProgressEvent | None = None) -> None:
    """Measure `pending` on `workers` workers, `spawn(slot)` making the one of each slot, writing rows as they come; `done` of `total` are
    done already; `device` names the devices in the progress events and the results' metadata; `opening`, the
    run's first event, is sent once the first worker's session is open."""
    Driver(spawn, store, notify, done, total, device, opening).run(pending, workers)
