"""Train a one-layer transformer on a + b (mod p) until it groks, on a CPU, and save its checkpoints.

Setting (after Power et al. 2022 and Nanda et al. 2023): all p·p pairs (a, b) as the token sequences `a b =`,
the label (a + b) mod p read at the last position. A seeded TRAIN_FRACTION of the unordered pairs {a, b}
train, in both orders, and the rest are held out: with a split of ordered pairs, the held-out (a, b) whose
(b, a) is trained are answered by memorising commutativity alone (measured: 93 % right against 0.5 % on the
others, a plateau of test accuracy at 0.38 instead of chance). The model is model.py's ModularTransformer
(width 32, 4 heads, MLP 128, no LayerNorm), trained full-batch on cross-entropy with AdamW and strong weight
decay. It fits the training pairs within about 150 steps by memorising them, test accuracy stays at chance for
more than a decade of steps, and the decay trades the lookup table for the low-norm Fourier solution: test
accuracy jumps to 1 around step 4,300 (measured: 0.037 at step 3,888, 0.986 at 4,390).

Checkpoints are saved on a log-spaced grid of steps, plus whenever test accuracy has moved by MOVE_TO_SAVE
since the last save, as step_NNNNNN.safetensors with the step in the metadata. Also written: probes.safetensors
(the token sequences, int64, and labels), training_curve.csv and a grokmon.toml naming the model and
`position = "last"`, so that `grokmon analyze OUT` needs no flags.

    nice -n 10 python examples/modular_transformer/train.py            # writes examples/modular_transformer/run/
    nice -n 10 python examples/modular_transformer/train.py --out DIR --steps 500
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from model import build

HERE = Path(__file__).resolve().parent
P = 43                 # modulus
SIZES = {"p": P, "width": 32, "heads": 4, "hidden": 128}
TRAIN_FRACTION = 0.5   # share of the unordered pairs {a, b} used for training (both orders of each)
STEPS = 10_000         # full-batch optimizer steps
LR = 1e-2
BETAS = (0.9, 0.98)
WEIGHT_DECAY = 2.0
SEED = 0
GRID_POINTS = 40       # log-spaced saves from step 1 to STEPS (step 0 is saved too)
EVAL_EVERY = 10        # how often test accuracy is checked for the extra saves
MOVE_TO_SAVE = 0.1     # also save when test accuracy moved this much since the last save


def dataset(p: int = P, seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token sequences `a b =` and labels (a + b) mod p, split at random (seeded) by unordered pair {a, b}:
    (a, b) and (b, a) are both in train or both held out."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    y = (a + b) % p
    pair = torch.minimum(a, b) * p + torch.maximum(a, b)
    pairs = pair.unique()
    order = pairs[torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))]
    train = torch.isin(pair, order[: int(TRAIN_FRACTION * len(pairs))])
    return x[train].contiguous(), y[train].contiguous(), x[~train].contiguous(), y[~train].contiguous()


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, cross-entropy) at the last position, on the whole set."""
    with torch.no_grad():
        out = model(x)[:, -1]
        return float((out.argmax(1) == y).float().mean()), float(F.cross_entropy(out, y))


def save_grid(steps: int) -> set[int]:
    return {0} | {int(s) for s in np.unique(np.round(np.geomspace(1, steps, GRID_POINTS)))}


def write_manifest(out: Path, sizes: dict) -> None:
    """grokmon.toml: the model file (relative to OUT when OUT is in this folder), its sizes, and the position
    that is scored."""
    inside = out.resolve().is_relative_to(HERE)
    model_file = os.path.relpath(HERE / "model.py", out.resolve()) if inside else str(HERE / "model.py")
    kwargs = ", ".join(f"{k} = {v}" for k, v in sizes.items())
    (out / "grokmon.toml").write_text(
        "# grokmon manifest: how to run these checkpoints (see the README's transformer section)\n"
        f"model = {json.dumps(model_file + ':build')}\n"
        f"model_kwargs = {{ {kwargs} }}\n"
        'position = "last"\n'
    )


def train(out: Path, steps: int = STEPS, p: int = P, log=print) -> list[tuple[int, float, float, float, float]]:
    """Train from scratch, writing the run into `out`; returns the curve (step, train/test accuracy and loss)."""
    torch.manual_seed(SEED)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("step_*.safetensors"):
        stale.unlink()
    x_train, y_train, x_test, y_test = dataset(p)
    sizes = {**SIZES, "p": p}
    model = build(**sizes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
    grid, curve, last_saved_test, start = save_grid(steps), [], None, time.time()
    for step in range(steps + 1):
        if step in grid or step % EVAL_EVERY == 0 or step == steps:
            model.eval()
            test_acc, test_loss = evaluate(model, x_test, y_test)
            moved = last_saved_test is not None and abs(test_acc - last_saved_test) >= MOVE_TO_SAVE
            if step in grid or moved or step == steps:
                train_acc, train_loss = evaluate(model, x_train, y_train)
                state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
                save_file(state, str(out / f"step_{step:06d}.safetensors"), metadata={"step": str(step)})
                curve.append((step, train_acc, test_acc, train_loss, test_loss))
                last_saved_test = test_acc
                log(f"step {step:6d}  train acc {train_acc:.3f}  test acc {test_acc:.3f}  train loss {train_loss:.4f}"
                    f"  test loss {test_loss:.4f}  ({time.time() - start:.0f} s)")
            model.train()
        if step == steps:
            break
        loss = F.cross_entropy(model(x_train)[:, -1], y_train)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    save_file({"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
              str(out / "probes.safetensors"))
    with open(out / "training_curve.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "train_accuracy", "test_accuracy", "train_loss", "test_loss"])
        writer.writerows([step, *(f"{v:.6f}" for v in values)] for step, *values in curve)
    write_manifest(out, sizes)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "run",
                        help="output folder (default: run/ beside this script)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small matrices: more threads only wait on each other
    start = time.time()
    curve = train(args.out, args.steps, log=lambda line: print(line, flush=True))
    size = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(f"{len(curve)} checkpoints, {time.time() - start:.0f} s, folder {size / 1e6:.1f} MB: {args.out}", flush=True)


if __name__ == "__main__":
    main()
