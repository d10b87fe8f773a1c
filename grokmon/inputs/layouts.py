"""Where the checkpoints of a run lie, and which files make up each one.

- Weight files directly in the directory: each is a checkpoint.
- One folder per checkpoint (Hugging Face Trainer `checkpoint-500/`, accelerate `save_state` folders,
  `torch.distributed.checkpoint` folders). Its weights are one file; or the shards of one model: files named
  `-0000k-of-0000n`, or the files an index json (`model.safetensors.index.json`) names; or several models
  (accelerate writes `model.safetensors`, `model_1.safetensors`, ... for several prepared models), of which
  `weights` picks one.
- A folder whose checkpoints all lie in its one sub-folder is read through (`version_0/checkpoints/`); so are
  Lightning's `version_N/` folders of a run resumed by later jobs, each checkpoint tagged with its version.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import CheckpointError
from . import dcp
from .steps import WEIGHT_SUFFIXES, step_from_name

# Files a trainer saves beside the weights, and probe data (probes.safetensors, probes_v2.pt, ...); never a
# checkpoint of the model.
NOT_WEIGHTS = re.compile(
    r"^(optimizer|scheduler|scaler|rng_state(_\d+)?|training_args|training_state|trainer_state"
    r"|probes([_-][\w-]*)?|ema_state|lr_scheduler|random_states(_\d+)?)\.",
    re.IGNORECASE,
)
SHARD = re.compile(r"-(\d+)-of-(\d+)(\.[a-z]+)$", re.IGNORECASE)  # model-00001-of-00003.safetensors
INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# Lightning's save_last copy of the newest checkpoint: last.ckpt, last-v1.ckpt.
LAST_COPY = re.compile(r"^last(-v\d+)?\.ckpt$", re.IGNORECASE)
_VERSION = re.compile(r"^version_(\d+)$")


@dataclass(frozen=True)
class Candidate:
    """A checkpoint before its step is known: where it lies, its weight files, and the Lightning `version_N`
    folder it came from when the run spans several."""

    path: Path
    files: tuple[Path, ...]
    version: Path | None = None


def is_weight_file(path: Path) -> bool:
    """A file with a weights suffix that is not one a trainer writes beside the weights (optimizer.pt, ...)."""
    return path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES and not NOT_WEIGHTS.match(path.name)


def model_name(path: Path) -> str:
    """The name `--weights` knows a model file by: its name without the weights suffix.

    >>> model_name(Path("ckpt/model_1.safetensors"))
    'model_1'
    """
    return path.name[: -len(path.suffix)] if path.suffix.lower() in WEIGHT_SUFFIXES else path.name


def weight_files(folder: Path, exclude: set[Path]) -> list[Path]:
    """The weight files directly in `folder`; safetensors ones alone when there are any (Trainer folders often
    hold both formats of the same weights)."""
    files = [f for f in sorted(folder.iterdir()) if is_weight_file(f) and f.resolve() not in exclude]
    safetensors = [f for f in files if f.suffix == ".safetensors"]
    return safetensors or files


def index_listing(folder: Path) -> list[str] | None:
    """The shard file names a Hugging Face index json in `folder` names (its weight_map), or None without one."""
    for name in INDEX_NAMES:
        path = folder / name
        if path.is_file():
            try:
                weight_map = json.loads(path.read_text()).get("weight_map", {})
                return sorted(set(weight_map.values()))
            except (ValueError, OSError, AttributeError) as exc:
                raise CheckpointError(f"{path}: not a readable shard index ({exc}); save the checkpoint again") from exc
    return None


def checkpoint_files(folder: Path, files: list[Path], weights: str | None) -> tuple[Path, ...]:
    """The files of the one checkpoint in `folder`: its DCP files, the shards of one model, or its one model
    file (`weights` names it when the folder holds several models).

    Missing shards are left out here; `in_progress.incomplete` tells them.
    """
    data = dcp.data_files(folder)
    if data:
        metadata = folder / dcp.METADATA_FILE
        return (*data, metadata) if metadata.is_file() else tuple(data)
    listed = index_listing(folder)
    if listed is not None:
        return tuple(folder / name for name in listed if (folder / name).is_file())
    if files and all(SHARD.search(f.name) for f in files):
        return tuple(files)
    if weights is not None:
        chosen = [f for f in files if weights in (f.name, model_name(f))]
        if not chosen:
            raise CheckpointError(f"{folder}: no model {weights!r} here (it holds {_names(files)}); give --weights one "
                                  "of those")
        return tuple(chosen[:1])
    if len(files) > 1:
        raise CheckpointError(
            f"{folder}: holds {len(files)} models ({_names(files)}), as accelerate's save_state writes one file per "
            f"prepared model; pick one with --weights NAME ({', '.join(model_name(f) for f in files)}), or "
            "weights = \"NAME\" in grokmon.toml"
        )
    return tuple(files)


def _names(files: list[Path]) -> str:
    return ", ".join(f.name for f in files) or "no weight files"


def _is_run(files: list[Path]) -> bool:
    """Several weight files, not shards, each naming its own step (Lightning's `last.ckpt` aside): checkpoints
    of a run, not one checkpoint."""
    if len(files) < 2 or all(SHARD.search(f.name) for f in files):
        return False
    steps = [step_from_name(f.name) for f in files if not LAST_COPY.match(f.name)]
    return bool(steps) and None not in steps and len(set(steps)) == len(steps)


def find_candidates(ckpt_dir: Path, exclude: set[Path], weights: str | None = None) -> list[Candidate]:
    """The checkpoints in `ckpt_dir`, flat files and folders, reading through the folders described above."""
    found, runs, folders = [], [], []
    for entry in sorted(ckpt_dir.iterdir()):
        if entry.resolve() in exclude or entry.name.startswith("."):
            continue
        if is_weight_file(entry):
            found.append(Candidate(entry, (entry,)))
        elif entry.is_dir():
            folders.append(entry)
            files = weight_files(entry, exclude)
            if _is_run(files):
                runs.append(entry)
            elif files or dcp.data_files(entry):
                found.append(Candidate(entry, checkpoint_files(entry, files, weights)))
    if runs and not found and len(runs) == 1:
        return find_candidates(runs[0], exclude, weights)
    if runs:
        raise CheckpointError(
            f"{runs[0]}: holds {len(weight_files(runs[0], exclude))} weight files that are not shards of one "
            f"checkpoint; point grokmon at that folder (grokmon analyze {runs[0]})"
        )
    if found:
        return found
    versions = sorted((f for f in folders if _VERSION.match(f.name)), key=lambda f: int(f.name.split("_")[1]))
    if len(versions) > 1 and len(versions) == len(folders):  # lightning_logs/version_0, version_1, ...
        return [replace(c, version=v) for v in versions for c in find_candidates(v, exclude, weights)]
    if len(folders) == 1:  # version_0/ holding checkpoints/ and logs
        return find_candidates(folders[0], exclude, weights)
    return []
