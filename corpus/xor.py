"""XOR clusters with a scalar-output MLP, after GrokAlign's XOR setting: four Gaussian clusters at (±1, ±1) in
the first two of `dim` input dimensions, label = XOR of the two signs, the other dimensions pure noise. With few
training points and a scaled-up initialisation the network first fits the noise (memorises) and only later
finds the two informative directions. One logit: its Jacobian has rank one, and its centroid is its Jacobian."""

from __future__ import annotations

import torch
from torch import nn

from .common import Task, scale_init


def clusters(n: int, dim: int, spread: float, generator: torch.Generator):
    signs = torch.randint(0, 2, (n, 2), generator=generator) * 2 - 1
    x = spread * torch.randn(n, dim, generator=generator)
    x[:, :2] += signs.to(torch.float32)
    return x, (signs[:, 0] != signs[:, 1]).long()


def task(dim: int = 40, train_points: int = 100, test_points: int = 600, spread: float = 0.5, width: int = 128,
         init_scale: float = 3.0, weight_decay: float = 0.1, lr: float = 1e-3, steps: int = 8000,
         seed: int = 0, loss: str = "bce") -> Task:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = clusters(train_points, dim, spread, generator)
    x_test, y_test = clusters(test_points, dim, spread, generator)
    model = scale_init(nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                     nn.Linear(width, 1)), init_scale)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return Task(model, x_train, y_train, x_test, y_test, optimizer, steps, loss=loss, seed=seed, check_every=20)


RUNS = {
    "d40-bce-wd0.1": dict(steps=6000),
    "d40-mse-init4-wd0.3-n200": dict(loss="mse", init_scale=4, weight_decay=0.3, train_points=200, steps=10000),
    "d12-mse-init4-wd0.5": dict(loss="mse", dim=12, spread=0.35, init_scale=4, weight_decay=0.5, lr=2e-3, steps=6000),
    "d20-bce-wd0.5": dict(dim=20, spread=0.4, weight_decay=0.5, lr=3e-3, steps=5000),
    "d30-mse-init6-wd1-n150": dict(loss="mse", dim=30, spread=0.4, init_scale=6, weight_decay=1.0, lr=2e-3,
                                   train_points=150, steps=10000),
}
