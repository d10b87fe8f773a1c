"""The report: figure panels, PNG/SVG/PDF output, a self-contained HTML file, and suffix errors."""

from __future__ import annotations

import base64
import dataclasses
import io
import re

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from grokmon.errors import ConfigError
from grokmon.phasing import PhaseReport, PhaseSegment, StepVerdict
from grokmon.reporting.writer import flatten_metadata, panels_for, render_report
from grokmon.results import read_results, write_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METADATA = {
    "grokmon_version": "0.1.0",
    "schema_version": 1,
    "config": {"points": 512, "lc_directions": 25, "lc_radius": "2%", "metrics": ["accuracy", "centroid", "jacobian", "lc"],
               "phases": {"min_checkpoints": 5}},
    "model": {"kind": "mlp", "description": "MLP 2->64->64->2 <relu>"},
    "device": "cpu",
    "dtype": "float32",
    "probe_hash": "sha256:abc123",
}


STEPS = [0, *(int(s) for s in np.unique(np.round(np.logspace(0, 5, 29))))]
FAILED_STEP = STEPS[15]  # 464


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def grokking_rows(failed_step: int | None = None) -> list[dict]:
    """A grokking run on ~30 log-spaced steps: train fitted at ~100, test and alignment rise at ~10^4, LC peaks then falls."""
    rng = np.random.default_rng(0)
    rows = []
    for step in STEPS:
        t = np.log10(step + 1)
        for split in ("train", "test", "random"):
            late = _sigmoid((t - 4.0) * 4)
            row = {"step": int(step), "checkpoint": f"step_{step}.safetensors", "split": split, "n_points": 512,
                   "seconds": 0.5, "status": "ok", "error": None}
            if split != "random":
                acc = _sigmoid((t - 2.0) * 4) if split == "train" else 0.1 + 0.88 * late
                row.update(accuracy=acc, accuracy_se=0.01 + 0.02 * acc * (1 - acc), loss=2.3 * (1 - acc) + 0.01, loss_se=0.05 * (1 - acc) + 0.001)
            scale = 0.3 if split == "random" else 1.0
            row.update(
                centroid_alignment=scale * (0.1 + 0.8 * late) + rng.normal(0, 0.01), centroid_alignment_se=0.03,
                centroid_norm=scale * (1 + 10 * late + 0.1 * t) + (0.5 if split == "test" else 0), centroid_norm_se=0.2,
                centroid_inner=5 * late, centroid_inner_se=0.1,
                jacobian_erank=1.3 + (6 if split != "random" else 4) * (1 - late) + (0.3 if split == "test" else 0), jacobian_erank_se=0.1,
                jacobian_pc1=0.2 + 0.75 * late * (0.7 if split == "random" else 1), jacobian_pc1_se=0.02,
                jacobian_fro=3 + t, jacobian_fro_se=0.1,
            )
            layers = [scale * 40 * _sigmoid((t - 2.0) * 3) * (1 - 0.8 * late) * w for w in (0.5, 0.3, 0.2)]
            row.update(lc=float(sum(layers)), lc_se=1.5, lc_layers=layers, lc_layers_se=[0.5, 0.4, 0.3])
            if step == failed_step:
                row = {k: row[k] for k in ("step", "checkpoint", "split", "n_points")}
                row.update(status="error", error="weights contain NaN", seconds=0.1)
            rows.append(row)
    return rows


def grokking_phases() -> PhaseReport:
    bounds = (("fitting", 0, 92), ("memorisation", 139, 3728), ("generalisation", 5623, 29126),
              ("robustness_plateau", 43940, 100000))
    segments = tuple(PhaseSegment(phase, start, end) for phase, start, end in bounds)
    steps = tuple((step, phase) for step in STEPS for phase, start, end in bounds if start <= step <= end)
    return PhaseReport(mode="accuracy", advice="stop", reason="test accuracy flat at 0.98 over the last 4 checkpoints",
                       confidence=0.87, current_phase="robustness_plateau", segments=segments, steps=steps,
                       best_step=100000)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[pd.DataFrame, dict]:
    path = tmp_path_factory.mktemp("results") / "run.parquet"
    write_results(path, grokking_rows(failed_step=FAILED_STEP), METADATA)
    return read_results(path)


def _png_pixels(data: bytes) -> np.ndarray:
    assert data[:8] == PNG_MAGIC
    return mpimg.imread(io.BytesIO(data), format="png")


def test_panels_follow_the_metric_groups_present(results):
    df, _ = results
    assert panels_for(df) == ["accuracy", "loss", "centroid_alignment", "centroid_norm", "jacobian_erank", "jacobian_pc1", "lc"]
    only_accuracy = df[["step", "split", "status", "accuracy", "accuracy_se", "loss"]].assign(lc=None, centroid_alignment=np.nan)
    assert panels_for(only_accuracy) == ["accuracy", "loss"]
    only_centroid = df[["step", "split", "centroid_alignment", "centroid_norm"]]
    assert panels_for(only_centroid) == ["centroid_alignment", "centroid_norm"]
    only_layers = df[["step", "split", "lc_layers"]]
    assert panels_for(only_layers) == ["lc"]
    assert panels_for(df[["step", "split"]]) == []


@pytest.mark.parametrize("phases", [True, False], ids=["phases", "no-phases"])
def test_png_figure_is_a_real_picture(results, tmp_path, phases):
    df, metadata = results
    out = render_report(df, metadata, grokking_phases() if phases else None, tmp_path / "run.png")
    data = out.read_bytes()
    pixels = _png_pixels(data)
    assert len(data) > 20_000
    height, width = pixels.shape[:2]
    assert 1300 <= width <= 1500 and height > 800
    assert pixels[..., :3].std() > 0.05  # not one flat colour
    # phases shaded: the pale generalisation green appears only when a phase report is given
    green = np.all(np.abs(pixels[..., :3] - np.array([0xBF, 0xE5, 0xB4]) / 255 * 0.75 - 0.25) < 0.03, axis=-1)
    assert (green.mean() > 0.01) == phases


def test_figure_layout_has_one_axes_per_panel(results):
    from grokmon.reporting.figure import build_figure, draw_report

    df, _ = results
    drawn = draw_report(df, grokking_phases())
    titles = [ax.get_title(loc="left") for ax, _ in drawn.panels]
    assert len(titles) == 7 and titles[0] == "Accuracy" and titles[-1].startswith("Local complexity")
    assert drawn.panels[0][0].get_xscale() == "symlog"  # step 0 present
    assert drawn.figure.texts[0].get_text().startswith("Verdict: stop")
    accuracy = drawn.panels[0][0]
    train = [line for line in accuracy.lines if line.get_color() == "#1f5fa8"][0]
    x, y = train.get_data()
    assert np.isnan(y[list(x).index(FAILED_STEP)])  # failed checkpoint: a gap, not a zero
    assert np.nanmax(y) == pytest.approx(df.loc[df.split == "train", "accuracy"].max())
    only_centroid = df[["step", "split", "status", "centroid_alignment", "centroid_norm"]]
    assert [ax.get_title(loc="left")[:8] for ax in build_figure(only_centroid, None).axes] == ["Centroid"] * 2


def test_log_axis_without_step_zero(results):
    from grokmon.reporting.figure import build_figure

    df, _ = results
    fig = build_figure(df[df.step > 0], None)
    assert fig.axes[0].get_xscale() == "log"


@pytest.mark.parametrize("suffix", [".svg", ".pdf"])
def test_vector_figures(results, tmp_path, suffix):
    df, metadata = results
    out = render_report(df[["step", "split", "status", "accuracy"]], metadata, None, tmp_path / f"run{suffix}")
    head = out.read_bytes()[:200]
    assert (b"<svg" in head or b"<?xml" in head) if suffix == ".svg" else head.startswith(b"%PDF")


def test_html_is_self_contained(results, tmp_path):
    df, metadata = results
    metadata = {**metadata, "model": {"description": "<script>alert(1)</script> & co"}}
    out = render_report(df, metadata, grokking_phases(), tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "<link" not in text and not re.search(r"<script[^>]*\ssrc", text)  # inline scripts only
    assert len(re.findall(r"<script", text)) == 2  # the hover data and the hover script
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in text
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    pixels = _png_pixels(base64.b64decode(match.group(1)))
    assert pixels.shape[1] > 2000  # drawn at 1.5x for sharp screens
    title = re.search(r"<title>(.*)</title>", text).group(1)
    assert "stop" in title and "test accuracy flat at 0.98" in title
    for phase in ("fitting", "memorisation", "generalisation", "robustness_plateau"):
        assert f"{phase}</td>" in text
    for key in ("points", "lc_directions", "lc_radius", "phases.min_checkpoints", "probe_hash", "grokmon_version"):
        assert f"<td>{key}</td>" in text
    assert "sha256:abc123" in text and "weights contain NaN" in text  # provenance, and the failed checkpoint
    # the generalisation segment: first step, last step, checkpoints, of them inconclusive
    assert "generalisation</td><td>5623</td><td>29126</td><td>5</td><td>-</td>" in text  # no history: not counted


def test_html_without_phases_and_with_one_metric(tmp_path):
    rows = [r for r in grokking_rows() if r["split"] != "random"]
    df = pd.DataFrame(rows)[["step", "split", "status", "accuracy"]]
    text = render_report(df, {}, None, tmp_path / "report.HTM").read_text()
    assert "no phases classified" in text and "data:image/png;base64," in text
    assert "Configuration" not in text


def test_flatten_metadata_dotted_keys():
    rows = dict(flatten_metadata(METADATA))
    assert rows["config.phases.min_checkpoints"] == "5"
    assert rows["config.metrics"] == '["accuracy", "centroid", "jacobian", "lc"]'
    assert rows["model.description"] == "MLP 2->64->64->2 <relu>"
    assert rows["schema_version"] == "1"


@pytest.mark.parametrize("name", ["report.txt", "report", "report.jpeg"])
def test_bad_suffix_is_a_config_error(results, tmp_path, name):
    df, metadata = results
    with pytest.raises(ConfigError, match=r"Expected -o to end in \.html, \.png, \.svg or \.pdf, but got .*report"):
        render_report(df, metadata, None, tmp_path / name)
    assert not (tmp_path / name).exists()


def test_roll_back_marks_the_best_step_in_every_panel(results):
    from grokmon.reporting.figure import BEST_COLOUR, draw_report

    df, _ = results
    verdict = dataclasses.replace(grokking_phases(), advice="roll-back", best_step=5623)
    drawn = draw_report(df[["step", "split", "status", "accuracy", "lc"]], verdict)
    marks = [[line.get_xdata()[0] for line in ax.lines if line.get_color() == BEST_COLOUR] for ax, _ in drawn.panels]
    assert marks == [[5623], [5623]]
    assert "best step 5623" in drawn.figure.texts[0].get_text()


LONG_REASON = "test accuracy flat at 0.98 over the last 4 checkpoints (train 1.00), alignment 0.91 and rising " * 4


def history(report: PhaseReport, stop_from: int, roll_back_at: int) -> tuple[StepVerdict, ...]:
    """A history in which the CI recipe says roll-back once, then stop from `stop_from` on."""
    def advice(step):
        return "roll-back" if step == roll_back_at else "stop" if step >= stop_from else "keep-training"

    return tuple(StepVerdict(step, phase, advice(step), 0.7, "made up") for step, phase in report.steps)


@pytest.fixture(scope="module")
def drawn_with_history(results):
    from grokmon.reporting.figure import draw_report

    df, _ = results
    report = grokking_phases()
    report = dataclasses.replace(report, reason=LONG_REASON, history=history(report, STEPS[-4], STEPS[-8]))
    return draw_report(df, report), report


def _legend(figure):
    return next(legend for legend in [*figure.legends, *(ax.get_legend() for ax in figure.axes)] if legend is not None)


def test_legend_swatches_are_in_the_colours_they_stand_for(drawn_with_history):
    from matplotlib.colors import to_hex

    from grokmon.reporting.bands import PHASE_COLOURS
    from grokmon.reporting.figure import SPLIT_STYLE

    drawn, _ = drawn_with_history
    legend = _legend(drawn.figure)
    entries = dict(zip([t.get_text() for t in legend.texts], legend.legend_handles))
    for split, style in SPLIT_STYLE.items():  # the standard-error band in the split's colour, not a grey
        assert to_hex(entries[f"{split}, band ± 1 standard error"].get_facecolor()) == style["color"]
    assert "± 1 standard error" not in entries
    for layer in (1, 2, 3):  # per-layer LC: drawn in the split colours, shown in them (first: train)
        assert to_hex(entries[f"lc layer {layer}"].get_color()) == SPLIT_STYLE["train"]["color"]
    random = np.array([int(SPLIT_STYLE["random"]["color"][i:i + 2], 16) for i in (1, 3, 5)])
    fitting = np.array([int(PHASE_COLOURS["fitting"][i:i + 2], 16) for i in (1, 3, 5)])
    assert random.max() - random.min() > 60 and fitting.max() - fitting.min() < 10  # random is a colour, not grey


def test_phase_names_are_written_on_the_bands_or_else_in_the_legend(drawn_with_history):
    drawn, report = drawn_with_history
    strips = [ax for ax in drawn.figure.axes if ax not in dict(drawn.panels) and ax.axison]
    assert len(strips) == 2  # one above each column
    written = {t.get_text() for t in strips[0].texts}
    legend = {t.get_text() for t in _legend(drawn.figure).texts}
    phases = {s.phase.replace("_", " ") for s in report.segments}
    assert {"fitting", "memorisation"} <= written and phases <= written | legend and not written & legend


def test_best_step_and_the_first_stop_and_roll_back_of_the_history_are_marked(drawn_with_history, results):
    from grokmon.reporting.figure import MARKS, draw_report

    drawn, report = drawn_with_history
    expected = {"best": report.best_step, "stop": STEPS[-4], "roll-back": STEPS[-8]}
    for ax, _ in drawn.panels:
        for kind, step in expected.items():
            assert [line.get_xdata()[0] for line in ax.lines if line.get_color() == MARKS[kind]["color"]] == [step]
    legend = {t.get_text() for t in _legend(drawn.figure).texts}
    assert {f"history: first stop, step {STEPS[-4]}", f"history: first roll-back, step {STEPS[-8]}"} <= legend
    plain = draw_report(results[0][["step", "split", "status", "accuracy"]], grokking_phases())  # no history
    colours = {line.get_color() for ax, _ in plain.panels for line in ax.lines}
    assert MARKS["best"]["color"] in colours and not {MARKS["stop"]["color"], MARKS["roll-back"]["color"]} & colours


def test_a_long_reason_is_wrapped_inside_the_figure(drawn_with_history):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    drawn, _ = drawn_with_history
    renderer = FigureCanvasAgg(drawn.figure).get_renderer()
    reason = drawn.figure.texts[1]
    assert reason.get_text().count("\n") >= 2 and " ".join(reason.get_text().split()) == " ".join(LONG_REASON.split())
    for text in drawn.figure.texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= drawn.figure.bbox.width
    top_panel = max(ax.get_position().y1 for ax in drawn.figure.axes)
    assert reason.get_window_extent(renderer).y0 > top_panel * drawn.figure.bbox.height  # above the strips


def test_panels_say_which_way_is_simplifying(drawn_with_history):
    drawn, _ = drawn_with_history
    notes = {column: ax.get_title(loc="right") for ax, column in drawn.panels}
    assert notes["lc"] == notes["jacobian_erank"] == notes["centroid_norm"] == "↓ simplifying"
    assert notes["centroid_alignment"] == notes["jacobian_pc1"] == "↑ simplifying"
    assert notes["accuracy"] == notes["loss"] == ""


def test_configuration_names_the_probe_file_used(results, tmp_path):
    df, metadata = results
    metadata = {**metadata, "config": {**metadata["config"], "data": None}, "probe_file": "/runs/a/probes.safetensors"}
    text = render_report(df[["step", "split", "status", "accuracy"]], metadata, None, tmp_path / "r.html").read_text()
    assert "<td>data</td><td>/runs/a/probes.safetensors (none named: the default file in the checkpoint directory)</td>" in text
    assert "<td>data</td><td>null</td>" not in text


def test_metric_groups_added_to_the_row_layout_get_panels(results, monkeypatch):
    from grokmon import columns
    from grokmon.reporting.figure import draw_report
    from grokmon.reporting.panels import group_panels

    monkeypatch.setitem(columns.GROUP_COLUMNS, "robustness", ("robust_accuracy", "noise_accuracy"))
    monkeypatch.setitem(columns.GROUP_COLUMNS, "weights", ("weight_norm", "weight_entropy"))
    monkeypatch.setitem(columns.GROUP_COLUMNS, "llc", ("llc", "llc_chain_ok"))
    df, _ = results
    df = df[["step", "split", "status", "accuracy"]].assign(
        robust_accuracy=df["accuracy"] * 0.8, weight_norm=np.geomspace(100, 1, len(df)), noise_accuracy=None)
    assert panels_for(df) == ["accuracy", "robust_accuracy", "weight_norm"]  # llc absent, noise_accuracy all null
    assert group_panels([df]) == ["accuracy", "robust_accuracy", "weight_norm"]
    drawn = draw_report(df, None)
    titles = [ax.get_title(loc="left") for ax, _ in drawn.panels]
    assert titles == ["Accuracy", "Accuracy under an adversarial perturbation", "Weight norm"]
    assert drawn.panels[2][0].get_yscale() == "log"
