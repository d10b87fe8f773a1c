"""Everything `analyze` reads about a run, resolved once: configuration, checkpoints, probe data, device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..columns import DATA_FREE_GROUPS
from ..errors import ConfigError
from .checkpoints import Checkpoint, FoundCheckpoints, check_directory, find_checkpoints
from .config import AnalyzeConfig, check_values, lc_radius_note, resolve_config
from .probes import DEFAULT_PROBE_NAMES, ProbeSet, default_probe_file, label_notes, load_probes


@dataclass(frozen=True)
class RunInputs:
    """One run's inputs: where it lies, how to analyse it, its complete checkpoints in step order, its probe data
    (None when only data-free metric groups are asked for: then none is read), and what discovery found beside
    the checkpoints (those still being written, skipped; notes)."""

    ckpt_dir: Path
    config: AnalyzeConfig
    checkpoints: tuple[Checkpoint, ...]
    probes: ProbeSet | None
    device: torch.device
    dtype: torch.dtype
    found: FoundCheckpoints = FoundCheckpoints(())

    def notes(self) -> tuple[str, ...]:
        """What analyze says about these inputs before measuring: discovery's notes (checkpoints still being
        written, steps saved twice), labels on one split only (`probes.label_notes`) and an LC radius far from the
        probe points' scale (`config.lc_radius_note`; a token model's points are its embedding's outputs, whose
        scale is known only at the weights, so its radius is not judged here)."""
        return (*self.found.messages(), *label_notes(self.probes, self.config.metrics), *self._radius_notes())

    def _radius_notes(self) -> list[str]:
        if self.probes is None or "lc" not in self.config.metrics:
            return []
        train = next((s for s in self.probes.splits if s.name == "train"), None)
        if train is None or not train.x.is_floating_point():
            return []
        note = lc_radius_note(self.config.lc_radius, self.probes.train_median_norm)
        return [] if note is None else [note]


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
    """The probe data file: `--data` or the manifest's, else the one of DEFAULT_PROBE_NAMES in the run's folder."""
    if config.data is not None:
        return Path(config.data)
    default = default_probe_file(ckpt_dir)
    if default is not None:
        return default
    raise ConfigError(
        f"{ckpt_dir}: no probe data; pass --data FILE (x_train, and y_train, x_test, y_test) or put "
        f"{DEFAULT_PROBE_NAMES[0]} (or {', '.join(DEFAULT_PROBE_NAMES[1:])}) in the checkpoint directory"
    )


def reads_probes(config: AnalyzeConfig) -> bool:
    """Whether the run's metric groups need probe data (all but the data-free ones do)."""
    return not set(config.metrics) <= set(DATA_FREE_GROUPS)


def resolve_inputs(ckpt_dir: str | Path, device: str = "auto", **options) -> RunInputs:
    """Read the manifest and merge `options` over it, find the checkpoints, load and subset the probe data.

    Options are those of `grokmon.analyze` (None = not given).
    """
    ckpt_dir = Path(ckpt_dir)
    check_directory(ckpt_dir)
    check_values({"device": device})
    config = resolve_config(ckpt_dir, **options)
    needs_probes = reads_probes(config)
    # when no probe data is read, a probe file lying there is still never a checkpoint (nor is probes.*)
    probes_file, no_probes = Path(config.data) if config.data else None, None
    if needs_probes:
        try:
            probes_file = probe_path(ckpt_dir, config)
        except ConfigError as exc:  # said once the checkpoints are found: a folder without any says that first
            no_probes = exc
    found = find_checkpoints(ckpt_dir, exclude={probes_file} if probes_file else set(), weights=config.weights,
                             steps=config.steps)
    if no_probes is not None:
        raise no_probes
    dtype = getattr(torch, config.dtype)
    probes = load_probes(probes_file, config.points, config.seed, dtype) if needs_probes else None
    return RunInputs(ckpt_dir, config, found.checkpoints, probes, resolve_device(device), dtype, found)
