"""The run as a picture: a self-contained HTML report or a single figure, for one run or several (never prints).

The HTML pages (see `page`) embed the figure as a PNG and show a checkpoint's values under the mouse.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from ..errors import ConfigError
from .formats import HTML_SUFFIXES, checked_output
from ..results.atomic import atomic_write
from .compare_figure import draw_comparison
from .figure import draw_report
from .layout import DPI
from .page import comparison_page, flatten_metadata, report_page
from .panels import panels_for

if TYPE_CHECKING:
    from ..phasing.types import PhaseReport
    from .compare import Comparison

__all__ = ["render_report", "render_comparison", "panels_for", "flatten_metadata"]

HTML_DPI = 150  # the embedded PNG is drawn at 1.5x so it stays sharp on high-density screens


def render_report(df: pd.DataFrame, metadata: dict, phase_report: PhaseReport | None, output: Path,
                  left_out: int = 0) -> Path:
    """Write a self-contained HTML report (output suffix .html/.htm) or a single figure (.png, .svg, .pdf);
    `left_out`: the checkpoints deleted since measured that `df` leaves out (the HTML says how many).

    Raises ConfigError for any other suffix, or when `output` cannot be written. Returns `output`.

    >>> import tempfile, pandas as pd
    >>> df = pd.DataFrame({"step": [0, 10, 100], "split": "train", "status": "ok", "accuracy": [0.1, 0.5, 1.0]})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     text = render_report(df, {"config": {"points": 512}}, None, Path(folder) / "run.html").read_text()
    >>> "<td>points</td>" in text and "data:image/png;base64," in text
    True
    """
    output = checked_output(output)
    drawn = draw_report(df, phase_report)
    return _write(output, drawn, lambda png: report_page(df, metadata or {}, phase_report, drawn, png, left_out))


def render_comparison(comparison: Comparison, output: Path) -> Path:
    """Write the comparison of several runs as a self-contained HTML page or a single figure (by suffix)."""
    output = checked_output(output)
    drawn = draw_comparison(comparison)
    return _write(output, drawn, lambda png: comparison_page(comparison, drawn, png))


def _write(output: Path, drawn, html_page) -> Path:
    """The HTML page (`html_page(png)`) for .html/.htm, else the figure in the suffix's format; atomically."""
    suffix = output.suffix.lower()
    figure = drawn.figure
    FigureCanvasAgg(figure)
    page = html_page(_png_bytes(figure)).encode() if suffix in HTML_SUFFIXES else None

    def write(handle) -> None:
        if page is not None:
            handle.write(page)
        else:
            figure.savefig(handle, format=suffix[1:], dpi=DPI)

    try:  # atomically: a half-written report never replaces a good one
        atomic_write(output, write)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write the report ({exc.strerror}); choose another path with -o") from exc
    return output


def _png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=HTML_DPI)
    return buffer.getvalue()
