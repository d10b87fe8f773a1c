"""Modular addition MLPs (Power et al.; the sample run's setting): a + b mod p from one-hot pairs.

Full-batch AdamW on cross-entropy. With weight decay the network memorises the training pairs within tens of
steps and generalises thousands of steps later (grokking: time roughly 1 / (lr x weight decay)); without it,
it stays memorised for the whole run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import Task


def pairs(p: int, fraction: float, seed: int):
    """One-hot (a, b) pairs and (a + b) mod p, a seeded `fraction` for training, the rest held out."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x = torch.cat([F.one_hot(a, p), F.one_hot(b, p)], dim=1).to(torch.float32)
    y = (a + b) % p
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(fraction * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def task(p: int = 47, width: int = 64, depth: int = 2, weight_decay: float = 1.0, lr: float = 1e-2,
         fraction: float = 0.4, steps: int = 6000, seed: int = 0, bias: bool = False) -> Task:
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = pairs(p, fraction, seed)
    sizes = [2 * p] + [width] * depth
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out, bias=bias), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(width, p, bias=bias))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return Task(model, x_train, y_train, x_test, y_test, optimizer, steps, seed=seed)


RUNS = {
    "p47-w64-wd1": dict(p=47, width=64, weight_decay=1.0, steps=8000),
    "p59-w64-wd0.5-s1": dict(p=59, width=64, weight_decay=0.5, steps=8000, seed=1),
    "p31-w128-wd1": dict(p=31, width=128, weight_decay=1.0, fraction=0.5, steps=4000),
    "p53-w96-wd0.3": dict(p=53, width=96, weight_decay=0.3, steps=16000, bias=True),
    "p41-w64-wd2-depth1": dict(p=41, width=64, depth=1, weight_decay=2.0, steps=20000),
    "p59-w64-wd0": dict(p=59, width=64, weight_decay=0.0, steps=6000),
    "p47-w64-wd0.1-short": dict(p=47, width=64, weight_decay=0.1, steps=3000),
}
