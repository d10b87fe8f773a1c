"""From per-point values to the table's columns: the mean over a split's points and its standard error."""

from __future__ import annotations

import math

import torch

from ..errors import ModelError


def mean_and_se(values: torch.Tensor) -> tuple[float, float | None]:
    """Mean and standard error (sample std with ddof=1, over sqrt(N)) of per-point values, as Python floats;
    the standard error is None for a single point.

    >>> mean_and_se(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    (2.5, 0.6454972243679028)
    >>> mean_and_se(torch.tensor([5.0]))
    (5.0, None)
    """
    values = values.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    n = len(values)
    if n == 0:
        raise ValueError("Expected at least one value to summarise, but got none")
    mean = float(values.mean())
    se = float(values.std(correction=1)) / math.sqrt(n) if n > 1 else None
    return mean, se


def summarize(per_point: dict[str, torch.Tensor]) -> dict[str, float | None]:
    """`{name: mean, name_se: se}` for every per-point metric; non-finite values are a ModelError.

    >>> summarize({"loss": torch.tensor([1.0, 3.0])})
    {'loss': 2.0, 'loss_se': 1.0}
    """
    result: dict[str, float | None] = {}
    for name, values in per_point.items():
        finite = torch.isfinite(values)
        if not finite.all():
            bad = int((~finite).sum())
            raise ModelError(f"{name} is non-finite (NaN or infinite) on {bad} of {len(values)} probe points "
                             "at these weights; check the checkpoint")
        result[name], result[f"{name}_se"] = mean_and_se(values)
    return result


def summarize_layers(counts: torch.Tensor) -> tuple[list[float], list[float] | None]:
    """Per-layer means and standard errors of an (N, layers) count matrix, as lists in layer order.

    >>> summarize_layers(torch.tensor([[1, 4], [3, 4]]))
    ([2.0, 4.0], [1.0, 0.0])
    """
    columns = [mean_and_se(counts[:, i]) for i in range(counts.shape[1])]
    means = [mean for mean, _ in columns]
    ses = [se for _, se in columns] if len(counts) > 1 else None
    return means, ses
