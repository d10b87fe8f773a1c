"""Slow, obviously right float64 references for every metric, and the small networks they are checked on.

Each network spells out its pre-activations by hand (`preactivations`), so the local-complexity reference
does not share the engine's way of finding nonlinearities.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class BiasFreeMLP(nn.Module):
    input_shape = (7,)

    def __init__(self, k=5):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(7, 16, bias=False), nn.ReLU(), nn.Linear(16, 12, bias=False), nn.ReLU(),
                                 nn.Linear(12, k, bias=False))

    def forward(self, x):
        return self.net(x)

    def preactivations(self, x):
        h1 = self.net[0](x)
        h2 = self.net[2](torch.relu(h1))
        return [h1, h2]


class GeluMLP(nn.Module):
    input_shape = (6,)

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 10), nn.Linear(10, 9), nn.Linear(9, 4)
        self.act = nn.GELU()

    def forward(self, x):
        return self.c(self.act(self.b(self.act(self.a(x)))))

    def preactivations(self, x):
        h1 = self.a(x)
        return [h1, self.b(F.gelu(h1))]


class SmallCNN(nn.Module):
    input_shape = (1, 6, 6)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.conv2 = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 2 * 2, 3)
        with torch.no_grad():  # eval-mode BatchNorm with non-trivial statistics
            self.norm.running_mean.uniform_(-0.5, 0.5)
            self.norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        h = nn.functional.relu(self.conv1(x))
        h = torch.relu(self.norm(self.conv2(h)))
        return self.head(h.flatten(1))

    def preactivations(self, x):
        h1 = self.conv1(x)
        return [h1, self.norm(self.conv2(torch.relu(h1)))]


class FunctionalNet(nn.Module):
    """Activations called three ways as functions, none as modules."""

    input_shape = (5,)

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.d = nn.Linear(5, 8), nn.Linear(8, 8), nn.Linear(8, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = F.relu(self.a(x))
        h = torch.relu(self.b(h))
        h = self.c(h).relu()
        return self.d(h)

    def preactivations(self, x):
        h1 = self.a(x)
        h2 = self.b(torch.relu(h1))
        return [h1, h2, self.c(torch.relu(h2))]


class ScalarNet(nn.Module):
    input_shape = (4,)

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 9), nn.Linear(9, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

    def preactivations(self, x):
        return [self.a(x)]


ARCHITECTURES = [BiasFreeMLP, GeluMLP, SmallCNN, FunctionalNet, ScalarNet]


def make(arch, seed=0, dtype=torch.float64, n=9):
    """A fresh random network in eval mode and n fresh random points of its input shape."""
    torch.manual_seed(seed)
    model = arch().to(dtype).eval()
    x = torch.randn(n, *arch.input_shape, dtype=dtype)
    return model, x


def jacobian(model, point):
    """K x D Jacobian of one point, by torch.autograd.functional.jacobian."""
    def f(v):
        return model(v.reshape(1, *point.shape)).reshape(-1)

    return torch.autograd.functional.jacobian(f, point.reshape(-1))


def reference_metrics(model, x):
    """Per-point dict of every centroid and spectrum metric, one point at a time, in numpy."""
    rows = {name: [] for name in ("centroid_alignment", "centroid_norm", "centroid_inner",
                                  "jacobian_erank", "jacobian_pc1", "jacobian_fro")}
    for point in x:
        j = jacobian(model, point).numpy()
        mu = j.sum(axis=0)
        flat = point.reshape(-1).numpy()
        rows["centroid_norm"].append(np.linalg.norm(mu))
        rows["centroid_inner"].append(float(mu @ flat))
        rows["centroid_alignment"].append(float(mu @ flat) / max(np.linalg.norm(mu) * np.linalg.norm(flat), 1e-12))
        s = np.linalg.svd(j, compute_uv=False)
        p = s / s.sum()
        rows["jacobian_erank"].append(math.exp(-sum(v * math.log(v) for v in p if v > 0)))
        rows["jacobian_pc1"].append(s[0] ** 2 / (s**2).sum())
        rows["jacobian_fro"].append(math.sqrt((j**2).sum()))
    return {k: np.array(v) for k, v in rows.items()}


def reference_lc(model, x, frame, radius):
    """(N, layers) counts: for each point, each vertex x ± r v_p run alone; a neuron counts when its
    pre-activation is > 0 on some vertex and <= 0 on another."""
    counts = []
    with torch.no_grad():
        for point in x:
            signs = []  # per vertex: list of per-layer boolean tensors
            for direction in torch.cat([frame, -frame]):
                vertex = point + radius * direction.reshape(point.shape)
                signs.append([(h[0] > 0).reshape(-1) for h in model.preactivations(vertex[None])])
            row = []
            for layer in range(len(signs[0])):
                stacked = torch.stack([s[layer] for s in signs])
                row.append(int((stacked.any(0) & ~stacked.all(0)).sum()))
            counts.append(row)
    return np.array(counts)
