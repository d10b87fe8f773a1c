"""Error paths that must lose nothing and say one thing: every failed checkpoint gets its error rows (even when no
checkpoint can be read), rows already written stay, and a run-wide mistake is one line on stderr."""

import os

import pytest
import torch
from conftest import age, train_states
from safetensors.torch import save_file
from typer.testing import CliRunner

from grokmon.cli import app
from grokmon.results import read_results

runner = CliRunner()
OPTIONS = ["--points", "8", "--lc-directions", "2", "--metrics", "accuracy,centroid"]
FAST = [*OPTIONS, "--quiet", "--device", "cpu"]


def _analyze(run, *args, device="cpu", quiet=True):
    return runner.invoke(app, ["analyze", str(run), *OPTIONS, "--device", device, *(["--quiet"] if quiet else []),
                               *args])


def _status(run) -> dict:
    frame, _ = read_results(run / "grokmon.parquet")
    return frame.groupby("step")["status"].agg(lambda s: "/".join(sorted(set(s)))).to_dict()


def _errors(run) -> dict:
    frame, _ = read_results(run / "grokmon.parquet")
    failed = frame[frame["status"] == "error"]
    return {step: set(rows["error"]) for step, rows in failed.groupby("step")}


def _garbage(path):
    path.write_bytes(os.urandom(3000))
    age(path)
    return path


def _nan_weights(path):
    state = train_states([1])[1]
    state["0.weight"][0, 0] = float("nan")
    torch.save(state, path)
    return path


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("grokmon: error:")]


def test_new_checkpoints_that_all_fail_get_their_rows_and_earlier_error_rows_stay(make_run):
    run = make_run("pt", steps=(0, 5, 9))
    _garbage(run / "step_5.pt")
    first = _analyze(run)
    assert first.exit_code == 1 and _status(run) == {0: "ok", 5: "error", 9: "ok"}
    _garbage(run / "step_12.pt")
    second = _analyze(run)
    assert second.exit_code == 1 and "Traceback" not in second.output
    assert _status(run) == {0: "ok", 5: "error", 9: "ok", 12: "error"}
    errors = _errors(run)
    assert [len(errors[5]), len(errors[12])] == [1, 1]
    assert "step_5.pt: not a readable PyTorch checkpoint" in errors[5].pop()
    assert "step_12.pt: not a readable PyTorch checkpoint" in errors[12].pop()
    frame, _ = read_results(run / "grokmon.parquet")
    assert frame.groupby("step").size().to_dict() == {0: 3, 5: 3, 9: 3, 12: 3}  # train, test, random each
    lines = _error_lines(second)
    assert len(lines) == 1 and lines[0].startswith("grokmon: error: 2 of 4 checkpoints (steps 5, 12) failed like step 5")
    assert "none of the" not in second.stderr


def test_a_lone_new_checkpoint_with_nan_weights_gets_its_error_rows(make_run):
    run = make_run("pt", steps=(0, 5))
    assert _analyze(run).exit_code == 0
    _nan_weights(run / "step_9.pt")
    result = _analyze(run)
    assert result.exit_code == 1
    assert _status(run) == {0: "ok", 5: "ok", 9: "error"}
    assert _error_lines(result) == [(f"grokmon: error: step 9 (step_9.pt): {run / 'step_9.pt'}: weight '0.weight' "
                                     "holds NaN or infinite values; the run diverged before this step")]


@pytest.mark.parametrize("device", ["cpu", "cpu,cpu"])
def test_a_run_none_of_whose_checkpoints_loads_is_all_error_rows_and_resumes_once_fixed(make_run, device):
    run = make_run("pt", steps=(0, 5))
    states = {step: torch.load(run / f"step_{step}.pt") for step in (0, 5)}
    _garbage(run / "step_0.pt")
    _nan_weights(run / "step_5.pt")
    result = _analyze(run, device=device, quiet=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert _status(run) == {0: "error", 5: "error"}
    assert "NaN or infinite" in _errors(run)[5].pop()
    assert len(_error_lines(result)) == 2
    assert f"analyzing 2 of 2 checkpoints on {device}" in result.stderr
    _, metadata = read_results(run / "grokmon.parquet")
    assert metadata["model"] is None and metadata["config"]["points"] == 8
    for step, state in states.items():
        torch.save(state, run / f"step_{step}.pt")
    assert _analyze(run, device=device).exit_code == 0
    assert _status(run) == {0: "ok", 5: "ok"}


def test_error_rows_stay_when_a_rerun_fails_before_measuring_them_again(make_run, tmp_path):
    run = make_run("pt", steps=(0, 5, 9))
    factory, broken = tmp_path / "net.py", tmp_path / "broken"
    factory.write_text(f"import os\nfrom torch import nn\n\ndef build():\n    if os.path.exists({str(broken)!r}):\n"
                       "        raise ValueError('broken for now')\n"
                       "    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))\n")
    _garbage(run / "step_5.pt")
    assert _analyze(run, "--model", f"{factory}:build").exit_code == 1
    broken.touch()
    torch.save(train_states([12])[12], run / "step_12.pt")  # readable: the model is built, and fails
    result = _analyze(run, "--model", f"{factory}:build")
    assert result.exit_code == 1 and len(_error_lines(result)) == 1 and "broken for now" in result.stderr
    assert _status(run) == {0: "ok", 5: "error", 9: "ok"}


def _missing_factory(run, tmp_path):
    return ["--model", "nosuch.py:build"], "nosuch.py: no such model file"


def _factory_whose_keys_do_not_fit(run, tmp_path):
    factory = tmp_path / "other.py"
    factory.write_text("from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Linear(6, 3))\n")
    return ["--model", f"{factory}:build"], "weights do not fit the model"


def _probes_of_another_width(run, tmp_path):
    probes = tmp_path / "wide.safetensors"
    save_file({"x_train": torch.zeros(5, 4), "y_train": torch.zeros(5, dtype=torch.long)}, str(probes))
    return ["--data", str(probes)], "wide.safetensors: probe points of shape (4,) do not fit the model read from step_"


@pytest.mark.parametrize("setup", [_missing_factory, _factory_whose_keys_do_not_fit, _probes_of_another_width])
def test_a_model_or_probe_mistake_is_one_line_without_the_progress_header(make_run, tmp_path, setup):
    run = make_run("pt", steps=(0, 5))
    args, fragment = setup(run, tmp_path)
    result = _analyze(run, *args, quiet=False)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("grokmon: error:") and fragment in lines[0]


def test_the_progress_header_comes_once_the_session_is_open(make_run):
    result = _analyze(make_run("pt", steps=(0, 5)), quiet=False)
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == "analyzing 2 of 2 checkpoints on cpu"


def test_an_empty_folder_says_it_holds_no_checkpoints_before_that_it_has_no_probes(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["analyze", str(empty), *FAST])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        (f"grokmon: error: {empty}: no checkpoints found (looked for *.safetensors, *.pt, *.pth, *.bin, *.ckpt, "
         "checkpoint-N/ and torch.distributed.checkpoint folders)")]
    info = runner.invoke(app, ["info", str(empty)])
    missing = [line for line in info.stdout.splitlines() if line.startswith("missing:")]
    assert info.exit_code == 0 and len(missing) == 2
    assert "no checkpoints found" in missing[0] and "no probe data" in missing[1]


def test_checkpoints_without_probes_still_say_no_probe_data(make_run):
    run = make_run("pt", steps=(0, 5))
    (run / "probes.safetensors").unlink()
    result = runner.invoke(app, ["analyze", str(run), *FAST])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert f"grokmon: error: {run}: no probe data; pass --data FILE" in result.stderr


@pytest.mark.parametrize("below", ["x.parquet", "deeper/x.parquet"])
def test_an_output_below_a_file_names_the_file_that_is_not_a_folder(make_run, below):
    run = make_run("pt", steps=(0, 5))
    blocker = run / "blocker"
    blocker.write_text("a file")
    output = blocker / below
    result = runner.invoke(app, ["analyze", str(run), "-o", str(output), *FAST])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"grokmon: error: cannot write results to {output}: {blocker} is not a folder; choose another path with -o"]


def test_info_refuses_a_model_wrong_on_its_face_as_a_usage_error(make_run):
    result = runner.invoke(app, ["info", str(make_run("pt", steps=(0, 5))), "--model", "conv"])
    assert result.exit_code == 2 and "Expected model to be mlp, file.py:function or package.module:function" \
        in " ".join(result.output.replace("│", " ").split())


def test_any_bytes_that_are_no_torch_archive_get_one_wording(tmp_path):
    """Garbage fails inside the unpickler with whatever it was reading; the message must not depend on that, or
    two corrupt files would be reported as two different failures."""
    import random

    from grokmon.inputs.safe_pickle import load_failure, load_pickle

    reasons = set()
    for seed in range(30):
        path = tmp_path / f"step_{seed}.pt"
        path.write_bytes(random.Random(seed).randbytes(3000))
        with pytest.raises(Exception) as caught:
            load_pickle(path)
        reasons.add(str(load_failure(path, caught.value)).removeprefix(f"{path}: "))
    assert reasons == {"not a readable PyTorch checkpoint (torch's safe loader could not read it); it may be "
                       "truncated or corrupt, re-save it"}


def test_corrupt_files_whose_garbage_differs_are_reported_as_one_failure(make_run):
    run = make_run("pt", steps=(0, 9))
    for step in (5, 12):
        _garbage(run / f"step_{step}.safetensors")  # each header length is whatever its random bytes say
    result = _analyze(run)
    assert result.exit_code == 1
    errors = _errors(run)
    assert errors[5] != errors[12]  # the messages differ in their numbers ...
    lines = _error_lines(result)  # ... and are still one failure
    assert len(lines) == 1 and lines[0].startswith("grokmon: error: 2 of 4 checkpoints (steps 5, 12) failed like step 5: ")
    assert "not a safetensors file" in lines[0]


def test_random_bytes_under_a_pt_name_are_unreadable_never_a_refused_pickle(tmp_path):
    """Random bytes can hold an object-building opcode before they stop parsing as a pickle (1 file in 40 did,
    seeded below: several of these 400); they are corrupt, not a pickle that asks for code."""
    import random

    from grokmon.errors import CheckpointError
    from grokmon.inputs.weights import _load_file

    generator = random.Random(0)
    for i in range(400):
        path = tmp_path / f"step_{i}.pt"
        path.write_bytes(generator.randbytes(3000))
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
            _load_file(path)


def test_results_that_cannot_be_rewritten_are_read_while_nothing_is_new(make_run, monkeypatch):
    """A finished run's results in a folder this user cannot write to (an immutable file, a colleague's run):
    analyze has nothing to measure and returns them; it failed before, as though it had to write. A new checkpoint
    still fails, before any work, with the same line. (Root writes anywhere: the check is made to fail.)"""
    import grokmon.analysis.store as store

    run = make_run("pt", steps=(0, 5))
    assert runner.invoke(app, ["analyze", str(run), *FAST]).exit_code == 0
    before = read_results(run / "grokmon.parquet")[0]

    def unwritable(output):
        raise store.ResultsError(f"{output}: cannot write results there (Operation not permitted); choose a "
                                 "writable path with -o")

    monkeypatch.setattr(store, "check_writable", unwritable)
    again = runner.invoke(app, ["analyze", str(run), *FAST])
    assert again.exit_code == 0 and again.stderr == "", again.stderr
    assert "2 checkpoints" in again.stdout
    torch.save(train_states([9])[9], run / "step_9.pt")
    new = runner.invoke(app, ["analyze", str(run), *FAST])
    assert new.exit_code == 1
    assert new.stderr.strip().splitlines() == [f"grokmon: error: {run / 'grokmon.parquet'}: cannot write results there "
                                               "(Operation not permitted); choose a writable path with -o"]
    after = read_results(run / "grokmon.parquet")[0]
    assert after.equals(before)


def test_a_read_only_results_file_is_not_replaced(make_run):
    """The atomic rename that writes results needs only the folder, so a results file made read-only (chmod a-w)
    in a writable folder was replaced without a word; it is kept, and read while nothing is new."""
    run = make_run("pt", steps=(0, 5))
    assert runner.invoke(app, ["analyze", str(run), *FAST]).exit_code == 0
    results = run / "grokmon.parquet"
    before = results.read_bytes()
    results.chmod(0o444)
    try:
        assert runner.invoke(app, ["analyze", str(run), *FAST]).exit_code == 0
        torch.save(train_states([9])[9], run / "step_9.pt")
        new = runner.invoke(app, ["analyze", str(run), *FAST])
        assert new.exit_code == 1
        assert new.stderr.strip().splitlines() == [f"grokmon: error: {results}: the results file is read-only; make "
                                                   "it writable (chmod u+w) or choose another path with -o"]
        assert results.read_bytes() == before
    finally:
        results.chmod(0o644)
