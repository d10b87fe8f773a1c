"""Which module of a token model embeds the probe tokens: the one whose output the geometry is measured at.

In this order: the module named by `--embedding`; a Hugging Face model's `get_input_embeddings()`; the first
`nn.Embedding` the forward pass calls on the probe tokens. The module must be called on the tokens themselves
(as they are, or cast or reshaped): a lookup of positions or token types is not the token embedding. Its
vocabulary, from which the random split's token ids are drawn, is its `num_embeddings`, else the rows of its
2-D `weight`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError, ModelError
from .models import FORWARD_ERRORS


@dataclass(frozen=True)
class TokenEmbedding:
    """The token-embedding module of a model, its name in the model and the size of its vocabulary."""

    name: str
    module: nn.Module
    vocab: int


def _is_tokens(value: object, tokens: torch.Tensor) -> bool:
    return (isinstance(value, torch.Tensor) and not value.is_floating_point() and value.numel() == tokens.numel()
            and torch.equal(value.detach().reshape(-1).long().cpu(), tokens.reshape(-1).long().cpu()))


def token_consumers(model: nn.Module, root: nn.Module, tokens: torch.Tensor) -> list[str]:
    """Names (in `root`, the module inside `model`) of the modules that the forward pass calls on the probe
    tokens, in call order.

    >>> net = nn.Sequential(nn.Embedding(5, 2), nn.Flatten())
    >>> token_consumers(net, net, torch.tensor([[1, 2]]))
    ['', '0']
    """
    names = {id(module): name for name, module in root.named_modules()}
    called: list[str] = []

    def note(module, args, kwargs):
        name = names[id(module)]
        if name not in called and any(_is_tokens(v, tokens) for v in (*args, *kwargs.values())):
            called.append(name)

    handles = [module.register_forward_pre_hook(note, with_kwargs=True) for module in root.modules()]
    try:
        with torch.no_grad():
            model(tokens)
    except FORWARD_ERRORS:  # the modules called before the failure are the ones that saw the tokens
        pass
    finally:
        for handle in handles:
            handle.remove()
    return called


def _hugging_face_choice(root: nn.Module, consumers: list[str]) -> str | None:
    getter = getattr(root, "get_input_embeddings", None)
    try:
        module = getter() if callable(getter) else None
    except (NotImplementedError, AttributeError):
        return None
    return next((n for n, m in root.named_modules() if m is module and n in consumers), None)


def _vocabulary(name: str, module: nn.Module) -> int:
    vocab = getattr(module, "num_embeddings", None)
    weight = getattr(module, "weight", None)
    if vocab is None and isinstance(weight, torch.Tensor) and weight.dim() == 2:
        vocab = weight.shape[0]
    if not isinstance(vocab, int) or vocab < 1:
        raise ModelError(f"--embedding {name}: cannot tell its vocabulary (no num_embeddings, no 2-D weight), which "
                         "the random split's token ids are drawn from; name the nn.Embedding that embeds the tokens")
    return vocab


def find_embedding(model: nn.Module, root: nn.Module, tokens: torch.Tensor, name: str | None) -> TokenEmbedding | None:
    """The token embedding of `root` (the module inside `model`, the callable that runs it) for the probe
    `tokens`: the module called `name`, else found (see the module docstring); None when none is found.

    >>> net = nn.Sequential(nn.Embedding(5, 2), nn.Flatten(), nn.Linear(4, 3))
    >>> found = find_embedding(net, net, torch.tensor([[1, 2]]), None)
    >>> found.name, found.vocab
    ('0', 5)
    """
    consumers = token_consumers(model, root, tokens)
    modules = dict(root.named_modules())
    embeddings = [n for n, m in modules.items() if isinstance(m, nn.Embedding)]
    if name is not None:
        if name not in modules:
            raise ConfigError(f"--embedding {name}: the model has no module of that name (its nn.Embedding modules: "
                              f"{', '.join(embeddings) or 'none'})")
        if name not in consumers:
            called = [n for n in consumers if n in embeddings]
            raise ConfigError(f"--embedding {name}: that module is not called on the probe tokens (the embedding "
                              f"called on them: {', '.join(called) or 'none'}); name the module that embeds the tokens")
    else:
        name = _hugging_face_choice(root, consumers) or next((n for n in consumers if n in embeddings), None)
        if name is None:
            return None
    return TokenEmbedding(name, modules[name], _vocabulary(name, modules[name]))
