"""A checkpoint still being written is skipped with one line and exit 0, and measured by the next analyze; one
that stopped being written half-way is an error row."""

import io
import re
import time

import pytest
import torch
from safetensors.torch import save
from typer.testing import CliRunner

from conftest import age, train_states
from grokmon import analyze
from grokmon.cli import app
from grokmon.inputs.checkpoints import find_checkpoints
from grokmon.inputs.in_progress import WRITE_WINDOW_SECONDS, in_progress

FAST = dict(points=8, metrics="accuracy", device="cpu")
CLI_FAST = ["--points", "8", "--metrics", "accuracy", "--device", "cpu", "-q"]


def _pickle_bytes(step: int) -> bytes:
    buffer = io.BytesIO()
    torch.save(train_states([step])[step], buffer)
    return buffer.getvalue()


def test_a_checkpoint_being_written_is_skipped_then_measured_by_the_next_analyze(make_run):
    run = make_run("pt", steps=(0, 5))
    whole = _pickle_bytes(9)
    (run / "step_9.pt").write_bytes(whole[: len(whole) // 2])
    result = CliRunner().invoke(app, ["analyze", str(run), *CLI_FAST])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"grokmon: note: step_9\.pt: still being written \(step_9\.pt has no zip central directory "
                        r"\(torch\.save writes it last\), changed \d+ s ago\); skipped, the next analyze measures it\n",
                        result.stderr)
    assert "6 rows, 2 checkpoints, 0 failed" in result.stdout
    (run / "step_9.pt").write_bytes(whole)
    events = []
    frame = analyze(run, progress=events.append, **FAST)
    assert [e.step for e in events] == [None, 9] and events[0].notes == ()
    assert sorted(frame["step"].unique()) == [0, 5, 9]


def _half_safetensors(run):
    whole = save(train_states([9])[9], metadata={"step": "9"})
    (run / "step_9.safetensors").write_bytes(whole[: len(whole) - 50])
    return run / "step_9.safetensors", r"step_9\.safetensors holds \d+ of its \d+ bytes"


def _empty_file(run):
    (run / "step_9.pt").write_bytes(b"")
    return run / "step_9.pt", r"step_9\.pt is empty"


def _missing_shard(run):
    folder = run / "checkpoint-9"
    folder.mkdir()
    state = train_states([9])[9]
    (folder / "model-00001-of-00002.safetensors").write_bytes(save({k: state[k] for k in list(state)[:2]}))
    return folder, r"shard model-00002-of-00002\.safetensors is missing"


@pytest.mark.parametrize("writer", [_half_safetensors, _empty_file, _missing_shard])
def test_an_incomplete_checkpoint_is_in_progress_while_fresh_and_an_error_once_it_stops_changing(make_run, writer):
    run = make_run("pt", steps=(0, 5))
    path, reason = writer(run)
    found = find_checkpoints(run, exclude={run / "probes.safetensors"})
    assert [c.step for c in found.checkpoints] == [0, 5]
    [(name, why)] = found.in_progress
    assert name == path.name and re.fullmatch(rf"still being written \({reason}, changed \d+ s ago\)", why)
    for changed in (path, *path.glob("*")):  # the folder of a checkpoint too
        age(changed, WRITE_WINDOW_SECONDS + 5)
    frame = analyze(run, **FAST)
    failed = frame[frame.status == "error"]
    assert set(failed["step"]) == {9}
    assert re.search(rf"incomplete \({reason}\), and it is not being written any more: the save did not finish",
                     failed["error"].iloc[0])


def test_the_window_counts_from_the_newest_change_of_any_of_its_files(tmp_path):
    path = tmp_path / "step_1.pt"
    path.write_bytes(_pickle_bytes(1)[:200])
    now = time.time()
    assert in_progress(path, (path,), now) is not None
    assert in_progress(path, (path,), now + WRITE_WINDOW_SECONDS + 1) is None
    complete = tmp_path / "step_2.pt"
    complete.write_bytes(_pickle_bytes(2))
    assert in_progress(complete, (complete,), now) is None


def test_a_trainer_temporary_folder_left_by_a_crashed_save_is_measured_with_a_note(make_run):
    """A `tmp-checkpoint-N` nothing has changed in for longer than the window is a save that never completed: not
    skipped as in progress for ever (a CI job would never hear of it), but measured as it is: an error row where it
    is incomplete, its numbers where it is whole."""
    run = make_run("pt", steps=(0, 5))
    folder = run / "tmp-checkpoint-9"
    folder.mkdir()
    whole = save(train_states([9])[9], metadata={"step": "9"})
    (folder / "model.safetensors").write_bytes(whole[: len(whole) - 50])
    fresh = find_checkpoints(run, exclude={run / "probes.safetensors"})
    assert [name for name, _ in fresh.in_progress] == ["tmp-checkpoint-9"] and fresh.notes == ()
    for changed in (folder, folder / "model.safetensors"):
        age(changed, WRITE_WINDOW_SECONDS + 5)
    result = CliRunner().invoke(app, ["analyze", str(run), *CLI_FAST])
    assert result.exit_code == 1, result.output
    assert re.search(r"grokmon: note: tmp-checkpoint-9: a Trainer's temporary folder unchanged for \d+ s: that save "
                     r"never completed .*; measured as it is\n", result.stderr)
    assert "step 9 (tmp-checkpoint-9)" in result.stderr and "the save did not finish" in result.stderr
    (folder / "model.safetensors").write_bytes(whole)
    for changed in (folder, folder / "model.safetensors"):
        age(changed, WRITE_WINDOW_SECONDS + 5)
    frame = analyze(run, **FAST)
    assert set(frame.loc[frame.status == "ok", "step"]) == {0, 5, 9}
