"""Omnigrok-style digits MLPs (Liu, Michaud, Tegmark 2023): parameters scaled up at initialisation, MSE on
one-hot targets, AdamW with weight decay. The large-norm start fits the training images first and generalises
late, as weight decay shrinks the weights towards the norm at which the general solution lives."""

from __future__ import annotations

import torch
from torch import nn

from .common import Task, scale_init
from .digits import digits


def task(init_scale: float = 8.0, width: int = 200, weight_decay: float = 0.01, lr: float = 1e-3,
         steps: int = 20000, seed: int = 0, train_points: int = 1000, batch: int | None = None) -> Task:
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = digits(seed, train_points)
    model = scale_init(nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                     nn.Linear(width, 10)), init_scale)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return Task(model, x_train, y_train, x_test, y_test, optimizer, steps, loss="mse", batch=batch, seed=seed,
                check_every=50)


RUNS = {
    "init10-n300-wd0.1": dict(init_scale=10, width=100, train_points=300, weight_decay=0.1, steps=20000),
    "init8-n500-wd0.1": dict(init_scale=8, width=100, train_points=500, weight_decay=0.1, steps=16000),
    "init6-n300-wd0.3": dict(init_scale=6, width=100, train_points=300, weight_decay=0.3, steps=10000),
    "init10-n300-wd0": dict(init_scale=10, width=100, train_points=300, weight_decay=0.0, steps=10000),
    "init8-n1000-wd0.05": dict(init_scale=8, width=100, lr=2e-3, weight_decay=0.05, steps=12000),
}
