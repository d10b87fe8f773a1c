"""Where a run's checkpoints are measured: in this process (`local`, one device), on several devices of this
machine (`--device cuda:0,cuda:1`, one thread per device), or on a Ray cluster (`--executor ray`). Every one
writes through the same ResultsStore, so results, resume and failures read the same whichever ran them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ConfigError, UnreadableCheckpoints
from ..inputs.checkpoints import Checkpoint
from ..inputs.run import RunInputs, resolve_devices
from .events import ProgressEvent, finished
from .store import ResultsStore

EXECUTORS = ("local", "ray")
RAY_DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Execution:
    """The executor chosen for a run, with its devices (local) or its device kind and worker count (Ray)."""

    kind: str  # "local", "devices" or "ray"
    device: str  # as given: what a Ray worker resolves on its own node
    devices: tuple[torch.device, ...] = ()  # this machine's devices, for local and devices
    workers: int | None = None
    threads: int | None = None

    @property
    def driver_device(self) -> str:
        """The device the inputs are resolved for in this process (a Ray driver measures nothing)."""
        return "cpu" if self.kind == "ray" else str(self.devices[0])

    @property
    def description(self) -> str:
        """The devices as progress shows them."""
        return "ray" if self.kind == "ray" else ",".join(map(str, self.devices))

    def run(self, inputs: RunInputs, pending: list[Checkpoint], store: ResultsStore,
            notify: Callable[[ProgressEvent], None], done: int, total: int,
            opening: ProgressEvent | None = None) -> None:
        """Measure `pending` (`done` of `total` are in the results already), writing rows to `store`; `opening`
        (the run's first event) is sent once the session is open: the model built and the probes checked.

        With nothing pending only `opening` is sent. When none of `pending` can be read, each gets its error rows
        all the same (no exception)."""
        opening = opening or ProgressEvent(done=done, total=total, device=self.description)
        if not pending:
            notify(opening)
            return
        try:
            if self.kind == "local":
                from .local import run_local
                from .session import open_session

                session, preloaded = open_session(inputs, pending)
                notify(opening)
                run_local(session, pending, preloaded, store, notify, done, total)
            elif self.kind == "devices":
                from .devices import run_devices

                run_devices(inputs, pending, store, notify, done, total, self.devices, opening)
            else:
                from .on_ray import run_ray

                run_ray(inputs, pending, store, notify, done, total, self.device, self.workers, self.threads,
                        opening)
        except UnreadableCheckpoints as failure:
            record_unreadable(failure, inputs, store, notify, opening)


def record_unreadable(failure: UnreadableCheckpoints, inputs: RunInputs, store: ResultsStore,
                      notify: Callable[[ProgressEvent], None], opening: ProgressEvent) -> None:
    """Write the error rows of checkpoints none of which could be read (one per split the probes have), keeping
    every row already in `store`, and report them as a run whose every checkpoint failed."""
    from .measure import split_points, unreadable_rows
    from .session import unmeasured_metadata

    checkpoints = unreadable_rows(failure, split_points(inputs.probes.splits if inputs.probes is not None else ()))
    store.add([row for rows in checkpoints for row in rows], store.metadata or unmeasured_metadata(inputs))
    notify(opening)
    for index, rows in enumerate(checkpoints, start=1):
        notify(finished(rows, opening.done + index, opening.total, opening.device))


def choose_executor(executor: str, device: str, workers: int | None = None, threads: int | None = None) -> Execution:
    """The Execution for `--executor`, `--device` and `--workers`; ConfigError for a combination that cannot run.

    >>> choose_executor("local", "cpu,cpu").kind, choose_executor("ray", "auto", workers=2).description
    ('devices', 'ray')
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"Expected --executor to be one of {', '.join(EXECUTORS)}, but got {executor!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"Expected --workers to be a positive integer, but got {workers!r}")
    if executor == "ray":
        if device not in RAY_DEVICES:
            raise ConfigError(f"--executor ray places one worker per GPU itself: pass --device "
                              f"{', '.join(RAY_DEVICES)}, not {device!r}")
        return Execution("ray", device, workers=workers, threads=threads)
    if workers is not None:
        raise ConfigError("--workers goes with --executor ray; for several local devices pass --device "
                          "cuda:0,cuda:1 (or cuda:all)")
    devices = resolve_devices(device)
    return Execution("local" if len(devices) == 1 else "devices", device, devices, threads=threads)
