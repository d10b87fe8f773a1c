"""`--executor ray` on a local Ray instance of 2 CPUs, started once for the module: the local executor's table,
a worker killed mid-run (its checkpoint retried on another), and a driver killed mid-run, then resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from conftest import train_states, write_probes
from grokmon import analyze
from grokmon.results import read_results

ray = pytest.importorskip("ray", reason="--executor ray needs the ray extra: pip install 'grokmon[ray]'")

MODEL = f"{Path(__file__).parent / 'tripwire_model.py'}:build"
STEPS = tuple(range(0, 40, 5))
# No Jacobian group: its torch.func path imports torch._dynamo on first use, 3 s in every new worker process;
# the executor is what is tested here, and the other groups' values are compared.
FAST = dict(points=8, lc_directions=2, threads=1, metrics="accuracy,centroid,lc")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance of the tests' own, even beside a cluster started with `ray start` on this machine
    (which `ray.init()` would join, refusing num_cpus); its workers run at the tests' priority (Ray's default
    niceness, 15, starves them on a machine that other jobs keep busy)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config={"worker_niceness": 0})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _write_run(folder: Path, kills: dict[int, float]) -> Path:
    folder.mkdir()
    for step, state in train_states(list(STEPS)).items():
        tensors = {f"net.{k}": v for k, v in state.items()} | {"kill": torch.tensor(kills.get(step, 0.0))}
        save_file(tensors, str(folder / f"step_{step}.safetensors"))
    write_probes(folder / "probes.safetensors")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run whose last step kills the worker measuring it once, the same run without that, and the local table."""
    root = tmp_path_factory.mktemp("ray")
    tripwire, plain = _write_run(root / "tripwire", {STEPS[-1]: 1.0}), _write_run(root / "plain", {})
    kwargs = {"marker": str(root / "unused"), "delay": 0.0}
    reference = analyze(plain, root / "local.parquet", device="cpu", model=MODEL, model_kwargs=kwargs, **FAST)
    return root, tripwire, reference


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The table without timings and file identities (the tripwire run's last file differs from the plain run's)."""
    assert frame["file_fingerprint"].notna().all()
    identity = [c for c in frame.columns if c.startswith("file_")]
    return frame.drop(columns=["seconds", *identity]).sort_values(["step", "split"]).reset_index(drop=True)


def _rows(path: Path) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except Exception:  # not written yet
        return 0


def _killed_driver(run: Path, output: Path, kwargs: dict, address: str) -> str:
    """Run `grokmon analyze --executor ray` (one worker: each costs seconds to start) in a process of its own,
    joining the cluster at `address` through RAY_ADDRESS, and SIGKILL it once it has written one checkpoint.

    It runs from a folder holding a folder named `grokmon`, as the parent of a clone does: Ray puts the driver's
    working directory first on its workers' import path, and a new user's workers all died importing that folder
    instead of the installed grokmon."""
    parent = output.parent / "clone-parent"
    (parent / "grokmon").mkdir(parents=True)
    command = [str(Path(sys.executable).with_name("grokmon")), "analyze", str(run), "-o", str(output), "--executor", "ray",
               "--workers", "1", "--model", MODEL, "--model-kwargs", json.dumps(kwargs), "--points", "8",
               "--lc-directions", "2", "--threads", "1", "--metrics", FAST["metrics"]]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=parent,
                              env={**os.environ, "CI": "true", "RAY_ADDRESS": address})
    deadline = time.time() + 120
    while _rows(output) < 3 and driver.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    driver.send_signal(signal.SIGKILL)
    _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == -signal.SIGKILL, stderr
    return stderr


def test_ray_driver_killed_and_resumed_with_a_worker_dying_writes_the_local_table(cluster, runs):
    """One flow for three guarantees, because every Ray start costs seconds: a driver killed mid-run keeps what
    it wrote; the resumed run computes only the rest; the worker that dies on the last step is replaced and the
    step measured again elsewhere; the table is the local executor's."""
    root, tripwire, reference = runs
    output, marker = root / "ray.parquet", root / "died"
    kwargs = {"marker": str(marker), "delay": 0.03}  # slow enough to be killed mid-run
    stderr = _killed_driver(tripwire, output, kwargs, cluster)
    partial = read_results(output)[0]
    done = partial.step.nunique()
    assert 1 <= done < len(STEPS) - 1 and set(partial.status) == {"ok"}, stderr
    events = []
    frame = analyze(tripwire, output, executor="ray", workers=2, model=MODEL, model_kwargs=kwargs,
                    progress=events.append, **FAST)
    assert marker.exists()  # a worker died on the last step, and another measured it
    pd.testing.assert_frame_equal(comparable(frame), comparable(reference))
    on_disk, metadata = read_results(output)
    pd.testing.assert_frame_equal(comparable(on_disk), comparable(reference))
    assert metadata["device"] == "ray (2 x cpu)"
    assert [e.done for e in events] == list(range(done, len(STEPS) + 1))
    assert sorted(e.step for e in events[1:]) == sorted(set(STEPS) - set(partial.step))
