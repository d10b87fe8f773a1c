"""Digits MLPs that learn ordinarily: default initialisation, cross-entropy, minibatches of 64, SGD (with or
without momentum) or AdamW (`optimizer="adam"`), with and without weight decay — the run most training scripts
make. Train and test accuracy rise together; there is no memorisation stage to wait through."""

from __future__ import annotations

import torch
from torch import nn

from .common import Task
from .digits import digits


def task(width: int = 128, optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
         steps: int = 3000, seed: int = 0, train_points: int = 1000, batch: int = 64) -> Task:
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = digits(seed, train_points)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    if optimizer == "sgd":
        made = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        made = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return Task(model, x_train, y_train, x_test, y_test, made, steps, batch=batch, seed=seed, check_every=20)


# Not fitted on: these runs are validation runs (corpus/validation.py), a family the fitted corpus lacks. Fitted
# as a sixth family they made the geometry mode worse (docs/phases.md, "Validation runs").
RUNS: dict[str, dict] = {}
