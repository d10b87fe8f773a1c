"""Accuracy under attack and under noise (delayed robustness: Humayun et al. 2024; GrokAlign 2025), per point.

- `robust_accuracy`: accuracy at the end of an L-infinity PGD attack on each point (Madry et al. 2018) that
  maximises the loss grokmon reports for the labels (cross-entropy; binary cross-entropy of a single logit):
  `steps` signed-gradient steps of size 2.5·eps/steps, each followed by the projection back onto the box
  |x' - x|_inf <= eps. No random start, so the attack, and the column, are reproducible. The attack stays in
  the eps-box only: the input domain (pixel range, one-hot structure) is not known to grokmon, so it is not
  enforced.
- `noise_accuracy`: accuracy at x + sigma·z with z ~ N(0, I), one draw per point from a seeded generator, the
  same draw for every checkpoint (so a curve over training moves with the network, not with the noise).

Both are for class labels only; the engine gives null otherwise.
"""

from __future__ import annotations

import torch
from torch import nn

from .accuracy import accuracy_values

STEP_FACTOR = 2.5  # step size = STEP_FACTOR * eps / steps: the attack can cross the box and come back


def pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """The adversarial points of a batch after `steps` L-inf PGD steps from x itself (no random start).

    The loss of every point is summed before one reverse pass per step: in eval mode no point's output
    depends on another point's input, so row i of the gradient is the gradient of point i's own loss.

    >>> net = nn.Linear(2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.eye(2))
    >>> pgd_attack(net, torch.tensor([[1.0, 0.0]]), torch.tensor([0]), eps=0.25, steps=1)
    tensor([[0.7500, 0.2500]])
    """
    x = x.detach()
    if eps == 0 or steps == 0:
        return x.clone()
    size = STEP_FACTOR * eps / steps
    adversarial = x.clone()
    with torch.enable_grad():
        for _ in range(steps):
            adversarial.requires_grad_(True)
            outputs = model(adversarial).reshape(len(x), -1)
            loss = accuracy_values(outputs, y)["loss"].sum()
            (grad,) = torch.autograd.grad(loss, adversarial)
            with torch.no_grad():
                moved = adversarial + size * grad.sign()
                adversarial = torch.minimum(torch.maximum(moved, x - eps), x + eps)
    return adversarial.detach()


def gaussian_noise(shape: torch.Size | tuple[int, ...], sigma: float, seed: int, *, dtype: torch.dtype,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """sigma·z for a whole split of `shape` (points first), drawn at once in float64 on the CPU from `seed`:
    the same noise on every device and dtype, and whatever the batch size.

    >>> gaussian_noise((3, 2), 0.5, seed=0, dtype=torch.float32).shape
    torch.Size([3, 2])
    """
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    return (sigma * z).to(device=device, dtype=dtype)


def robustness_values(model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, *, eps: float,
                      steps: int) -> dict[str, torch.Tensor]:
    """Per-point `robust_accuracy` (PGD, see module docstring) and `noise_accuracy` (at x + noise) (N,) each.

    >>> net = nn.Linear(2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.eye(2))
    >>> x, y = torch.tensor([[1.0, 0.0], [1.0, 0.9]]), torch.tensor([0, 0])
    >>> values = robustness_values(net, x, y, torch.zeros(2, 2), eps=0.1, steps=2)
    >>> values["robust_accuracy"].tolist(), values["noise_accuracy"].tolist()
    ([1.0, 0.0], [1.0, 1.0])
    """
    adversarial = pgd_attack(model, x, y, eps, steps)
    with torch.no_grad():
        attacked = model(adversarial).reshape(len(x), -1)
        noisy = model(x + noise).reshape(len(x), -1)
    return {"robust_accuracy": accuracy_values(attacked, y)["accuracy"],
            "noise_accuracy": accuracy_values(noisy, y)["accuracy"]}
