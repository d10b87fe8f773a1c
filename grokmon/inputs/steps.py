"""The training step of a checkpoint: from what it stores, else from its name.

Stored steps: safetensors `__metadata__["step"]`, a pickled dict's `step` or `global_step`, a Trainer folder's
`trainer_state.json`, an accelerate folder's registered objects (`custom_checkpoint_N.pkl` whose state holds a
`step`), a DCP checkpoint's top-level `step` entry. Names: `checkpoint-500`, `step=500`, `step_500`, `ckpt_500`,
else the last integer. accelerate's `automatic_checkpoint_naming` folders (`checkpoint_0`, `checkpoint_1`, ...)
count saves, not steps: their number is never taken for a step.
"""

from __future__ import annotations

import functools
import json
import re
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError, first_line, reraise_interrupt
from . import dcp
from .safe_pickle import load_failure, load_pickle

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")

_STEP_PATTERNS = (
    re.compile(r"checkpoint[-_](\d+)", re.IGNORECASE),
    re.compile(r"(?:global_)?step[=_-]?(\d+)", re.IGNORECASE),
    re.compile(r"ckpt[-_]?(\d+)", re.IGNORECASE),
)
_LAST_INTEGER = re.compile(r"(\d+)(?!.*\d)")
# accelerate's ProjectConfiguration(automatic_checkpoint_naming=True): checkpoints/checkpoint_<save number>.
_SAVE_NUMBER_FOLDER = re.compile(r"^checkpoint_\d+$")


def step_from_name(name: str) -> int | None:
    """The training step a file or folder name announces, or None.

    >>> step_from_name("checkpoint-500"), step_from_name("epoch=3-step=1200.ckpt"), step_from_name("w_0042.pt")
    (500, 1200, 42)
    """
    stem = name
    for suffix in WEIGHT_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    for pattern in _STEP_PATTERNS:
        match = pattern.search(stem)
        if match:
            return int(match.group(1))
    match = _LAST_INTEGER.search(stem)
    return int(match.group(1)) if match else None


def numbers_saves(path: Path) -> bool:
    """Whether `path` is a folder of accelerate's automatic checkpoint naming, whose number counts saves: named
    `checkpoint_<N>` and holding accelerate's `random_states_*.pkl` (which `save_state` always writes)."""
    return path.is_dir() and bool(_SAVE_NUMBER_FOLDER.match(path.name)) and any(path.glob("random_states_*.pkl"))


def stored_step(path: Path, files: tuple[Path, ...]) -> int | None:
    """The step a checkpoint stores, or None when it stores none.

    Raises CheckpointError when a weights file cannot be read at all (refused or corrupt): the caller decides
    whether the name's step makes that a matter for loading, or the reason no step can be found.
    """
    if path.is_dir():
        if dcp.data_files(path):
            return dcp.stored_step(path)
        step = trainer_state_step(path)
        return step if step is not None else _registered_objects_step(path)
    try:
        stat = files[0].stat()
    except OSError:  # gone meanwhile: reading it says so in grokmon's words
        return _file_step(files[0])
    return _cached_file_step(files[0], (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


@functools.lru_cache(maxsize=4096)
def _cached_file_step(file: Path, version: tuple[int, ...]) -> int | None:
    """_file_step, once per version of the file (inode, size, times): a watch and a training callback look for
    checkpoints again and again, and a pickle's step costs a torch.load (errors are not cached: raised again)."""
    return _file_step(file)


def _file_step(file: Path) -> int | None:
    if file.suffix == ".safetensors":
        metadata = _safetensors_metadata(file)
        for key in ("step", "global_step"):
            if key in metadata:
                try:
                    return int(metadata[key])
                except ValueError:
                    return None
        return None
    return _pickle_step(file)


def trainer_state_step(folder: Path) -> int | None:
    """`global_step` of a Hugging Face `trainer_state.json` in `folder`, if there is a readable one."""
    state = folder / "trainer_state.json"
    if not state.is_file():
        return None
    try:
        step = json.loads(state.read_text()).get("global_step")
        return int(step) if step is not None else None
    except (ValueError, OSError, TypeError, AttributeError):
        return None


def _registered_objects_step(folder: Path) -> int | None:
    """A step held by an object registered with accelerate's `register_for_checkpointing` (saved as
    `custom_checkpoint_N.pkl`, its `state_dict()`), read like a checkpoint: no code runs."""
    for path in sorted(folder.glob("custom_checkpoint_*.pkl")):
        try:
            state = load_pickle(path)
        except Exception as exc:  # not ours to judge: only a step is looked for here
            reraise_interrupt(exc)
            continue
        step = _step_in(state) if isinstance(state, dict) else None
        if step is not None:
            return step
    return None


def _pickle_step(path: Path) -> int | None:
    """`step`/`global_step` stored in a pickled checkpoint, read through mmap so no tensor is copied (only
    torch's zip format maps; the legacy format of `_use_new_zipfile_serialization=False` is read whole)."""
    try:
        obj = load_pickle(path, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise load_failure(path, exc) from exc
    return _step_in(obj) if isinstance(obj, dict) else None


def _step_in(obj: dict) -> int | None:
    import numpy as np

    for key in ("global_step", "step"):
        value = obj.get(key)
        if isinstance(value, (int, np.integer)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
            return int(value)
    return None


def _safetensors_metadata(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as exc:  # the loader words it the same way, with its own row
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(exc)}); it may be truncated "
                              "or corrupt, re-save it") from exc


def missing_step_advice(names: list[str]) -> str:
    """How to give a step to each kind of checkpoint in `names` (pickles, safetensors files, folders).

    >>> missing_step_advice(["final.pt"])
    "rename them like step_500.pt, or save the step with the weights: torch.save({'step': 500, 'state_dict': model.state_dict()}, path)"
    """
    fixes = []
    if any(Path(n).suffix.lower() in (".pt", ".pth", ".bin", ".ckpt") for n in names):
        fixes.append("torch.save({'step': 500, 'state_dict': model.state_dict()}, path)")
    if any(Path(n).suffix.lower() == ".safetensors" for n in names):
        fixes.append("save_file(tensors, path, metadata={'step': '500'})")
    if not fixes:
        return "rename them like checkpoint-500 or step_500, or list their steps in grokmon.toml under [steps]"
    return "rename them like step_500.pt, or save the step with the weights: " + "; ".join(fixes)
