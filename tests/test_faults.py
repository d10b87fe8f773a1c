"""Fault injection: bad inputs, hostile files and interrupted runs end in one clear line and lose nothing."""

import os
import pickle
import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from conftest import train_states, write_probes
from grokmon.cli import app
from grokmon.results import read_results

runner = CliRunner()
FAST = ["--points", "8", "--lc-directions", "2", "--quiet", "--device", "cpu"]


def _one_error_line(result, *fragments):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("grokmon: error:"), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _break_truncated(run):
    path = run / "step_5.pt"
    path.write_bytes(path.read_bytes()[:300])


def _break_random_bytes(run):
    (run / "step_5.pt").write_bytes(os.urandom(4096))


def _break_empty(run):
    (run / "step_5.pt").write_bytes(b"")


def _break_nan(run):
    state = torch.load(run / "step_5.pt")
    state["0.weight"][0, 0] = float("inf")
    torch.save(state, run / "step_5.pt")


def _break_keys(run):
    state = torch.load(run / "step_5.pt")
    state["head.weight"] = state.pop("2.weight")
    torch.save(state, run / "step_5.pt")


def _break_shapes(run):
    state = torch.load(run / "step_5.pt")
    state["2.weight"] = torch.zeros(3, 9)
    torch.save(state, run / "step_5.pt")


def _break_truncated_safetensors(run):
    (run / "step_5.pt").unlink()
    path = run / "step_5.safetensors"
    save_file(train_states([5])[5], str(path))
    path.write_bytes(path.read_bytes()[:-40])


@pytest.mark.parametrize("breaker, fragment", [
    (_break_truncated, "not a readable PyTorch checkpoint"),
    (_break_random_bytes, "step_5.pt"),
    (_break_empty, "empty file"),
    (_break_nan, "NaN or infinite"),
    (_break_keys, "missing 2.weight; unexpected head.weight"),
    (_break_shapes, "do not fit the model"),
    (_break_truncated_safetensors, "not a readable safetensors file"),
])
def test_bad_checkpoint_among_good_ones_is_a_row_and_exit_1(make_run, breaker, fragment):
    run = make_run("pt", steps=(0, 5, 9))
    breaker(run)
    result = runner.invoke(app, ["analyze", str(run), *FAST])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "step 5" in result.stderr and fragment in result.stderr
    frame, _ = read_results(run / "grokmon.parquet")
    status = frame.groupby("step")["status"].agg(set).to_dict()
    assert status == {0: {"ok"}, 5: {"error"}, 9: {"ok"}}
    assert frame[frame.step == 5]["error"].str.contains(fragment, regex=False).all()


def test_hostile_pickle_is_refused_and_never_runs(make_run, tmp_path):
    run = make_run("pt", steps=(0, 5))
    marker = tmp_path / "marker"
    with open(run / "step_5.pt", "wb") as handle:
        pickle.dump({"0.weight": _Payload(marker)}, handle, protocol=2)
    result = runner.invoke(app, ["analyze", str(run), *FAST])
    assert result.exit_code == 1
    assert "refused: this pickle needs arbitrary Python objects" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("setup, args, fragments", [
    (lambda run: [p.unlink() for p in run.glob("step_*")], [], ["no checkpoints found"]),
    (lambda run: (run / "step_5.pt").rename(run / "latest.pt"), [], ["no training step", "latest.pt"]),
    (lambda run: torch.save({}, run / "ckpt_5.pth"), [], ["share a step", "ckpt_5.pth, step_5.pt"]),
    (lambda run: save_file({"x_train": torch.zeros(4, 5)}, str(run / "probes.safetensors")), [],
     ["probes.safetensors", "do not fit the model"]),
    (lambda run: save_file({"x_train": torch.zeros(4, 6, dtype=torch.bool)}, str(run / "probes.safetensors")), [],
     ["probes.safetensors", "dtype torch.bool"]),
    (lambda run: write_probes(run / "probes.safetensors", labels=False), ["--metrics", "accuracy"],
     ["needs labels", "--data"]),
    (lambda run: (run / "probes.safetensors").unlink(), [], ["no probe data", "--data"]),
    (lambda run: (run / "blocker").write_text("a file"), ["-o", "{run}/blocker/out.parquet"], ["cannot write results"]),
    (lambda run: None, ["{run}/does-not-exist"], ["no such directory"]),
    (lambda run: None, ["-o", "{run}/results.csv"], ["results.csv", "ending in .parquet"]),
])
def test_user_errors_are_one_line_exit_1(make_run, setup, args, fragments):
    run = make_run("pt", steps=(0, 5))
    setup(run)
    args = [a.format(run=run) for a in args]
    target = [] if args and args[0].endswith("does-not-exist") else [str(run)]
    result = runner.invoke(app, ["analyze", *target, *args, *FAST])
    _one_error_line(result, *fragments)


@pytest.mark.parametrize("command", ["phases", "report"])
def test_foreign_parquet_is_refused(tmp_path, command):
    path = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), path)
    _one_error_line(runner.invoke(app, [command, str(path)]), "not grokmon results")
    path.write_bytes(b"PAR1 nonsense")
    _one_error_line(runner.invoke(app, [command, str(path)]), "not a readable Parquet file")
    _one_error_line(runner.invoke(app, [command, str(tmp_path / "missing.parquet")]), "no such results file")
    pq.write_table(pa.table({"a": [1]}), tmp_path / "grokmon.parquet")
    _one_error_line(runner.invoke(app, [command, str(tmp_path)]), "is a directory; did you mean", "grokmon.parquet")
    assert runner.invoke(app, [command, str(path), "--mode", "bogus"]).exit_code == 2
    for bad in (["--set", "fitted_acuracy=0.9"], ["--set", "fitted_accuracy=2"]):
        assert runner.invoke(app, [command, str(path), *bad]).exit_code == 2
    if command == "report":
        assert runner.invoke(app, [command, str(path), "-o", str(tmp_path / "run.txt")]).exit_code == 2


CHECKPOINTS = 40
OPTIONS = dict(points=100, lc_directions=6, device="cpu")


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory):
    """A run long enough to interrupt, and the table an uninterrupted analyze writes for it."""
    from grokmon import analyze

    root = tmp_path_factory.mktemp("slow") / "run"
    root.mkdir()
    for step, state in train_states(list(range(0, CHECKPOINTS * 5, 5))).items():
        torch.save(state, root / f"step_{step}.pt")
    write_probes(root / "probes.safetensors", n_train=100, n_test=100)
    reference = analyze(root, root.parent / "reference.parquet", threads=1, **OPTIONS)
    return root, reference


def _analyze_process(run, output):
    flags = [item for name, value in OPTIONS.items() for item in (f"--{name.replace('_', '-')}", str(value))]
    command = [sys.executable, "-m", "grokmon", "analyze", str(run), "-o", str(output), "--threads", "1", *flags]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "CI": "true"}, text=True)


def _wait_for_checkpoints(output, count, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            if pq.read_metadata(output).num_rows >= 3 * count:
                return
        except Exception:  # not written yet
            pass
        time.sleep(0.01)
    raise AssertionError("the run ended before it could be interrupted")


def _comparable(frame):
    return frame.drop(columns=["seconds"]).sort_values(["step", "split"]).reset_index(drop=True)


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)])
def test_interrupted_run_keeps_finished_checkpoints_and_resumes(slow_run, tmp_path, sig, code):
    run, reference = slow_run
    output = tmp_path / "interrupted.parquet"
    process = _analyze_process(run, output)
    _wait_for_checkpoints(output, 2, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    partial, _ = read_results(output)
    done = partial["step"].nunique()
    assert 2 <= done < CHECKPOINTS and set(partial["status"]) == {"ok"}
    resumed = _analyze_process(run, output)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"analyzing {CHECKPOINTS - done} of {CHECKPOINTS} checkpoints" in stderr
    pd.testing.assert_frame_equal(_comparable(read_results(output)[0]), _comparable(reference))
