"""Digits CNNs that learn ordinarily (no memorisation stage): two ReLU convolutions and a linear read-out on the
8x8 images, Adam or AdamW on cross-entropy, minibatches of 64, with and without weight decay."""

from __future__ import annotations

import torch
from torch import nn

from .common import Task
from .digits import digits


def build(channels: int = 16) -> nn.Module:
    """The network grokmon rebuilds for these checkpoints (`--model corpus.cnn:build`)."""
    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(channels, 2 * channels, 3, padding=1, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(2 * channels * 16, 10))


def task(channels: int = 16, weight_decay: float = 0.0, lr: float = 1e-3, steps: int = 3000, seed: int = 0,
         train_points: int = 1000, batch: int = 64) -> Task:
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = digits(seed, train_points, image=True)
    model = build(channels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return Task(model, x_train, y_train, x_test, y_test, optimizer, steps, batch=batch, seed=seed,
                factory="corpus.cnn:build", factory_kwargs={"channels": channels}, check_every=20)


RUNS = {
    "c16-wd0": dict(),
    "c16-wd0.1": dict(weight_decay=0.1),
    "c8-wd1": dict(channels=8, weight_decay=1.0, steps=4000),
    "c16-n300-wd0": dict(train_points=300, steps=2000),
    "c32-lr3e-3-wd0.05": dict(channels=32, lr=3e-3, weight_decay=0.05, steps=2000),
}
