"""One `analyze` at a time per results file: two at once (a CI hook while `watch` runs, two jobs of one run) each
rewrote the file with the rows they had, the last to finish winning: a new user's file went from 41 checkpoints
back to 34, and both measured everything.

The lock is an exclusive `flock` on a hidden file beside the results (`.NAME.lock`), held while the results are read,
measured into and written; the kernel releases it when its holder ends, however it ends, so a stale file holds
nothing. The one waiting is told who holds it, and then reads the rows the other wrote: it measures only the rest.
Where the platform has no `flock` (Windows), there is no lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def lock_path(output: Path) -> Path:
    """The lock file of results file `output`."""
    return output.with_name(f".{output.name}.lock")


@contextlib.contextmanager
def writing(output: Path, waiting: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock of results file `output` for the block; `waiting(message)` is called once, before blocking,
    when another process holds it. A folder where the lock file cannot be made is left to the results' own check
    (check_writable says why, in one line)."""
    if fcntl is None:
        yield
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path(output), "a+")
    except OSError:
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            waiting(f"{output}: another grokmon analyze ({holder}) is writing these results; waiting for it to "
                    "finish, then measuring what it left")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
