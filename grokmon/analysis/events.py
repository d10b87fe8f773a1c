"""What `analyze` tells its progress callback: the CLI draws it, a Python caller may log it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """Sent when a run starts (step None, with the notes about the run: checkpoints skipped because they are still
    being written, a step saved twice, results dropped because their file changed or is gone) and after every
    checkpoint; before the start, while another process writes the same results (`waiting`, a note saying so)."""

    done: int
    total: int
    device: str
    step: int | None = None
    checkpoint: str | None = None
    seconds: float | None = None
    status: str | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()
    waiting: bool = False


def finished(rows: list[dict], done: int, total: int, device: str) -> ProgressEvent:
    """The event of one finished checkpoint, read off its rows (they carry its step, name, seconds and status).

    >>> finished([{"step": 5, "checkpoint": "step_5.pt", "seconds": 0.5, "status": "ok", "error": None}], 2, 9, "cpu").done
    2
    """
    first = rows[0]
    return ProgressEvent(done=done, total=total, device=device, step=first["step"], checkpoint=first["checkpoint"],
                         seconds=first["seconds"], status=first["status"], error=first["error"])
