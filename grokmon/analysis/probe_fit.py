"""How the probe data meets the model: integer inputs as token ids or numbers, and points and labels that fit.

Integer inputs are token ids when an embedding lookup consumes them (an `nn.Embedding`, `F.embedding`, or a
model that casts them back to ids itself before embedding them) or when `--embedding` names the module that
embeds them; otherwise they are numbers (pixels, counts) and are measured like float inputs. The geometry of a
token model is measured at its token embedding's output (grokmon.metrics.embedded), so the embedding module
must be found (grokmon.inputs.embedding). The input perturbations of robustness are not defined on token ids,
and a model that embeds with `F.embedding` alone has no embedding output to be measured at: those groups are
left out (an error when asked for by name); weights, gradient and llc are measured on token models too.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..columns import CONTINUOUS_INPUT_GROUPS
from ..errors import ConfigError, ProbeError, first_line
from ..inputs.config import AnalyzeConfig
from ..inputs.embedding import TokenEmbedding, find_embedding
from ..inputs.models import FORWARD_ERRORS, BuiltModel
from ..inputs.probes import ProbeSet, as_numbers, as_token_ids
from ..metrics.accuracy import check_labels


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


def settle_inputs(config: AnalyzeConfig, probes: ProbeSet, built: BuiltModel, dtype: torch.dtype,
                  device: torch.device) -> tuple[AnalyzeConfig, ProbeSet, TokenEmbedding | None]:
    """The configuration and probe splits as this model takes them, and its token embedding when it embeds them:
    float inputs as they are; integer inputs as `dtype` numbers, or as token ids (with a random split of random
    ids when the embedding module is found)."""
    x = probes.splits[0].x
    if x.is_floating_point():
        if config.embedding is not None:
            raise ConfigError(f"{probes.source}: --embedding {config.embedding} measures token models, but x_train "
                              "holds floats; drop --embedding, or store the token ids as integers")
        return config, probes, None
    sample = x[:2].to(device)
    if config.embedding is None and not embeds_tokens(built.measured, sample):
        return config, as_numbers(probes, dtype), None
    embedding = find_embedding(built.measured, built.module, sample, config.embedding)
    left_out = ("robustness",) if embedding is not None else CONTINUOUS_INPUT_GROUPS
    asked = [g for g in config.metrics if g in left_out]
    if asked and "metrics" in config.explicit:
        fix = ("name the module that embeds them with --embedding, or drop them from --metrics" if embedding is None
               else "drop it from --metrics")
        how = "without an nn.Embedding module" if embedding is None else "(robustness perturbs the inputs)"
        raise ProbeError(f"{probes.source}: x_train holds integer token ids that the model embeds {how}; the "
                         f"{'/'.join(asked)} metrics cannot be measured on them: {fix}")
    if embedding is None and all(s.y is None for s in probes.splits):
        raise ProbeError(f"{probes.source}: x_train holds integer token ids that the model embeds without an "
                         "nn.Embedding module, and no labels: name the module with --embedding, or add "
                         "y_train/y_test so that accuracy and loss can be measured")
    config = replace(config, metrics=tuple(g for g in config.metrics if g not in left_out))
    if embedding is not None:
        check_token_ids(probes, embedding)
    return config, as_token_ids(probes, None if embedding is None else embedding.vocab, config.seed), embedding


def check_token_ids(probes: ProbeSet, embedding: TokenEmbedding) -> None:
    """ProbeError when a split holds token ids outside the embedding's vocabulary, anywhere in the file (each
    checkpoint would fail to embed them)."""
    for key in ("x_train", "x_test"):
        low, high = probes.integer_ranges.get(key, (0, 0))
        if low < 0 or high >= embedding.vocab:
            raise ProbeError(f"{probes.source}: {key} holds token ids from {low} to {high}, but the model's embedding "
                             f"{embedding.name} has {embedding.vocab} tokens (ids 0 to {embedding.vocab - 1}); "
                             "are these the probes of this model?")


def check_labels_exist(config: AnalyzeConfig, probes: ProbeSet) -> None:
    """Accuracy asked for by name needs labels; by default an unlabelled run is measured on geometry alone."""
    if "metrics" in config.explicit and "accuracy" in config.metrics and all(s.y is None for s in probes.splits):
        raise ConfigError(
            f"{probes.source}: --metrics accuracy needs labels, but the probe data has no y_train/y_test; "
            "pass --data FILE with labels, or drop accuracy from --metrics"
        )


def check_probes_fit(model: nn.Module, probes: ProbeSet, config: AnalyzeConfig, device: torch.device,
                     weights_from: str | None = None) -> None:
    """ProbeError naming the probe file when its points or labels do not fit the model (weights loaded, so that
    a failure here is the probe data's, not the model's), and `weights_from`, the checkpoint the model was read
    from: a checkpoint of another model in the folder shows up here too."""
    x = probes.splits[0].x[:2].to(device)
    try:
        with torch.no_grad():
            outputs = model(x)
    except FORWARD_ERRORS as exc:
        model_text = f"the model read from {weights_from}" if weights_from else "the model"
        other = f", or move {weights_from} out if it is another model's checkpoint" if weights_from else ""
        raise ProbeError(
            f"{probes.source}: probe points of shape {tuple(x.shape[1:])} do not fit {model_text} "
            f"({first_line(exc)}); store x_* in the shape the model takes{other}"
        ) from exc
    check_one_position(outputs, probes, config)
    if "accuracy" not in config.metrics:
        return
    outputs_per_point = outputs.reshape(len(x), -1).shape[1]
    for split in probes.splits:
        if split.y is not None:
            whole = probes.integer_ranges.get(f"y_{split.name}")  # every label in the file, not just the subset's
            try:
                check_labels(split.y, outputs_per_point)
                if whole is not None and split.y.dim() == 1:
                    check_labels(torch.tensor(whole), outputs_per_point)
            except ProbeError as exc:
                raise ProbeError(f"{probes.source}: y_{split.name} does not fit the model: {exc}") from exc


def check_one_position(outputs: torch.Tensor, probes: ProbeSet, config: AnalyzeConfig) -> None:
    """ConfigError for sequence outputs (N, T, K) scored against one class per point: without `--position` they
    would be flattened into T·K classes, which measures nothing the user meant."""
    labelled = next((s for s in probes.splits if s.y is not None and not s.y.is_floating_point()), None)
    if config.position is None and outputs.dim() >= 3 and labelled is not None:
        raise ConfigError(f"{probes.source}: the model returns a sequence of outputs per point (shape "
                          f"{tuple(outputs.shape[1:])}) but y_{labelled.name} holds one class per point; pass "
                          "--position last (in Python: position=\"last\"), or the index of the position to measure "
                          "and score")
