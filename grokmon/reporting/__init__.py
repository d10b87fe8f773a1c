"""The run as a picture: the figure of every metric against step, and the self-contained HTML report."""

from .writer import FIGURE_SUFFIXES, HTML_SUFFIXES, render_report

__all__ = ["FIGURE_SUFFIXES", "HTML_SUFFIXES", "render_report"]
