"""`--executor ray`: one worker per GPU of a Ray cluster (or `--workers N`, on CPUs), each a Ray actor with its
own session, rows streaming back to this process (the driver), which writes them (dispatch.py).

`ray.init()` as Ray's users expect it: an already initialised Ray is used as it is; otherwise `RAY_ADDRESS` (or
a cluster started with `ray start` on this machine) is joined, else a local instance is started. Workers'
output is not forwarded (`log_to_driver=False`): stdout is grokmon's results and JSON, and a worker's failure
comes back as its checkpoint's error row.

Assumed: every node sees the run's folder, the model file and the working directory at the paths the driver
sees them (one machine, or a shared filesystem), and has grokmon installed. Workers get the checkpoints' paths,
not their tensors, and read them themselves; the probe points (small, already subset) travel with the run's
inputs. Only the driver writes the results file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from ..inputs.checkpoints import Checkpoint
from ..inputs.run import RunInputs
from .dispatch import run_workers
from .events import ProgressEvent
from .store import ResultsStore
from .worker import Worker

PACKAGE_HOME = Path(__file__).resolve().parents[2]  # the folder `import grokmon` finds the package in


def import_ray():
    """The ray module (the extra `grokmon[ray]`); ConfigError saying how to install it when it is absent."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install 'grokmon[ray]'") from exc
    return ray


def start_ray(ray) -> None:
    """`ray.init()`, from the folder that holds the grokmon package (the working directory comes back after).

    Ray puts the driver's working directory at the front of every worker's import path. Run from a folder
    holding a `grokmon` folder (the parent of a clone), a worker imported that folder, as a namespace package,
    instead of an editable install of grokmon, and every worker died on its first import. Ray's own INFO lines
    ("Started a local Ray instance") would mix into grokmon's stderr, -q or not: warnings only."""
    with contextlib.chdir(PACKAGE_HOME):
        ray.init(log_to_driver=False, logging_level=logging.WARNING)


class RayWorker(Worker):
    """The Worker a Ray actor runs: in the driver's working directory, on a node that must see the run."""

    def __init__(self, workdir: str, inputs: RunInputs, pending: list[Checkpoint], device: str, threads: int | None):
        with contextlib.suppress(OSError):  # a node without the folder: said below, once the session fails
            os.chdir(workdir)
        super().__init__(inputs, pending, device, threads)
        if not inputs.ckpt_dir.is_dir():
            self.failure = CheckpointError(
                f"{inputs.ckpt_dir}: not found on Ray node {socket.gethostname()}; --executor ray needs the run "
                "at the same path on every node (a shared filesystem)")


class ActorHandle:
    """A RayWorker actor as the driver sees it; its results as concurrent.futures Futures."""

    def __init__(self, actor_class, *args):
        self.actor = actor_class.remote(*args)

    def info(self) -> Future:
        return self.actor.info.remote().future()

    def measure(self, ckpt: Checkpoint, following: Checkpoint | None) -> Future:
        return self.actor.measure.remote(ckpt, following).future()

    def stop(self) -> None:
        import_ray().kill(self.actor)


def placement(resources: dict, device: str, workers: int | None) -> tuple[int, str, dict]:
    """How many workers, on which device, with which Ray resources each: one per GPU when the cluster has GPUs
    (and `device` is auto or cuda), else `workers` (default: one per CPU of the cluster) on one CPU each.

    >>> placement({"CPU": 8.0, "GPU": 2.0}, "auto", None), placement({"CPU": 8.0}, "auto", 3)
    ((2, 'cuda', {'num_gpus': 1.0}), (3, 'cpu', {'num_cpus': 1}))
    """
    gpus = int(resources.get("GPU", 0))
    if device == "cpu" or (device == "auto" and not gpus):
        return workers or max(1, int(resources.get("CPU", 1))), "cpu", {"num_cpus": 1}
    if not gpus:
        raise ConfigError("--device cuda --executor ray: the Ray cluster has no GPUs; use --device auto or cpu")
    count = workers or gpus
    return count, "cuda", {"num_gpus": min(1.0, gpus / count)}


def run_ray(inputs: RunInputs, pending: list[Checkpoint], store: ResultsStore,
            notify: Callable[[ProgressEvent], None], done: int, total: int, device: str, workers: int | None,
            threads: int | None, opening: ProgressEvent | None = None) -> None:
    """Measure `pending` on Ray actors; `threads`: torch's CPU threads in each (default 1, its one CPU); `opening`
    is sent once the first actor's session is open."""
    ray = import_ray()
    if not ray.is_initialized():
        start_ray(ray)
    count, place, resources = placement(ray.cluster_resources(), device, workers)
    actor_class = ray.remote(RayWorker).options(**resources)
    workdir = os.getcwd()

    def spawn(slot: int) -> ActorHandle:
        return ActorHandle(actor_class, workdir, inputs, pending, place, threads or 1)

    run_workers(spawn, count, pending, store, notify, done, total, f"ray ({count} x {place})", opening)
