"""The metrics engine: every metric column of one split of probe points, batched, on the points' device,
and the columns measured once per checkpoint.

One module per metric group (accuracy.py, centroid.py, jacobian.py, local_complexity.py, robustness.py,
gradient.py; weights.py and llc.py per checkpoint) computes the values; batching.py sizes the batches;
summary.py turns per-point values into a mean and its standard error. `compute_split_metrics` and
`compute_checkpoint_metrics` are the two entry points the rest of grokmon calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..columns import CONTINUOUS_INPUT_GROUPS, DEFAULT_GROUPS, METRIC_COLUMNS, METRIC_GROUPS
from ..errors import ConfigError, ModelError, ProbeError
from .accuracy import accuracy_values, chance_accuracy
from .batching import BatchPlan, activation_elements, batch_size, chunks, plan_batches
from .centroid import centroid_values
from .gradient import gradient_values
from .embedded import for_points
from .jacobian import DEFAULT_MAX_OUTPUTS, DEFAULT_SKETCH_SIZE, jacobian_values
from .llc import LLCSettings, llc_values, require_devinterp
from .local_complexity import local_complexity
from .robustness import gaussian_noise, robustness_values
from .summary import summarize, summarize_layers
from .weights import weight_values

__all__ = ["LLCSettings", "MetricOptions", "compute_checkpoint_metrics", "compute_split_metrics"]


@dataclass(frozen=True)
class MetricOptions:
    """What to compute and how.

    groups: metric groups to compute, a subset of METRIC_GROUPS (default: all but llc).
    lc_directions: P, the number of frame directions (2P vertices per point).
    lc_radius: the ABSOLUTE L2 radius of the polytope in input space (the caller resolves percentages).
    robust_eps, robust_steps: the ABSOLUTE L-inf radius of the PGD attack and its number of steps.
    noise_sigma: the ABSOLUTE standard deviation of the Gaussian input noise.
    llc: devinterp's sampler settings for the llc group.
    jacobian_max_outputs: above this many outputs K, the Jacobian spectrum comes from a randomized range
        finder of `jacobian_sketch_size` columns instead of the full K x D Jacobian (see jacobian.py).
    seed: seeds the sketch, the input noise and the SGLD chains (the LC frame is made by `make_frame`).
    batch_size: points per batch (LC: points, each with its 2P vertices); None sizes batches from the
        device's memory (batching.py). Results do not depend on it.
    """

    groups: tuple[str, ...] = DEFAULT_GROUPS
    lc_directions: int = 25
    lc_radius: float = 0.05
    robust_eps: float = 0.05
    robust_steps: int = 10
    noise_sigma: float = 0.1
    llc: LLCSettings = LLCSettings()
    jacobian_max_outputs: int = DEFAULT_MAX_OUTPUTS
    jacobian_sketch_size: int = DEFAULT_SKETCH_SIZE
    seed: int = 0
    batch_size: int | None = None


def _check_eval_mode(model: nn.Module) -> None:
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        listed = ", ".join(training[:3]) + (", ..." if len(training) > 3 else "")
        raise ModelError(f"Expected the model in eval mode, but {len(training)} modules are in training mode "
                         f"({listed}); call model.eval()")


def _check_distance(flag: str, value: object) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"Expected {flag} to resolve to a non-negative distance, but got {value!r}")


def _check_options(options: MetricOptions) -> None:
    unknown = [g for g in options.groups if g not in METRIC_GROUPS]
    if unknown:
        raise ConfigError(f"Expected metric groups from {', '.join(METRIC_GROUPS)}, but got {', '.join(map(str, unknown))}")
    for name in ("jacobian_max_outputs", "jacobian_sketch_size"):
        if getattr(options, name) < 1:
            raise ConfigError(f"Expected {name} to be a positive integer, but got {getattr(options, name)!r}")
    if options.batch_size is not None and options.batch_size < 1:
        raise ConfigError(f"Expected batch_size to be a positive integer or None, but got {options.batch_size!r}")
    if "robustness" in options.groups:
        _check_distance("--robust-eps", options.robust_eps)
        _check_distance("--noise-sigma", options.noise_sigma)
        steps = options.robust_steps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"Expected --robust-steps to be a positive integer, but got {options.robust_steps!r}")


def _check(model: nn.Module, x: torch.Tensor, options: MetricOptions, frame: torch.Tensor | None) -> None:
    _check_options(options)
    if len(x) == 0:
        raise ProbeError("Expected at least one probe point in the split, but got none")
    _check_eval_mode(model)
    continuous = set(CONTINUOUS_INPUT_GROUPS) & set(options.groups)
    if continuous and not x.is_floating_point():
        raise ProbeError(f"Expected floating-point probe inputs for the {'/'.join(sorted(continuous))} metrics, "
                         f"but got {x.dtype}; pass --metrics accuracy for integer inputs")
    if "lc" in options.groups:
        if not (isinstance(options.lc_radius, (int, float)) and math.isfinite(options.lc_radius)
                and options.lc_radius > 0):
            raise ConfigError(f"Expected --lc-radius to resolve to a positive distance, but got {options.lc_radius!r}")
        dim = x[0].numel()
        if frame is None or frame.dim() != 2 or frame.shape[1] != dim:
            shape = None if frame is None else tuple(frame.shape)
            raise ConfigError(f"Expected the LC frame to be a P x {dim} matrix from make_frame, but got {shape}")


def _outputs(model: nn.Module, x: torch.Tensor, size: int) -> torch.Tensor:
    """The network's outputs (N, K) in batches; non-finite outputs are a ModelError."""
    with torch.inference_mode():
        outputs = torch.cat([for_points(model, s)(x[s]).reshape(s.stop - s.start, -1) for s in chunks(len(x), size)])
    finite = torch.isfinite(outputs).all(dim=1)
    if not finite.all():
        raise ModelError(f"the network's outputs are non-finite (NaN or infinite) on {int((~finite).sum())} of "
                         f"{len(x)} probe points at these weights; check the checkpoint")
    return outputs.clone()


def _batched(fn, model: nn.Module, x: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """Apply a per-batch metric function `fn(model, batch)` and concatenate its per-point values."""
    parts = [fn(for_points(model, s), x[s]) for s in chunks(len(x), size)]
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def _lc_counts(model: nn.Module, x: torch.Tensor, frame: torch.Tensor, radius: float, size: int) -> torch.Tensor:
    frame = frame.to(device=x.device, dtype=x.dtype)
    parts = [local_complexity(for_points(model, s), x[s], frame, radius) for s in chunks(len(x), size)]
    if len({p.shape[1] for p in parts}) > 1:
        raise ModelError("the model called a different number of activation functions on different batches; "
                         "local complexity needs a network whose layers do not depend on the input")
    return torch.cat(parts)


def _class_labels(y: torch.Tensor | None) -> bool:
    return y is not None and not y.is_floating_point()


def _robustness(model, x, y, options, size) -> dict[str, torch.Tensor]:
    noise = gaussian_noise(x.shape, float(options.noise_sigma), options.seed, dtype=x.dtype, device=x.device)
    eps, steps = float(options.robust_eps), options.robust_steps
    parts = [robustness_values(for_points(model, s), x[s], y[s], noise[s], eps=eps, steps=steps)
             for s in chunks(len(x), size)]
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def _outputs_and_plan(model: nn.Module, x: torch.Tensor, options: MetricOptions,
                      frame: torch.Tensor | None) -> tuple[torch.Tensor, BatchPlan]:
    """The network's outputs on the split, and the batch sizes of every group (batching.py's cost model)."""
    point_bytes = x.element_size() * (x[0].numel() + activation_elements(for_points(model, slice(0, 1)), x))
    outputs = _outputs(model, x, batch_size(point_bytes, x.device, options.batch_size))
    k = outputs.shape[1]
    jacobian_rows = k if k <= options.jacobian_max_outputs else 2 * options.jacobian_sketch_size
    vertices = 2 * len(frame) if frame is not None else 0
    return outputs, plan_batches(point_bytes, x[0].numel(), jacobian_rows, vertices, x.device, options.batch_size)


def compute_split_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, *, options: MetricOptions,
                          frame: torch.Tensor | None) -> dict[str, float | list[float] | None]:
    """Every requested per-split metric column and its `_se` for one split of probe points.

    `model` is in eval mode on the device and dtype of `x` (N, *input shape); `y` is None, int class indices
    (N,) or float targets (N,) / (N, K). Each value is the mean over points as a Python float; `<metric>_se`
    is the sample std (ddof=1) over sqrt(N), None when N < 2. `lc_layers` / `lc_layers_se` are lists, one
    entry per layer in call order; `centroid_alignment_min` / `_max` are the extremes over the points and
    `lc_radius` the radius used (no `_se`). The accuracy and gradient groups give None without labels, accuracy
    and robustness None for float targets (loss is then the MSE). grad_norm and grad_entropy are one value for
    the split (no `_se`). Columns of groups not requested, and of the per-checkpoint groups
    (`compute_checkpoint_metrics`), are absent. A token model comes as an `AtEmbedding` with `x` its embedding's
    output; every batch gets the model bound to its points' tokens.

    A linear map's centroid is its summed rows, (3, 4) here, whatever the point:

    >>> net = nn.Linear(2, 1, bias=False).eval()
    >>> _ = net.weight.data.copy_(torch.tensor([[3.0, 4.0]]))
    >>> out = compute_split_metrics(net, torch.tensor([[3.0, 4.0], [4.0, -3.0]]), None,
    ...                             options=MetricOptions(groups=("centroid",)), frame=None)
    >>> out["centroid_alignment"], out["centroid_norm"], out["centroid_inner"], out["centroid_inner_se"]
    (0.5, 5.0, 12.5, 12.5)
    """
    _check(model, x, options, frame)
    groups = set(options.groups)
    outputs, plan = _outputs_and_plan(model, x, options, frame)
    per_point: dict[str, torch.Tensor] = {}
    result: dict[str, float | list[float] | None] = {}

    if "accuracy" in groups:
        result.update(dict.fromkeys(("accuracy", "accuracy_se", "loss", "loss_se", "chance_accuracy")))
        if y is not None:
            per_point.update(accuracy_values(outputs, y))
            if _class_labels(y) and len(y):
                result["chance_accuracy"] = chance_accuracy(y)
    if "centroid" in groups:
        per_point.update(_batched(centroid_values, model, x, plan.backward))
        alignment = per_point["centroid_alignment"]
        result["centroid_alignment_min"], result["centroid_alignment_max"] = (float(alignment.min()),
                                                                              float(alignment.max()))
    if "jacobian" in groups:
        per_point.update(_batched(lambda part, batch: jacobian_values(
            part, batch, max_outputs=options.jacobian_max_outputs, sketch_size=options.jacobian_sketch_size,
            seed=options.seed, chunk_size=plan.jacobian_chunk), model, x, plan.jacobian))
    if "lc" in groups:
        counts = _lc_counts(model, x, frame, float(options.lc_radius), plan.lc)
        per_point["lc"] = counts.sum(dim=1)
        result["lc_layers"], result["lc_layers_se"] = summarize_layers(counts)
        result["lc_radius"] = float(options.lc_radius)
    if "robustness" in groups:
        result.update(dict.fromkeys(("robust_accuracy", "robust_accuracy_se", "noise_accuracy", "noise_accuracy_se")))
        if _class_labels(y):
            per_point.update(_robustness(model, x, y, options, plan.backward))
    if "gradient" in groups:
        result.update(dict.fromkeys(("grad_norm", "grad_entropy")))
        if y is not None:
            result.update(gradient_values(model, x, y, plan.backward))

    result.update(summarize(per_point))
    return {name: result[name] for name in METRIC_COLUMNS if name in result}


def compute_checkpoint_metrics(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor | None] | None, *,
                               options: MetricOptions) -> dict[str, float | bool | None]:
    """The per-checkpoint columns of the requested groups: `weights` (no data) and `llc` (on the train split
    `train` = (x, y); None without labels). They stand on every split row of the checkpoint.

    >>> net = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[3.0, 4.0]]))
    >>> compute_checkpoint_metrics(net, None, options=MetricOptions(groups=("weights",)))  # doctest: +ELLIPSIS
    {'weight_norm': 5.0, 'weight_entropy': -8.841...}
    """
    _check_options(options)
    groups, result = set(options.groups), {}
    if "weights" in groups:
        result.update(weight_values(model))
    if "llc" in groups:
        require_devinterp()
        result.update(dict.fromkeys(("llc", "llc_se", "llc_chain_ok")))
        if train is not None and train[1] is not None:
            _check_eval_mode(model)
            result.update(llc_values(model, train[0], train[1], options.llc, options.seed))
    return {name: result[name] for name in METRIC_COLUMNS if name in result}
