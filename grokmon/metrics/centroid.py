"""Centroid of the linear region holding x (GrokAlign): mu(x) = J(x)^T 1 = grad_x sum_k f_k(x)."""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-12


def centroids(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mu(x) for every point of a batch from ONE reverse pass, flattened to (N, D).

    Summing the outputs over the batch before differentiating is exact because, in eval mode, no point's
    output depends on another point's input.

    >>> net = torch.nn.Linear(3, 2, bias=False)
    >>> torch.allclose(centroids(net, torch.ones(4, 3))[0], net.weight.sum(0))
    True
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model(x).sum(), x)
    return grad.reshape(len(x), -1)


def centroid_values(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-point centroid alignment cos(mu, x), norm ||mu|| and inner product <mu, x> (inputs flattened)."""
    mu = centroids(model, x)
    flat = x.detach().reshape(len(x), -1)
    inner = (mu * flat).sum(dim=1)
    norm = mu.norm(dim=1)
    alignment = inner / (norm * flat.norm(dim=1)).clamp_min(EPS)
    return {"centroid_alignment": alignment, "centroid_norm": norm, "centroid_inner": inner}
