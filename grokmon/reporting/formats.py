"""What a report can be written as, told by the output's suffix (no matplotlib here: the CLI checks -o with it)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
HTML_SUFFIXES = (".html", ".htm")


def checked_output(output: str | Path) -> Path:
    """`output` as a Path when its suffix names a format a report is written in; ConfigError otherwise.

    >>> checked_output("run.png").name
    'run.png'
    >>> checked_output("run.txt")
    Traceback (most recent call last):
    ...
    grokmon.errors.ConfigError: Expected -o to end in .html, .png, .svg or .pdf, but got 'run.txt'
    """
    output = Path(output)
    if output.suffix.lower() not in HTML_SUFFIXES + FIGURE_SUFFIXES:
        raise ConfigError(f"Expected -o to end in .html, .png, .svg or .pdf, but got {str(output)!r}")
    return output
