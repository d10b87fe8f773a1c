"""Find, order and load the checkpoints of one training run.

Layouts: weight files directly in the directory (`*.safetensors`, `*.pt`, `*.pth`, `*.bin`, Lightning
`*.ckpt`), or one sub-directory per checkpoint, Hugging Face Trainer style (`checkpoint-500/model.safetensors`).
Pickles are only ever opened with `torch.load(..., weights_only=True)`: no code from a checkpoint runs.
"""

from __future__ import annotations

import json
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, NoCheckpointsError, first_line

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")

# Files a trainer saves beside the weights; never a checkpoint of the model.
NOT_WEIGHTS = re.compile(
    r"^(optimizer|scheduler|scaler|rng_state(_\d+)?|training_args|training_state|trainer_state"
    r"|probes|ema_state|lr_scheduler|random_states(_\d+)?)\.",
    re.IGNORECASE,
)

_STEP_PATTERNS = (
    re.compile(r"checkpoint[-_](\d+)", re.IGNORECASE),
    re.compile(r"(?:global_)?step[=_-]?(\d+)", re.IGNORECASE),
    re.compile(r"ckpt[-_]?(\d+)", re.IGNORECASE),
)
_LAST_INTEGER = re.compile(r"(\d+)(?!.*\d)")
# Shards of one checkpoint, as Hugging Face writes them: model-00001-of-00003.safetensors.
_SHARD = re.compile(r"-\d+-of-\d+\.[a-z]+$", re.IGNORECASE)
_HF_FOLDER = re.compile(r"^checkpoint-\d+$")
# Lightning's save_last copy of the newest checkpoint: last.ckpt, last-v1.ckpt.
_LAST_COPY = re.compile(r"^last(-v\d+)?\.ckpt$", re.IGNORECASE)

# Where trainers nest the model's weights inside a saved dict, most specific first.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of the run: its step, where it lies, and the weight files that make it up."""

    step: int
    path: Path
    files: tuple[Path, ...]
    name: str  # path relative to the checkpoint directory, as written in the results
    format: str  # "safetensors" or "pickle", and "(N shards)" when split


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


def _is_weight_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES and not NOT_WEIGHTS.match(path.name)


def _format_of(files: tuple[Path, ...]) -> str:
    kinds = {"safetensors" if f.suffix == ".safetensors" else "pickle" for f in files}
    kind = "+".join(sorted(kinds))
    return kind if len(files) == 1 else f"{kind} ({len(files)} shards)"


def _folder_weights(folder: Path, exclude: set[Path]) -> list[Path]:
    files = [f for f in sorted(folder.iterdir()) if _is_weight_file(f) and f.resolve() not in exclude]
    safetensors = [f for f in files if f.suffix == ".safetensors"]
    return safetensors or files  # HF folders often hold both formats of the same weights


def _is_run(files: list[Path]) -> bool:
    """Several weight files, not shards, each naming its own step (Lightning's `last.ckpt` aside): checkpoints
    of a run, not one checkpoint."""
    if len(files) < 2 or all(_SHARD.search(f.name) for f in files):
        return False
    steps = [step_from_name(f.name) for f in files if not _LAST_COPY.match(f.name)]
    return bool(steps) and None not in steps and len(set(steps)) == len(steps)


def _candidates(ckpt_dir: Path, exclude: set[Path]) -> list[tuple[Path, tuple[Path, ...]]]:
    """(checkpoint path, weight files) pairs: flat files, and sub-folders holding one checkpoint (maybe sharded).

    A directory whose checkpoints all lie in its one sub-folder (Lightning's `version_0/checkpoints/`) is
    read through to that folder.
    """
    found, runs, folders = [], [], []
    for entry in sorted(ckpt_dir.iterdir()):
        if entry.resolve() in exclude or entry.name.startswith("."):
            continue
        folders += [entry] if entry.is_dir() else []
        if _is_weight_file(entry):
            found.append((entry, (entry,)))
        elif entry.is_dir():
            files = _folder_weights(entry, exclude)
            if _is_run(files):
                runs.append(entry)
            elif files:
                found.append((entry, tuple(files)))
    if runs and not found and len(runs) == 1:
        return _candidates(runs[0], exclude)
    if not found and not runs and len(folders) == 1:  # version_0/ holding checkpoints/ and logs
        return _candidates(folders[0], exclude)
    if runs:
        raise CheckpointError(
            f"{runs[0]}: holds {len(_folder_weights(runs[0], exclude))} weight files that are not shards of one "
            f"checkpoint; point grokmon at that folder (grokmon analyze {runs[0]})"
        )
    return found


def _trainer_state_step(folder: Path) -> int | None:
    """`global_step` of a Hugging Face `trainer_state.json` in `folder`, if there is a readable one."""
    state = folder / "trainer_state.json"
    if not state.is_file():
        return None
    try:
        step = json.loads(state.read_text()).get("global_step")
        return int(step) if step is not None else None
    except (ValueError, OSError, TypeError, AttributeError):
        return None


def _step_from_metadata(path: Path, files: tuple[Path, ...]) -> int | None:
    if path.is_dir():
        return _trainer_state_step(path)
    if files[0].suffix == ".safetensors":
        metadata = _safetensors_metadata(files[0])
        for key in ("step", "global_step"):
            if key in metadata:
                try:
                    return int(metadata[key])
                except ValueError:
                    return None
        return None
    return _pickle_step(files[0])


def _pickle_step(path: Path) -> int | None:
    """`step`/`global_step` stored in a pickled checkpoint, read through mmap so no tensor is copied (only
    torch's zip format maps; the legacy format of `_use_new_zipfile_serialization=False` is read whole)."""
    try:
        obj = _torch_load(path, mmap=zipfile.is_zipfile(path))
    except Exception:  # unreadable or refused: reported with its own row when it is loaded
        return None
    return _stored_step(obj) if isinstance(obj, dict) else None


def _stored_step(obj: dict) -> int | None:
    import numpy as np

    for key in ("global_step", "step"):
        value = obj.get(key)
        if isinstance(value, (int, np.integer)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
            return int(value)
    return None


def _numpy_scalar_globals() -> list:
    """What a pickled numpy scalar (`{'step': np.int64(500)}`) needs: plain data, no code."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [core.multiarray.scalar, np.dtype, *dtype_classes]


def _torch_load(path: Path, mmap: bool = False):
    with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_scalar_globals()):
        warnings.simplefilter("ignore")  # torch warns about pickle protocols; the outcome is what matters
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _safetensors_metadata(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception:  # a corrupt file is reported when it is loaded, with its own row
        return {}


def check_directory(ckpt_dir: Path) -> None:
    """CheckpointError unless `ckpt_dir` is an existing directory."""
    if not ckpt_dir.exists():
        raise CheckpointError(f"{ckpt_dir}: no such directory; give the folder holding the run's checkpoints")
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{ckpt_dir}: not a directory; give the folder holding the run's checkpoints")


def discover_checkpoints(ckpt_dir: Path, exclude: set[Path] = frozenset()) -> list[Checkpoint]:
    """Every checkpoint of the run in `ckpt_dir`, in step order.

    The step comes from metadata (safetensors `__metadata__["step"]`, a pickled dict's `step` or
    `global_step`, HF `trainer_state.json`) or else from the name. Files in `exclude` (probe data) are
    never checkpoints.
    """
    ckpt_dir = Path(ckpt_dir)
    check_directory(ckpt_dir)
    exclude = {Path(p).resolve() for p in exclude}
    checkpoints, nameless = [], []
    for path, files in _candidates(ckpt_dir, exclude):
        step = _step_from_metadata(path, files)
        if step is None:
            step = step_from_name(path.name)
        name = path.relative_to(ckpt_dir).as_posix()
        if step is None:
            nameless.append((name, path, files))
            continue
        checkpoints.append(Checkpoint(step, path, files, name, _format_of(files)))
    if nameless and any(c.path.is_dir() and _HF_FOLDER.match(c.path.name) for c in checkpoints):
        # A Trainer output_dir: the step-less weights beside checkpoint-N/ are trainer.save_model()'s final
        # copy. It is the run's newest state when the output_dir's trainer_state.json names a step that no
        # checkpoint-N/ holds; otherwise a copy of one of them.
        final = [(name, path, files) for name, path, files in nameless if "/" not in name and path.is_file()]
        final_step = _trainer_state_step(ckpt_dir)
        if len(final) == 1 and final_step is not None and final_step not in {c.step for c in checkpoints}:
            name, path, files = final[0]
            checkpoints.append(Checkpoint(final_step, path, files, name, _format_of(files)))
        nameless = [entry for entry in nameless if entry not in final]
    nameless = [name for name, _, _ in nameless]
    if nameless:
        raise CheckpointError(
            f"{ckpt_dir}: no training step in the name or metadata of {', '.join(nameless)}; "
            "rename them like step_500.pt or store metadata {'step': '500'}"
        )
    if not checkpoints:
        raise NoCheckpointsError(
            f"{ckpt_dir}: no checkpoints found (looked for {', '.join('*' + s for s in WEIGHT_SUFFIXES)} "
            "and checkpoint-N/ folders)"
        )
    checkpoints = _without_last_copies(checkpoints)
    by_step: dict[int, list[str]] = {}
    for ckpt in checkpoints:
        by_step.setdefault(ckpt.step, []).append(ckpt.name)
    clashes = [f"step {step}: {', '.join(names)}" for step, names in sorted(by_step.items()) if len(names) > 1]
    if clashes:
        raise CheckpointError(
            f"{ckpt_dir}: several checkpoints share a step ({'; '.join(clashes)}); keep one per step"
        )
    return sorted(checkpoints, key=lambda c: c.step)


def _without_last_copies(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    """Drop Lightning's `last.ckpt` (`last-v1.ckpt`, ...) when another checkpoint has its step: it is a copy."""
    steps = {c.step for c in checkpoints if not _LAST_COPY.match(c.path.name)}
    kept = []
    for ckpt in sorted(checkpoints, key=lambda c: c.name.removesuffix(".ckpt")):  # last.ckpt before last-v1
        if _LAST_COPY.match(ckpt.path.name):
            if ckpt.step in steps:
                continue
            steps.add(ckpt.step)
        kept.append(ckpt)
    return kept


def _load_file(path: Path) -> dict:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file; delete it or re-save the checkpoint")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({first_line(exc)}); it may be truncated or corrupt, re-save it"
            ) from exc
    try:
        return _torch_load(path)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        if _wants_objects(path, str(exc)):
            raise CheckpointError(
                f"{path}: refused: this pickle needs arbitrary Python objects to load, and grokmon never runs "
                "code from a checkpoint; re-save it as a plain state dict (torch.save(model.state_dict(), ...)) "
                "or as .safetensors"
            ) from exc
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({first_line(exc)}); it may be truncated or corrupt, re-save it"
        ) from exc


_OBJECT_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


def _wants_objects(path: Path, message: str) -> bool:
    """Whether a pickle that weights_only refused asks for Python objects (rather than being corrupt).
    Reads opcodes with pickletools, which never executes anything."""
    if "Unsupported global" in message:
        return True
    if "Weights only load failed" not in message:
        return False
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(name)
        else:
            data = path.read_bytes()
        return any(op.name in _OBJECT_OPCODES for op, _, _ in pickletools.genops(data))
    except Exception:
        return False


def unwrap_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a saved object, nested under `state_dict`, `model_state_dict`, `model`, ... or not.

    A nesting key wins over tensors beside it: `{'model_state_dict': {...}, 'loss': tensor(0.5)}` is the
    tutorial's checkpoint, and its state dict is the nested one.
    """
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: holds a {type(obj).__name__}, not a state dict; save model.state_dict()")
    current = obj
    while True:
        nested = next((current[k] for k in _NESTED_KEYS if _holds_tensors(current.get(k))), None)
        if nested is None:
            break
        current = nested
    tensors = {str(k): v for k, v in current.items() if isinstance(v, torch.Tensor)}
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


def load_checkpoint(ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    """Load the weights of one checkpoint on the CPU (shards merged), refusing non-finite values."""
    state: dict[str, torch.Tensor] = {}
    for path in ckpt.files:
        state.update(unwrap_state_dict(_load_file(path), str(path)))
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"{ckpt.path}: weight {key!r} holds NaN or infinite values; the run diverged before this step"
            )
    return state
