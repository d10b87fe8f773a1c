"""Several devices of one machine without Ray (`--device cuda:0,cuda:1`, `cuda:all`; `cpu,cpu` works too): one
worker per device, each in a thread of this process.

Threads rather than processes: the work is torch kernels, which run without the GIL (and on a GPU are only
launched from Python), so threads measure in parallel, while processes would each pay for importing torch,
a CUDA context, and a copy of the probes and the model, and would need a way to send rows back. Each thread
builds its own model on its own device (torch's current CUDA device is per thread), and grokmon's
TorchFunctionModes are per thread too. For process isolation, Ray runs one process per worker (on_ray.py).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..inputs.checkpoints import Checkpoint
from ..inputs.run import RunInputs
from .dispatch import run_workers
from .events import ProgressEvent
from .store import ResultsStore
from .worker import Worker


class ThreadWorker:
    """A Worker in a thread of its own: its calls run one at a time, in the order they are made."""

    def __init__(self, inputs: RunInputs, pending: list[Checkpoint], device: torch.device):
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"grokmon-{device}")
        self.worker = self.thread.submit(Worker, inputs, pending, str(device))

    def info(self) -> Future:
        return self.thread.submit(lambda: self.worker.result().info())

    def measure(self, ckpt: Checkpoint, following: Checkpoint | None) -> Future:
        return self.thread.submit(lambda: self.worker.result().measure(ckpt, following))

    def stop(self) -> None:
        self.thread.shutdown(wait=False, cancel_futures=True)
        if self.worker.done() and self.worker.exception() is None:
            self.worker.result().close()


def run_devices(inputs: RunInputs, pending: list[Checkpoint], store: ResultsStore,
                notify: Callable[[ProgressEvent], None], done: int, total: int,
                devices: tuple[torch.device, ...], opening: ProgressEvent | None = None) -> None:
    """Measure `pending` with one worker per device of `devices`; a dead worker is replaced on its device;
    `opening` is sent once the first worker's session is open."""
    run_workers(lambda slot: ThreadWorker(inputs, pending, devices[slot]), len(devices), pending, store, notify,
                done, total, ",".join(map(str, devices)), opening)
