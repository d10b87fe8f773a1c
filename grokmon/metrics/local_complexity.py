"""Local complexity (Humayun, Balestriero & Baraniuk, "Deep Networks Always Grok").

Around each point x, the 2P vertices x ± r·v_p of a cross-polytope (v_p: one seeded orthonormal frame for the
whole run) go through the network. For every pre-activation that feeds a nonlinearity, a neuron counts when
its sign (> 0 versus <= 0) is not the same on all 2P vertices; counts are summed per layer. Conv layers count
every (channel, position). Only the per-point counts are kept, never the activations.

Nonlinearities are caught by a TorchFunctionMode, so activations called as functions (`F.relu(x)`,
`torch.relu(x)`, `x.relu()`) count as well as modules (`nn.ReLU` calls `F.relu`). Layers are numbered in call
order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError, ModelError

NONLINEARITIES = frozenset({
    F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
    F.leaky_relu, F.leaky_relu_, F.gelu, F.silu, F.elu, F.elu_, F.selu, F.celu, F.mish, F.softplus,
    F.hardtanh, F.hardtanh_, F.relu6, F.hardswish, F.hardsigmoid, F.prelu, F.rrelu, F.logsigmoid,
    torch.tanh, torch.Tensor.tanh, torch.sigmoid, torch.Tensor.sigmoid, F.tanh, F.sigmoid,
})


class _SignChanges(TorchFunctionMode):
    """Counts, per nonlinearity call, the neurons whose input sign differs across each point's vertices."""

    def __init__(self, vertices_per_point: int):
        super().__init__()
        self.vertices = vertices_per_point
        self.counts: list[torch.Tensor] = []
        self.sizes: list[int] = []  # neurons per layer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in NONLINEARITIES and args and isinstance(args[0], torch.Tensor):
            pre = args[0]
            self.sizes.append(pre[0].numel())
            positive = (pre > 0).reshape(-1, self.vertices, pre[0].numel())
            changed = positive.any(dim=1) & ~positive.all(dim=1)
            self.counts.append(changed.sum(dim=1))
        return func(*args, **(kwargs or {}))


def make_frame(dim: int, directions: int, seed: int, *, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """P x D matrix of orthonormal rows, seeded: the one frame reused for every point and checkpoint.

    >>> frame = make_frame(5, 3, seed=0, dtype=torch.float64)
    >>> torch.allclose(frame @ frame.T, torch.eye(3, dtype=torch.float64))
    True
    """
    if directions < 1 or directions > dim:
        raise ConfigError(f"Expected --lc-directions to be between 1 and the input dimension {dim}, but got {directions}")
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dim, directions, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(gaussian)
    return q.T.contiguous().to(dtype=dtype, device=device)


def vertices(x: torch.Tensor, frame: torch.Tensor, radius: float) -> torch.Tensor:
    """The 2P vertices x ± r·v_p of every point, as (N·2P, *input shape), point by point."""
    offsets = radius * torch.cat([frame, -frame]).to(x)
    flat = x.reshape(len(x), 1, -1) + offsets[None]
    return flat.reshape(-1, *x.shape[1:])


def local_complexity(model: nn.Module, x: torch.Tensor, frame: torch.Tensor, radius: float) -> torch.Tensor:
    """Per-point, per-layer counts of neurons whose pre-activation sign changes: (N, layers), int64.

    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> local_complexity(net, torch.zeros(4, 2), make_frame(2, 2, seed=0), 0.1).shape
    torch.Size([4, 1])
    """
    mode = _SignChanges(2 * len(frame))
    with torch.inference_mode(), mode:
        model(vertices(x, frame, radius))
    if not mode.counts:
        return torch.zeros(len(x), 0, dtype=torch.long, device=x.device)
    return torch.stack(mode.counts, dim=1)


def count_activations(model: nn.Module, x: torch.Tensor) -> int:
    """Elements entering nonlinearities for one input: sizes the LC and Jacobian batches."""
    mode = _SignChanges(1)
    with torch.inference_mode(), mode:
        model(x[:1])
    return sum(mode.sizes)


def check_layers(counts: list[torch.Tensor]) -> None:
    """The same number of nonlinearity calls in every batch, or the model branches on its input."""
    if len({c.shape[1] for c in counts}) > 1:
        raise ModelError("the model called a different number of activations on different batches; "
                         "local complexity needs a fixed network")
