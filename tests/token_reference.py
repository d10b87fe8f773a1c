"""Token models and the slow references they are checked against, measured at the token embedding's output.

Each reference embeds by hand (the model's own embedding module called on the tokens) and runs "the rest" of
the network without grokmon's hook: the hand-written transformer through its explicit `after_embedding`, a
Hugging Face model through `inputs_embeds`. A `Rest` module takes the flattened embedded sequence (1, T·d) and
lists its pre-activations by hand (or, for Hugging Face, from pre-hooks on its activation modules), so
tests/reference.py's per-point Jacobian, spectrum and vertex-loop references apply to it unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-LayerNorm block: softmax attention with a residual, then a GELU MLP with a residual."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc_in, self.fc_out = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def attend(self, h: torch.Tensor) -> torch.Tensor:
        n, t, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        return h + self.out((weights @ v).transpose(1, 2).reshape(n, t, d))

    def preactivation(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc_in(self.norm2(h))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.attend(h)
        return h + self.fc_out(F.gelu(self.preactivation(h)))


class HandTransformer(nn.Module):
    """Token embedding, learned positions, two blocks, a final LayerNorm, logits of the last position: (N, K)."""

    vocab, context, width = 11, 4, 8

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(self.vocab, self.width)
        self.positions = nn.Parameter(torch.randn(self.context, self.width) * 0.5)
        self.blocks = nn.ModuleList(Block(self.width, 2, 16) for _ in range(2))
        self.norm, self.unembed = nn.LayerNorm(self.width), nn.Linear(self.width, self.vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.after_embedding(self.embed(tokens))

    def after_embedding(self, e: torch.Tensor) -> torch.Tensor:
        h = e + self.positions
        for block in self.blocks:
            h = block(h)
        return self.unembed(self.norm(h[:, -1]))


class HandRest(nn.Module):
    """The hand-written transformer after its embedding, on flattened embedded sequences."""

    def __init__(self, model: HandTransformer):
        super().__init__()
        self.model = model

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.model.after_embedding(e.reshape(len(e), self.model.context, self.model.width))

    def preactivations(self, e: torch.Tensor) -> list[torch.Tensor]:
        h = e.reshape(len(e), self.model.context, self.model.width) + self.model.positions
        found = []
        for block in self.model.blocks:
            h = block.attend(h)
            found.append(block.preactivation(h))
            h = h + block.fc_out(F.gelu(found[-1]))
        return found


class InputsEmbedsRest(nn.Module):
    """A Hugging Face model after its token embedding: called with `inputs_embeds`, logits at `position`."""

    def __init__(self, model: nn.Module, shape: tuple[int, int], activations: list[nn.Module], position=None):
        super().__init__()
        self.model, self.shape, self.activations, self.position = model, shape, activations, position

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs_embeds=e.reshape(len(e), *self.shape)).logits
        return logits if self.position is None else logits[:, self.position]

    def preactivations(self, e: torch.Tensor) -> list[torch.Tensor]:
        found = []
        handles = [m.register_forward_pre_hook(lambda module, args: found.append(args[0])) for m in self.activations]
        try:
            self.forward(e)
        finally:
            for handle in handles:
                handle.remove()
        return found


def reference_errors(measured: nn.Module, embedding: nn.Module, rest: nn.Module, tokens: torch.Tensor,
                     y: torch.Tensor | None, vectorize: bool = False) -> dict[str, float]:
    """Largest absolute difference per metric between grokmon at the embedding output and the references.

    grokmon's side: `measured` (the model as grokmon runs it) and its embedding module, the embedding outputs it
    captures, and `compute_split_metrics` over an `AtEmbedding` in batches of 2 points (so every batch binds
    its own tokens). The reference side: the embedding called by hand, `rest` differentiated per point, every
    vertex run alone. LC counts are compared as integers (the error is their largest difference).
    """
    from grokmon.metrics import MetricOptions, compute_split_metrics, make_frame
    from grokmon.metrics.embedded import AtEmbedding, embedding_outputs
    from grokmon.metrics.local_complexity import local_complexity
    from reference import reference_accuracy, reference_lc, reference_metrics

    with torch.no_grad():
        e = embedding(tokens).reshape(len(tokens), -1)
    errors = {"embedding": float((embedding_outputs(measured, embedding, tokens) - e).abs().max())}
    frame = make_frame(e.shape[1], 4, seed=1, dtype=e.dtype)
    radius = 0.5 * float(e.norm(dim=1).median())
    options = MetricOptions(groups=("accuracy", "centroid", "jacobian", "lc"), lc_directions=4, lc_radius=radius,
                            batch_size=2)
    got = compute_split_metrics(AtEmbedding(measured, embedding, tokens), e, y, options=options, frame=frame)
    expected = reference_metrics(rest, e, vectorize)
    counts = reference_lc(rest, e, frame, radius)
    expected["lc"] = counts.sum(axis=1)
    if y is not None:
        expected.update(reference_accuracy(rest, e, y))
    for name, values in expected.items():
        se = values.std(ddof=1) / math.sqrt(len(values))
        errors[name] = max(abs(got[name] - values.mean()), abs(got[f"{name}_se"] - se))
    alignment = expected["centroid_alignment"]
    errors["centroid_alignment_min"] = abs(got["centroid_alignment_min"] - alignment.min())
    errors["centroid_alignment_max"] = abs(got["centroid_alignment_max"] - alignment.max())
    per_point = local_complexity(AtEmbedding(measured, embedding, tokens), e, frame, radius).numpy()
    errors["lc_points"] = float(abs(per_point - counts).max())
    errors["lc_layers"] = max(abs(a - b) for a, b in zip(got["lc_layers"], counts.mean(axis=0), strict=True))
    return errors
