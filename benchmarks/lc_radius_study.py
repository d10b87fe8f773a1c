"""Local complexity over a run's checkpoints for several radii: the evidence behind grokmon's default radius.

For a run of Linear/ReLU `nn.Sequential` checkpoints (step_*.safetensors) with probes.safetensors, prints
the mean LC on the train, test and random splits at every checkpoint, for absolute radii and radii relative to
the median L2 norm of the train probes, next to train/test accuracy; then, per radius and split, where the
curve peaks and how far it falls after the peak.

    .venv/bin/python benchmarks/lc_radius_study.py sample_checkpoints --radii 1%,2%,5%,10%,20%,0.05
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grokmon.metrics import MetricOptions, compute_split_metrics, make_frame  # noqa: E402


def build(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """The Linear/ReLU chain whose `nn.Sequential` keys are those of the state dict."""
    indices = sorted({int(k.split(".")[0]) for k in state})
    layers: list[nn.Module] = []
    for index in indices:
        while len(layers) < index:
            layers.append(nn.ReLU())
        weight = state[f"{index}.weight"]
        layers.append(nn.Linear(weight.shape[1], weight.shape[0], bias=f"{index}.bias" in state))
    model = nn.Sequential(*layers)
    model.load_state_dict(state)
    return model.eval()


def step_of(path: Path) -> int:
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {}
    return int(metadata.get("step", path.stem.split("_")[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--radii", default="1%,2%,5%,10%,20%,0.05,0.1")
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--directions", type=int, default=25)
    parser.add_argument("--splits", default="train,test,random")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: small matrices)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    probes = load_file(str(args.run / "probes.safetensors"))
    generator = torch.Generator().manual_seed(0)
    pick = lambda t: torch.randperm(len(t), generator=generator)[: args.points]  # noqa: E731
    i_train, i_test = pick(probes["x_train"]), pick(probes["x_test"])
    x_train = probes["x_train"].float()
    low, high = x_train.min(0).values, x_train.max(0).values
    splits = {
        "train": (x_train[i_train], probes["y_train"][i_train]),
        "test": (probes["x_test"].float()[i_test], probes["y_test"][i_test]),
        "random": (low + (high - low) * torch.rand((len(i_train), *x_train.shape[1:]), generator=generator), None),
    }
    splits = {k: splits[k] for k in args.splits.split(",")}
    median = float(x_train.flatten(1).norm(dim=1).median())
    radii = {}
    for text in args.radii.split(","):
        radii[text] = float(text[:-1]) / 100 * median if text.endswith("%") else float(text)
    frame = make_frame(x_train[0].numel(), args.directions, seed=0)
    checkpoints = sorted(args.run.glob("step_*.safetensors"), key=step_of)
    print(f"# {args.run}: {len(checkpoints)} checkpoints, median train norm {median:.4f}, P = {args.directions}, "
          f"{args.points} points per split; radii: " + ", ".join(f"{k} = {v:.4g}" for k, v in radii.items()))
    curves = {(r, s): [] for r in radii for s in splits}
    columns = " ".join(f"{s[:5]}@{r:<6}".rjust(13) for r in radii for s in splits)
    print(f"{'step':>6} {'train':>6} {'test':>6} {columns}")
    for path in checkpoints:
        model = build(load_file(str(path)))
        acc = {}
        for name in ("train", "test"):
            if name in splits:
                acc[name] = compute_split_metrics(model, *splits[name], options=MetricOptions(groups=("accuracy",)),
                                                  frame=None)["accuracy"]
        row = []
        for text, radius in radii.items():
            options = MetricOptions(groups=("lc",), lc_directions=args.directions, lc_radius=radius)
            for name, (x, _) in splits.items():
                lc = compute_split_metrics(model, x, None, options=options, frame=frame)["lc"]
                curves[(text, name)].append(lc)
                row.append(f"{lc:13.2f}")
        print(f"{step_of(path):>6} {acc.get('train', float('nan')):6.3f} {acc.get('test', float('nan')):6.3f} "
              + " ".join(row), flush=True)

    print("\n# peak and fall: step of the LC peak, peak LC, LC at the last checkpoint, fall = 1 - last/peak, "
          "rise = 1 - first/peak")
    steps = [step_of(p) for p in checkpoints]
    for (text, name), curve in curves.items():
        peak = max(range(len(curve)), key=curve.__getitem__)
        top = curve[peak] or float("nan")
        print(f"{text:>6} {name:>6}: peak at step {steps[peak]:>6} ({curve[peak]:.2f}), first {curve[0]:.2f}, "
              f"last {curve[-1]:.2f}, rise {1 - curve[0] / top:+.0%}, fall {1 - curve[-1] / top:+.0%}")


if __name__ == "__main__":
    main()
