"""Everything `analyze` reads about a run, resolved once: configuration, checkpoints, probe data, device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..columns import DATA_FREE_GROUPS
from ..errors import ConfigError
from .checkpoints import Checkpoint, check_directory, discover_checkpoints
from .config import AnalyzeConfig, check_values, resolve_config
from .probes import DEFAULT_PROBE_FILE, ProbeSet, load_probes


@dataclass(frozen=True)
class RunInputs:
    """One run's inputs: where it lies, how to analyse it, its checkpoints in step order, its probe data (None
    when only data-free metric groups are asked for: then none is read)."""

    ckpt_dir: Path
    config: AnalyzeConfig
    checkpoints: tuple[Checkpoint, ...]
    probes: ProbeSet | None
    device: torch.device
    dtype: torch.dtype


def resolve_device(name: str) -> torch.device:
    """The torch device `--device` names (auto: CUDA when available); ConfigError when it is not here.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)  # the name's form was checked with the other options (config.check_values)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def resolve_devices(name: str) -> tuple[torch.device, ...]:
    """The devices `--device` names: one, a comma-separated list (one worker each), or `cuda:all`.

    >>> resolve_devices("cpu,cpu")
    (device(type='cpu'), device(type='cpu'))
    """
    check_values({"device": name})
    if name == "cuda:all":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda:all: CUDA is not available here; use --device cpu or auto")
        return tuple(torch.device("cuda", index) for index in range(torch.cuda.device_count()))
    return tuple(resolve_device(part) for part in name.split(","))


def probe_path(ckpt_dir: Path, config: AnalyzeConfig) -> Path:
    """The probe data file: `--data` or the manifest's, else `probes.safetensors` in the run's folder."""
    if config.data is not None:
        return Path(config.data)
    default = ckpt_dir / DEFAULT_PROBE_FILE
    if default.is_file():
        return default
    raise ConfigError(
        f"{ckpt_dir}: no probe data; pass --data FILE (x_train, and y_train, x_test, y_test) "
        f"or put {DEFAULT_PROBE_FILE} in the checkpoint directory"
    )


def resolve_inputs(ckpt_dir: str | Path, device: str = "auto", **options) -> RunInputs:
    """Read the manifest and merge `options` over it, find the checkpoints, load and subset the probe data.

    Options are those of `grokmon.analyze` (None = not given).
    """
    ckpt_dir = Path(ckpt_dir)
    check_directory(ckpt_dir)
    check_values({"device": device})
    config = resolve_config(ckpt_dir, **options)
    needs_probes = not set(config.metrics) <= set(DATA_FREE_GROUPS)
    if needs_probes:
        probes_file = probe_path(ckpt_dir, config)
    else:  # not read, but a probe file lying there is still never a checkpoint
        probes_file = Path(config.data) if config.data is not None else ckpt_dir / DEFAULT_PROBE_FILE
    checkpoints = discover_checkpoints(ckpt_dir, exclude={probes_file})
    dtype = getattr(torch, config.dtype)
    probes = load_probes(probes_file, config.points, config.seed, dtype) if needs_probes else None
    return RunInputs(ckpt_dir, config, tuple(checkpoints), probes, resolve_device(device), dtype)
