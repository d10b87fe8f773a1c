"""Checkpoints loaded one ahead: the next one loads in a background thread while the current one is measured.

At most two checkpoints are in memory at a time, whatever the run's length. A checkpoint that cannot be read
is not an exception here but a `Loaded` holding the error, so that it becomes that checkpoint's error rows.
On a CUDA device the background thread also copies the weights to the device: into pinned host memory, then
non-blocking copies on a side stream, so that the copy overlaps the kernels measuring the current checkpoint;
`ready` makes the measuring stream wait for the copy (on the device, not on the host).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ..errors import reraise_interrupt
from ..inputs.checkpoints import Checkpoint, load_checkpoint
from ..inputs.identity import FileIdentity, identity_of


@dataclass
class Loaded:
    """One checkpoint's weights (on the CPU, or already on the CUDA device), or why they could not be read, and
    its files' identity as they were read (None when they could not even be looked at)."""

    checkpoint: Checkpoint
    state: dict[str, torch.Tensor] | None = None
    error: BaseException | None = None
    identity: FileIdentity | None = None
    copied: torch.cuda.Event | None = None  # recorded after the copies to the device, when there are any


def copy_to_device(state: dict[str, torch.Tensor], device: torch.device) -> tuple[dict, torch.cuda.Event]:
    """Start copying `state` to the CUDA `device` without blocking the host: pinned memory, a side stream."""
    stream = torch.cuda.Stream(device=device)
    with torch.cuda.stream(stream):
        moved = {key: tensor.pin_memory().to(device, non_blocking=True) for key, tensor in state.items()}
        event = torch.cuda.Event()
        event.record(stream)
    return moved, event


def load(ckpt: Checkpoint, device: torch.device | None = None) -> Loaded:
    """Read one checkpoint (and start its copy to a CUDA `device`); any failure (corrupt, refused, non-finite)
    is kept in the result, not raised."""
    identity = None
    try:
        identity = identity_of(ckpt.files)  # before reading: a file that changes meanwhile is measured again later
        state = load_checkpoint(ckpt)
        if device is not None and device.type == "cuda":
            moved, event = copy_to_device(state, device)
            return Loaded(ckpt, state=moved, identity=identity, copied=event)
        return Loaded(ckpt, state=state, identity=identity)
    except Exception as exc:  # every failure is this checkpoint's row, whatever raised it
        reraise_interrupt(exc)
        return Loaded(ckpt, error=exc, identity=identity)


def ready(loaded: Loaded) -> Loaded:
    """`loaded`, safe to read on the current stream: it waits for the side stream's copies, and the copied
    tensors' memory is not reused before the current stream is done with them."""
    if loaded.copied is not None:
        device = next(iter(loaded.state.values())).device
        current = torch.cuda.current_stream(device)
        current.wait_event(loaded.copied)
        for tensor in loaded.state.values():
            tensor.record_stream(current)
        loaded.copied = None
    return loaded


def prefetched(checkpoints: Sequence[Checkpoint], preloaded: Sequence[Loaded] = (),
               device: torch.device | None = None) -> Iterator[Loaded]:
    """The checkpoints loaded in order, each next one loading while the caller works on the current one.

    `preloaded` are the first checkpoints already read (the session read them to build the model); the others
    are copied to `device` in the background when it is a CUDA device.
    """
    rest = list(checkpoints[len(preloaded):])
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="grokmon-load") as loader:
        future = loader.submit(load, rest[0], device) if rest else None
        yield from preloaded
        for index in range(len(rest)):
            current = ready(future.result())
            future = loader.submit(load, rest[index + 1], device) if index + 1 < len(rest) else None
            yield current
            del current  # let the state go before the one after next is loaded
