"""How many points go through the network at once: sized from the device's free memory."""

from __future__ import annotations

import torch

CPU_BUDGET_BYTES = 256 * 2**20  # activations per batch on the CPU
CUDA_BUDGET_FRACTION = 0.25  # of the free GPU memory
MAX_BATCH = 65536


def memory_budget(device: torch.device) -> int:
    """Bytes one batch may use: a quarter of the free GPU memory, or a fixed 256 MB on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_BUDGET_FRACTION)
    return CPU_BUDGET_BYTES


def batch_size_for(bytes_per_item: int, device: torch.device, override: int | None = None) -> int:
    """Items per batch so that a batch fits the budget (`override` when the caller fixes it).

    >>> batch_size_for(2**20, torch.device("cpu"))
    256
    """
    if override is not None:
        return max(1, int(override))
    return int(max(1, min(MAX_BATCH, memory_budget(device) // max(1, bytes_per_item))))


def chunks(n: int, size: int):
    """(start, stop) pairs covering range(n) in steps of `size`.

    >>> list(chunks(5, 2))
    [(0, 2), (2, 4), (4, 5)]
    """
    for start in range(0, n, size):
        yield start, min(n, start + size)
