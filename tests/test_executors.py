"""Several workers without Ray (`--device cpu,cpu` standing in for several GPUs) and the driver that feeds
them: the same table as the local executor, resume, failed checkpoints, dead workers, the thread default."""

from concurrent.futures import Future

import pandas as pd
import pytest
from typer.testing import CliRunner

from grokmon import analyze
from grokmon.analysis.devices import ThreadWorker
from grokmon.analysis.dispatch import MAX_ATTEMPTS, run_workers
from grokmon.analysis.executors import choose_executor
from grokmon.analysis.store import ResultsStore
from grokmon.analysis.threads import cgroup_cpu_quota, cpu_threads, usable_cores
from grokmon.cli import app
from grokmon.errors import ConfigError, ExecutorError
from grokmon.inputs.run import resolve_inputs
from grokmon.results import read_results

FAST = dict(points=8, lc_directions=2, threads=1)
STEPS = (0, 5, 10, 15, 20, 25)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """A results table without the timings, which differ from run to run."""
    return frame.drop(columns=["seconds"]).sort_values(["step", "split"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def run_and_reference(tmp_path_factory):
    """A run with one unreadable checkpoint, and the table the local executor writes for it."""
    from conftest import write_run

    run = write_run(tmp_path_factory.mktemp("devices") / "run", "pt", steps=STEPS)
    (run / "step_10.pt").write_bytes(b"not a checkpoint")
    return run, analyze(run, run.parent / "local.parquet", device="cpu", **FAST)


def test_two_cpu_workers_write_the_local_table_and_count_progress_across_them(run_and_reference, tmp_path):
    run, reference = run_and_reference
    events = []
    frame = analyze(run, tmp_path / "out.parquet", device="cpu,cpu", progress=events.append, **FAST)
    pd.testing.assert_frame_equal(comparable(frame), comparable(reference))
    on_disk, metadata = read_results(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(comparable(on_disk), comparable(reference))
    assert metadata["device"] == "cpu,cpu"
    assert [e.done for e in events] == list(range(len(STEPS) + 1))
    assert sorted(e.step for e in events[1:]) == list(STEPS) and events[0].device == "cpu,cpu"
    assert {e.step: e.status for e in events[1:]}[10] == "error"


def test_two_cpu_workers_resume_a_local_table(run_and_reference, tmp_path):
    run, reference = run_and_reference
    first = tmp_path / "first"
    first.mkdir()
    for name in ("step_0.pt", "step_5.pt", "probes.safetensors"):
        (first / name).write_bytes((run / name).read_bytes())
    output = tmp_path / "out.parquet"
    analyze(first, output, device="cpu", **FAST)
    events = []
    frame = analyze(run, output, device="cpu,cpu", progress=events.append, **FAST)
    assert events[0].done == 2 and sorted(e.step for e in events[1:]) == [10, 15, 20, 25]
    pd.testing.assert_frame_equal(comparable(frame), comparable(reference))


class DyingWorker(ThreadWorker):
    """A thread worker whose process "dies" (its call fails) on the checkpoints of `deadly`."""

    def __init__(self, inputs, pending, device, deadly, deaths):
        super().__init__(inputs, pending, device)
        self.deadly, self.deaths = deadly, deaths

    def measure(self, ckpt, following):
        if ckpt.step not in self.deadly:
            return super().measure(ckpt, following)
        self.deaths.append(ckpt.step)
        future = Future()
        future.set_exception(RuntimeError("worker process died"))
        return future


def _run_dying(run, output, deadly):
    inputs = resolve_inputs(run, "cpu", points=8, lc_directions=2)
    store = ResultsStore(output, inputs, overwrite=True)
    pending, deaths, events = list(inputs.checkpoints), [], []
    with cpu_threads(1):
        try:
            run_workers(lambda slot: DyingWorker(inputs, pending, "cpu", deadly, deaths), 2, pending, store,
                        events.append, 0, len(pending), "cpu,cpu")
        finally:
            frame = store.frame()
    return frame, deaths, events


def test_a_dead_workers_checkpoint_is_retried_then_becomes_error_rows(run_and_reference, tmp_path):
    run, reference = run_and_reference
    frame, deaths, events = _run_dying(run, tmp_path / "out.parquet", deadly={15})
    assert deaths == [15] * MAX_ATTEMPTS
    assert [e.done for e in events] == list(range(1, len(STEPS) + 1))
    failed = frame[frame.step == 15]
    assert (failed.status == "error").all() and len(failed) == 3
    assert failed.error.str.contains(f"the worker measuring it died {MAX_ATTEMPTS} times").all()
    kept = reference.step != 15
    pd.testing.assert_frame_equal(comparable(frame[frame.step != 15]), comparable(reference[kept]))


def test_when_every_worker_dies_the_run_stops_and_keeps_its_rows(run_and_reference, tmp_path):
    run, _ = run_and_reference
    output = tmp_path / "out.parquet"
    with pytest.raises(ExecutorError, match="every worker died .*; .* run again to resume"):
        _run_dying(run, output, deadly=set(STEPS))
    written = read_results(output)[0]
    assert 0 < written.step.nunique() < len(STEPS) and set(written.status) == {"error"}


@pytest.mark.parametrize("executor, device, workers, message", [
    ("local", "cpu", 2, "--workers goes with --executor ray"),
    ("ray", "cuda:0,cuda:1", None, "--executor ray places one worker per GPU itself"),
    ("dask", "cpu", None, "Expected --executor to be one of local, ray"),
    ("local", "cpu;cpu", None, "Expected device to be auto, cpu, cuda, cuda:N, a comma-separated list"),
])
def test_executor_choices_that_cannot_run_are_config_errors(executor, device, workers, message):
    with pytest.raises(ConfigError, match=message):
        choose_executor(executor, device, workers)


def test_cli_refuses_workers_without_ray_as_a_usage_error(run_and_reference, tmp_path):
    """A combination of options wrong on its face, as `-o results.csv` (it exited 1, as a failed run does)."""
    run, _ = run_and_reference
    output = tmp_path / "out.parquet"
    result = CliRunner().invoke(app, ["analyze", str(run), "-o", str(output), "--workers", "2", "--device", "cpu", "-q"])
    assert result.exit_code == 2 and "--workers goes with --executor ray" in result.output
    assert not output.exists()
    watched = CliRunner().invoke(app, ["watch", str(run), "-o", str(output), "--workers", "2", "--timeout", "1"])
    assert watched.exit_code == 2 and "--workers goes with --executor ray" in watched.output  # it exited 1
    assert not output.exists()


def test_thread_default_reads_a_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "none").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cpu.max") == 1.5 and cgroup_cpu_quota(tmp_path / "none") is None
    assert cgroup_cpu_quota(tmp_path / "missing") is None


def test_cpu_threads_sets_the_default_or_the_given_count_and_restores_it():
    import torch

    before = torch.get_num_threads()
    with cpu_threads(1) as chosen:
        assert chosen == 1 and torch.get_num_threads() == 1
    with cpu_threads(None) as chosen:
        assert 1 <= chosen <= usable_cores() and torch.get_num_threads() == chosen
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="the pinned, non-blocking copy path needs CUDA"))])
def test_loaded_weights_reach_the_device_equal(run_and_reference, device):
    import torch

    from grokmon.analysis.loading import load, ready

    run, _ = run_and_reference
    ckpt = resolve_inputs(run, "cpu", points=8).checkpoints[0]
    on_cpu, loaded = load(ckpt), load(ckpt, torch.device(device))
    assert (loaded.copied is not None) == (device == "cuda")
    ready(loaded)
    assert loaded.copied is None
    for key, tensor in on_cpu.state.items():
        assert loaded.state[key].device.type == device
        torch.testing.assert_close(loaded.state[key].cpu(), tensor, rtol=0, atol=0)
