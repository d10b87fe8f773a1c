"""`grokmon compare` on two real runs: the sample run, which groks, and a control that never generalises.

The control (tests/data/no_grok.parquet, its training curve beside it) is the sample's setting trained without
weight decay, made by docs/make_figures.py. The steps in the comparison are checked against each run's truth:
its training curve, accuracy on the whole train and test sets at every saved checkpoint.
"""

from __future__ import annotations

import csv
import json
import math

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from typer.testing import CliRunner

import grokmon
from grokmon.cli import app
from grokmon.errors import ConfigError, ResultsError
from grokmon.reporting.compare import SCHEMA
from grokmon.reporting.compare_figure import draw_comparison, run_colour

from conftest import DATA, SAMPLE

runner = CliRunner()
FITTED = grokmon.PhaseThresholds().fitted_accuracy
KEYS = ["name", "path", "mode", "advice", "confidence", "best_step", "fit_step", "generalisation_step",
        "test_50_step", "test_95_step", "last_step", "final"]


def truth(curve_file, steps) -> dict:
    """First step of `steps` at which the whole-set curve fitted or reached a test accuracy; None if never."""
    with open(curve_file, newline="") as handle:
        rows = {int(r["step"]): r for r in csv.DictReader(handle)}

    def first(column: str, level: float):
        return next((s for s in steps if float(rows[s][column]) >= level), None)

    return {"fit_step": first("train_accuracy", FITTED), "test_50_step": first("test_accuracy", 0.5),
            "test_95_step": first("test_accuracy", 0.95)}


def within_one_checkpoint(found, expected, steps) -> bool:
    if found is None or expected is None:
        return found is expected
    return abs(steps.index(found) - steps.index(expected)) <= 1


@pytest.fixture(scope="module")
def comparison(sample_subset):
    return grokmon.compare([sample_subset, DATA / "no_grok.parquet"], names=["grokking", "control"])


def _steps(results) -> list[int]:
    frame = results.frame
    return sorted(int(s) for s in frame.loc[frame["status"] == "ok", "step"].unique())


def test_steps_match_the_truth_curves_within_one_checkpoint(comparison):
    grok, control = comparison.runs
    for run, curve in ((grok, SAMPLE / "training_curve.csv"), (control, DATA / "no_grok_curve.csv")):
        steps = _steps(run)
        summary = run.summary.to_dict()
        for key, expected in truth(curve, steps).items():
            assert within_one_checkpoint(summary[key], expected, steps), (run.summary.name, key, summary[key], expected)
        assert summary["last_step"] == steps[-1]
    assert grok.summary.test_50_step is not None and grok.summary.test_95_step is not None
    assert control.summary.test_50_step is None and control.summary.test_95_step is None


def test_the_grokking_run_generalises_between_fit_and_test_accuracy_and_the_control_never(comparison):
    grok, control = (run.summary for run in comparison.runs)
    assert grok.mode == control.mode == "accuracy"
    assert grok.fit_step < grok.generalisation_step <= grok.test_95_step
    assert control.generalisation_step is None
    assert control.advice == "keep-training" and control.final["test_accuracy"] < 0.05
    assert grok.final["test_accuracy"] > 0.95 and grok.final["train_accuracy"] == 1.0
    assert comparison.headline() == f"test accuracy 0.95: first grokking (step {grok.test_95_step}); never: control"


def test_json_document_has_the_schema_of_the_issue(comparison, sample_subset):
    result = runner.invoke(app, ["compare", str(sample_subset), str(DATA / "no_grok.parquet"), "--json",
                                 "--name", "grokking", "--name", "control"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema"] == SCHEMA == "grokmon.compare/1" and list(document) == ["schema", "runs"]
    assert [list(run) for run in document["runs"]] == [KEYS, KEYS]
    assert document == json.loads(json.dumps(comparison.to_dict()))
    grok = document["runs"][0]
    assert grok["path"] == str(sample_subset / "grokmon.parquet")
    assert math.isclose(grok["final"]["test_accuracy"], comparison.runs[0].summary.final["test_accuracy"])
    assert document["runs"][1]["test_95_step"] is None  # null in JSON: never got there


def test_terminal_table_names_each_run_with_its_steps(comparison, sample_subset):
    result = runner.invoke(app, ["compare", str(sample_subset), str(DATA / "no_grok.parquet")], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    grok, control = comparison.summaries
    rows = {line.split()[0]: f"{line} " for line in result.stdout.splitlines() if line.split()[:1] in (["sample"], ["no_grok"])}
    assert len(rows) == 2  # default names: the folder, the file
    for step in (grok.fit_step, grok.generalisation_step, grok.test_50_step, grok.test_95_step):
        assert f" {step} " in rows["sample"]
    assert rows["no_grok"].split()[5:8] == ["-", "-", "-"]  # never generalised, never reached 0.5 or 0.95
    assert "first sample" in result.stdout and "never: no_grok" in result.stdout


def test_figure_overlays_the_runs_one_colour_each(comparison, tmp_path):
    drawn = draw_comparison(comparison)
    titles = [ax.get_title(loc="left") for ax, _ in drawn.panels]
    # the sample subset was analysed on accuracy, centroid and lc; the control on every default group
    control_only = ["jacobian_erank", "robust_accuracy", "weight_norm", "grad_norm"]
    assert [column for _, column in drawn.panels] == ["accuracy", "centroid_alignment", "jacobian_erank", "lc",
                                                      "robust_accuracy", "weight_norm", "grad_norm"]
    assert titles[0] == "Accuracy" and titles[3].startswith("Local complexity")
    for ax, column in drawn.panels:
        colours = {line.get_color() for line in ax.lines}
        assert colours == ({run_colour(1)} if column in control_only else {run_colour(0), run_colour(1)})
        assert ax.get_xscale() == "symlog"
        assert ax.get_xlim() == drawn.panels[0][0].get_xlim()  # shared step axis
    strip = [ax for ax in drawn.figure.axes if ax.get_yticklabels() and ax.get_yticklabels()[0].get_text() == "control"]
    assert [t.get_text() for t in strip[0].get_yticklabels()] == ["control", "grokking"]  # one row per run
    assert {"memorisation"} <= {t.get_text() for t in strip[0].texts}
    FigureCanvasAgg(drawn.figure).print_png(tmp_path / "compare.png")
    pixels = mpimg.imread(tmp_path / "compare.png")[..., :3]
    assert pixels.shape[1] == 1400
    for index in (0, 1):  # both run colours are on the picture
        colour = np.array([int(run_colour(index)[i:i + 2], 16) for i in (1, 3, 5)]) / 255
        assert (np.abs(pixels - colour).max(axis=-1) < 0.03).sum() > 1000  # pixels of its lines


def test_compare_errors(sample_subset, tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    with pytest.raises(ResultsError, match=r"run: a directory without grokmon.parquet; run `grokmon analyze .*run` first"):
        grokmon.compare([empty])
    with pytest.raises(ConfigError, match=r"Expected one name per run \(2\), but got 1"):
        grokmon.compare([sample_subset, DATA / "no_grok.parquet"], names=["a"])
    with pytest.raises(ConfigError, match=r"Expected a different name for every run, but got a, a"):
        grokmon.compare([sample_subset, DATA / "no_grok.parquet"], names=["a", "a"])
    usage = runner.invoke(app, ["compare", str(sample_subset), "--name", "a", "--name", "b"])
    assert usage.exit_code == 2 and "one --name per RUN" in usage.output
    assert runner.invoke(app, ["compare", str(sample_subset), "-o", str(tmp_path / "x.txt")]).exit_code == 2
    failed = runner.invoke(app, ["compare", str(empty)])
    assert failed.exit_code == 1 and "a directory without grokmon.parquet" in failed.stderr


def test_a_run_on_unlabelled_probes_is_not_measured_rather_than_never(sample_subset, tmp_path):
    """Beside labelled runs, a run without accuracy columns reached no test accuracy because it has none: its
    cells read n/a (not "-", never) and the headline names it apart."""
    import pyarrow.parquet as pq

    unlabelled = tmp_path / "unlabelled.parquet"
    table = pq.read_table(sample_subset / "grokmon.parquet")  # its grokmon metadata kept
    pq.write_table(table.drop_columns([c for c in table.column_names if c.startswith("accuracy")]), unlabelled)
    result = runner.invoke(app, ["compare", str(sample_subset), str(DATA / "no_grok.parquet"), str(unlabelled)],
                           env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    row = next(line.split() for line in result.stdout.splitlines() if line.split()[:1] == ["unlabelled"])
    assert row[1] == "geometry" and row[4] == "n/a" and row[6:8] == ["n/a", "n/a"], row
    assert "never: no_grok; no test accuracy: unlabelled" in result.stdout


def test_a_labelled_run_whose_last_checkpoint_lacks_test_accuracy_is_still_measured(sample_subset):
    """"n/a" is for a run with no accuracy at any checkpoint, not for one whose newest checkpoint lacks it."""
    import pandas as pd

    frame = pd.read_parquet(sample_subset / "grokmon.parquet")
    last = frame["step"].max()
    frame.loc[(frame["step"] == last) & (frame["split"] == "test"), "accuracy"] = float("nan")
    summary = grokmon.compare([frame], names=["late"]).summaries[0]
    assert "test_accuracy" not in summary.final and summary.test_95_step is not None
    assert summary.reached("test_95_step") == str(summary.test_95_step)


def test_the_note_on_deleted_checkpoints_is_a_line_of_its_own(sample_subset, tmp_path):
    from grokmon.results import read_results
    from grokmon.results.parquet import write_results

    frame, metadata = read_results(sample_subset / "grokmon.parquet")
    frame["deleted"] = frame["step"] >= sorted(frame["step"].unique())[-2]  # a Trainer's save_total_limit
    write_results(tmp_path / "pruned.parquet", frame.to_dict("records"), metadata)
    result = runner.invoke(app, ["compare", str(tmp_path / "pruned.parquet")], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    [note] = [line for line in result.stdout.splitlines() if "deleted since measured" in line]
    assert note.startswith("note: pruned: the rows of 2 checkpoints deleted since measured")
