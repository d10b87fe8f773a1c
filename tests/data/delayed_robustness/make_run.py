"""Train the delayed-robustness fixture: an MLP on scikit-learn's bundled digits whose robust accuracy rises
long after its test accuracy has settled (delayed robustness, Humayun et al., "Deep Networks Always Grok").

Setting: the 1,797 8x8 digits of `sklearn.datasets.load_digits` (bundled with scikit-learn, nothing is
downloaded), pixels scaled to [0, 1], a seeded 1,000 for training and the other 797 held out; a ReLU MLP
64-64-64-10 with biases, full-batch cross-entropy, AdamW (lr 3e-3, weight decay 0.5) for 18,000 steps. The
network fits the training set within ~150 steps and its test accuracy settles near 0.97 soon after; the strong
weight decay then keeps reshaping the fitted function for thousands of steps, which shows in the robust
accuracy under an L-inf attack of eps 0.05 (measured by grokmon on the 300 held-out probes: 0.61 at step 85,
falling to 0.40 at step 3,612 while the fit sharpens, then climbing to 0.68 at step 18,000) but not in the test
accuracy (0.96-0.97 from step 145 on). Trained on for 30,000 steps, the robust accuracy collapsed again by the
end (0.15) with test accuracy unchanged; the fixture stops at 18,000.

Written here: step_NNNNNN.safetensors (the step in the metadata) at log-spaced steps, probes.safetensors (300 of
the training digits and 300 of the held-out ones, so the fixture stays small), training_curve.csv (train and
test accuracy on the full sets at every saved step) and grokmon.toml. Needs scikit-learn (pip install
scikit-learn); about three minutes on one idle CPU thread.

    python tests/data/delayed_robustness/make_run.py
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

WIDTH = 64
STEPS = 18_000
LR = 3e-3
WEIGHT_DECAY = 0.5
TRAIN_POINTS = 1_000
PROBE_POINTS = 300  # per split, stored as the fixture's probes
SAVES = 15  # log-spaced steps from 10 to STEPS
SEED = 0


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train and held-out digits, pixels in [0, 1], split at random (seeded)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))
    train, test = order[:TRAIN_POINTS], order[TRAIN_POINTS:]
    return x[train], y[train], x[test], y[test]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    x_train, y_train, x_test, y_test = digits()
    model = nn.Sequential(nn.Linear(64, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    saves = {int(s) for s in np.unique(np.round(np.geomspace(10, STEPS, SAVES)))}
    for stale in args.out.glob("step_*.safetensors"):
        stale.unlink()
    curve = []
    for step in range(STEPS + 1):
        if step in saves:
            model.eval()
            state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(args.out / f"step_{step:06d}.safetensors"), metadata={"step": str(step)})
            curve.append((step, accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)))
            print(f"step {step:6d}  train acc {curve[-1][1]:.3f}  test acc {curve[-1][2]:.3f}", flush=True)
            model.train()
        if step == STEPS:
            break
        loss = F.cross_entropy(model(x_train), y_train)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    save_file({"x_train": x_train[:PROBE_POINTS].contiguous(), "y_train": y_train[:PROBE_POINTS].contiguous(),
               "x_test": x_test[:PROBE_POINTS].contiguous(), "y_test": y_test[:PROBE_POINTS].contiguous()},
              str(args.out / "probes.safetensors"))
    with open(args.out / "training_curve.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "train_accuracy", "test_accuracy"])
        writer.writerows([(s, f"{a:.6f}", f"{b:.6f}") for s, a, b in curve])
    (args.out / "grokmon.toml").write_text('# grokmon manifest (see make_run.py)\nmodel = "mlp"\n')


if __name__ == "__main__":
    main()
