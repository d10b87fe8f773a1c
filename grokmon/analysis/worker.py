"""One worker of a run spread over several devices or machines: its own session on its own device, built once,
measuring the checkpoints the driver hands it one at a time, the next one loading while it measures.

The same class runs in a thread of the driver's process (one per local device, devices.py) and as a Ray actor
(on_ray.py); the driver (dispatch.py) writes what it returns. A worker receives checkpoints as paths, never as
tensors: every worker reads the run's files itself.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import torch

from ..errors import GrokmonError
from ..inputs.checkpoints import Checkpoint
from ..inputs.run import RunInputs, resolve_device
from .loading import load, ready
from .measure import measure_checkpoint, row_splits
from .session import open_session


@dataclass(frozen=True)
class WorkerInfo:
    """What the driver needs from a worker's session: the results' metadata, and the splits a row is written for."""

    metadata: dict
    splits: tuple[tuple[str, int], ...]  # (split name, points)
    device: str


class Worker:
    """A session on `device` (a name: `cuda` is the first GPU this process sees) for the checkpoints `pending`.

    A user error while opening the session (the model or probes do not fit) is kept and given back by `info`,
    not raised, so that the driver can show it as it is.
    """

    def __init__(self, inputs: RunInputs, pending: list[Checkpoint], device: str, threads: int | None = None):
        self.session, self.failure = None, None
        self._ahead: tuple[Checkpoint, Future] | None = None
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grokmon-load")
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            place = resolve_device(device)
            if place.type == "cuda":
                torch.cuda.set_device(place)  # per thread: streams and events are made on it
            self.session, _ = open_session(replace(inputs, device=place), pending)
        except GrokmonError as exc:
            self.failure = exc

    def info(self) -> WorkerInfo | GrokmonError:
        """The session's metadata and splits, or the user error that kept it from opening."""
        if self.failure is not None:
            return self.failure
        return WorkerInfo(self.session.metadata, tuple(row_splits(self.session)), str(self.session.inputs.device))

    def measure(self, ckpt: Checkpoint, following: Checkpoint | None = None) -> list[dict]:
        """The rows of `ckpt` (with `seconds`: waiting for its load and measuring it); `following`, the checkpoint
        this worker will most likely get next, starts loading meanwhile."""
        if self.failure is not None:
            raise self.failure
        start = time.perf_counter()
        loaded = self._take(ckpt)
        device = self.session.inputs.device
        self._ahead = None if following is None else (following, self._loader.submit(load, following, device))
        rows = measure_checkpoint(self.session, loaded)
        seconds = time.perf_counter() - start
        for row in rows:
            row["seconds"] = seconds
        return rows

    def close(self) -> None:
        """Let the loading thread go (a Ray actor's process ends instead)."""
        self._ahead = None
        self._loader.shutdown(wait=False, cancel_futures=True)

    def _take(self, ckpt: Checkpoint):
        """`ckpt` loaded: the one loading ahead when it is that one, else read now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == ckpt:
            return ready(ahead[1].result())
        return ready(load(ckpt, self.session.inputs.device))
