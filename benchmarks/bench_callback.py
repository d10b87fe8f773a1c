"""What a training-loop callback costs per call: the sample run replayed through `LiveMonitor`.

The sample run's network is the live module; before each call its weights are set to the next checkpoint's (as
training would have left them) and saved as a Lightning-style `.ckpt` into the run folder, then
`LiveMonitor.measure` runs as a callback would run it at every save: the metrics of the three splits, the
results file rewritten, the checkpoint names looked up (every saved file's step is read), the verdict of the
rows so far. Prints the seconds of each part per call (median and slowest over the run).

    .venv/bin/python benchmarks/bench_callback.py --threads 1
    .venv/bin/python benchmarks/bench_callback.py --points 128 --metrics accuracy,centroid
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

SAMPLE = Path(__file__).resolve().parent.parent / "sample_checkpoints"


class Timed:
    """Wraps a function and keeps the seconds of each call."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, []

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--metrics", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from grokmon.analysis import live
    from grokmon.inputs.checkpoints import discover_checkpoints, load_checkpoint
    from grokmon.inputs.models import infer_mlp, load_weights
    from grokmon.integrations import monitor as monitor_module

    checkpoints = discover_checkpoints(SAMPLE, exclude={SAMPLE / "probes.safetensors"})
    built = infer_mlp(load_checkpoint(checkpoints[0]), "relu")
    built.module.to(args.device).train()
    metrics = Timed(live.measure_live)
    verdict = Timed(monitor_module.classify)
    live.measure_live, monitor_module.classify = metrics, verdict  # time the parts inside measure()
    with tempfile.TemporaryDirectory() as folder:
        monitor = monitor_module.LiveMonitor(SAMPLE / "probes.safetensors", Path(folder) / "grokmon.parquet",
                                             every_n_steps=1, metrics=args.metrics, points=args.points)
        monitor.open(built.module, Path(folder))
        calls = []
        for ckpt in checkpoints:
            step = ckpt.step + 1  # steps from 1, as a callback sees them
            load_weights(built, load_checkpoint(ckpt), ckpt.name)
            torch.save({"global_step": step, "state_dict": built.module.state_dict()},
                       Path(folder) / f"epoch=0-step={step}.ckpt")
            calls.append(monitor.measure(step).seconds)
    rest = [c - m - v for c, m, v in zip(calls, metrics.seconds, verdict.seconds)]
    print(f"{len(calls)} calls on the sample run's MLP, {args.points} points per split, {args.threads} thread(s), "
          f"{args.device}; seconds per call, median (slowest):")
    for name, values in (("whole call", calls), ("metrics of the three splits", metrics.seconds),
                         ("verdict (classify the rows so far)", verdict.seconds),
                         ("results file, names, logging", rest)):
        print(f"  {name:38s} {statistics.median(values):7.3f} ({max(values):.3f})")


if __name__ == "__main__":
    main()
