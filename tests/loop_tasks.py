"""Toy tasks for the training-loop tests, framework aside: one a network learns at once and then sits on a
plateau (labels from a linear rule), one it can only memorise (random labels: fitted, never generalised)."""

from __future__ import annotations

import torch
from safetensors.torch import save_file
from torch import nn

FEATURES = 6


def task(kind: str, n: int = 64, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Probe tensors x_train, y_train, x_test, y_test of a "plateau" or a "memorise" task (train = what is trained on)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, FEATURES, generator=generator, dtype=dtype)
    if kind == "plateau":
        y = (x[:, 0] + x[:, 1] > 0).long()
    elif kind == "memorise":
        y = torch.randint(0, 2, (2 * n,), generator=generator)
    else:
        raise ValueError(kind)
    return {"x_train": x[:n], "y_train": y[:n], "x_test": x[n:], "y_test": y[n:]}


def mlp(width: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, width), nn.ReLU(), nn.Linear(width, 2)).to(dtype)


def save_probes(tensors: dict[str, torch.Tensor], path) -> str:
    """The same tensors as a probe file, for `grokmon analyze --data`."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return str(path)


# What the plateau and memorise runs are trained with: (width, Adam learning rate).
SETTINGS = {"plateau": (16, 0.05), "memorise": (64, 0.02)}
