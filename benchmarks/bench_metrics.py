"""Seconds per checkpoint and points per second of every metric group: grokmon's batched engine against a
straightforward per-point implementation of the same metrics, on the same inputs, in one run.

One checkpoint = the three splits train, test and random of `--points` points each. The per-point
implementation runs on the first `--reference-points` points of each split and is extrapolated linearly to
`--points` (it is a loop over points, so its cost is linear in the number of points); the output says so.
Both sides are checked to agree on those points before anything is timed.

    .venv/bin/python benchmarks/bench_metrics.py                  # both models, 512 points, auto device
    .venv/bin/python benchmarks/bench_metrics.py --models wide --device cuda --points 2048
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grokmon.columns import CHECKPOINT_GROUPS, METRIC_GROUPS  # noqa: E402
from grokmon.metrics import LLCSettings, MetricOptions, compute_checkpoint_metrics, compute_split_metrics  # noqa: E402
from grokmon.metrics import make_frame  # noqa: E402
from grokmon.metrics.jacobian import input_jacobians  # noqa: E402
from grokmon.metrics.robustness import gaussian_noise  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ACTIVATION_MODULES = (nn.ReLU, nn.GELU, nn.LeakyReLU, nn.Tanh, nn.SiLU, nn.ELU, nn.Sigmoid)


# ----------------------------------------------------------------------------------------------- models
def mlp(widths: list[int], bias: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b, bias=bias)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


def sample_model(points: int, generator: torch.Generator):
    """The sample run's MLP at its last checkpoint with its probes, or a stand-in of the same shape."""
    folder = ROOT / "sample_checkpoints"
    checkpoints = sorted(folder.glob("step_*.safetensors"))
    if checkpoints and (folder / "probes.safetensors").exists():
        from safetensors.torch import load_file

        state = load_file(str(checkpoints[-1]))
        weights = [k for k in state if k.endswith("weight") and state[k].dim() == 2]
        weights.sort(key=lambda k: int(k.split(".")[0]))
        widths = [state[weights[0]].shape[1]] + [state[k].shape[0] for k in weights]
        model = mlp(widths, bias=any(k.endswith("bias") for k in state))
        renamed = dict(zip(model.state_dict(), (state[k] for k in sorted(state, key=_layer_order))))
        model.load_state_dict(renamed)
        probes = load_file(str(folder / "probes.safetensors"))
        train, test = probes["x_train"].float(), probes["x_test"].float()
        label = f"sample run MLP {'-'.join(map(str, widths))} ({checkpoints[-1].name})"
    else:
        widths = [118, 128, 128, 59]
        model = mlp(widths, bias=False)
        eye = torch.eye(59)
        pairs = torch.randint(0, 59, (4 * points, 2), generator=generator)
        data = torch.cat([eye[pairs[:, 0]], eye[pairs[:, 1]]], dim=1)
        train, test = data[: 2 * points], data[2 * points:]
        label = "stand-in for the sample MLP 118-128-128-59 on one-hot pairs (no sample_checkpoints yet)"
    return label, model, _splits(train, test, points, generator)


def _layer_order(key: str) -> tuple[int, int]:
    index, kind = key.split(".")
    return int(index), 0 if kind == "weight" else 1


def wide_model(points: int, generator: torch.Generator):
    model = mlp([784, 1024, 1024, 10], bias=True)
    data = torch.rand(4 * points, 784, generator=generator)
    return "wide MLP 784-1024-1024-10 on [0, 1]^784", model, _splits(data[: 2 * points], data[2 * points:], points,
                                                                       generator)


def cnn_model(points: int, generator: torch.Generator):
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    data = torch.rand(4 * points, 1, 28, 28, generator=generator)
    return "CNN on 1x28x28 (conv16-pool-conv32-pool-128-10)", model, _splits(data[: 2 * points], data[2 * points:],
                                                                            points, generator)


def _splits(train: torch.Tensor, test: torch.Tensor, points: int, generator: torch.Generator):
    pick = lambda t: t[torch.randperm(len(t), generator=generator)[:points]]  # noqa: E731
    train, test = pick(train), pick(test)
    low, high = train.min(0).values, train.max(0).values
    random = low + (high - low) * torch.rand(train.shape, generator=generator)
    return {"train": train, "test": test, "random": random}


MODELS = {"sample": sample_model, "wide": wide_model, "cnn": cnn_model}


# ------------------------------------------------------------------------------ per-point implementation
def per_point(group: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, frame: torch.Tensor, radius: float):
    """The straightforward implementation: one point at a time, autograd and hooks, no batching (the input
    noise is drawn as grokmon draws it, so both sides see the same noisy points)."""
    values = []
    noise = gaussian_noise(x.shape, ATTACK["sigma"], 0, dtype=x.dtype, device=x.device)
    for i in range(len(x) if group != "gradient" else 0):
        point = x[i : i + 1]
        if group == "accuracy":
            with torch.no_grad():
                out = model(point)
            values.append((float(out.argmax(1) == y[i : i + 1]), float(F.cross_entropy(out, y[i : i + 1]))))
        elif group == "centroid":
            point = point.clone().requires_grad_(True)
            (mu,) = torch.autograd.grad(model(point).sum(), point)
            mu, flat = mu.reshape(-1), point.detach().reshape(-1)
            inner = float(mu @ flat)
            values.append((inner / max(float(mu.norm() * flat.norm()), 1e-12), float(mu.norm()), inner))
        elif group == "jacobian":
            j = torch.autograd.functional.jacobian(lambda v: model(v.reshape(point.shape)).reshape(-1),
                                                   point.reshape(-1))
            s = torch.linalg.svdvals(j)
            p = s / s.sum()
            values.append((float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())), float(s[0] ** 2 / (s**2).sum()),
                           float(j.norm())))
        elif group == "lc":
            values.append(_lc_one_point(model, point, frame, radius))
        elif group == "robustness":
            with torch.no_grad():
                noisy = float(model(point + noise[i : i + 1]).argmax(1) == y[i : i + 1])
            values.append((_pgd_one_point(model, point, y[i : i + 1], ATTACK["eps"], ATTACK["steps"]), noisy))
    if group == "gradient":
        values.append(_gradient_one_point_at_a_time(model, x, y))
    return values


ATTACK = {"eps": 0.01, "steps": 10, "sigma": 0.05}  # set from the command line in main()


def _pgd_one_point(model: nn.Module, point: torch.Tensor, label: torch.Tensor, eps: float, steps: int) -> float:
    adversarial = point.clone()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(adversarial), label), adversarial)
        adversarial = torch.clamp(adversarial.detach() + 2.5 * eps / steps * grad.sign(), point - eps, point + eps)
    with torch.no_grad():
        return float(model(adversarial).argmax(1) == label)


def _gradient_one_point_at_a_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """The gradient of the mean loss as the average of per-point gradients, then its norm and entropy."""
    total = [torch.zeros_like(p, dtype=torch.float64) for p in model.parameters()]
    for i in range(len(x)):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), list(model.parameters()))
        for acc, grad in zip(total, grads):
            acc += grad.double() / len(x)
    return _norm_and_entropy(total)


def _norm_and_entropy(tensors) -> tuple[float, float]:
    flat = torch.cat([t.detach().double().reshape(-1) for t in tensors]).abs()
    return float(flat.norm()), float(-(flat[flat > 0] * flat[flat > 0].log()).sum())


def per_checkpoint(group: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The straightforward data-free statistics (one concatenated vector); llc has no per-point form (None)."""
    return _norm_and_entropy(model.parameters()) if group == "weights" else None


def _lc_one_point(model: nn.Module, point: torch.Tensor, frame: torch.Tensor, radius: float) -> int:
    signs = []
    hooks = [m.register_forward_pre_hook(lambda m, args: signs.append(args[0] > 0))
             for m in model.modules() if isinstance(m, ACTIVATION_MODULES)]
    try:
        vertices = point.reshape(1, -1) + radius * torch.cat([frame, -frame])
        with torch.no_grad():
            model(vertices.reshape(-1, *point.shape[1:]))
    finally:
        for hook in hooks:
            hook.remove()
    return sum(int((s.any(0) & ~s.all(0)).sum()) for s in signs)


# ---------------------------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """Best of `repeats` wall-clock runs (after one warm-up when repeats > 1)."""
    result, best = None, math.inf
    for i in range(repeats + (1 if repeats > 1 else 0)):
        _sync(device)
        start = time.perf_counter()
        result = fn()
        _sync(device)
        if repeats == 1 or i > 0:
            best = min(best, time.perf_counter() - start)
    return best, result


def labels(model: nn.Module, splits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {name: model(x).argmax(1) for name, x in splits.items()}  # any labels do for timing


def _options(group: str | None, frame: torch.Tensor, radius: float) -> MetricOptions:
    groups = {} if group is None else {"groups": (group,)}
    return MetricOptions(**groups, lc_directions=len(frame), lc_radius=radius, robust_eps=ATTACK["eps"],
                         robust_steps=ATTACK["steps"], noise_sigma=ATTACK["sigma"], llc=LLCSettings())


def check_agreement(model, splits, y, frame, radius, n_ref) -> str:
    """Largest relative difference between the engine and the per-point implementation on the subset."""
    worst = 0.0
    for name, x in splits.items():
        sub, ysub = x[:n_ref], y[name][:n_ref]
        got = compute_split_metrics(model, sub, ysub, options=_options(None, frame, radius), frame=frame)
        for group, columns in [("centroid", ("centroid_alignment", "centroid_norm", "centroid_inner")),
                               ("jacobian", ("jacobian_erank", "jacobian_pc1", "jacobian_fro")),
                               ("accuracy", ("accuracy", "loss")), ("lc", ("lc",)),
                               ("robustness", ("robust_accuracy", "noise_accuracy")),
                               ("gradient", ("grad_norm", "grad_entropy"))]:
            rows = per_point(group, model, sub, ysub, frame, radius)
            for c, column in enumerate(columns):
                mean = sum(r[c] if isinstance(r, tuple) else r for r in rows) / len(rows)
                worst = max(worst, abs(got[column] - mean) / max(abs(mean), 1e-6))
    return f"{worst:.1e}"


def jacobian_methods(model, splits, device, repeats) -> tuple[float, float]:
    """Seconds per checkpoint for the full Jacobians only: vjp + vmap over cotangents (grokmon) versus
    vmap over points of jacrev(functional_call(...))."""
    params = {k: v.detach() for k, v in [*model.named_parameters(), *model.named_buffers()]}

    def by_jacrev(x):
        single = lambda v: functional_call(model, params, (v[None],)).reshape(-1)  # noqa: E731
        return vmap(jacrev(single))(x)

    vjp_s = sum(timed(lambda: input_jacobians(model, x), device, repeats)[0] for x in splits.values())
    jacrev_s = sum(timed(lambda: by_jacrev(x), device, repeats)[0] for x in splits.values())
    first = splits["train"][:8]
    a, b = input_jacobians(model, first), by_jacrev(first).reshape(8, -1, first[0].numel())
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), "the two Jacobian methods disagree"
    return vjp_s, jacrev_s


def group_line(group: str, model: nn.Module, splits: dict, y: dict, frame: torch.Tensor, args, device) -> str:
    """One row of the table: seconds per checkpoint of the engine and of the straightforward implementation.

    Per-checkpoint groups (weights, llc) run once per checkpoint, on the train split; llc has no per-point form.
    """
    options, n_ref, total = _options(group, frame, args.lc_radius), min(args.reference_points, args.points), \
        3 * args.points
    if group in CHECKPOINT_GROUPS:
        train = (splits["train"], y["train"])
        engine = timed(lambda: compute_checkpoint_metrics(model, train, options=options), device,
                       1 if group == "llc" else args.repeats)[0]
        if group == "llc":
            return f"{group:<10} {engine:>14.3f} {'-':>13} {'-':>17} {'-':>16} {'-':>9}"
        reference = timed(lambda: per_checkpoint(group, model, *train), device, args.repeats)[0]
        return f"{group:<10} {engine:>14.4f} {'-':>13} {reference:>17.4f} {'-':>16} {reference / engine:>8.1f}x"
    engine = sum(timed(lambda: compute_split_metrics(model, x, y[name], options=options, frame=frame),
                       device, args.repeats)[0] for name, x in splits.items())
    reference = sum(timed(lambda: per_point(group, model, x[:n_ref], y[name][:n_ref], frame, args.lc_radius),
                          device, 1)[0] for name, x in splits.items()) * args.points / n_ref
    return (f"{group:<10} {engine:>14.3f} {total / engine:>13.0f} {reference:>17.2f} {total / reference:>16.0f} "
            f"{reference / engine:>8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=512, help="points per split (default 512)")
    parser.add_argument("--reference-points", type=int, default=32,
                        help="points per split timed for the per-point implementation, then extrapolated")
    parser.add_argument("--models", default="sample,wide", help=f"comma-separated from {','.join(MODELS)}")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--lc-directions", type=int, default=25)
    parser.add_argument("--lc-radius", type=float, default=0.05, help="absolute radius (default 0.05)")
    parser.add_argument("--robust-eps", type=float, default=0.01, help="absolute PGD radius (default 0.01)")
    parser.add_argument("--noise-sigma", type=float, default=0.05, help="absolute input noise (default 0.05)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N timed runs for the engine (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for both sides (default: torch's choice); on a CPU shared with other "
                             "busy processes, 1 avoids multi-threaded kernels waiting on descheduled threads")
    args = parser.parse_args()
    ATTACK.update(eps=args.robust_eps, sigma=args.noise_sigma)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    dtype = getattr(torch, args.dtype)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# grokmon metrics benchmark: torch {torch.__version__}, {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'}), "
          f"{torch.get_num_threads()} threads, {args.dtype}, load average {load:.1f}")
    if load > (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print(f"# note: load average {load:.1f} on {os.cpu_count()} cores: multi-threaded kernels will wait on "
              "descheduled threads; --threads 1 gives steadier numbers")
    print(f"# one checkpoint = train + test + random splits of {args.points} points; LC: P = {args.lc_directions}, "
          f"r = {args.lc_radius}")
    print(f"# per-point implementation timed on {args.reference_points} points per split and extrapolated "
          f"linearly to {args.points}")
    generator = torch.Generator().manual_seed(0)
    for key in args.models.split(","):
        label, model, splits = MODELS[key](args.points, generator)
        model = model.to(device=device, dtype=dtype).eval()
        splits = {k: v.to(device=device, dtype=dtype) for k, v in splits.items()}
        y = labels(model, splits)
        dim = splits["train"][0].numel()
        frame = make_frame(dim, min(args.lc_directions, dim), seed=0, dtype=dtype, device=device)
        n_ref = min(args.reference_points, args.points)
        print(f"\n## {label}, D = {dim}, K = {model(splits['train'][:1]).shape[1]}")
        print(f"engine vs per-point agreement on the timed subset: max relative difference "
              f"{check_agreement(model, splits, y, frame, args.lc_radius, min(n_ref, 16))}")
        print(f"{'group':<10} {'engine s/ckpt':>14} {'engine pts/s':>13} {'per-point s/ckpt':>17} "
              f"{'per-point pts/s':>16} {'speed-up':>9}")
        for group in METRIC_GROUPS:
            print(group_line(group, model, splits, y, frame, args, device))
        vjp_s, jacrev_s = jacobian_methods(model, splits, device, args.repeats)
        print(f"full Jacobians only, s/ckpt: vjp + vmap over cotangents {vjp_s:.3f}, "
              f"vmap over points of jacrev(functional_call) {jacrev_s:.3f} ({jacrev_s / vjp_s:.2f}x)")


if __name__ == "__main__":
    main()
