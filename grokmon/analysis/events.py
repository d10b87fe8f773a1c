"""What `analyze` tells its progress callback: the CLI draws it, a Python caller may log it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """Sent when a run starts (step None) and after every checkpoint."""

    done: int
    total: int
    device: str
    step: int | None = None
    checkpoint: str | None = None
    seconds: float | None = None
    status: str | None = None
    error: str | None = None
