"""The runs as pictures: the figure of every metric against step, the comparison of several runs, the HTML pages.

Names are handed on lazily, so that `grokmon.reporting.formats` (what the CLI checks `-o` with) loads without
matplotlib.
"""

_LAZY = {
    "Comparison": "compare", "RunSummary": "compare", "FIGURE_SUFFIXES": "formats", "HTML_SUFFIXES": "formats",
    "render_comparison": "writer", "render_report": "writer",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'grokmon.reporting' has no attribute {name!r}")
