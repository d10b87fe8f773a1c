"""Build the network once per run, and fit each checkpoint's weights to it.

A model comes from a factory (`file.py:function` or `package.module:function`) or is inferred from the
state dict itself (`mlp`: a chain of 2-D weights whose shapes connect).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from .config import MLP_ACTIVATIONS

# Wrappers that prefix every key: DDP, torch.compile, Lightning modules.
KNOWN_PREFIXES = ("module.", "_orig_mod.", "model.")
# What a forward pass raises when the probe points do not fit the network (shapes, dtypes, indices).
FORWARD_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)


class TensorOutput(nn.Module):
    """The model as the metrics see it: one tensor of outputs, also from a model that returns a tuple, a dict
    or a Hugging Face ModelOutput (its `logits`, else its first tensor); with `position`, the outputs of that
    position of a sequence output (N, T, ...). Holds the model itself, so weights loaded into it are the ones
    measured.

    >>> TensorOutput(nn.Identity(), position=-1)(torch.arange(6.0).reshape(1, 3, 2)).tolist()
    [[4.0, 5.0]]
    """

    def __init__(self, module: nn.Module, position: int | None = None):
        super().__init__()
        self.module, self.position = module, position

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's output, reduced to its logits tensor (at `position`)."""
        out = first_tensor(self.module(x))
        if self.position is None:
            return out
        if out.dim() < 3:
            raise ModelError(f"--position picks one position of sequence outputs (N, T, K), but the model returns "
                             f"shape {tuple(out.shape)}; drop --position")
        if not -out.shape[1] <= self.position < out.shape[1]:
            raise ModelError(f"--position {self.position} is outside the model's {out.shape[1]} output positions; "
                             "pass --position last or an index below that")
        return out[:, self.position]


def first_tensor(out) -> torch.Tensor:
    """A model's output tensor: itself, `logits` of a mapping, else the first tensor inside.

    >>> first_tensor((torch.ones(1), None)).tolist(), first_tensor({"loss": None, "logits": torch.zeros(1)}).tolist()
    ([1.0], [0.0])
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"]
        values = list(out.values())
    elif isinstance(out, (tuple, list)):
        values = list(out)
    else:
        values = []
    for value in values:
        if isinstance(value, (torch.Tensor, dict, tuple, list)):
            try:
                return first_tensor(value)
            except ModelError:
                continue
    raise ModelError(f"the model returned a {type(out).__name__} with no tensor in it; its forward must return the "
                     "outputs (a tensor, or a tuple/dict holding them)")


@dataclass
class BuiltModel:
    """The network, a description for the results' metadata, and how checkpoint keys map to its own."""

    module: nn.Module
    description: dict
    key_map: dict[str, str] | None = None  # checkpoint key -> module key (inferred models rename)
    expected_keys: frozenset[str] = field(default_factory=frozenset)
    ties: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> the other keys of the same tensor
    position: int | None = None  # the output position measured (--position)

    @cached_property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The module's tensor shapes by its own keys, read once: loading a checkpoint copies into them."""
        return {k: tuple(v.shape) for k, v in self.module.state_dict().items() if isinstance(v, torch.Tensor)}

    @cached_property
    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """`shapes` by checkpoint key (`expected_keys`, through `key_map`), for naming wrong shapes."""
        own = {k: self.key_map[k] if self.key_map is not None else k for k in self.expected_keys}
        return {k: self.shapes[name] for k, name in own.items() if name in self.shapes}

    @property
    def measured(self) -> nn.Module:
        """`module` returning a plain output tensor (at `position`), whatever its forward returns."""
        return TensorOutput(self.module, self.position).train(self.module.training)


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _connects(state: dict[str, torch.Tensor], order: list[str]) -> bool:
    return all(state[a].shape[0] == state[b].shape[1] for a, b in zip(order, order[1:]))


def _layer_order(state: dict[str, torch.Tensor], weights: list[str]) -> list[str]:
    """The order of the layers: the state dict's own (a pickle keeps module order), else numeric key order
    (`layers.2` before `layers.10`). Sorted text order is what safetensors gives back and says nothing, so
    numeric order goes first then. If neither connects, the one chain the shapes allow, if there is one."""
    natural = sorted(weights, key=_natural_key)
    orders = [natural, weights] if weights == sorted(weights) else [weights, natural]
    for order in orders:
        if _connects(state, order):
            return order
    chains = _chains_by_shape(state, weights) if len(weights) <= 8 else []  # the search is factorial
    return chains[0] if len(chains) == 1 else natural  # none or ambiguous: the caller names the break


def _chains_by_shape(state: dict[str, torch.Tensor], weights: list[str], limit: int = 2) -> list[list[str]]:
    """Up to `limit` orders of all `weights` in which each layer's outputs feed the next one's inputs."""
    chains: list[list[str]] = []

    def extend(chain: list[str], left: list[str]) -> None:
        if len(chains) >= limit:
            return
        if not left:
            chains.append(chain)
            return
        for key in left:
            if not chain or state[chain[-1]].shape[0] == state[key].shape[1]:
                extend(chain + [key], [k for k in left if k != key])

    extend([], weights)
    return chains


def infer_mlp(state: dict[str, torch.Tensor], activation: str) -> BuiltModel:
    """A feed-forward network read off a state dict: 2-D `weight` tensors whose shapes connect in order,
    biases where present, `activation` between layers. Inputs are flattened first."""
    if activation not in MLP_ACTIVATIONS:
        raise ModelError(f"Expected --activation to be one of {', '.join(MLP_ACTIVATIONS)}, but got {activation!r}")
    state = strip_common_prefix(state)
    hint = "pass --model file.py:function (a function returning the nn.Module)"
    weights = _layer_order(state, [k for k, v in state.items() if k.endswith("weight") and v.ndim == 2])
    if not weights:
        raise ModelError(f"the state dict holds no 2-D weight tensors, so it is not an MLP; {hint}")
    layers: list[nn.Module] = [nn.Flatten()]
    key_map: dict[str, str] = {}
    shapes = []
    for i, key in enumerate(weights):
        out_features, in_features = state[key].shape
        if i and in_features != shapes[-1][1]:
            raise ModelError(
                f"the state dict is not a chain of layers ({weights[i - 1]} gives {shapes[-1][1]} features, "
                f"{key} takes {in_features}); {hint}"
            )
        bias_key = key[: -len("weight")] + "bias"
        has_bias = bias_key in state and state[bias_key].shape == (out_features,)
        if i:
            layers.append(getattr(nn, MLP_ACTIVATIONS[activation])())
        index = len(layers)
        layers.append(nn.Linear(in_features, out_features, bias=has_bias))
        key_map[key] = f"{index}.weight"
        if has_bias:
            key_map[bias_key] = f"{index}.bias"
        shapes.append((in_features, out_features, has_bias))
    extra = sorted(set(state) - set(key_map))
    if extra:
        raise ModelError(
            f"the state dict is not a plain MLP: it also holds {', '.join(extra[:5])}"
            f"{' and more' if len(extra) > 5 else ''}; {hint}"
        )
    description = {
        "kind": "mlp",
        "activation": activation,
        "layers": [{"in": i, "out": o, "bias": b} for i, o, b in shapes],
        "parameters": sum(state[k].numel() for k in key_map),
    }
    return BuiltModel(nn.Sequential(*layers), description, key_map, frozenset(key_map))


def _importable(folder: Path) -> None:
    """Let model code import its neighbours: console scripts do not put the working directory on sys.path."""
    folder = str(folder.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)


def _model_file(target: str, base_dir: Path, base_first: bool) -> Path | None:
    path = Path(target)
    if path.is_absolute():
        return path if path.is_file() else None
    places = [base_dir / path, path] if base_first else [path, base_dir / path]
    return next((p for p in places if p.is_file()), None)


def _load_factory(spec: str, base_dir: Path, base_first: bool = False):
    """The factory function of `spec`. A relative file is looked up in the working directory, then in
    `base_dir` (the run's folder); `base_first` (the manifest named it) reverses that."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ModelError(f"Expected --model to be 'mlp', 'file.py:function' or 'package.module:function', but got {spec!r}")
    if target.endswith(".py"):
        path = _model_file(target, base_dir, base_first)
        if path is None:
            raise ModelError(f"{target}: no such model file (model {spec}; relative paths are looked up in "
                             f"{'the run folder, then the working directory' if base_first else 'the working directory, then the run folder'})")
        _importable(path.parent)
        module_name = f"grokmon_model_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            raise ModelError(f"{path}: importing the model file failed: {type(exc).__name__}: {exc}") from exc
    else:
        _importable(Path.cwd())
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelError(f"cannot import {target!r} (model {spec}): {exc}; run from the folder that holds it "
                             "or add that folder to PYTHONPATH") from exc
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ModelError(f"{target} has no function {name!r} (model {spec})")
    return factory


def build_from_factory(spec: str, kwargs: dict, base_dir: Path, base_first: bool = False) -> BuiltModel:
    """Call the factory named by `spec` with `kwargs`; it must return an nn.Module."""
    factory = _load_factory(spec, base_dir, base_first)
    try:
        module = factory(**kwargs)
    except Exception as exc:
        raise ModelError(f"model {spec} raised {type(exc).__name__}: {exc} (kwargs: {kwargs})") from exc
    if not isinstance(module, nn.Module):
        raise ModelError(f"Expected model {spec} to return an nn.Module, but got {type(module).__name__}")
    description = {
        "kind": "factory",
        "spec": spec,
        "kwargs": kwargs,
        "class": type(module).__name__,
        "parameters": sum(p.numel() for p in module.parameters() if not isinstance(p, nn.parameter.UninitializedParameter)),
    }
    return BuiltModel(module, description, None, frozenset(module.state_dict()), tied_keys(module))


def tied_keys(module: nn.Module) -> dict[str, tuple[str, ...]]:
    """The state-dict keys that name one shared tensor (`lm_head.weight` is `transformer.wte.weight` in a tied
    language model), each with the others: found by identity, so the ties a model made itself (a Hugging Face
    model's `tie_weights`, or plain `a.weight = b.weight`) all count.

    >>> embed, head = nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)
    >>> head.weight = embed.weight
    >>> tied_keys(nn.ModuleDict({"embed": embed, "head": head}))
    {'embed.weight': ('head.weight',), 'head.weight': ('embed.weight',)}
    """
    names: dict[int, list[str]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        names.setdefault(id(tensor), []).append(name)
    return {name: tuple(n for n in group if n != name) for group in names.values() if len(group) > 1 for name in group}


def _with_ties(state: dict[str, torch.Tensor], ties: dict[str, tuple[str, ...]]) -> dict[str, torch.Tensor]:
    """`state` with every tied key it omits filled from a key it holds, as `from_pretrained` loads a file that
    `save_pretrained` wrote without the tied head."""
    filled = dict(state)
    for key, others in ties.items():
        source = next((o for o in others if o in state), None)
        if key not in filled and source is not None:
            filled[key] = state[source]
    return filled


def strip_common_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (`module.`, `_orig_mod.`, `model.`) that every key carries."""
    changed = True
    while changed and state:
        changed = False
        for prefix in KNOWN_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _candidate_prefixes(keys: set[str]) -> list[str]:
    """Leading dotted segments of the keys, shortest first, that could be stripped."""
    prefixes = {""}
    for key in keys:
        parts = key.split(".")
        for n in range(1, min(len(parts), 4)):
            prefixes.add(".".join(parts[:n]) + ".")
    return sorted(prefixes, key=len)


def fit_state_dict(state: dict[str, torch.Tensor], expected: frozenset[str], source: str,
                   ties: dict[str, tuple[str, ...]] | None = None,
                   shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, torch.Tensor]:
    """Rename checkpoint keys to the model's: strip the prefix that makes them fit, or say what does not fit
    (with the model's `shapes`, also the keys both have whose shapes differ). Keys of tensors the model ties to
    another one (`ties`) may be missing when that other one is there."""
    ties = ties or {}
    whole = _with_ties(state, ties)
    if set(whole) == expected:
        return whole
    best, best_hits, best_prefix = state, len(set(state) & expected), ""
    for prefix in sorted(_candidate_prefixes(set(state))):  # sorted: ties break the same way every run
        kept = _with_ties({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, ties)
        hits = len(set(kept) & expected)
        if set(kept) == expected:
            return kept
        if hits > best_hits:
            best, best_hits, best_prefix = kept, hits, prefix
    missing = sorted(expected - set(best))
    unexpected = sorted(set(best) - expected)
    left_out = sorted(k for k in state if not k.startswith(best_prefix))
    # a prefix that fits best but covers only some keys would hide the others: name them
    under = f" (of the keys under '{best_prefix}'; the others: {_few(left_out)})" if left_out else ""
    wrong = _wrong_shapes(best, shapes or {})
    shaped = f"; wrong shape: {_few(wrong)}" if wrong else ""
    named = "; ".join(f"{kind} {_few(keys)}" for kind, keys in (("missing", missing), ("unexpected", unexpected))
                      if keys)
    raise ModelError(f"{source}: weights do not fit the model: {named}{under}{shaped}; "
                     "check --model / --model-kwargs")


def _wrong_shapes(state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """'key (checkpoint shape) vs model (shape)' for every key both have whose shapes differ."""
    return [f"{k} {tuple(v.shape)} vs model {tuple(shapes[k])}" for k, v in sorted(state.items())
            if k in shapes and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(shapes[k])]


def _few(keys: list[str]) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:4])
    return f"{shown} (+{len(keys) - 4} more)" if len(keys) > 4 else shown


def load_weights(built: BuiltModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy one checkpoint's weights into the model (same device and dtype as the model keeps)."""
    if built.key_map is not None:
        state = strip_common_prefix(state)
    state = fit_state_dict(state, built.expected_keys, source, built.ties, built.expected_shapes)
    shapes = built.shapes
    if built.key_map is not None:  # the message names the checkpoint's keys, not the model's own names for them
        shapes = {k: built.shapes[built.key_map[k]] for k in state if built.key_map[k] in built.shapes}
    wrong = _wrong_shapes(state, shapes)
    if wrong:
        raise ModelError(f"{source}: weight shapes do not fit the model: {_few(wrong)}; check --model / --model-kwargs")
    if built.key_map is not None:
        state = {built.key_map[k]: v for k, v in state.items()}
    with torch.no_grad():
        built.module.load_state_dict(state, strict=True)
