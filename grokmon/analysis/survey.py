"""What `analyze` would measure in a run, found without measuring anything: `grokmon info`.

Each part (probe data, checkpoints, model) is looked for on its own, so that one that is missing (no probe data
yet, no checkpoint yet) hides none of the others: what is found is listed, what is missing is said, with its fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import torch

from ..columns import LABELLED_GROUPS
from ..errors import GrokmonError
from ..inputs.checkpoints import Checkpoint, FoundCheckpoints, check_directory, find_checkpoints, load_checkpoint
from ..inputs.config import AnalyzeConfig, check_values, resolve_config
from ..inputs.embedding import TokenEmbedding
from ..inputs.models import BuiltModel
from ..inputs.probes import ProbeSet, label_notes, load_probes
from ..inputs.run import probe_path, reads_probes, resolve_device
from ..metrics.embedded import embedding_outputs
from .probe_fit import check_probes_fit, settle_inputs
from .session import build_model

T = TypeVar("T")


@dataclass(frozen=True)
class RunInfo:
    """What `analyze` would do, without computing anything. `missing` says what it lacks (one line each, with
    the fix); `notes` what else to know (checkpoints still being written, a step saved twice, labels on one
    split only)."""

    checkpoints: list[Checkpoint]
    model: dict  # the model's description; empty when it cannot be built yet
    probe_file: Path | None
    splits: dict[str, int]  # points per split; empty without probe data
    config: AnalyzeConfig
    device: str
    inputs: str | None = None  # "numbers" or "token ids" once probes and model are known;
    # "none read" when only data-free metric groups are asked for
    notes: tuple[str, ...] = ()
    missing: tuple[str, ...] = field(default=())
    embedding: str | None = None  # a token model's embedding module: the geometry is measured at its output
    input_dim: int | None = None  # D: values per measured point (a token model's: T·d embedding outputs)


def _attempt(missing: list[str], part: Callable[[], T]) -> T | None:
    """`part()`, or None with its error's message added to `missing`."""
    try:
        return part()
    except GrokmonError as exc:
        missing.append(str(exc))
        return None


def _model(config: AnalyzeConfig, ckpt_dir: Path, checkpoints: tuple[Checkpoint, ...], device: torch.device,
           dtype: torch.dtype) -> BuiltModel | None:
    """The model as analyze would build it; an inferred mlp needs a checkpoint to read it off (the newest)."""
    if config.model == "mlp" and not checkpoints:
        return None
    state = load_checkpoint(checkpoints[-1]) if config.model == "mlp" else None
    return build_model(config, ckpt_dir, state, device, dtype)


def survey(ckpt_dir: str | Path, device: str = "auto", **options) -> RunInfo:
    """The checkpoints, model and probe splits `analyze` would use with these options (those of analyze), and
    what is missing."""
    ckpt_dir = Path(ckpt_dir)
    check_directory(ckpt_dir)
    check_values({"device": device})
    config = resolve_config(ckpt_dir, **options)
    torch_device, dtype = resolve_device(device), getattr(torch, config.dtype)
    missing: list[str] = []
    no_probes: list[str] = []  # listed after the checkpoints' problems, in the order analyze says them
    needs_probes = reads_probes(config)  # else no probe data is read, and none is missing
    if needs_probes:
        probes_file = _attempt(no_probes, lambda: probe_path(ckpt_dir, config))
    else:
        probes_file = Path(config.data) if config.data else None
    exclude = {probes_file} if probes_file else set()
    found = _attempt(missing, lambda: find_checkpoints(ckpt_dir, exclude, config.weights, config.steps))
    found = found or FoundCheckpoints(())
    if not found.checkpoints and found.in_progress:
        missing.append(f"{ckpt_dir}: no complete checkpoint yet ({len(found.in_progress)} still being written)")
    missing += no_probes
    built = _attempt(missing, lambda: _model(config, ckpt_dir, found.checkpoints, torch_device, dtype))
    probes: ProbeSet | None = None
    if probes_file is not None and needs_probes:
        probes = _attempt(missing, lambda: load_probes(probes_file, config.points, config.seed, dtype))
    kind, embedding, dim = None if needs_probes else "none read", None, None
    if probes is not None and built is not None:
        settled = _attempt(missing, lambda: settle_inputs(config, probes, built, dtype, torch_device))
        if settled is not None:
            config, probes, embedding = settled
            kind, dim = measured_input(built, probes, embedding, torch_device)
            # the shapes analyze checks with real weights (points, --position, labels) are the same at these
            _attempt(missing, lambda: check_probes_fit(built.measured, probes, config, torch_device))
            if all(s.y is None for s in probes.splits):  # as analyze measures it: those groups stay null
                config = replace(config, metrics=tuple(g for g in config.metrics if g not in LABELLED_GROUPS))
    return RunInfo(list(found.checkpoints), built.description if built else {}, probes_file,
                   probes.sizes() if probes else {}, config, str(torch_device), kind,
                   (*found.messages(), *label_notes(probes, config.metrics)),
                   tuple(missing), None if embedding is None else embedding.name, dim)


def measured_input(built: BuiltModel, probes: ProbeSet, embedding: TokenEmbedding | None,
                   device: torch.device) -> tuple[str, int | None]:
    """What a measured point is ("numbers" or "token ids") and D, its values: a token model's are its
    embedding's outputs (none without an embedding module)."""
    x = probes.splits[0].x[:1].to(device)
    if x.is_floating_point():
        return "numbers", math.prod(x.shape[1:])
    if embedding is None:
        return "token ids", None
    return "token ids", embedding_outputs(built.measured, embedding.module, x).shape[1]
