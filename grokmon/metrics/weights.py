"""Data-free statistics of the weights (Omnigrok's weight norm; NeuralGrok's entropy of the weights).

Over all floating-point parameters of the model, flattened into one vector w:
`weight_norm` = ||w||_2 and `weight_entropy` = -sum_i |w_i| log |w_i| (with 0 log 0 = 0), unnormalised, as
NeuralGrok's code computes its absolute entropies. Buffers (BatchNorm statistics) are not parameters and are
left out. Sums run in float64 whatever the model's dtype.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def norm_and_entropy(tensors: Iterable[torch.Tensor]) -> tuple[float, float]:
    """(||v||_2, -sum |v| log |v|) of the concatenation v of `tensors`, in float64, without concatenating.

    >>> norm_and_entropy([torch.tensor([3.0, 0.0]), torch.tensor([-4.0])])  # doctest: +ELLIPSIS
    (5.0, -8.841...)
    """
    square, entropy = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for tensor in tensors:
        magnitude = tensor.detach().to(torch.float64).abs().reshape(-1)
        square = square + magnitude.square().sum().cpu()
        entropy = entropy - torch.xlogy(magnitude, magnitude).sum().cpu()
    return float(square.sqrt()), float(entropy)


def floating_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """The model's floating-point parameters, each once (shared ones are not counted twice)."""
    return [p for p in model.parameters() if p.is_floating_point()]


def weight_values(model: nn.Module) -> dict[str, float]:
    """`weight_norm` and `weight_entropy` of all floating-point parameters of the model.

    >>> net = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, 0.0]]))
    >>> weight_values(net)
    {'weight_norm': 1.0, 'weight_entropy': 0.0}
    """
    norm, entropy = norm_and_entropy(floating_parameters(model))
    return {"weight_norm": norm, "weight_entropy": entropy}
