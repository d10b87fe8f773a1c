"""Slow, obviously right float64 references for every metric, and the small networks they are checked on.

Each network spells out its pre-activations by hand (`preactivations`), so the local-complexity reference
shares nothing with the engine's way of finding nonlinearities: it runs every vertex alone and compares
the hand-listed pre-activations. Jacobians come one point at a time from torch.autograd.functional.jacobian,
spectra from numpy's SVD, summaries from numpy.
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
    """Biases, and one GELU module called twice (two layers)."""

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
    """Conv2d, eval-mode BatchNorm2d with non-trivial statistics, functional ReLUs, flatten, Linear."""

    input_shape = (1, 6, 6)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.conv2 = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 2 * 2, 3)
        with torch.no_grad():
            self.norm.running_mean.uniform_(-0.5, 0.5)
            self.norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        h = nn.functional.relu(self.conv1(x))
        h = torch.relu(self.norm(self.conv2(h)))
        return self.head(h.flatten(1))

    def preactivations(self, x):
        h1 = self.conv1(x)
        return [h1, self.norm(self.conv2(torch.relu(h1)))]


class PoolCNN(nn.Module):
    """Two input channels, BatchNorm2d, in-place ReLU module, max-pooling, SiLU, dropout (eval: identity)."""

    input_shape = (2, 5, 5)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(4, 5, 2), nn.SiLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(5, 4),
        )
        with torch.no_grad():
            self.features[1].running_mean.uniform_(-0.5, 0.5)
            self.features[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.features(x)

    def preactivations(self, x):
        f = self.features
        h1 = f[1](f[0](x))
        h2 = f[4](F.max_pool2d(torch.relu(h1), 2))
        return [h1, h2]


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


class ZooMLP(nn.Module):
    """Smooth and leaky activations as modules and tensor methods; softmax at the end is not a layer."""

    input_shape = (6,)

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.d = nn.Linear(6, 7), nn.Linear(7, 7), nn.Linear(7, 6), nn.Linear(6, 3)
        self.leaky, self.elu = nn.LeakyReLU(0.1), nn.ELU()

    def forward(self, x):
        h = self.leaky(self.a(x))
        h = self.b(h).tanh()
        h = self.elu(self.c(h))
        return torch.log_softmax(self.d(h), dim=1)

    def preactivations(self, x):
        h1 = self.a(x)
        h2 = self.b(F.leaky_relu(h1, 0.1))
        return [h1, h2, self.c(torch.tanh(h2))]


class ScalarNet(nn.Module):
    input_shape = (4,)

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 9), nn.Linear(9, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

    def preactivations(self, x):
        return [self.a(x)]


ARCHITECTURES = [BiasFreeMLP, GeluMLP, SmallCNN, PoolCNN, FunctionalNet, ZooMLP, ScalarNet]


def make(arch, seed=0, dtype=torch.float64, n=9):
    """A fresh random network in eval mode and n fresh random points of its input shape."""
    torch.manual_seed(seed)
    model = arch().to(dtype).eval()
    x = torch.randn(n, *arch.input_shape, dtype=dtype)
    return model, x


def jacobian(model, point, vectorize=False):
    """K x D Jacobian of one point, by torch.autograd.functional.jacobian (`vectorize`: its vmapped rows, for
    hundreds of outputs)."""
    def f(v):
        return model(v.reshape(1, *point.shape)).reshape(-1)

    return torch.autograd.functional.jacobian(f, point.reshape(-1), vectorize=vectorize)


def spectrum(j):
    """Effective rank, s1^2 / sum s^2 and Frobenius norm of one matrix, from numpy's SVD."""
    s = np.linalg.svd(j, compute_uv=False)
    if s.sum() == 0:
        return 0.0, 0.0, 0.0
    p = s / s.sum()
    erank = math.exp(-sum(v * math.log(v) for v in p if v > 0))
    return erank, s[0] ** 2 / (s**2).sum(), math.sqrt((j**2).sum())


def reference_metrics(model, x, vectorize=False):
    """Per-point dict of every centroid and spectrum metric, one point at a time, in numpy."""
    rows = {name: [] for name in ("centroid_alignment", "centroid_norm", "centroid_inner",
                                  "jacobian_erank", "jacobian_pc1", "jacobian_fro")}
    for point in x:
        j = jacobian(model, point, vectorize).double().numpy()
        mu = j.sum(axis=0)
        flat = point.reshape(-1).double().numpy()
        rows["centroid_norm"].append(np.linalg.norm(mu))
        rows["centroid_inner"].append(float(mu @ flat))
        rows["centroid_alignment"].append(float(mu @ flat) / max(np.linalg.norm(mu) * np.linalg.norm(flat), 1e-12))
        erank, pc1, fro = spectrum(j)
        rows["jacobian_erank"].append(erank)
        rows["jacobian_pc1"].append(pc1)
        rows["jacobian_fro"].append(fro)
    return {k: np.array(v) for k, v in rows.items()}


def reference_accuracy(model, x, y):
    """Per-point accuracy and loss, one point at a time: cross-entropy for class labels, MSE for targets."""
    accuracy, loss = [], []
    with torch.no_grad():
        for point, label in zip(x, y):
            out = model(point[None]).reshape(-1).double().numpy()
            if label.is_floating_point():
                loss.append(float(((out - label.reshape(-1).double().numpy()) ** 2).mean()))
                continue
            label = int(label)
            accuracy.append(float(int(np.argmax(out)) == label))
            loss.append(float(np.log(np.exp(out - out.max()).sum()) + out.max() - out[label]))
    return {"accuracy": np.array(accuracy) if accuracy else None, "loss": np.array(loss)}


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


def summary(values):
    """Mean and standard error (ddof=1) of per-point values, in numpy."""
    values = np.asarray(values, dtype=np.float64)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else None
    return float(values.mean()), se


def _loss_of_one(out, label):
    """Loss of one point's outputs (K,): cross-entropy, or binary cross-entropy of a single logit, spelled out."""
    if out.numel() == 1:
        z = out[0]
        return torch.log1p(torch.exp(-z)) if int(label) == 1 else torch.log1p(torch.exp(z))
    return torch.logsumexp(out, dim=0) - out[int(label)]


def _hit(out, label):
    return float((int(out[0] > 0) if out.numel() == 1 else int(torch.argmax(out))) == int(label))


def reference_pgd(model, x, y, eps, steps):
    """(adversarial points, per-point robust accuracy): each point attacked alone, in float64."""
    points, hits = [], []
    for point, label in zip(x.double(), y):
        adversarial = point.clone()
        for _ in range(steps):
            adversarial.requires_grad_(True)
            loss = _loss_of_one(model(adversarial[None]).reshape(-1), label)
            (grad,) = torch.autograd.grad(loss, adversarial)
            with torch.no_grad():
                adversarial = adversarial + 2.5 * eps / steps * torch.sign(grad)
                adversarial = torch.clamp(adversarial, point - eps, point + eps)
        with torch.no_grad():
            hits.append(_hit(model(adversarial[None]).reshape(-1), label))
        points.append(adversarial.detach())
    return torch.stack(points), np.array(hits)


def reference_noise_accuracy(model, x, y, noise):
    """Per-point accuracy at x + noise, one point at a time."""
    with torch.no_grad():
        return np.array([_hit(model((p + n)[None]).reshape(-1), label) for p, n, label in zip(x, noise, y)])


def abs_entropy(values):
    """(L2 norm, -sum |v| log |v|) of a flat list of numbers, one number at a time (0 log 0 = 0)."""
    square = sum(float(v) ** 2 for v in values)
    entropy = -sum(abs(float(v)) * math.log(abs(float(v))) for v in values if v != 0)
    return math.sqrt(square), entropy


def all_parameter_values(tensors):
    return [v for t in tensors for v in t.detach().double().reshape(-1).tolist()]


def reference_gradient(model, x, y):
    """The gradient of the mean loss w.r.t. every parameter: per point by autograd, averaged by hand."""
    parameters = [p for p in model.parameters()]
    total = [torch.zeros_like(p, dtype=torch.float64) for p in parameters]
    for point, label in zip(x, y):
        out = model(point[None]).reshape(-1)
        loss = ((out - label.reshape(-1)) ** 2).mean() if label.is_floating_point() else _loss_of_one(out, label)
        grads = torch.autograd.grad(loss, parameters, allow_unused=True)
        for acc, grad in zip(total, grads):
            if grad is not None:
                acc += grad.double() / len(x)
    return total
