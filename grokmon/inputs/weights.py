"""Loading one checkpoint's weights on the CPU: safetensors, pickles (no code runs: see safe_pickle), shards
merged, DCP folders; the state dict found wherever a trainer nested it; non-finite values refused."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError, first_line
from . import dcp
from .in_progress import incomplete, not_safetensors
from .safe_pickle import load_failure, load_pickle, pickled_name, refusal

# Where trainers nest the model's weights inside a saved dict, most specific first.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


def _load_file(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        corrupt = not_safetensors(path)
        if corrupt:
            raise CheckpointError(f"{path}: not a safetensors file (corrupt: {corrupt}); re-save it or delete it")
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({first_line(exc)}); it may be truncated or corrupt, re-save it"
            ) from exc
    try:
        return load_pickle(path)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise load_failure(path, exc) from exc


def unwrap_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a saved object, nested under `state_dict`, `model_state_dict`, `model`, ... or not.

    A nesting key wins over tensors beside it: `{'model_state_dict': {...}, 'loss': tensor(0.5)}` is the
    tutorial's checkpoint, and its state dict is the nested one. Weights that are pickled objects rather than
    tensors (their class's code would have to run) are refused.
    """
    if pickled_name(obj):
        raise refusal(source, f"it holds a pickled {pickled_name(obj)}, as torch.save(model) writes")
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: holds a {type(obj).__name__}, not a state dict; save model.state_dict()")
    current = obj
    while True:
        objects = [k for k in _NESTED_KEYS if pickled_name(current.get(k))]
        if objects:
            raise refusal(source, f"its {objects[0]!r} is a pickled {pickled_name(current[objects[0]])}")
        nested = next((current[k] for k in _NESTED_KEYS if _holds_tensors(current.get(k))), None)
        if nested is None:
            break
        current = nested
    tensors = {str(k): v for k, v in current.items() if isinstance(v, torch.Tensor)}
    objects = sorted(str(k) for k, v in current.items() if pickled_name(v))
    if objects and (tensors or len(objects) == len(current)):
        raise refusal(source, f"its weights {', '.join(objects[:3])} are pickled {pickled_name(current[objects[0]])} "
                              "objects")
    if not tensors:
        raise CheckpointError(
            f"{source}: no tensors found (keys: {', '.join(map(str, list(current)[:8]))}); "
            "expected a state dict, possibly under 'state_dict', 'model_state_dict' or 'model'"
        )
    return tensors


def _holds_tensors(value: object) -> bool:
    if not isinstance(value, dict):
        return False
    return any(isinstance(v, torch.Tensor) or _holds_tensors(v) for v in value.values())


def _load_dcp(folder: Path) -> dict[str, torch.Tensor]:
    """The model's tensors of a DCP folder: found among the saved entries as in any other checkpoint (from their
    shapes alone), then only those read."""
    metadata = dcp.read_metadata(folder)
    chosen = unwrap_state_dict(dcp.tensor_tree(metadata), str(folder))
    wanted = {meta.dcp_key: torch.empty(meta.shape, dtype=meta.dtype) for meta in chosen.values()}
    loaded = dcp.load_entries(folder, metadata, wanted)
    return {key: loaded[meta.dcp_key] for key, meta in chosen.items()}


def _merged(ckpt_path: Path, files: tuple[Path, ...]) -> dict[str, torch.Tensor]:
    """The tensors of every file of one checkpoint; a key in two files means they are not shards of one model."""
    state: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    for path in files:
        part = unwrap_state_dict(_load_file(path), str(path))
        shared = sorted(set(part) & set(state))
        if shared:
            raise CheckpointError(
                f"{ckpt_path}: weight {shared[0]!r} is in both {origin[shared[0]].name} and {path.name}, so they are "
                "not shards of one model; keep the files of one model in each checkpoint folder"
            )
        state.update(part)
        origin.update(dict.fromkeys(part, path))
    return state


def load_checkpoint(ckpt) -> dict[str, torch.Tensor]:
    """Load the weights of one checkpoint (a grokmon.inputs.checkpoints.Checkpoint) on the CPU, refusing an
    incomplete save and non-finite values."""
    gap = incomplete(ckpt.path, ckpt.files)
    if gap:
        raise CheckpointError(f"{ckpt.path}: incomplete ({gap}), and it is not being written any more: the save did "
                              "not finish; save it again or delete it")
    state = _load_dcp(ckpt.path) if ckpt.format == "dcp" else _merged(ckpt.path, ckpt.files)
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"{ckpt.path}: weight {key!r} holds NaN or infinite values; the run diverged before this step"
            )
    return state
