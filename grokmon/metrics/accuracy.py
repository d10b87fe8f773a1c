"""Accuracy and loss against the probe labels, per point.

- Class indices (integer `y`, shape (N,)): accuracy = argmax hit, loss = cross-entropy of the logits.
  A network with a single output and labels in {0, 1} is a binary classifier: accuracy = (logit > 0) == y,
  loss = binary cross-entropy of the logit (the two-class cross-entropy).
- Float targets (`y` of shape (N,) or (N, K)): no accuracy, loss = mean squared error over the K outputs.
- `chance_accuracy(y)` (class labels, one value per split, not per point): the accuracy of always answering the
  split's most common label, the most a predictor that ignores its input scores; the phases read it as the start
  of a run trained from scratch whose step 0 is not in the table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ProbeError


def check_labels(y: torch.Tensor, outputs_per_point: int) -> None:
    """ProbeError unless `y` holds labels a network with `outputs_per_point` outputs can be scored on: class
    indices (N,) in range (two classes for a single logit), or float targets with one value per output.

    >>> check_labels(torch.tensor([0, 2]), 3)
    >>> check_labels(torch.tensor([0, 3]), 3)
    Traceback (most recent call last):
    ...
    grokmon.errors.ProbeError: Expected class labels in [0, 3) for a network with 3 output(s), but got labels from 0 to 3
    """
    k = outputs_per_point
    if y.is_floating_point():
        if y.reshape(len(y), -1).shape[1] != k:
            whole = y.dim() == 1 and k > 1 and bool((y == y.round()).all())  # class indices stored as floats
            classes = " (class labels must be integers: store y as torch.long)" if whole else ""
            raise ProbeError(f"Expected float targets with {k} value(s) per point to match the network's outputs, "
                             f"but got shape {tuple(y.shape)}{classes}")
        return
    if y.dim() != 1:
        raise ProbeError(f"Expected class labels of shape (N,), but got shape {tuple(y.shape)}")
    classes = 2 if k == 1 else k
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ProbeError(f"Expected class labels in [0, {classes}) for a network with {k} output(s), "
                         f"but got labels from {int(y.min())} to {int(y.max())}")


def chance_accuracy(y: torch.Tensor) -> float:
    """The share of the most common class label in `y` (class indices, N >= 1).

    >>> chance_accuracy(torch.tensor([1, 0, 1]))
    0.6666666666666666
    """
    return float(torch.bincount(y.long()).max()) / len(y)


def accuracy_values(outputs: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-point `accuracy` (class labels only) and `loss` from the network's outputs (N, K) and labels.

    >>> out = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> accuracy_values(out, torch.tensor([0, 0]))["accuracy"]
    tensor([1., 0.])
    >>> accuracy_values(out, torch.tensor([[2.0, 1.0], [0.0, 0.0]]))["loss"]
    tensor([0.5000, 0.5000])
    """
    outputs = outputs.reshape(len(outputs), -1)
    if len(y) != len(outputs):
        raise ProbeError(f"Expected one label per probe point ({len(outputs)}), but got {len(y)}")
    check_labels(y, outputs.shape[1])
    if y.is_floating_point():
        target = y.reshape(len(y), -1).to(outputs)
        return {"loss": (outputs - target).square().mean(dim=1)}
    y = y.to(device=outputs.device, dtype=torch.long)
    if outputs.shape[1] == 1:
        logit = outputs[:, 0]
        return {
            "accuracy": ((logit > 0).long() == y).to(outputs.dtype),
            "loss": F.binary_cross_entropy_with_logits(logit, y.to(outputs.dtype), reduction="none"),
        }
    return {
        "accuracy": (outputs.argmax(dim=1) == y).to(outputs.dtype),
        "loss": F.cross_entropy(outputs, y, reduction="none"),
    }
