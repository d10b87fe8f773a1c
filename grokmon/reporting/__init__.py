"""The runs as pictures: the figure of every metric against step, the comparison of several runs, the HTML pages."""

from .compare import Comparison, RunSummary
from .writer import FIGURE_SUFFIXES, HTML_SUFFIXES, render_comparison, render_report

__all__ = ["Comparison", "FIGURE_SUFFIXES", "HTML_SUFFIXES", "RunSummary", "render_comparison", "render_report"]
