"""Progress on stderr for the CLI: a rich bar in a terminal, plain lines under CI or without a TTY."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def plain_output() -> bool:
    """True under CI (CI=true) or when stderr is not a terminal: no animations then."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or not sys.stderr.isatty()


class AnalyzeProgress:
    """Callable that receives grokmon.api.ProgressEvent objects and shows them; use as a context manager."""

    def __init__(self, console: Console, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.plain = plain_output()
        self.bar: Progress | None = None
        self.task = None

    def __enter__(self) -> "AnalyzeProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, event) -> None:
        if self.quiet:
            return
        if event.step is None:
            self._start(event)
        elif self.plain:
            line = f"[{event.done}/{event.total}] step {event.step} ({event.checkpoint}): {event.status}, {event.seconds:.2f} s"
            if event.error:
                line += f": {event.error}"
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            if event.error:
                self.bar.console.print(f"[red]step {event.step}:[/] {event.error}", highlight=False)
            self.bar.update(self.task, completed=event.done, seconds=f"{event.seconds:.2f} s/ckpt", step=event.step)

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
