"""Checkpoints loaded one ahead: the next one loads in a background thread while the current one is measured.

At most two checkpoints are in memory at a time, whatever the run's length. A checkpoint that cannot be read
is not an exception here but a `Loaded` holding the error, so that it becomes that checkpoint's error rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ..inputs.checkpoints import Checkpoint, load_checkpoint
from ..inputs.identity import FileIdentity, identity_of


@dataclass
class Loaded:
    """One checkpoint's weights on the CPU, or why they could not be read, and its files' identity as they were
    read (None when they could not even be looked at)."""

    checkpoint: Checkpoint
    state: dict[str, torch.Tensor] | None = None
    error: BaseException | None = None
    identity: FileIdentity | None = None


def load(ckpt: Checkpoint) -> Loaded:
    """Read one checkpoint; any failure (corrupt, refused, non-finite) is kept in the result, not raised."""
    identity = None
    try:
        identity = identity_of(ckpt.files)  # before reading: a file that changes meanwhile is measured again later
        return Loaded(ckpt, state=load_checkpoint(ckpt), identity=identity)
    except Exception as exc:  # every failure is this checkpoint's row, whatever raised it
        return Loaded(ckpt, error=exc, identity=identity)


def prefetched(checkpoints: Sequence[Checkpoint], preloaded: Sequence[Loaded] = ()) -> Iterator[Loaded]:
    """The checkpoints loaded in order, each next one loading while the caller works on the current one.

    `preloaded` are the first checkpoints already read (the session read them to build the model).
    """
    rest = list(checkpoints[len(preloaded):])
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="grokmon-load") as loader:
        future = loader.submit(load, rest[0]) if rest else None
        yield from preloaded
        for index in range(len(rest)):
            current = future.result()
            future = loader.submit(load, rest[index + 1]) if index + 1 < len(rest) else None
            yield current
            del current  # let the state go before the one after next is loaded
