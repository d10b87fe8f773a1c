"""Input-Jacobian spectrum: effective rank, top-direction share and Frobenius norm of J(x) (K x D).

Exact Jacobians (K <= `max_outputs`): one forward pass over the batch with `torch.func.vjp`, then the
pull-back is `vmap`-ed over the K one-hot cotangents, so row k of every point's Jacobian comes out of one
batched backward pass (points do not interact in eval mode). `chunk_size` bounds how many cotangents go
through at once; the result does not depend on it. `vmap` over points of `jacrev(functional_call(...))`
runs the model on batches of one under `vmap`; this runs the model's own batched forward pass, so any forward
code works (the two are compared in benchmarks/README.md).

Many outputs (K > `max_outputs`, default 256) from few inputs (D <= `sketch_size`): the exact Jacobian from D
forward-mode products (`forward_jacobians`), cheaper than K backward ones and than the sketch below, which
would be exact there anyway.

Many outputs from many inputs (e.g. an autoencoder or a wide regression head): a randomized
range finder (Halko, Martinsson & Tropp 2011) with m = `sketch_size` (default 128) columns, costing m
forward-mode plus m reverse-mode products instead of K. With a seeded Gaussian Omega (D x m, the same for
every point and checkpoint): Y = J Omega, Q = orth(Y) (K x m per point), B = Q^T J; the metrics are those
of B. B has exactly the singular values of J whenever rank J <= m (always when D <= m; a bottleneck
narrower than m), and otherwise the top of the spectrum: ||B||_F <= ||J||_F and the effective rank is at
most m (its error against the exact spectrum is measured in benchmarks/README.md and bounded in
tests/test_metrics_jacobian.py; raise `jacobian_max_outputs` for exact spectra).
Attention runs through its plain-math kernel (the fused ones have no forward mode); a model with another
operation that lacks forward mode gets the exact Jacobian instead, a few points at a time (slower, not wrong).

Singular values come from the eigenvalues of the smaller Gram matrix J J^T or J^T J, formed in float64
(several times faster than a batched SVD on a CPU). Eigenvalues below
lambda_1 * max(max(K, D) * eps64, (max(K, D) * eps)^2) (eps of the Jacobian's dtype) are rounding noise of
a rank-deficient Jacobian and count as 0, the rule of `numpy.linalg.matrix_rank` on the squared scale.

Effective rank (Roy & Vetterli 2007): exp(-sum p_i log p_i), p_i = s_i / sum s_j, with 0 log 0 = 0;
1 for a rank-one Jacobian. `jacobian_pc1` = s_1^2 / sum s_i^2. A zero Jacobian (a dead network at x) has
effective rank 0, pc1 0 and norm 0.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn
from torch.func import jvp, vjp, vmap

from .batching import chunks, exact_jacobian_points
from .embedded import for_points

DEFAULT_MAX_OUTPUTS = 256
DEFAULT_SKETCH_SIZE = 128


def _flat(model: nn.Module):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x).reshape(len(x), -1)

    return forward


def input_jacobians(model: nn.Module, x: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    """J(x) for every point of the batch, (N, K, D), from one forward and one vmapped backward pass.

    >>> net = nn.Linear(3, 2)
    >>> torch.equal(input_jacobians(net, torch.zeros(5, 3))[4], net.weight.detach())
    True
    """
    x = x.detach()
    with torch.enable_grad(), _math_attention():
        out, pullback = vjp(_flat(model), x)
        k = out.shape[1]
        eye = torch.eye(k, dtype=out.dtype, device=out.device)
        # Cotangent k is the one-hot e_k for every point: (K, N, K).
        (rows,) = vmap(pullback, chunk_size=chunk_size)(eye[:, None, :].expand(-1, len(x), -1))
    return rows.reshape(k, len(x), -1).transpose(0, 1).detach()


def _pushforward(model: nn.Module, x: torch.Tensor, tangents: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """J(x_i) t for every tangent t and point i, (T, N, K), from vmapped forward-mode products.

    `tangents` is (T, N, *input shape). Raises NotImplementedError when an operation of the model has no
    forward-mode derivative."""
    forward = _flat(model)
    with torch.enable_grad(), _math_attention(), warnings.catch_warnings():
        # torch's forward-AD set-up still scripts a few decompositions
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=DeprecationWarning)
        return vmap(lambda t: jvp(forward, (x,), (t,))[1], chunk_size=chunk_size)(tangents)


def forward_jacobians(model: nn.Module, x: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    """J(x) for every point, (N, K, D), from D forward-mode products: cheaper than K backward ones when the
    outputs outnumber the input dimensions. Raises NotImplementedError like `_pushforward`.

    >>> net = nn.Linear(2, 300)
    >>> torch.equal(forward_jacobians(net, torch.zeros(1, 2))[0], net.weight.detach())
    True
    """
    x = x.detach()
    d = x[0].numel()
    basis = torch.eye(d, dtype=x.dtype, device=x.device).reshape(d, 1, *x.shape[1:]).expand(-1, *x.shape)
    return _pushforward(model, x, basis, chunk_size).permute(1, 2, 0).detach()


def _omega(x: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """The seeded Gaussian test matrix, one tangent per column, in the input's shape: (m, *input shape)."""
    generator = torch.Generator().manual_seed(seed)
    omega = torch.randn(size, *x.shape[1:], generator=generator, dtype=torch.float64)
    return omega.to(dtype=x.dtype, device=x.device)


def _math_attention() -> contextlib.AbstractContextManager:
    """Attention through its plain-math kernel: the fused kernels have no forward-mode derivative."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def sketched_jacobians(model: nn.Module, x: torch.Tensor, size: int, seed: int, *,
                       chunk_size: int | None = None) -> torch.Tensor:
    """B = Q^T J(x) for every point, (N, min(m, K), D): the range-finder sketch used for many outputs.

    Raises NotImplementedError when an operation of the model has no forward-mode derivative.

    >>> net = nn.Linear(4, 300, bias=False)
    >>> b = sketched_jacobians(net, torch.zeros(2, 4), size=8, seed=0)
    >>> torch.allclose(torch.linalg.svdvals(b[0]), torch.linalg.svdvals(net.weight.detach()), atol=1e-4)
    True
    """
    x = x.detach()
    tangents = _omega(x, size, seed)[:, None].expand(-1, *x.shape)  # (m, N, *input shape), the same for every point
    y = _pushforward(model, x, tangents, chunk_size)  # (m, N, K)
    with torch.enable_grad(), _math_attention():
        q = torch.linalg.qr(y.permute(1, 2, 0)).Q  # (N, K, m')
        _, pullback = vjp(_flat(model), x)
        (rows,) = vmap(pullback, chunk_size=chunk_size)(q.permute(2, 0, 1))  # (m', N, *input shape)
    return rows.reshape(q.shape[2], len(x), -1).transpose(0, 1).detach()


def singular_values(jacobians: torch.Tensor) -> torch.Tensor:
    """Singular values of each (K, D) matrix in descending order, float64, (N, min(K, D)).

    >>> singular_values(torch.tensor([[[3.0, 0.0], [0.0, 4.0]]]))
    tensor([[4., 3.]], dtype=torch.float64)
    """
    k, d = jacobians.shape[-2:]
    j = jacobians.to(torch.float64)
    gram = j @ j.mT if k <= d else j.mT @ j
    eig = torch.linalg.eigvalsh(gram).flip(-1).clamp_min(0)
    n = max(k, d)
    relative = max(n * torch.finfo(torch.float64).eps, (n * torch.finfo(jacobians.dtype).eps) ** 2)
    eig = torch.where(eig > eig[..., :1] * relative, eig, torch.zeros_like(eig))
    return eig.sqrt()


def spectrum_values(singular: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-point effective rank, s1^2 / sum s^2 and Frobenius norm from descending singular values (N, r).

    >>> values = spectrum_values(torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 1.0]]))
    >>> [v.tolist() for v in values.values()]
    [[0.0, 1.0, 2.0], [0.0, 1.0, 0.5], [0.0, 3.0, 1.4142135381698608]]
    """
    s = singular.clamp_min(0)
    total = s.sum(dim=1, keepdim=True)
    zero = total.squeeze(1) == 0
    p = s / torch.where(total > 0, total, 1.0)
    entropy = -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(dim=1)
    erank = torch.where(zero, torch.zeros_like(entropy), entropy.exp())
    energy = s.square().sum(dim=1)
    pc1 = torch.where(zero, torch.zeros_like(energy), s[:, 0].square() / torch.where(zero, 1.0, energy))
    return {"jacobian_erank": erank, "jacobian_pc1": pc1, "jacobian_fro": energy.sqrt()}


def jacobian_values(model: nn.Module, x: torch.Tensor, *, max_outputs: int = DEFAULT_MAX_OUTPUTS,
                    sketch_size: int = DEFAULT_SKETCH_SIZE, seed: int = 0,
                    chunk_size: int | None = None) -> dict[str, torch.Tensor]:
    """Spectrum metrics of J(x) for every point (float64, (N,) each); of the sketch when K > max_outputs.

    >>> jacobian_values(nn.Linear(3, 1), torch.zeros(2, 3))["jacobian_erank"]
    tensor([1., 1.], dtype=torch.float64)
    """
    with torch.no_grad():
        k = for_points(model, slice(0, 1))(x[:1]).numel()
    if k <= max_outputs:
        return spectrum_values(singular_values(input_jacobians(model, x, chunk_size=chunk_size)))
    try:
        if x[0].numel() <= sketch_size:  # the sketch would be exact, and dearer
            matrices = forward_jacobians(model, x, chunk_size=chunk_size)
        else:
            matrices = sketched_jacobians(model, x, sketch_size, seed, chunk_size=chunk_size)
    except NotImplementedError:  # no forward mode: exact, a few points at a time to hold the sketch's memory
        step = exact_jacobian_points(len(x), 2 * sketch_size, k)
        parts = [spectrum_values(singular_values(input_jacobians(for_points(model, s), x[s], chunk_size=chunk_size)))
                 for s in chunks(len(x), step)]
        return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}
    return spectrum_values(singular_values(matrices))
