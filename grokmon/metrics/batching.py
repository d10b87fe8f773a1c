"""How many points go through the network at once: sized from the device's memory, or fixed by the caller.

The size of a batch is `budget // bytes_per_point`, where the budget is a quarter of the free GPU memory
(CUDA) or a fixed 64 MiB (CPU, where bigger batches fall out of the caches and are no faster), and the
bytes per point come from one probe forward pass that adds up the elements of every intermediate tensor
(`activation_elements`). Each metric multiplies that by what it keeps alive: a backward pass, K cotangents
for the Jacobian, 2P vertices for local complexity. The estimate is deliberately simple; results never
depend on the batch size, only speed and peak memory do.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

CPU_BUDGET_BYTES = 64 * 2**20  # per batch on the CPU: larger batches only fall out of the caches
CUDA_BUDGET_FRACTION = 0.25  # of the free GPU memory
MAX_BATCH = 65536  # points per batch, whatever the budget


def memory_budget(device: torch.device | str) -> int:
    """Bytes one batch may use: a quarter of the free GPU memory, or a fixed 64 MiB on the CPU.

    >>> memory_budget("cpu") // 2**20
    64
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_BUDGET_FRACTION)
    return CPU_BUDGET_BYTES


def batch_size(bytes_per_point: int, device: torch.device | str, override: int | None = None) -> int:
    """Points per batch so that a batch fits the budget; `override` (the caller's fixed size) wins.

    >>> batch_size(2**20, "cpu"), batch_size(2**20, "cpu", override=7)
    (64, 7)
    """
    if override is not None:
        return max(1, int(override))
    return int(max(1, min(MAX_BATCH, memory_budget(device) // max(1, int(bytes_per_point)))))


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of `size` items covering range(n).

    >>> [(s.start, s.stop) for s in chunks(5, 2)]
    [(0, 2), (2, 4), (4, 5)]
    """
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class _ElementCounter(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        self.elements += sum(t.numel() for t in outputs if isinstance(t, torch.Tensor))
        return result


def activation_elements(model: nn.Module, x: torch.Tensor) -> int:
    """Elements of all intermediate tensors of one forward pass of the first point (an upper bound on what
    a forward pass keeps alive per point).

    >>> activation_elements(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), torch.zeros(2, 3))
    8
    """
    first, counter = x[:1], _ElementCounter()
    with torch.inference_mode(), counter:
        model(first)
    return counter.elements
