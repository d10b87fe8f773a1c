"""What every corpus family shares: the training loop that saves checkpoints and truth curves, and the
step from a trained run to a stored fixture (grokmon.analyze, then a results Parquet with its truth).

A family module defines `RUNS` (run name -> keyword arguments) and `task(**kwargs) -> Task`; the driver
(`corpus/build.py`) trains each run into a temporary folder, analyses it and keeps only the fixture.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

SAVES = 40            # log-spaced saves from step 1 to the last step (step 0 is saved too)
MOVE_TO_SAVE = 0.05   # also save when test accuracy moved this much since the last save ...
MOST_SAVES = 60       # ... up to this many checkpoints in all
POINTS = 192          # probe points per split that grokmon analyses (the fixture stays small)
WARMUP_FRACTION = 0.05  # of the steps, the cosine schedule's linear warm-up


@dataclass
class Task:
    """One training run, fully specified: model, data (clean labels), loss, optimiser, schedule.

    `events` maps a step to a function called with the Task just before that step trains (change the
    labels trained on, the learning rate, ...). `train_labels` are the labels trained on (they start as
    `y_train`; an event may corrupt them); truth curves and probes always use the clean `y_train`.
    `factory` is the `--model` spec grokmon needs to rebuild the network (None: the inferred MLP).
    `save_every`: save every N steps and nowhere else, as most training scripts do (None: the corpus's
    log-spaced grid and the extra saves where test accuracy moved). `schedule`: "cosine" for the learning rate
    times a linear warm-up over the first WARMUP_FRACTION of the steps and a cosine from 1 at step 0 to 0 at the
    last step (the two multiplied: the peak, at the warm-up's end, is 0.994), the shape most training stacks use
    (None: a constant learning rate). A schedule cannot be combined with `events` (it would overwrite the learning
    rate an event set).
    """

    model: nn.Module
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    optimizer: torch.optim.Optimizer
    steps: int
    loss: str = "cross_entropy"     # or "mse" (on one-hot targets, Omnigrok), "bce" (one logit)
    batch: int | None = None        # None: full batch
    events: dict[int, Callable[["Task"], None]] = field(default_factory=dict)
    factory: str | None = None
    factory_kwargs: dict = field(default_factory=dict)
    activation: str = "relu"
    check_every: int = 10           # how often test accuracy is looked at for the extra saves
    seed: int = 0
    train_labels: torch.Tensor | None = None
    save_every: int | None = None   # None: log-spaced saves (save_grid) plus the extra saves; N: every N steps only
    schedule: str | None = None     # None: constant learning rate; "cosine": warm-up, then cosine decay to 0

    def __post_init__(self):
        if self.train_labels is None:
            self.train_labels = self.y_train.clone()


def outputs_to_predictions(out: torch.Tensor) -> torch.Tensor:
    """Class predictions: argmax, or the sign of a single logit."""
    return (out[:, 0] > 0).long() if out.shape[1] == 1 else out.argmax(1)


def loss_of(task: Task, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task.loss == "mse":  # on one-hot targets, or on +-1 for a single output
        target = (2 * y - 1)[:, None].to(out) if out.shape[1] == 1 else F.one_hot(y, out.shape[1]).to(out)
        return (out - target).square().sum(1).mean()
    if task.loss == "bce":
        return F.binary_cross_entropy_with_logits(out[:, 0], y.to(out))
    return F.cross_entropy(out, y)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((outputs_to_predictions(model(x).reshape(len(x), -1)) == y).float().mean())


def save_grid(steps: int, saves: int = SAVES) -> set[int]:
    """Step 0 and `saves` log-spaced steps from 1 to `steps`."""
    return {0} | {int(s) for s in np.unique(np.round(np.geomspace(1, steps, saves)))}


def lr_factor(schedule: str, steps: int) -> Callable[[int], float]:
    """The learning rate's multiplier at each step, for torch's LambdaLR: the warm-up ramp times the cosine."""
    if schedule != "cosine":
        raise ValueError(f"Expected schedule None or 'cosine', but got {schedule!r}")
    warm = max(1, int(WARMUP_FRACTION * steps))
    return lambda step: min(1.0, (step + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))


def train(task: Task, out: Path, log: Callable[[str], None] = print) -> list[dict]:
    """Train `task`, saving step_NNNNNN.safetensors (step in the metadata) and probes.safetensors into `out`.

    Returns the truth curve: accuracy on the whole clean train and test sets at every saved step.
    """
    torch.manual_seed(task.seed)
    generator = torch.Generator().manual_seed(task.seed)
    every = task.save_every
    grid = save_grid(task.steps) if every is None else set(range(0, task.steps, every)) | {task.steps}
    curve: list[dict] = []
    last_saved = None
    start = time.time()
    model = task.model
    if task.schedule and task.events:
        raise ValueError("a Task with a schedule cannot have events: LambdaLR would overwrite the learning rate "
                         "an event sets")
    # no scheduler without a schedule: LambdaLR would reset the learning rate an event changed (lr_blowup)
    scheduler = (torch.optim.lr_scheduler.LambdaLR(task.optimizer, lr_factor(task.schedule, task.steps))
                 if task.schedule else None)
    for step in range(task.steps + 1):
        if step in task.events:
            task.events[step](task)
        if step in grid or step % task.check_every == 0:
            model.eval()
            test = accuracy(model, task.x_test, task.y_test)
            moved = (task.save_every is None and last_saved is not None and abs(test - last_saved) >= MOVE_TO_SAVE
                     and len(curve) < MOST_SAVES - 5)
            if step in grid or moved:
                state = {k: v.detach().to(torch.float32).clone().contiguous() for k, v in model.state_dict().items()}
                save_file(state, str(out / f"step_{step:06d}.safetensors"), metadata={"step": str(step)})
                curve.append({"step": step, "train_accuracy": accuracy(model, task.x_train, task.y_train),
                              "test_accuracy": test})
                last_saved = test
            model.train()
        if step == task.steps:
            break
        if task.batch is None:
            x, y = task.x_train, task.train_labels
        else:
            pick = torch.randint(len(task.x_train), (task.batch,), generator=generator)
            x, y = task.x_train[pick], task.train_labels[pick]
        out_ = model(x).reshape(len(x), -1)
        loss = loss_of(task, out_, y)
        task.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        task.optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if not torch.isfinite(loss):
            log(f"  non-finite loss at step {step}")
    save_file({"x_train": task.x_train.contiguous(), "y_train": task.y_train.contiguous(),
               "x_test": task.x_test.contiguous(), "y_test": task.y_test.contiguous()}, str(out / "probes.safetensors"))
    last = curve[-1]
    log(f"  trained {task.steps} steps in {time.time() - start:.0f} s: {len(curve)} checkpoints, "
        f"final train {last['train_accuracy']:.3f} test {last['test_accuracy']:.3f}")
    return curve


def analyse_and_store(ckpt_dir: Path, fixture: Path, task: Task, truth: list[dict], about: dict) -> None:
    """grokmon.analyze the run (one thread, POINTS per split) and store the results with their truth curve."""
    import grokmon
    from grokmon.results.parquet import read_results, write_results

    scratch = ckpt_dir / "grokmon.parquet"
    grokmon.analyze(ckpt_dir, scratch, model=task.factory or "mlp", model_kwargs=task.factory_kwargs or None,
                    activation=task.activation, points=POINTS, device="cpu", threads=1)
    frame, metadata = read_results(scratch)
    frame = slim(frame)
    metadata["checkpoint_dir"] = f"corpus:{about['family']}/{about['run']}"
    metadata["probe_file"] = "probes.safetensors"
    metadata["corpus"] = {**about, "truth": truth}
    fixture.parent.mkdir(parents=True, exist_ok=True)
    write_results(fixture, frame.to_dict("records"), metadata)


def slim(frame):
    """The results without per-layer LC (phases does not read it; the fixtures stay small)."""
    return frame.assign(lc_layers=None, lc_layers_se=None)


def describe(task: Task) -> dict:
    """The settings worth storing with a fixture (JSON-serialisable)."""
    optimiser = task.optimizer
    group = optimiser.param_groups[0]
    return {"optimizer": type(optimiser).__name__, "lr": group["lr"], "weight_decay": group.get("weight_decay", 0.0),
            "steps": task.steps, "batch": task.batch, "loss": task.loss, "train_points": len(task.x_train),
            "test_points": len(task.x_test), "events": sorted(task.events), "seed": task.seed,
            "parameters": sum(p.numel() for p in task.model.parameters()),
            **({"save_every": task.save_every} if task.save_every else {}),
            **({"schedule": task.schedule} if task.schedule else {})}


def scale_init(model: nn.Module, factor: float) -> nn.Module:
    """Multiply every parameter by `factor` (Omnigrok's large initialisation)."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)
    return model


def json_dump(value) -> str:
    return json.dumps(value, indent=1, sort_keys=True)
