"""A one-layer transformer for a + b (mod p), in the shape of Nanda et al.'s grokking transformer.

Input: the three tokens `a b =` (the numbers 0..p-1 are tokens 0..p-1, "=" is token p). Token embedding plus a
learned positional embedding, one block (causal softmax attention, then a ReLU MLP, each with a residual, no
LayerNorm), and an unembedding at every position: the forward returns logits (N, 3, p), like a language
model, and the answer is read at the last position (grokmon: `position = "last"`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ModularTransformer(nn.Module):
    """Embedding -> + positions -> causal attention -> ReLU MLP -> unembedding, residual stream of `width`."""

    def __init__(self, p: int = 43, width: int = 32, heads: int = 4, hidden: int = 128):
        super().__init__()
        self.heads = heads
        self.embed = nn.Embedding(p + 1, width)
        self.positions = nn.Parameter(torch.randn(3, width) / math.sqrt(width))
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.fc_in, self.fc_out = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.unembed = nn.Linear(width, p, bias=False)

    def attend(self, h: torch.Tensor) -> torch.Tensor:
        n, t, d = h.shape
        q, k, v = self.qkv(h).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        causal = torch.ones(t, t, dtype=torch.bool, device=h.device).tril()
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(n, t, d))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.positions
        h = h + self.attend(h)
        h = h + self.fc_out(F.relu(self.fc_in(h)))
        return self.unembed(h)


def build(p: int = 43, width: int = 32, heads: int = 4, hidden: int = 128) -> ModularTransformer:
    """The factory grokmon calls (`model = "model.py:build"`, sizes from `model_kwargs`)."""
    return ModularTransformer(p, width, heads, hidden)
