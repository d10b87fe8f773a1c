"""A CIFAR-scale CNN: seconds per checkpoint per metric group, the FLOPs each group needs, and (on CUDA) the
same timings with the CUDA values checked against the CPU's.

The network is ResNet-18 as adapted to CIFAR-10 (3x3 stem, no max-pool, four stages of two basic blocks,
64-128-256-512 channels, global average pool, 10 classes), random weights, BatchNorm in eval mode, float32.
Probe points are uniform in [0, 1]^(3x32x32) with random labels. One checkpoint = the train, test and random
splits of `--points` points each, every group computed by grokmon's engine (`compute_split_metrics`, that group
alone, default options: P = 25 LC directions). Cost is linear in the number of points, so a small `--points` is
measured and scaled to `--report-points` (default 512, grokmon's default); the output says which was measured.
FLOPs are counted with torch.utils.flop_counter's formulas (matmuls and convolutions, forward and backward), and the FLOP
floor is FLOPs over a rate: the GEMM rate this script measures on the device, and a nominal peak given by
`--peak-tflops` (default 67: an H200's dense FP32 without tensor cores).

    .venv/bin/python benchmarks/bench_cnn.py --threads 1                  # CPU, 4 points measured
    python benchmarks/bench_cnn.py --device cuda --points 512 --check-points 8
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grokmon.columns import GROUP_COLUMNS, METRIC_GROUPS  # noqa: E402
from grokmon.metrics import MetricOptions, compute_split_metrics, make_frame  # noqa: E402

SPLITS = 3  # train, test, random
DIRECTIONS = 25


class FlopCount(TorchDispatchMode):
    """Matmul and convolution FLOPs by torch.utils.flop_counter's formulas. Not its FlopCounterMode: that one's
    module tracker refuses `autograd.grad` with respect to the inputs, which the centroid and Jacobian take."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        count = flop_registry.get(func._overloadpacket)
        if count is None:  # under inference_mode composite ops (conv2d, linear) arrive whole: count their parts
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18_cifar(classes: int = 10) -> nn.Module:
    """ResNet-18 for 32x32x3 inputs: 11.2 M parameters."""
    layers, cin = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()], 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_rate(device: torch.device, size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a float32 size x size matrix product on `device` (best of `repeats`)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def group_values(model, x, y, group, frame, radius):
    options = MetricOptions(groups=(group,), lc_directions=DIRECTIONS, lc_radius=radius)
    return compute_split_metrics(model, x, y, options=options, frame=frame if group == "lc" else None)


def measure(model, splits, group, frame, radius, device) -> tuple[float, float]:
    """Seconds and FLOPs of one checkpoint's worth of `group` over `splits`."""
    group_values(model, splits[0][0][:2], splits[0][1][:2], group, frame, radius)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for x, y in splits:
        group_values(model, x, y, group, frame, radius)
    _sync(device)
    seconds = time.perf_counter() - start
    with FlopCount() as counter:
        for x, y in splits:
            group_values(model, x, y, group, frame, radius)
    return seconds, float(counter.total)


def check_against_cpu(model, splits, frame, radius, points: int) -> str:
    """Every column computed on CUDA and on the CPU from the same weights and `points` points per split must
    agree (float32, TF32 off); the largest relative difference."""
    cpu_model = copy.deepcopy(model).to("cpu")
    worst = 0.0
    for group in METRIC_GROUPS:
        for x, y in splits:
            cuda = group_values(model, x[:points], y[:points], group, frame, radius)
            cpu = group_values(cpu_model, x[:points].cpu(), y[:points].cpu(), group, frame.cpu(), radius)
            for name in GROUP_COLUMNS[group]:
                a, b = torch.tensor(cpu[name], dtype=torch.float64), torch.tensor(cuda[name], dtype=torch.float64)
                worst = max(worst, float(((a - b).abs() / a.abs().clamp_min(1e-6)).max()))
                torch.testing.assert_close(b, a, rtol=2e-3, atol=1e-5, msg=f"{group}/{name}")
    return f"CUDA values agree with the CPU's on {points} points per split (largest relative difference {worst:.1e})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=4, help="points per split measured")
    parser.add_argument("--report-points", type=int, default=512, help="points per split reported")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=67.0)
    parser.add_argument("--check-points", type=int, default=8, help="points per split compared CUDA vs CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = False  # the comparison with the CPU is of float32, not TF32
        torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    model = resnet18_cifar().eval().to(device)
    splits = [(torch.rand(args.points, 3, 32, 32, generator=generator).to(device),
               torch.randint(0, 10, (args.points,), generator=generator).to(device)) for _ in range(SPLITS)]
    frame = make_frame(3 * 32 * 32, DIRECTIONS, 0, device=device)
    radius = 0.5 * float(splits[0][0].flatten(1).norm(dim=1).median())  # grokmon's default, 50 % of the median
    rate = gemm_rate(device)
    scale = args.report_points / args.points
    print(f"ResNet-18 (CIFAR) on {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          f"measured {args.points} points per split, reported for {args.report_points}; "
          f"GEMM rate {rate / 1e9:.0f} GFLOP/s")
    print("| group | s/ckpt | GFLOP/ckpt | floor at GEMM rate (s) | floor at peak (s) | achieved GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    total = 0.0
    for group in METRIC_GROUPS:
        seconds, flops = measure(model, splits, group, frame, radius, device)
        seconds, flops = seconds * scale, flops * scale
        total += seconds
        print(f"| {group} | {seconds:.3g} | {flops / 1e9:,.0f} | {flops / rate:.3g} | "
              f"{flops / (args.peak_tflops * 1e12):.3g} | {flops / seconds / 1e9:.0f} |", flush=True)
    print(f"all groups: {total:.3g} s per checkpoint; 1,000 checkpoints: {total * 1000 / 3600:.3g} h on one worker")
    if device.type == "cuda":
        print(check_against_cpu(model, splits, frame, radius, min(args.check_points, args.points)))


if __name__ == "__main__":
    main()
