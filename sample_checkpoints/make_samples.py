"""Train the sample run shipped with grokmon: modular addition that groks, on a CPU, in about a minute.

Setting: a + b (mod 59) for every pair (a, b); the input is the two one-hot vectors concatenated (118
features), the output the 59 classes. 40% of the 3,481 pairs train, the rest test. The network is a
bias-free ReLU MLP 118 -> 128 -> 128 -> 59 trained full-batch with AdamW (lr 1e-3, weight decay 1.0) on
cross-entropy. It fits the training pairs within a few hundred steps by memorising them; weight decay then
slowly trades the memorising solution for the cheaper algorithmic one, and test accuracy jumps thousands of
steps later (grokking: Power et al. 2022; Liu et al., Omnigrok, 2023).

Checkpoints are saved on a log-spaced grid of steps, plus every time test accuracy has moved by 0.05 since
the last save (denser through the transition), as step_NNNNNN.safetensors with the step in the metadata.
Also written: probes.safetensors (the train and test pairs), training_curve.csv, and grokmon.toml.

    python sample_checkpoints/make_samples.py            # rewrites this folder
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

P = 59
HIDDEN = 128
TRAIN_FRACTION = 0.4
STEPS = 12_000
LR = 1e-3
WEIGHT_DECAY = 1.0
SEED = 0
GRID_POINTS = 36  # log-spaced saves from step 1 to STEPS
MOVE_TO_SAVE = 0.05  # also save when test accuracy moved this much since the last save


def dataset(seed: int):
    """One-hot (a, b) pairs, labels (a + b) mod P, split at random into train and test."""
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x = torch.cat([F.one_hot(a, P), F.one_hot(b, P)], dim=1).float()
    y = (a + b) % P
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(TRAIN_FRACTION * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def build_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(2 * P, HIDDEN, bias=False), nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN, bias=False), nn.ReLU(),
        nn.Linear(HIDDEN, P, bias=False),
    )


def evaluate(model, x, y) -> tuple[float, float]:
    with torch.no_grad():
        out = model(x)
        return float((out.argmax(1) == y).float().mean()), float(F.cross_entropy(out, y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("step_*.safetensors"):
        stale.unlink()

    x_train, y_train, x_test, y_test = dataset(SEED)
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, betas=(0.9, 0.98))
    grid = {int(s) for s in np.unique(np.round(np.geomspace(1, args.steps, GRID_POINTS)))}
    curve, last_saved_test, start = [], None, time.time()
    for step in range(args.steps + 1):
        if step in grid or step % 10 == 0:
            train_acc, train_loss = evaluate(model, x_train, y_train)
            test_acc, test_loss = evaluate(model, x_test, y_test)
            moved = last_saved_test is not None and abs(test_acc - last_saved_test) >= MOVE_TO_SAVE
            if step in grid or moved or step == args.steps:
                state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
                save_file(state, str(out / f"step_{step:06d}.safetensors"), metadata={"step": str(step)})
                curve.append((step, train_acc, test_acc, train_loss, test_loss))
                last_saved_test = test_acc
                print(f"step {step:6d}  train {train_acc:.3f}  test {test_acc:.3f}  ({time.time() - start:.0f} s)", flush=True)
        if step == args.steps:
            break
        loss = F.cross_entropy(model(x_train), y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    keep = 2000
    save_file({"x_train": x_train, "y_train": y_train, "x_test": x_test[:keep].contiguous(),
               "y_test": y_test[:keep].contiguous()}, str(out / "probes.safetensors"))
    with open(out / "training_curve.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "train_accuracy", "test_accuracy", "train_loss", "test_loss"])
        for step, *values in curve:
            writer.writerow([step, *(f"{v:.6f}" for v in values)])
    (out / "grokmon.toml").write_text(
        "# grokmon manifest: how to run these checkpoints (see README)\n"
        'model = "mlp"\nactivation = "relu"\n'
    )
    print(f"{len(curve)} checkpoints in {out} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
