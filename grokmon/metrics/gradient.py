"""NeuralGrok's Absolute Gradient Entropy: statistics of the gradient of a split's mean loss.

g = the gradient, with respect to all floating-point parameters, of the split's mean loss (the loss grokmon
reports: cross-entropy for class labels, binary cross-entropy of a single logit, MSE for float targets),
flattened into one vector. `grad_norm` = ||g||_2 and `grad_entropy` = -sum_i |g_i| log |g_i| (0 log 0 = 0),
unnormalised, as NeuralGrok's code logs it. One value per labelled split, so there is no standard error.

The gradient comes from `torch.autograd.grad`, summed over batches: the parameters' `.grad` fields are never
written, whatever they held before, and the model stays in eval mode.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .accuracy import accuracy_values
from .batching import chunks
from .weights import floating_parameters, norm_and_entropy


@contextlib.contextmanager
def _differentiable(parameters: list[torch.nn.Parameter]):
    """Every parameter requires grad inside the block; frozen ones are frozen again after it."""
    frozen = [p for p in parameters if not p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(True)
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


def mean_loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """The gradient of the mean loss over all points, one float64 tensor per floating-point parameter, summed
    over batches of `batch` points.

    >>> net = nn.Linear(1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.fill_(2.0)
    >>> mean_loss_gradient(net, torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 0.0]), batch=1)
    [tensor([[20.]], dtype=torch.float64)]
    """
    parameters = floating_parameters(model)
    total = [torch.zeros_like(p, dtype=torch.float64) for p in parameters]
    with _differentiable(parameters), torch.enable_grad():
        for s in chunks(len(x), batch):
            outputs = model(x[s]).reshape(s.stop - s.start, -1)
            loss = accuracy_values(outputs, y[s])["loss"].sum() / len(x)
            grads = torch.autograd.grad(loss, parameters, allow_unused=True)
            for acc, grad in zip(total, grads):
                if grad is not None:
                    acc += grad.to(torch.float64)
    return total


def gradient_values(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> dict[str, float]:
    """`grad_norm` and `grad_entropy` of the gradient of the mean loss over the points (x, y).

    >>> net = nn.Linear(1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.fill_(1.0)
    >>> gradient_values(net, torch.tensor([[1.0]]), torch.tensor([0.5]), batch=8)
    {'grad_norm': 1.0, 'grad_entropy': 0.0}
    """
    norm, entropy = norm_and_entropy(mean_loss_gradient(model, x, y, batch))
    return {"grad_norm": norm, "grad_entropy": entropy}
