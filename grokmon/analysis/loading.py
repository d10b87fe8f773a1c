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


@dataclass
class Loaded:
    """One checkpoint's weights on the CPU, or why they could not be read."""

    checkpoint: Checkpoint
    state: dict[str, torch.Tensor] | None = None
    error: BaseException | None = None


def load(ckpt: Checkpoint) -> Loaded:
    """Read one checkpoint; any failure (corrupt, refused, non-finite) is kept in the result, not raised."""
    try:
        return Loaded(ckpt, state=load_checkpoint(ckpt))
    except Exception as exc:  # every failure is this checkpoint's row, whatever raised it
        return Loaded(ckpt, error=exc)


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
