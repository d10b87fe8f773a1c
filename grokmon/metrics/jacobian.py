"""Input-Jacobian spectrum: effective rank, top-direction share and Frobenius norm of J(x) (K x D).

Jacobians come from one forward pass over a batch and a vector-Jacobian product per output, batched with
`torch.func.vmap` over the K cotangents. Above `max_outputs` outputs the spectrum is estimated from a random
sketch S·J (S: m x K Gaussian, entries N(0, 1/m), seeded): E‖S·J‖²_F = ‖J‖²_F, and the top singular values of
S·J approximate those of J; only m singular values are seen, so the effective rank is capped at m.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import vjp, vmap

DEFAULT_MAX_OUTPUTS = 256
DEFAULT_SKETCH_SIZE = 64


def _flat_outputs(model: nn.Module):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x).reshape(len(x), -1)

    return forward


def input_jacobians(model: nn.Module, x: torch.Tensor, cotangents: torch.Tensor | None = None) -> torch.Tensor:
    """J(x) for every point of the batch as (N, K, D); with `cotangents` (M, K), the rows C·J(x) as (N, M, D).

    >>> net = torch.nn.Linear(3, 2)
    >>> torch.equal(input_jacobians(net, torch.zeros(5, 3))[4], net.weight.detach())
    True
    """
    x = x.detach()
    with torch.enable_grad():
        out, pullback = vjp(_flat_outputs(model), x)
        k = out.shape[1]
        rows = torch.eye(k, dtype=out.dtype, device=out.device) if cotangents is None else cotangents.to(out)
        # One cotangent per row, the same for every point: (M, N, K).
        (grads,) = vmap(pullback)(rows[:, None, :].expand(-1, len(x), -1))
    return grads.reshape(len(rows), len(x), -1).transpose(0, 1).detach()


def sketch_matrix(outputs: int, size: int, seed: int, *, dtype, device) -> torch.Tensor:
    """The seeded Gaussian sketch S (size x outputs), entries N(0, 1/size)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(size, outputs, generator=generator, dtype=torch.float64) / size**0.5).to(dtype=dtype, device=device)


def spectrum_values(singular_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-point effective rank, s1²/Σs² and Frobenius norm from singular values (N, r).

    Effective rank (Roy & Vetterli): exp(-Σ p log p), p = s/Σs, with 0·log 0 = 0; a zero Jacobian has
    effective rank 0 and top share 0.

    >>> spectrum_values(torch.tensor([[2.0, 0.0], [1.0, 1.0]]))["jacobian_erank"]
    tensor([1., 2.])
    """
    s = singular_values.clamp_min(0)
    total = s.sum(dim=1, keepdim=True)
    zero = total.squeeze(1) == 0
    p = s / total.clamp_min(torch.finfo(s.dtype).tiny)
    entropy = -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(dim=1)
    erank = torch.where(zero, torch.zeros_like(entropy), entropy.exp())
    squares = s.square()
    energy = squares.sum(dim=1)
    pc1 = torch.where(zero, torch.zeros_like(energy), squares[:, 0] / energy.clamp_min(torch.finfo(s.dtype).tiny))
    return {"jacobian_erank": erank, "jacobian_pc1": pc1, "jacobian_fro": energy.sqrt()}


def jacobian_values(model: nn.Module, x: torch.Tensor, sketch: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Spectrum metrics of J(x) for every point; with `sketch` (m x K), of S·J(x) instead."""
    jacobians = input_jacobians(model, x, sketch)
    return spectrum_values(torch.linalg.svdvals(jacobians))
