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

from conftest import age, train_states, write_probes
from grokmon import analyze
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
    age(path)


def _break_random_bytes(run):
    (run / "step_5.pt").write_bytes(os.urandom(4096))


def _break_empty(run):
    (run / "step_5.pt").write_bytes(b"")
    age(run / "step_5.pt")


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
    age(path)


def _break_random_safetensors(run):
    (run / "step_5.pt").unlink()
    path = run / "step_5.safetensors"
    path.write_bytes(os.urandom(100_000))
    age(path)


def _break_absurd_safetensors_header(run):
    (run / "step_5.pt").unlink()
    path = run / "step_5.safetensors"
    path.write_bytes((2**40).to_bytes(8, "little") + b'{"a": 1}' + bytes(1000))
    age(path)


@pytest.mark.parametrize("breaker, fragment", [
    (_break_truncated, "incomplete (step_5.pt has no zip central directory"),
    (_break_random_bytes, "step_5.pt"),
    (_break_empty, "incomplete (step_5.pt is empty)"),
    (_break_nan, "NaN or infinite"),
    (_break_keys, "missing 2.weight; unexpected head.weight"),
    (_break_shapes, "do not fit the model"),
    (_break_truncated_safetensors, "not being written any more: the save did not finish"),
    (_break_random_safetensors, "step_5.safetensors: not a safetensors file (corrupt: "),
    (_break_absurd_safetensors_header, "step_5.safetensors: not a safetensors file (corrupt: its first 8 bytes give a "
                                       "1099511627776-byte header"),
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


class _Calls:
    """Unpickled for real, it would run `touch marker` through subprocess (a module torch does not block)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import subprocess

        return (subprocess.call, (["touch", str(self.marker)],))


class _Builds:
    """Unpickled for real, its __setstate__ (pickle's BUILD) would create the marker."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __setstate__(self, state):
        open(state["marker"], "w").close()


def _lightning_like(state, **hyper_parameters):
    return {"epoch": 0, "global_step": 5, "state_dict": state, "hyper_parameters": hyper_parameters}


# (what the checkpoint holds, whether its weights can still be read, what the refusal names)
HOSTILE = {
    "os.system in hyper_parameters": (lambda s, m: _lightning_like(s, callback=_Payload(m)), False, "it names posix.system"),
    "subprocess.call in hyper_parameters": (lambda s, m: _lightning_like(s, callback=_Calls(m)), True, None),
    "a BUILD on a placeholder": (lambda s, m: _lightning_like(s, thing=_Builds(m)), True, None),
    "weights that are objects": (lambda s, m: {**s, "0.weight": _Builds(m)}, False,
                                 "its weights 0.weight are pickled test_faults._Builds objects"),
    "the whole module, torch.save(model)": (lambda s, m: torch.nn.Sequential(torch.nn.Linear(6, 8)), False,
                                            "it holds a pickled torch.nn.modules.container.Sequential"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_objects_in_a_torch_checkpoint_never_run_and_only_objects_as_weights_are_refused(make_run, tmp_path, case):
    build, readable, named = HOSTILE[case]
    run = make_run("pt", steps=(0, 9))
    marker = tmp_path / "marker"
    torch.save(build(train_states([5])[5], marker), run / "step_5.pt")
    result = runner.invoke(app, ["analyze", str(run), *FAST, "--metrics", "accuracy"])
    assert not marker.exists()
    frame, _ = read_results(run / "grokmon.parquet")
    if readable:
        assert result.exit_code == 0 and set(frame["status"]) == {"ok"}, result.output
        return
    assert result.exit_code == 1 and set(frame[frame.step == 5]["status"]) == {"error"}
    error = frame[frame.step == 5]["error"].iloc[0]
    assert f"step_5.pt: refused: this pickle needs arbitrary Python objects to load ({named}" in error
    assert error.endswith("(torch.save(model.state_dict(), ...)) or as .safetensors")


@pytest.mark.parametrize("payload", [_Payload, _Calls, _Builds])
def test_the_payloads_do_run_when_unpickled_for_real(tmp_path, payload):
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(payload(marker)))  # what torch.load(weights_only=False) would do
    assert marker.exists()


def test_a_refused_last_ckpt_says_why_rather_than_that_it_has_no_step(make_run, tmp_path):
    run = make_run("lightning", steps=(0, 5))
    marker = tmp_path / "marker"
    torch.save(_lightning_like(train_states([5])[5], callback=_Payload(marker)), run / "last.ckpt")
    result = runner.invoke(app, ["analyze", str(run), *FAST, "--metrics", "accuracy"])
    _one_error_line(result, "last.ckpt: refused: this pickle needs arbitrary Python objects to load (it names "
                            "posix.system)")
    assert "no training step" not in result.stderr and not marker.exists()


def test_dcp_metadata_that_runs_code_is_refused(make_run, tmp_path):
    run = make_run("pt", steps=(0, 9))
    folder = run / "save_5"
    folder.mkdir()
    (folder / "__0_0.distcp").write_bytes(b"\0" * 64)
    marker = tmp_path / "marker"
    (folder / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    result = runner.invoke(app, ["analyze", str(run), *FAST, "--metrics", "accuracy"])
    assert result.exit_code == 1 and not marker.exists()
    assert "save_5/.metadata: not readable DCP metadata (it names posix.system, which DCP metadata never holds)" \
        in result.stderr


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


CHECKPOINTS = 36
# The groups that make a checkpoint cost something; which groups does not matter to an interruption.
OPTIONS = dict(points=100, lc_directions=6, device="cpu", metrics="accuracy,centroid,lc,robustness")


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory):
    """A run long enough to interrupt, and the table an uninterrupted analyze writes for it."""
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
                            env={**os.environ, "CI": "true"}, text=True, preexec_fn=_lowest_priority_with_ctrl_c)


def _lowest_priority_with_ctrl_c() -> None:
    """At the lowest priority: on a busy machine the test's own signal must not lose the race to the whole run. With
    SIGINT handled as by default: a job a non-interactive shell starts in the background (`.ci/run ... &`) inherits
    SIGINT ignored, and a Python started so never raises KeyboardInterrupt (the run ended at exit 0, five tries)."""
    os.nice(19)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupted(run, output, sig, attempts=3):
    """Start an analyze of `run`, send it `sig` once it has written two checkpoints, and return (process, stderr).
    A busy machine may starve this process until the whole run (a second of work) is done; then the signal came
    too late to interrupt anything, and the run is started again on a fresh output."""
    for _ in range(attempts):
        output.unlink(missing_ok=True)
        process = _analyze_process(run, output)
        if _written(output, 2, process):
            process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
        if process.returncode != 0:
            return process, stderr
    raise AssertionError(f"the run ended before it could be interrupted, {attempts} times")


def _written(output, count, process, timeout=120) -> bool:
    """Whether the run wrote `count` checkpoints before it ended."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            if pq.read_metadata(output).num_rows >= 3 * count:
                return True
        except Exception:  # not written yet
            pass
        time.sleep(0.01)
    return False


def _comparable(frame):
    return frame.drop(columns=["seconds"]).sort_values(["step", "split"]).reset_index(drop=True)


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_keeps_finished_checkpoints_and_resumes(slow_run, tmp_path, sig, code):
    run, reference = slow_run
    output = tmp_path / "interrupted.parquet"
    process, stderr = _interrupted(run, output, sig)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    if code > 0:  # Ctrl-C, and SIGTERM (a cancelled CI job, `timeout`): one line that says the results are kept
        assert "results written so far are kept" in stderr.strip().splitlines()[-1], stderr
    partial, _ = read_results(output)
    done = partial["step"].nunique()
    assert 2 <= done < CHECKPOINTS and set(partial["status"]) == {"ok"}
    events = []  # the resume runs in this process: one interpreter start less per case
    analyze(run, output, threads=1, progress=events.append, **OPTIONS)
    assert [e.done for e in events] == list(range(done, CHECKPOINTS + 1))  # only the rest was measured
    pd.testing.assert_frame_equal(_comparable(read_results(output)[0]), _comparable(reference))


def test_an_interrupt_whose_clean_up_fails_in_torch_still_interrupts(slow_run, tmp_path, monkeypatch):
    """A signal landing in torch's mode-stack bookkeeping surfaces as the RuntimeError its clean-up raises, with
    the interrupt as its context (seen in CI: "trying to pop from empty mode stack" at step 10, the signal lost,
    a healthy checkpoint written as an error and the run finished at exit 1)."""
    from grokmon.analysis import measure

    run, reference = slow_run
    output, measured, real = tmp_path / "interrupted.parquet", [], measure.compute_checkpoint_metrics

    def interrupted_on_the_third(*args, **kwargs):
        measured.append(1)
        if len(measured) == 3:
            try:
                raise KeyboardInterrupt
            finally:
                raise RuntimeError("trying to pop from empty mode stack")
        return real(*args, **kwargs)

    monkeypatch.setattr(measure, "compute_checkpoint_metrics", interrupted_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        analyze(run, output, threads=1, **OPTIONS)
    partial, _ = read_results(output)
    assert partial["step"].nunique() == 2 and set(partial["status"]) == {"ok"}
    monkeypatch.setattr(measure, "compute_checkpoint_metrics", real)
    analyze(run, output, threads=1, **OPTIONS)
    pd.testing.assert_frame_equal(_comparable(read_results(output)[0]), _comparable(reference))


def test_an_interrupt_under_another_error_ends_as_the_interrupt(make_run, monkeypatch):
    """Ctrl-C while a model file is imported: the import's own catch words it as a ModelError, raised from the
    interrupt; the CLI ends as Ctrl-C does (130, results kept), not as a bad model (1)."""
    import grokmon.api
    from grokmon.errors import ModelError

    def interrupted(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ModelError("model.py: importing the model file failed: KeyboardInterrupt") from exc

    monkeypatch.setattr(grokmon.api, "analyze", interrupted)
    result = runner.invoke(app, ["analyze", str(make_run())])
    assert result.exit_code == 130, result.output
    assert "interrupted; results written so far are kept" in result.output
