"""Results that never go stale: every row records its checkpoint files' identity; a changed file is measured
again, a deleted one's rows are dropped, a copied run is not measured again, and results written before the
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


def test_a_deleted_checkpoint_is_dropped_from_the_results_and_the_phases(measured_run):
    run, _ = measured_run
    (run / "step_0.pt").unlink()
    frame, steps, notes = _analyze(run)
    assert steps == [None] and sorted(frame["step"].unique()) == [5, 9]
    assert notes == (f"step 0: no longer in {run}; its rows are dropped from the results",)
    assert sorted(read_results(run / "grokmon.parquet")[0]["step"].unique()) == [5, 9]
    assert [s for s, _ in phases(run / "grokmon.parquet").steps] == [5, 9]


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
