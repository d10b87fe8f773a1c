"""Centroid of the linear region holding x (GrokAlign): mu(x) = J(x)^T 1 = grad_x sum_k f_k(x).

Per point: `centroid_alignment` = cos(mu, x) with the denominator ||mu|| ||x|| clamped at 1e-12,
`centroid_norm` = ||mu||_2, `centroid_inner` = <mu, x>; inputs are flattened first.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError

EPS = 1e-12


def centroids(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mu(x) for every point of a batch from ONE reverse pass, flattened to (N, D).

    Differentiating the sum of all outputs over the whole batch is exact because, in eval mode, no point's
    output depends on another point's input: the gradient's row i is J(x_i)^T 1.

    >>> net = nn.Linear(3, 2, bias=False)
    >>> torch.allclose(centroids(net, torch.ones(4, 3))[0], net.weight.sum(0))
    True
    """
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        total = model(x).sum()
        (grad,) = torch.autograd.grad(total, x, allow_unused=True) if total.requires_grad else (None,)
    if grad is None:
        raise ModelError("the network's outputs do not depend differentiably on its inputs (it casts or indexes "
                         "them: token ids?); the geometric metrics need inputs it computes on, so pass "
                         "--metrics accuracy, or store embedded probes and a model that starts after the embedding")
    return grad.reshape(len(x), -1)


def centroid_values(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-point centroid alignment, norm and inner product (N,) each.

    >>> net = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[3.0, 4.0]]))
    >>> {k: v.tolist() for k, v in centroid_values(net, torch.tensor([[3.0, 4.0], [0.0, 0.0]])).items()}
    {'centroid_alignment': [1.0, 0.0], 'centroid_norm': [5.0, 5.0], 'centroid_inner': [25.0, 0.0]}
    """
    mu = centroids(model, x)
    flat = x.detach().reshape(len(x), -1)
    inner = (mu * flat).sum(dim=1)
    norm = mu.norm(dim=1)
    alignment = inner / (norm * flat.norm(dim=1)).clamp_min(EPS)
    return {"centroid_alignment": alignment, "centroid_norm": norm, "centroid_inner": inner}
