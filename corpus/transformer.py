"""One-layer transformers on a + b (mod p), the network of examples/modular_transformer/ (token and positional
embeddings, causal attention, a ReLU MLP, no LayerNorm): the three tokens `a b =`, the answer read at the last
position. Half the unordered pairs {a, b} train, in both orders (a split of ordered pairs would let memorised
commutativity answer held-out pairs: `ordered=True`, the split many training scripts use, tried in corpus/trials.py). Full-batch AdamW with strong weight decay: the network memorises within a
few hundred steps and groks thousands of steps later (sooner with more decay); without decay it stays memorised.

grokmon measures the geometry at the token embedding's output (README, "Token models"); the factory here returns
the logits at the last position, so the corpus's training loop and grokmon both see (N, p) outputs.
"""

from __future__ import annotations

import torch

from examples.modular_transformer.model import ModularTransformer

from .common import Task


class Answer(ModularTransformer):
    """The example's transformer, its logits read at the answer position (the last)."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return super().forward(tokens)[:, -1]


def build(p: int = 43, width: int = 32, heads: int = 4, hidden: int = 128) -> Answer:
    """The network grokmon rebuilds for these checkpoints (`--model corpus.transformer:build`)."""
    return Answer(p, width, heads, hidden)


def sequences(p: int, fraction: float, seed: int, ordered: bool = False):
    """Token sequences `a b =` (`=` is token p) and (a + b) mod p, split by unordered pair {a, b} (seeded), or by
    ordered pair (a, b): then a held-out pair's swap is mostly in the train set, and test accuracy reaches about
    the share of such pairs as the train set is fitted, before any grokking."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x, y = torch.stack([a, b, torch.full_like(a, p)], dim=1), (a + b) % p
    pair = a * p + b if ordered else torch.minimum(a, b) * p + torch.maximum(a, b)
    kinds = pair.unique()
    chosen = kinds[torch.randperm(len(kinds), generator=torch.Generator().manual_seed(seed))[: int(fraction * len(kinds))]]
    train = torch.isin(pair, chosen)
    return x[train], y[train], x[~train], y[~train]


def task(p: int = 43, weight_decay: float = 2.0, lr: float = 1e-2, fraction: float = 0.5, steps: int = 10000,
         seed: int = 0, width: int = 32, ordered: bool = False) -> Task:
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = sequences(p, fraction, seed, ordered)
    sizes = {"p": p, "width": width, "heads": 4, "hidden": 4 * width}
    model = build(**sizes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    return Task(model, x_train, y_train, x_test, y_test, optimizer, steps, seed=seed,
                factory="corpus.transformer:build", factory_kwargs=sizes, check_every=20)


RUNS = {
    "p43-wd2": dict(),
    "p37-wd1-s1": dict(p=37, weight_decay=1.0, steps=16000, seed=1),
    "p47-wd3-s2": dict(p=47, weight_decay=3.0, steps=8000, seed=2),
    "p43-wd0": dict(weight_decay=0.0, steps=5000),
}
