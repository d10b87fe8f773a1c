"""The metrics engine: every metric column of one split of probe points, batched, on the points' device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..columns import GROUP_COLUMNS, GROUPS
from ..errors import ModelError, ProbeError
from .accuracy import accuracy_values
from .batching import batch_size_for, chunks
from .centroid import centroid_values
from .jacobian import DEFAULT_MAX_OUTPUTS, DEFAULT_SKETCH_SIZE, jacobian_values, sketch_matrix
from .local_complexity import count_activations, local_complexity, make_frame

__all__ = ["MetricOptions", "compute_split_metrics", "make_frame", "GROUPS", "GROUP_COLUMNS"]


@dataclass(frozen=True)
class MetricOptions:
    """What to compute and how: metric groups, LC polytope, Jacobian sketch threshold, seed, batch size."""

    groups: tuple[str, ...] = GROUPS
    lc_directions: int = 25
    lc_radius: float = 0.05  # absolute L2 radius (the CLI resolves relative ones)
    jacobian_max_outputs: int = DEFAULT_MAX_OUTPUTS
    jacobian_sketch_size: int = DEFAULT_SKETCH_SIZE
    seed: int = 0
    batch_size: int | None = None  # points per batch; None sizes batches from the device's memory


def _summary(values: torch.Tensor) -> tuple[float, float | None]:
    values = values.double()
    n = len(values)
    se = float(values.std(unbiased=True) / n**0.5) if n > 1 else None
    return float(values.mean()), se


def _forward(model: nn.Module, x: torch.Tensor, size: int) -> torch.Tensor:
    with torch.inference_mode():
        outputs = torch.cat([model(x[a:b]).reshape(b - a, -1) for a, b in chunks(len(x), size)])
    if not torch.isfinite(outputs).all():
        raise ModelError("the network's outputs are NaN or infinite on the probe points at these weights")
    return outputs


def compute_split_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, *,
                          options: MetricOptions, frame: torch.Tensor | None) -> dict[str, float | list[float] | None]:
    """Every requested metric column and its `_se` for one split: the mean over points and its standard error.

    `model` is in eval mode on the device and dtype of `x`; `y` holds class indices, float targets or None.
    Columns of groups not requested are absent; accuracy columns are None without labels.
    """
    if len(x) == 0:
        raise ProbeError("a probe split has no points")
    elem = x.element_size()
    point = x[0].numel()
    neurons = count_activations(model, x)
    outputs = _forward(model, x, batch_size_for(4 * elem * (point + neurons), x.device, options.batch_size))
    per_point: dict[str, torch.Tensor] = {}
    result: dict[str, float | list[float] | None] = {}

    if "accuracy" in options.groups:
        result.update({"accuracy": None, "accuracy_se": None, "loss": None, "loss_se": None})
        if y is not None:
            per_point.update(accuracy_values(outputs, y))
    if "centroid" in options.groups:
        size = batch_size_for(6 * elem * (point + neurons), x.device, options.batch_size)
        parts = [centroid_values(model, x[a:b]) for a, b in chunks(len(x), size)]
        per_point.update({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    if "jacobian" in options.groups:
        k = outputs.shape[1]
        sketch = None
        if k > options.jacobian_max_outputs:
            sketch = sketch_matrix(k, options.jacobian_sketch_size, options.seed, dtype=x.dtype, device=x.device)
        rows = k if sketch is None else len(sketch)
        size = batch_size_for(3 * elem * rows * (point + neurons + k), x.device, options.batch_size)
        parts = [jacobian_values(model, x[a:b], sketch) for a, b in chunks(len(x), size)]
        per_point.update({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    if "lc" in options.groups:
        if frame is None:
            raise ValueError("local complexity needs the run's frame (make_frame)")
        vertices = 2 * len(frame)
        size = batch_size_for(vertices * elem * 2 * (point + neurons), x.device, options.batch_size)
        counts = torch.cat([local_complexity(model, x[a:b], frame, options.lc_radius) for a, b in chunks(len(x), size)])
        per_point["lc"] = counts.sum(dim=1)
        layers = [_summary(counts[:, i]) for i in range(counts.shape[1])]
        result["lc_layers"] = [mean for mean, _ in layers]
        result["lc_layers_se"] = [se for _, se in layers] if len(x) > 1 else None

    for name, values in per_point.items():
        if not torch.isfinite(values).all():
            raise ModelError(f"{name} is NaN or infinite on the probe points at these weights")
        result[name], result[f"{name}_se"] = _summary(values)
    return result
