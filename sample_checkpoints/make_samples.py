"""Train the sample run shipped with grokmon: modular addition that groks, on a CPU, in about a minute.

Setting: a + b (mod 59) over all 3,481 pairs (a, b); the input is the two one-hot vectors concatenated
(118 float32 features), the output the 59 classes. A seeded 40 % of the pairs (1,392) train, the other
2,089 are held out. The network is a bias-free ReLU MLP 118 -> 64 -> 64 -> 59 (nn.Sequential, state-dict
keys 0.weight, 2.weight, 4.weight; 15,424 parameters) trained full-batch on cross-entropy with AdamW
(lr 1e-2, betas (0.9, 0.999), weight decay 0.5) for 8,000 steps.

Why it groks: the network can fit 1,392 arbitrary pairs by memorising them, and it does so within ~40
steps, long before it has any reason to find the rule. Strong weight decay then keeps shrinking that
high-norm lookup table; the algorithmic (Fourier) solution of modular addition fits the same pairs with a
much smaller norm, so the decay slowly trades one for the other and test accuracy, near chance for more
than a decade of steps, rises from ~1,500 steps on and settles near 1 (Power et al. 2022; Nanda et al.
2023; Liu et al., Omnigrok, 2023). The time to grok scales roughly as 1 / (lr x weight decay).

Checkpoints are saved on a log-spaced grid of steps, plus whenever test accuracy has moved by 0.05 since
the last save (so the saves are dense through the transition), as step_NNNNNN.safetensors with the step
in the safetensors metadata. Also written: probes.safetensors (the train pairs as trained on and the
held-out pairs), training_curve.csv (accuracy and loss on both sets at every saved step) and grokmon.toml.

Runs on one thread: the matrices are small, and with two threads on a shared two-core machine the
OpenMP workers wait on each other (measured 30x slower under load).

    python sample_checkpoints/make_samples.py            # rewrites this folder
    python sample_checkpoints/make_samples.py --out DIR  # writes elsewhere
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

P = 59                 # modulus
HIDDEN = 64            # width of both hidden layers
TRAIN_FRACTION = 0.4   # share of all P*P pairs used for training
STEPS = 8_000          # full-batch optimizer steps
LR = 1e-2
BETAS = (0.9, 0.999)
WEIGHT_DECAY = 0.5
SEED = 0
GRID_POINTS = 48       # log-spaced saves from step 1 to STEPS (step 0 is saved too)
EVAL_EVERY = 10        # how often test accuracy is checked for the extra saves
MOVE_TO_SAVE = 0.05    # also save when test accuracy moved this much since the last save


def dataset(seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One-hot (a, b) pairs and labels (a + b) mod P, split at random (seeded) into train and test."""
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x = torch.cat([F.one_hot(a, P), F.one_hot(b, P)], dim=1).to(torch.float32)
    y = ((a + b) % P).to(torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(TRAIN_FRACTION * len(x))
    train, test = order[:cut], order[cut:]
    return x[train].contiguous(), y[train].contiguous(), x[test].contiguous(), y[test].contiguous()


def build_model() -> nn.Sequential:
    """The plain chain grokmon's `--model mlp` rebuilds from the state dict alone."""
    return nn.Sequential(
        nn.Linear(2 * P, HIDDEN, bias=False), nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN, bias=False), nn.ReLU(),
        nn.Linear(HIDDEN, P, bias=False),
    )


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, cross-entropy) on the whole set."""
    with torch.no_grad():
        out = model(x)
        return float((out.argmax(1) == y).float().mean()), float(F.cross_entropy(out, y))


def save_grid(steps: int) -> set[int]:
    return {0} | {int(s) for s in np.unique(np.round(np.geomspace(1, steps, GRID_POINTS)))}


def write_probes_curve_manifest(out: Path, data: tuple, curve: list[tuple]) -> None:
    """probes.safetensors (the train pairs as trained on, the held-out pairs), training_curve.csv, grokmon.toml."""
    x_train, y_train, x_test, y_test = data
    save_file({"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
              str(out / "probes.safetensors"))
    with open(out / "training_curve.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "train_accuracy", "test_accuracy", "train_loss", "test_loss"])
        for step, *values in curve:
            writer.writerow([step, *(f"{v:.6f}" for v in values)])
    (out / "grokmon.toml").write_text(
        "# grokmon manifest: how to run these checkpoints (see README)\n"
        'model = "mlp"\n'
        'activation = "relu"\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: this script's folder)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    parser.add_argument("--weight-decay", type=float, default=WEIGHT_DECAY,
                        help=f"AdamW weight decay (default {WEIGHT_DECAY}; 0 gives a run that does not grok)")
    args = parser.parse_args()

    torch.set_num_threads(1)  # one thread: also makes every reduction run in the same order, run after run
    torch.manual_seed(SEED)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("step_*.safetensors"):
        stale.unlink()

    x_train, y_train, x_test, y_test = dataset(SEED)
    model = build_model()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"modular addition mod {P}: {len(x_train)} train / {len(x_test)} test pairs; "
          f"MLP {2 * P}-{HIDDEN}-{HIDDEN}-{P} ({n_params} parameters); AdamW lr {LR} wd {args.weight_decay}; "
          f"{args.steps} steps -> {out}", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=args.weight_decay)
    grid = save_grid(args.steps)
    curve: list[tuple[int, float, float, float, float]] = []
    last_saved_test = None
    start = time.time()
    for step in range(args.steps + 1):
        if step in grid or step % EVAL_EVERY == 0 or step == args.steps:
            model.eval()
            test_acc, test_loss = evaluate(model, x_test, y_test)
            moved = last_saved_test is not None and abs(test_acc - last_saved_test) >= MOVE_TO_SAVE
            if step in grid or moved or step == args.steps:
                train_acc, train_loss = evaluate(model, x_train, y_train)
                state = {k: v.detach().to(torch.float32).clone().contiguous() for k, v in model.state_dict().items()}
                save_file(state, str(out / f"step_{step:06d}.safetensors"), metadata={"step": str(step)})
                curve.append((step, train_acc, test_acc, train_loss, test_loss))
                last_saved_test = test_acc
                print(f"step {step:6d}  train acc {train_acc:.3f}  test acc {test_acc:.3f}  "
                      f"train loss {train_loss:.4f}  test loss {test_loss:.4f}  ({time.time() - start:.0f} s)",
                      flush=True)
            model.train()
        if step == args.steps:
            break
        loss = F.cross_entropy(model(x_train), y_train)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.time() - start

    write_probes_curve_manifest(out, (x_train, y_train, x_test, y_test), curve)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"{len(curve)} checkpoints, training {seconds:.0f} s, folder {size / 1e6:.1f} MB: {out}", flush=True)


if __name__ == "__main__":
    main()
