"""Progress on stderr for the CLI: a rich bar in a terminal, plain lines under CI or without a TTY."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import failure_kind


def plain_output() -> bool:
    """True under CI (CI=true) or when stderr is not a terminal: no animations then."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or not sys.stderr.isatty()


class AnalyzeProgress:
    """Callable that receives grokmon.analysis.events.ProgressEvent objects and shows them; use as a context manager."""

    def __init__(self, console: Console, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.plain = plain_output()
        self.bar: Progress | None = None
        self.task = None
        self.first_step_of_error: dict[str, int] = {}

    def __enter__(self) -> "AnalyzeProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, event) -> None:
        if event.step is None:
            for note in event.notes:  # not progress: shown under --quiet too
                self.console.print(f"grokmon: note: {note}", highlight=False, markup=False, soft_wrap=True)
            if not self.quiet and not event.waiting:
                self._start(event)
            return
        if self.quiet:
            return
        error = self._error_text(event)
        if self.plain:
            line = f"[{event.done}/{event.total}] step {event.step} ({event.checkpoint}): {event.status}, {event.seconds:.2f} s"
            if error:
                line += f": {error}"
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            if error:
                self.bar.console.print(f"step {event.step}: {error}", style="red", highlight=False, markup=False)
            self.bar.update(self.task, completed=event.done, seconds=f"{event.seconds:.2f} s/ckpt", step=event.step)

    def _error_text(self, event) -> str | None:
        """The error in full the first time; a repeat of it (another checkpoint's name aside) by reference."""
        if not event.error:
            return None
        generic = failure_kind(event.error, event.checkpoint)
        first = self.first_step_of_error.setdefault(generic, event.step)
        return event.error if first == event.step else f"the same error as step {first}"

    def _start(self, event) -> None:
        todo = event.total - event.done
        if self.plain:
            self.console.print(
                f"analyzing {todo} of {event.total} checkpoints on {event.device}"
                + (f" ({event.done} already in the results)" if event.done else ""),
                highlight=False,
            )
            return
        self.bar = Progress(
            TextColumn("[bold]analyze[/] on {task.fields[device]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("step {task.fields[step]}"),
            TextColumn("{task.fields[seconds]}"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.bar.start()
        self.task = self.bar.add_task("analyze", total=event.total, completed=event.done,
                                      device=event.device, step="-", seconds="")
