"""Results that never go stale: every row records its checkpoint files' identity; a changed file is measured
again, a deleted one's rows are kept flagged and left out of the phases, a copied run is not measured again, and results written before the
identity columns existed resume without recomputing."""

import os
import re
import shutil

import pyarrow.parquet as pq
import pytest
import torch

from conftest import train_states, write_run
from grokmon import analyze, phases
from grokmon.inputs.identity import identity_of
from grokmon.results import read_results

FAST = dict(points=16, metrics="accuracy", device="cpu")


@pytest.fixture(scope="module")
def measured_once(tmp_path_factory):
    run = write_run(tmp_path_factory.mktemp("stale") / "run", "pt", steps=(0, 5, 9))
    return run, analyze(run, **FAST)


@pytest.fixture
def measured_run(measured_once, tmp_path):
    """A fresh copy of a measured run, its results beside it (copied with their times, so still current)."""
    run, frame = measured_once
    return shutil.copytree(run, tmp_path / "run"), frame


def _analyze(run):
    events = []
    frame = analyze(run, progress=events.append, **FAST)
    return frame, [e.step for e in events], events[0].notes


def test_every_row_records_its_files_identity(measured_run):
    run, frame = measured_run
    for step in (0, 5, 9):
        path = run / f"step_{step}.pt"
        rows = frame[frame.step == step]
        assert set(rows["file_size"]) == {path.stat().st_size}
        assert set(rows["file_mtime"]) == {path.stat().st_mtime_ns / 1e9}
        assert set(rows["file_fingerprint"]) == {identity_of((path,)).fingerprint}
        assert re.fullmatch(r"[0-9a-f]{32}", rows["file_fingerprint"].iloc[0])


def test_a_checkpoint_overwritten_in_place_is_measured_again(measured_run):
    run, first = measured_run
    path = run / "step_9.pt"
    size = path.stat().st_size
    torch.save(train_states([9], seed=7)[9], path)  # a restarted job saving into the same folder
    assert path.stat().st_size == size  # same shapes, same size: only the time and the content tell
    frame, steps, notes = _analyze(run)
    assert steps == [None, 9]
    assert notes == ("step 9: the checkpoint changed since it was measured (overwritten in place); measuring it "
                     "again",)
    new, old = (f[(f.step == 9) & (f.split == "train")].iloc[0] for f in (frame, first))
    assert new["file_fingerprint"] != old["file_fingerprint"] and new["loss"] != pytest.approx(old["loss"])
    assert len(read_results(run / "grokmon.parquet")[0]) == len(first)


def test_a_copied_run_keeps_its_results(measured_run):
    run, first = measured_run
    for path in run.glob("step_*.pt"):  # copied without preserving times: same bytes, new times
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 100))
    frame, steps, notes = _analyze(run)
    assert steps == [None] and notes == ()
    kept, _ = read_results(run / "grokmon.parquet")
    assert (kept["file_mtime"] > first["file_mtime"]).all()  # the new times are written down
    assert list(kept["loss"]) == pytest.approx(list(first["loss"]), nan_ok=True)


def test_a_deleted_checkpoint_is_flagged_kept_and_left_out_of_the_phases(measured_run):
    run, first = measured_run
    (run / "step_0.pt").unlink()
    frame, steps, notes = _analyze(run)
    assert steps == [None] and sorted(frame["step"].unique()) == [0, 5, 9]
    assert notes == (f"step 0: no longer in {run}; its rows stay in the results, flagged deleted: phases and "
                     "report leave them out unless --with-deleted",)
    stored, _ = read_results(run / "grokmon.parquet")
    assert list(stored.groupby("step")["deleted"].all()) == [True, False, False]
    assert list(stored["loss"]) == pytest.approx(list(first["loss"]), nan_ok=True)  # nothing lost
    assert [s for s, _ in phases(run / "grokmon.parquet").steps] == [5, 9]
    assert [s for s, _ in phases(run / "grokmon.parquet", with_deleted=True).steps] == [0, 5, 9]
    assert _analyze(run)[2] == ()  # said once


def test_a_deleted_checkpoint_restored_counts_again_and_one_saved_anew_replaces_it(measured_run):
    run, _ = measured_run
    kept = (run / "step_0.pt").read_bytes()
    (run / "step_0.pt").unlink()
    _analyze(run)
    (run / "step_0.pt").write_bytes(kept)
    os.utime(run / "step_0.pt", (0, 0))  # restored with another time, the same bytes: not measured again
    frame, steps, _ = _analyze(run)
    assert steps == [None] and not frame["deleted"].any()
    (run / "step_0.pt").unlink()
    _analyze(run)
    torch.save(train_states([0])[0], run / "ckpt_000.pt")
    os.utime(run / "ckpt_000.pt", (1, 1))  # an hour-old file is complete, not in progress
    frame, steps, _ = _analyze(run)
    assert steps == [None, 0] and list(frame[frame.step == 0]["checkpoint"].unique()) == ["ckpt_000.pt"]
    assert not frame["deleted"].any()


def test_results_written_before_the_identity_columns_resume_without_recomputing(measured_run):
    run, first = measured_run
    output = run / "grokmon.parquet"
    table = pq.read_table(output)
    older = table.drop_columns(["file_size", "file_mtime", "file_fingerprint"])
    pq.write_table(older.replace_schema_metadata(table.schema.metadata), output)
    frame, steps, notes = _analyze(run)
    assert steps == [None] and notes == ()
    resumed, _ = read_results(output)
    assert list(resumed["loss"]) == pytest.approx(list(first["loss"]), nan_ok=True)
    for column in ("file_size", "file_mtime", "file_fingerprint"):  # the identity as the files are now
        assert list(resumed[column]) == list(first[column])


def test_cli_judges_deleted_checkpoints_only_when_asked(measured_run):
    import json

    from typer.testing import CliRunner

    from grokmon.cli import app
    from grokmon.errors import ResultsError

    run, _ = measured_run
    (run / "step_0.pt").unlink()
    runner = CliRunner()
    flags = [item for name, value in FAST.items() for item in (f"--{name.replace('_', '-')}", str(value))]
    analysed = runner.invoke(app, ["analyze", str(run), *flags])
    assert analysed.exit_code == 0 and "3 checkpoints, 0 failed, 1 deleted since measured (kept, flagged)" in \
        analysed.stdout, analysed.output
    results = str(run / "grokmon.parquet")
    docs = [json.loads(runner.invoke(app, ["phases", results, "--json", *flag]).stdout)
            for flag in ([], ["--with-deleted"])]
    assert [s["step"] for s in docs[0]["steps"]] == [5, 9] and [s["step"] for s in docs[1]["steps"]] == [0, 5, 9]
    assert docs[0]["left_out_steps"] == [0] and docs[1]["left_out_steps"] == []
    said = runner.invoke(app, ["phases", results], terminal_width=200).stdout
    assert "note: the rows of 1 checkpoint deleted since measured (step 0) are left out; --with-deleted" in said
    assert "note:" not in runner.invoke(app, ["phases", results, "--with-deleted"], terminal_width=200).stdout
    page = runner.invoke(app, ["report", results, "-o", str(run / "r.html")])
    assert page.exit_code == 0 and "(1 more deleted since measured, left out" in (run / "r.html").read_text()
    compared = runner.invoke(app, ["compare", results, "--name", "cut"], terminal_width=200).stdout
    assert "note: cut: the rows of 1 checkpoint deleted since measured (step 0) are left out" in compared
    assert "note:" not in runner.invoke(app, ["compare", results, "--with-deleted"], terminal_width=200).stdout
    frame, _ = read_results(run / "grokmon.parquet")
    with pytest.raises(ResultsError, match="every checkpoint it holds has been deleted .* --with-deleted"):
        phases(frame.assign(deleted=True))
