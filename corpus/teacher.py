"""Random-teacher classification MLPs that overfit and never generalise: Gaussian inputs in `dim` dimensions,
labelled by the argmax of a fixed random tanh network with `classes` outputs, too few training points for the
student MLP to find the teacher, no weight decay. The train set is fitted within a few hundred steps while test
accuracy stops well short of it (0.35–0.54 of the way from its start with the 150–300 points used) and stays
there: the run a researcher sees when a network memorises and nothing will make it grok. Nothing in the
corpus does this (its memorising runs all generalise later)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import Task

TEACHER_WIDTH = 64
TEST_POINTS = 1000


def teacher_data(dim: int, classes: int, train_points: int, seed: int):
    """(x_train, y_train, x_test, y_test): standard normal inputs, labels from one random teacher network."""
    generator = torch.Generator().manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(dim, TEACHER_WIDTH), nn.Tanh(), nn.Linear(TEACHER_WIDTH, classes))
    with torch.no_grad():
        for p in teacher.parameters():  # N(0, 4 / fan_in) weights: tanh units well into their curve
            scale = 2.0 / math.sqrt(p.shape[-1]) if p.dim() > 1 else 0.5
            p.copy_(torch.randn(p.shape, generator=generator) * scale)
        x = torch.randn(train_points + TEST_POINTS, dim, generator=generator)
        y = teacher(x).argmax(dim=1)
    return x[:train_points], y[:train_points], x[train_points:], y[train_points:]


def task(dim: int = 30, classes: int = 10, train_points: int = 150, width: int = 128, optimizer: str = "adam",
         lr: float = 1e-3, momentum: float = 0.9, steps: int = 4000, seed: int = 0, batch: int = 32) -> Task:
    """A student MLP (two hidden ReLU layers of `width`) on `train_points` of a random teacher's labels, minibatches
    of `batch`, no weight decay: `optimizer` "adam" (AdamW) or "sgd" (with `momentum`)."""
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"Expected optimizer 'adam' or 'sgd', but got {optimizer!r}")
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = teacher_data(dim, classes, train_points, seed)
    model = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, classes))
    if optimizer == "sgd":
        made = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    else:
        made = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    return Task(model, x_train, y_train, x_test, y_test, made, steps, batch=batch, seed=seed, check_every=20)


# Not fitted on: validation runs only (corpus/validation.py), a kind of run the fitted corpus lacks.
RUNS: dict[str, dict] = {}
