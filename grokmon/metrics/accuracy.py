"""Accuracy and loss against the probe labels: cross-entropy for class indices, MSE for float targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def accuracy_values(outputs: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-point `accuracy` (argmax hit, only for class labels) and `loss`.

    >>> out = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> accuracy_values(out, torch.tensor([0, 0]))["accuracy"]
    tensor([1., 0.])
    """
    outputs = outputs.reshape(len(outputs), -1)
    if y.is_floating_point():
        target = y.reshape(len(y), -1).to(outputs)
        return {"loss": (outputs - target).square().mean(dim=1)}
    return {
        "accuracy": (outputs.argmax(dim=1) == y).to(outputs.dtype),
        "loss": F.cross_entropy(outputs, y, reduction="none"),
    }
