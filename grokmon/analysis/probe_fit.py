"""How the probe data meets the model: integer inputs as token ids or numbers, and points and labels that fit.

Integer inputs are token ids when an embedding lookup consumes them (an `nn.Embedding`, `F.embedding`, or a
model that casts them back to ids itself before embedding them); otherwise they are numbers (pixels, counts)
and are measured like float inputs. A token model is measured on accuracy and loss alone, with no `random`
split: the geometric metrics and the input perturbations of robustness are defined on a continuous input
space (weights, gradient and llc are measured on token models too).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..columns import CONTINUOUS_INPUT_GROUPS
from ..errors import ConfigError, ProbeError, first_line
from ..inputs.config import AnalyzeConfig
from ..inputs.probes import ProbeSet, as_model_inputs
from ..metrics.accuracy import check_labels

# What a forward pass raises when the probe points do not fit the network (shapes, dtypes, indices).
FORWARD_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)


class _EmbeddingLookups(TorchFunctionMode):
    """Notes whether an embedding lookup ran on an integer tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) == "embedding" and args and isinstance(args[0], torch.Tensor):
            self.seen = self.seen or not args[0].is_floating_point()
        return func(*args, **(kwargs or {}))


def embeds_tokens(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the model reads the integer inputs `x` as token ids: an embedding lookup consumes them.

    >>> embeds_tokens(nn.Sequential(nn.Embedding(5, 2), nn.Flatten()), torch.tensor([[1, 2]]))
    True
    >>> embeds_tokens(nn.Linear(2, 1), torch.tensor([[1, 2]]))  # computes on numbers (here: fails on ints)
    False
    """
    lookups = _EmbeddingLookups()
    try:
        with torch.no_grad(), lookups:
            model(x)
    except FORWARD_ERRORS:  # a model that computes on numbers fails on int64: whether it embedded first decides
        pass
    return lookups.seen


def settle_inputs(config: AnalyzeConfig, probes: ProbeSet, model: nn.Module, dtype: torch.dtype,
                  device: torch.device) -> tuple[AnalyzeConfig, ProbeSet]:
    """The configuration and probe splits as this model takes them: float inputs as they are; integer inputs
    as `dtype` numbers, or as token ids (accuracy and loss only, no random split)."""
    if probes.splits[0].x.is_floating_point():
        return config, probes
    tokens = embeds_tokens(model, probes.splits[0].x[:2].to(device))
    if tokens:
        geometry = [g for g in config.metrics if g in CONTINUOUS_INPUT_GROUPS]
        if geometry and "metrics" in config.explicit:
            fix = ('set metrics = ["accuracy"] in the manifest' if "metrics" in config.from_manifest
                   else "pass --metrics accuracy")
            raise ProbeError(f"{probes.source}: x_train holds integer token ids that the model embeds; the "
                             f"{'/'.join(geometry)} metrics need float inputs: {fix}")
        if all(s.y is None for s in probes.splits):
            raise ProbeError(f"{probes.source}: x_train holds integer token ids that the model embeds, and no "
                             "labels: add y_train/y_test so that accuracy and loss can be measured")
        config = replace(config, metrics=tuple(g for g in config.metrics if g not in CONTINUOUS_INPUT_GROUPS))
    return config, as_model_inputs(probes, dtype, tokens)


def check_labels_exist(config: AnalyzeConfig, probes: ProbeSet) -> None:
    """Accuracy asked for by name needs labels; by default an unlabelled run is measured on geometry alone."""
    if "metrics" in config.explicit and "accuracy" in config.metrics and all(s.y is None for s in probes.splits):
        raise ConfigError(
            f"{probes.source}: --metrics accuracy needs labels, but the probe data has no y_train/y_test; "
            "pass --data FILE with labels, or drop accuracy from --metrics"
        )


def check_probes_fit(model: nn.Module, probes: ProbeSet, config: AnalyzeConfig, device: torch.device) -> None:
    """ProbeError naming the probe file when its points or labels do not fit the model (weights loaded, so that
    a failure here is the probe data's, not the model's)."""
    x = probes.splits[0].x[:2].to(device)
    try:
        with torch.no_grad():
            outputs = model(x)
    except FORWARD_ERRORS as exc:
        raise ProbeError(
            f"{probes.source}: probe points of shape {tuple(x.shape[1:])} do not fit the model ({first_line(exc)}); "
            "store x_* in the shape the model takes"
        ) from exc
    if "accuracy" not in config.metrics:
        return
    outputs_per_point = outputs.reshape(len(x), -1).shape[1]
    for split in probes.splits:
        if split.y is not None:
            try:
                check_labels(split.y, outputs_per_point)
            except ProbeError as exc:
                raise ProbeError(f"{probes.source}: y_{split.name} does not fit the model: {exc}") from exc
