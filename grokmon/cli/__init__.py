"""The `grokmon` command line: parses, calls grokmon.api, renders (the only place that prints)."""

from .app import app, main

__all__ = ["app", "main"]
