"""grokmon watch: a run folder that another process fills while the watch follows it, a file met mid-write,
--until, --timeout and Ctrl-C."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file
from typer.testing import CliRunner

from conftest import train_states, write_probes
from grokmon import phases, watch
from grokmon.cli import app
from grokmon.cli.app import ADVICE_EXIT_CODES
from grokmon.results import read_results

WRITER = Path(__file__).with_name("watch_writer.py")
FAST = dict(points=16, lc_directions=2, device="cpu")
CLI_FAST = ["--points", "16", "--lc-directions", "2", "--device", "cpu", "-q"]


def test_watch_follows_a_folder_that_another_process_fills(tmp_path, one_thread):
    staging, run = tmp_path / "staging", tmp_path / "run"
    staging.mkdir(), run.mkdir()
    for step, state in train_states([0, 5, 10, 20, 40]).items():
        save_file(state, str(staging / f"step_{step}.safetensors"), metadata={"step": str(step)})
    write_probes(run / "probes.safetensors")
    # What the job does while the watch waits between two passes (the first pass finds no checkpoint yet).
    script = [["copy step_0.safetensors", "copy step_5.safetensors"], ["half step_10.safetensors"],
              ["rest step_10.safetensors", "copy step_20.safetensors"], [], ["copy step_40.safetensors"], []]
    job = subprocess.Popen([sys.executable, str(WRITER), str(staging), str(run)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    clock, passes = [0.0], []

    def sleep(seconds):  # the watch pauses: the job saves more
        passes.append(clock[0])
        for command in script[len(passes) - 1]:
            job.stdin.write(command + "\n")
            job.stdin.flush()
            assert job.stdout.readline() == "ok\n"
        clock[0] += seconds

    try:
        events = list(watch(run, interval=1.0, timeout=len(script), clock=lambda: clock[0], sleep=sleep, **FAST))
    finally:
        job.stdin.close()
        job.wait(timeout=30)
    measured = [[(e.step, e.status) for e in event.measured] for event in events]
    assert measured[0] == [] and events[0].report is None  # nothing saved yet
    # step 10, met mid-write, is skipped as in progress (that pass measures nothing), then measured once whole
    assert measured[1:4] == [[(0, "ok"), (5, "ok")], [(10, "ok"), (20, "ok")], [(40, "ok")]]
    assert events[-1].finished == "timeout" and len(passes) == len(script)
    frame, _ = read_results(run / "grokmon.parquet")
    assert sorted(set(frame["step"])) == [0, 5, 10, 20, 40] and (frame["status"] == "ok").all()
    assert events[-1].report == phases(run / "grokmon.parquet")


def test_watch_exits_with_the_phases_code_once_the_verdict_is_reached(make_run):
    run = make_run(steps=(0, 5, 20))
    result = CliRunner().invoke(app, ["watch", str(run), "--until", ",".join(ADVICE_EXIT_CODES), "--interval", "0.01",
                                      *CLI_FAST])
    verdict = phases(run / "grokmon.parquet")
    assert result.exit_code == ADVICE_EXIT_CODES[verdict.advice], result.output
    lines = result.stdout.splitlines()  # the first verdict, each change, and where the run stands now
    assert lines[0].startswith("step 0: ") and len(lines) <= 3
    assert lines[-1].startswith(f"step 20: {verdict.current_phase}, {verdict.advice} (confidence")


def test_a_pass_over_many_checkpoints_says_every_change_among_them():
    from grokmon.analysis.follow import changed_verdicts
    from grokmon.phasing import PhaseReport, StepVerdict

    said = [("fitting", "inconclusive"), ("fitting", "keep-training"), ("memorisation", "keep-training"),
            ("memorisation", "keep-training"), ("robustness_plateau", "stop"), ("robustness_plateau", "stop")]
    history = tuple(StepVerdict(100 * i, phase, advice, 0.9, "why") for i, (phase, advice) in enumerate(said))

    def report(upto: int) -> PhaseReport:
        last = history[upto - 1]
        return PhaseReport("accuracy", last.advice, last.reason, last.confidence, last.phase, (), (), None,
                           history[:upto])

    changes, last = changed_verdicts(report(6), None)  # a watch started on six saved checkpoints
    assert [v.step for v in changes] == [0, 100, 200, 400, 500]
    changes, last = changed_verdicts(report(3), None)
    assert [v.step for v in changes] == [0, 100, 200] and last.step == 200
    changes, last = changed_verdicts(report(4), last)
    assert changes == () and last.step == 300  # nothing changed: nothing said
    assert [v.step for v in changed_verdicts(report(6), last)[0]] == [400]


def test_watch_exits_11_at_its_timeout(make_run):
    run = make_run(steps=(0, 5))
    result = CliRunner().invoke(app, ["watch", str(run), "--until", "roll-back", "--interval", "0.01",
                                      "--timeout", "0.05", *CLI_FAST])
    assert result.exit_code == 11, result.output
    assert read_results(run / "grokmon.parquet")[0]["step"].nunique() == 2


def test_ctrl_c_keeps_everything_measured(make_run, monkeypatch):
    run = make_run(steps=(0, 5))

    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr("grokmon.analysis.follow.time.sleep", interrupt)
    result = CliRunner().invoke(app, ["watch", str(run), *CLI_FAST])
    assert result.exit_code == 130 and "results written so far are kept" in result.stderr
    assert read_results(run / "grokmon.parquet")[0]["step"].nunique() == 2


def test_each_checkpoint_is_said_as_it_is_measured(make_run, monkeypatch):
    """A first pass over a job's saved checkpoints is long: its lines come one by one, not at the pass's end (a
    Ctrl-C in the middle of it had left stderr without a line for the checkpoints measured and kept)."""
    cli = importlib.import_module("grokmon.cli.app")  # the module: grokmon.cli.app is also the Typer app's name

    run, said = make_run(steps=(0, 5, 20)), []
    show = cli._show_measured

    def interrupt_after_the_second(done, quiet):
        show(done, quiet)
        said.extend([done.step] if done.step is not None else [])  # not the run's start
        if len(said) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_show_measured", interrupt_after_the_second)
    result = CliRunner().invoke(app, ["watch", str(run), *CLI_FAST[:-1]])
    assert result.exit_code == 130, result.output
    measured = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert [line.split(" (")[0] for line in measured] == ["step 0", "step 5"]
    assert read_results(run / "grokmon.parquet")[0]["step"].nunique() == 2


@pytest.mark.parametrize("args, message", [(["--until", "later"], "Expected verdicts from"),
                                           (["--points", "0"], "--points"), (["--frobnicate"], "frobnicate")])
def test_wrong_options_are_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(app, ["watch", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output


def test_a_folder_with_no_checkpoints_yet_is_waited_on(tmp_path):
    write_probes(tmp_path / "probes.safetensors")
    events = list(watch(tmp_path, interval=1.0, timeout=2.0, clock=iter([0.0, 1.0, 2.0, 3.0]).__next__,
                        sleep=lambda seconds: None, **FAST))
    assert [e.finished for e in events] == [None, "timeout"] and events[-1].report is None
    assert events[0].waiting


def test_the_cli_says_once_that_it_waits_for_a_first_checkpoint(tmp_path):
    write_probes(tmp_path / "probes.safetensors")
    result = CliRunner().invoke(app, ["watch", str(tmp_path), "--interval", "0.2", "--timeout", "0.5"])
    assert result.exit_code == 11
    assert result.stderr.count(f"grokmon: no checkpoint in {tmp_path} yet; waiting") == 1
    assert result.stderr.splitlines()[-1] == "grokmon: watch timed out after 0.5 s (last verdict: none yet)"

