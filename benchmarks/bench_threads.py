"""Seconds per checkpoint of `analyze` for several torch thread counts, on an idle and on a loaded machine.

Settings: torch's default (one thread per core), 1 thread, all cores (os.cpu_count()), and grokmon's default
(grokmon.analysis.threads.default_threads(), evaluated just before it runs). Models: the sample run (its first
`--checkpoints` checkpoints) and a wide MLP 784-1024-1024-10 with random weights on random inputs. Every
metric group, `--points` points per split, as `grokmon analyze` runs them (session once, then one checkpoint
after another), the settings taking turns checkpoint by checkpoint. The loaded case starts one busy process per core (a Python `while True` loop) for its
duration; "as found" is the machine as it is, with its load average printed beside the numbers.

    .venv/bin/python benchmarks/bench_threads.py                       # both cases, both models
    .venv/bin/python benchmarks/bench_threads.py --cases loaded --models sample
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grokmon.analysis.loading import load  # noqa: E402
from grokmon.analysis.measure import measure_checkpoint  # noqa: E402
from grokmon.analysis.session import open_session  # noqa: E402
from grokmon.analysis.threads import default_threads  # noqa: E402
from grokmon.inputs.run import resolve_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def wide_run(folder: Path, checkpoints: int, points: int) -> Path:
    """A run folder of a 784-1024-1024-10 MLP with random weights and random labelled probes."""
    generator = torch.Generator().manual_seed(0)
    for step in range(checkpoints):
        model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / f"step_{step}.safetensors"))
    save_file({"x_train": torch.rand(points, 784, generator=generator),
               "y_train": torch.randint(0, 10, (points,), generator=generator),
               "x_test": torch.rand(points, 784, generator=generator),
               "y_test": torch.randint(0, 10, (points,), generator=generator)}, str(folder / "probes.safetensors"))
    return folder


def seconds_per_checkpoint(run: Path, checkpoints: int, points: int, settings: list[int]) -> list[float]:
    """Median seconds per checkpoint for each thread count of `settings`, measured in turns (each round
    measures the next checkpoint once per setting), so that a change in the machine's load hits all alike."""
    inputs = resolve_inputs(run, "cpu", points=points)
    pending = list(inputs.checkpoints[:checkpoints])
    session, _ = open_session(inputs, pending)
    measure_checkpoint(session, load(pending[0]))  # warm-up: first calls build kernels and caches
    times: list[list[float]] = [[] for _ in settings]
    for ckpt in pending:
        for index, threads in enumerate(settings):
            torch.set_num_threads(threads)
            loaded = load(ckpt)
            start = time.perf_counter()
            measure_checkpoint(session, loaded)
            times[index].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def busy_processes(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="as-found,loaded")
    parser.add_argument("--models", default="sample,wide")
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--checkpoints", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    torch_default = torch.get_num_threads()
    print(f"{cores} cores, torch {torch.__version__}, torch's default {torch_default} threads", flush=True)
    print("| case | load average | model | torch default | 1 thread | all cores | grokmon default (threads) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        runs = {"sample": ROOT / "sample_checkpoints",
                "wide": wide_run(Path(scratch), args.checkpoints, args.points)}
        for case in args.cases.split(","):
            busy = busy_processes(cores) if case == "loaded" else []
            try:
                if busy:
                    time.sleep(5)  # let the busy processes show in the load average
                chosen = default_threads()  # as analyze chooses it, before it starts
                for name in args.models.split(","):
                    loads = os.getloadavg()[0]
                    times = seconds_per_checkpoint(runs[name], args.checkpoints, args.points,
                                                   [torch_default, 1, cores, chosen])
                    cells = " | ".join(f"{t:.2f}" for t in times)
                    loads = (loads + os.getloadavg()[0]) / 2
                    print(f"| {case} | {loads:.1f} | {name} | {cells} ({chosen}) |", flush=True)
            finally:
                for process in busy:
                    process.kill()
                    process.wait()


if __name__ == "__main__":
    main()
