"""How many points go through the network at once: the one cost model of the metrics engine.

The size of a batch is `budget // bytes_per_point`, where the budget is a quarter of the free GPU memory
(CUDA) or a fixed 64 MiB (CPU, where bigger batches fall out of the caches and are no faster), and the
bytes per point come from one probe forward pass that adds up the elements of every intermediate tensor
(`activation_elements`). Each metric multiplies that by what it keeps alive (`plan_batches`): a backward
pass for the centroid, a row of cotangents per output for the Jacobian, 2P vertices for local complexity.
The estimate is deliberately simple; results never depend on the batch size, only speed and peak memory do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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


@dataclass(frozen=True)
class BatchPlan:
    """Points per batch for each metric group that differentiates or perturbs, and cotangents per vmapped pass
    of the Jacobian (None: all). A plain forward pass takes `batch_size(point_bytes, ...)` points; `backward`
    is for one forward and one backward pass (centroids, each PGD step, the parameter gradient)."""

    backward: int
    jacobian: int
    jacobian_chunk: int | None
    lc: int


def plan_batches(point_bytes: int, input_elements: int, jacobian_rows: int, lc_vertices: int,
                 device: torch.device | str, override: int | None = None) -> BatchPlan:
    """Batch sizes from what each metric keeps alive per point (`point_bytes`: input and activations).

    Centroids, PGD steps and parameter gradients: a forward and a backward pass. Jacobian: a forward pass,
    `jacobian_rows` backward passes at once (K outputs, or the sketch's columns and rows) and the float64
    Jacobian with its Gram matrix; when even one point's rows do not fit the budget they go through in chunks.
    Local complexity: `lc_vertices` forward passes.

    >>> plan_batches(1024, 16, 10, 50, "cpu")
    BatchPlan(backward=21845, jacobian=4161, jacobian_chunk=None, lc=1310)
    """
    budget = memory_budget(device)
    jacobian_bytes = point_bytes * (2 + jacobian_rows) + 24 * jacobian_rows * input_elements
    chunk = max(1, budget // max(1, 2 * point_bytes)) if point_bytes * jacobian_rows > budget else None
    return BatchPlan(
        backward=batch_size(3 * point_bytes, device, override),
        jacobian=batch_size(jacobian_bytes, device, override),
        jacobian_chunk=chunk,
        lc=batch_size(lc_vertices * point_bytes, device, override),
    )


def exact_jacobian_points(points: int, sketch_rows: int, outputs: int) -> int:
    """Points per pass of the exact Jacobian standing in for the sketch (a model with no forward mode): as many
    as keep its K rows per point within the memory the sketch's rows would have taken.

    >>> exact_jacobian_points(512, 256, 50257)
    2
    """
    return max(1, points * sketch_rows // outputs)
