"""Local complexity (Humayun, Balestriero & Baraniuk, "Deep Networks Always Grok", ICML 2024).

Around each point x, the 2P vertices x ± r·v_p of a cross-polytope (v_p: the rows of one seeded orthonormal
frame, reused for every point and checkpoint) go through the network in large batches. For every tensor
that enters a nonlinearity, a neuron counts when its sign is not the same on all 2P vertices of the point,
sign meaning > 0 versus <= 0 (the breakpoint of ReLU; for smooth activations, the zero crossing of the
pre-activation). Activations that bend elsewhere count a neuron whose pre-activation crosses any of their
breakpoints: hardtanh at min_val and max_val (-1, 1; ReLU6 is hardtanh(0, 6)), relu6 at 0 and 6, hardsigmoid
and hardswish at -3 and 3. Counts are summed per layer; `lc` is their sum over layers. Conv layers count every
(channel, position); a transformer block every (token, feature). Only the per-point counts are kept: each
pre-activation is reduced to its min and max over the vertices on the spot and then freed.

Nonlinearities are caught by a `TorchFunctionMode`, so activations called as functions (`F.relu(x)`,
`torch.relu(x)`, `x.relu()`, `F.gelu`, ...) count as well as modules (`nn.ReLU.forward` calls `F.relu`).
While the mode handles one call it is switched off, so `F.relu` calling `torch.relu` inside is one layer,
not two. A "layer" is one call of a nonlinearity, numbered in call order (network order for a feed-forward
network). The first dimension of a pre-activation must be the vertex batch or a multiple of it, in
batch-major order (tokens folded into the batch, (B·T, d), count as (B, T·d)); calls on other tensors (a
gate computed from a parameter, say) are ignored. The mode is thread-local: other threads are not seen.

Caught (by name, so the module, functional and tensor-method forms are all one entry): relu, leaky_relu,
rrelu, prelu, relu6/hardtanh, elu, selu, celu, gelu, silu, mish, softplus, hardswish, hardsigmoid, sigmoid
(expit), tanh, log_sigmoid, softsign, tanhshrink. Not counted: softmax, normalisation layers, max-pooling,
clamp, maximum, where and other piecewise-linear ops that are not activation functions (a network whose only
nonlinearity is `h.clamp(min=0)` has no layers here and LC 0: write it as `F.relu(h)`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError

NONLINEARITIES = frozenset({
    "relu", "relu_", "leaky_relu", "leaky_relu_", "rrelu", "rrelu_", "prelu", "relu6", "hardtanh", "hardtanh_",
    "elu", "elu_", "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "softplus", "hardswish",
    "hardsigmoid", "sigmoid", "sigmoid_", "expit", "tanh", "tanh_", "log_sigmoid", "logsigmoid", "softsign",
    "tanhshrink",
})


def _breakpoints(name: str, args: tuple, kwargs: dict) -> tuple[float, ...]:
    """Where the activation bends: 0, unless it is one of the hard, clipped ones."""
    if name.startswith("hardtanh"):
        low = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
        high = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
        return (float(low), float(high))
    if name == "relu6":
        return (0.0, 6.0)
    if name in ("hardsigmoid", "hardswish"):
        return (-3.0, 3.0)
    return (0.0,)


class _SignChanges(TorchFunctionMode):
    """Per nonlinearity call: how many neurons of each point change sign across its vertices."""

    def __init__(self, points: int, vertices_per_point: int):
        super().__init__()
        self.points, self.vertices = points, vertices_per_point
        self.counts: list[torch.Tensor] = []  # one (points,) int64 tensor per layer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", None)
        if name in NONLINEARITIES and args:
            pre = args[0]
            if (isinstance(pre, torch.Tensor) and pre.is_floating_point() and pre.dim() > 0
                    and pre.shape[0] % (self.points * self.vertices) == 0):
                grouped = pre.detach().reshape(self.points, self.vertices, -1)
                low, high = grouped.amin(dim=1), grouped.amax(dim=1)  # faster than aminmax on CPUs
                crossed = torch.zeros_like(low, dtype=torch.bool)
                for bend in _breakpoints(name, args, kwargs or {}):
                    crossed |= (high > bend) & (low <= bend)
                self.counts.append(crossed.sum(dim=1))
        return func(*args, **(kwargs or {}))


def make_frame(dim: int, directions: int, seed: int, *, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """P x D matrix of orthonormal rows, seeded: the one frame reused for every point and checkpoint.

    Drawn on the CPU in float64 (a Gaussian D x P matrix, QR, signs fixed so that R has a positive diagonal),
    then cast and moved, so the same seed gives the same frame on every device.

    >>> frame = make_frame(5, 3, seed=0, dtype=torch.float64)
    >>> torch.allclose(frame @ frame.T, torch.eye(3, dtype=torch.float64))
    True
    """
    if isinstance(directions, bool) or not isinstance(directions, int) or not 1 <= directions <= dim:
        raise ConfigError(f"Expected --lc-directions to be between 1 and the input dimension {dim}, "
                          f"but got {directions!r}")
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dim, directions, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(directions, dtype=torch.float64))
    return q.T.contiguous().to(dtype=dtype, device=device)


def vertices(x: torch.Tensor, frame: torch.Tensor, radius: float) -> torch.Tensor:
    """The 2P vertices x + r·v_1 .. x + r·v_P, x - r·v_1 .. x - r·v_P of every point, point by point:
    (N·2P, *input shape).

    >>> vertices(torch.ones(1, 2), torch.eye(2), 0.5).tolist()
    [[1.5, 1.0], [1.0, 1.5], [0.5, 1.0], [1.0, 0.5]]
    """
    offsets = radius * torch.cat([frame, -frame]).to(x)
    flat = x.reshape(len(x), 1, -1) + offsets[None]
    return flat.reshape(-1, *x.shape[1:])


def local_complexity(model: nn.Module, x: torch.Tensor, frame: torch.Tensor, radius: float) -> torch.Tensor:
    """Per-point, per-layer counts of neurons whose pre-activation sign changes across the point's vertices:
    (N, layers) int64, layers in call order.

    Two neurons reading the two coordinates: around (0.05, 1) at radius 0.1 only the first one's sign changes.

    >>> net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU())
    >>> _ = net[0].weight.data.copy_(torch.eye(2))
    >>> local_complexity(net, torch.tensor([[0.05, 1.0], [1.0, 1.0]]), torch.eye(2), 0.1).tolist()
    [[1], [0]]
    """
    mode = _SignChanges(len(x), 2 * len(frame))
    with torch.inference_mode(), mode:
        model(vertices(x, frame, radius))
    if not mode.counts:
        return torch.zeros(len(x), 0, dtype=torch.long, device=x.device)
    return torch.stack(mode.counts, dim=1)
