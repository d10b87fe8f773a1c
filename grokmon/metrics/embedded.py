"""A token model as a function of its token embedding's output, GrokAlign's convention for transformers.

For a model that embeds integer tokens, the point is x = E[tokens], the output of its token-embedding module
(flattened: T·d values per sequence), and the function is everything after it: the model run on the tokens with
the embedding's output replaced by x (a forward hook that returns the replacement). The positional embedding,
attention, the head and any weight tied to E are all part of f, at the checkpoint's own weights, and
f(E[tokens]) is exactly model(tokens). Every metric kernel then applies unchanged to `AtEmbedding`, a module
whose input is x.

The tokens still go into the model beside the replacement, so a forward that reads them for anything else
(a padding mask, the last non-padding position) sees the point's own tokens. A batch of x is either the points
the module is bound to or, for local complexity, each point's vertices in a row (point-major); `for_points`
binds the same network to a slice of a split's points, which the engine uses for every batch.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError


class AtEmbedding(nn.Module):
    """f(x) = model(tokens) with `embedding`'s output replaced by x; x is (N, T·d), or (k·N, T·d) holding k
    vertices per point in a row.

    >>> embed = nn.Embedding(5, 2)
    >>> net = nn.Sequential(embed, nn.Flatten(), nn.Linear(4, 3)).eval()
    >>> tokens = torch.tensor([[1, 4], [0, 2]])
    >>> x = embedding_outputs(net, embed, tokens)
    >>> torch.equal(AtEmbedding(net, embed, tokens)(x), net(tokens)), tuple(x.shape)
    (True, (2, 4))
    """

    def __init__(self, model: nn.Module, embedding: nn.Module, tokens: torch.Tensor):
        super().__init__()
        self.model, self.embedding, self.tokens = model, embedding, tokens
        self.training = model.training  # its own flag only: the model's modules keep theirs

    def for_points(self, index: slice) -> AtEmbedding:
        """The same network at the tokens of the points `index`."""
        return AtEmbedding(self.model, self.embedding, self.tokens[index])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output with its token embedding's output replaced by `x`."""
        n = len(self.tokens)
        if n == 0 or len(x) % n:
            raise ModelError(f"Expected {n} embedded sequences or a multiple of them, but got {len(x)}")
        carrier = self.tokens if len(x) == n else self.tokens.repeat_interleave(len(x) // n, dim=0)
        replaced = []

        def replace(module, args, output):
            if not _looks_up(args, carrier):
                return None  # another lookup (positions, say): left as it is
            replaced.append(True)
            return x.reshape(output.shape)

        handle = self.embedding.register_forward_hook(replace)
        try:
            out = self.model(carrier)
        finally:
            handle.remove()
        if not replaced:
            raise ModelError("the token embedding was not called on the tokens in this forward pass; name the module "
                             "that embeds them with --embedding")
        return out


def _looks_up(args: tuple, tokens: torch.Tensor) -> bool:
    """Whether an embedding call's input is the token tensor (as it is, or cast or reshaped by the model)."""
    return bool(args) and isinstance(args[0], torch.Tensor) and args[0].numel() == tokens.numel()


def for_points(model: nn.Module, index: slice) -> nn.Module:
    """`model` for the points `index` of a split: an `AtEmbedding` bound to their tokens, any other model itself.

    >>> layer = nn.Linear(2, 2)
    >>> for_points(layer, slice(0, 1)) is layer
    True
    """
    return model.for_points(index) if isinstance(model, AtEmbedding) else model


class _Embedded(Exception):
    """Raised by the capturing hook to end the forward pass once the embedding's output is in hand."""


def embedding_outputs(model: nn.Module, embedding: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """E[tokens] as the model computes it at its current weights, flattened per sequence: (N, T·d).

    The forward pass stops at the embedding: nothing after it runs.
    """
    captured = []

    def capture(module, args, output):
        if _looks_up(args, tokens):
            captured.append(output.detach())
            raise _Embedded

    handle = embedding.register_forward_hook(capture)
    try:
        with torch.no_grad():
            model(tokens)
    except _Embedded:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ModelError("the token embedding was not called on the probe tokens; name the module that embeds them "
                         "with --embedding")
    return captured[0].reshape(len(tokens), -1)
