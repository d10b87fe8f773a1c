"""What `analyze` tells its progress callback: the CLI draws it, a Python caller may log it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """Sent when a run starts (step None, with the notes about the run: checkpoints skipped because they are still
    being written, a step saved twice, results dropped because their file changed or is gone) and after every
    checkpoint."""

    done: int
    total: int
    device: str
    step: int | None = None
    checkpoint: str | None = None
    seconds: float | None = None
    status: str | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()
