"""Probe data: the points every checkpoint is measured on.

A `.safetensors`, `.pt` (weights_only) or `.npz` file with `x_train` and optionally `y_train`, `x_test`,
`y_test`, or the same tensors in a dict (the training-loop callbacks take either). Splits: `train`, `test`
(when present) and `random` (uniform in the bounding box of `x_train`).

The probe hash is one of the tensors, not of the file's bytes: the same tensors give the same hash whether
they come from a `.safetensors`, `.npz` or `.pt` file or from a dict, so a results file that a callback wrote
from a dict resumes under `grokmon analyze --data` of a file holding those tensors.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..columns import LABELLED_SPLITS
from ..errors import ProbeError, first_line

TENSORS_SOURCE = "the probe tensors"  # how messages name probe data given as a dict
PROBE_SUFFIXES = (".safetensors", ".pt", ".pth", ".npz")
# The probe file found beside the checkpoints without --data: probes.safetensors, probes.pt, ...
DEFAULT_PROBE_NAMES = tuple(f"probes{suffix}" for suffix in PROBE_SUFFIXES)
KNOWN_KEYS = tuple(f"{kind}_{split}" for split in LABELLED_SPLITS for kind in ("x", "y"))


@dataclass(frozen=True)
class Split:
    """One split's points, in the model's input shape, and labels (int classes or float targets) or None."""

    name: str
    x: torch.Tensor
    y: torch.Tensor | None


@dataclass(frozen=True)
class ProbeSet:
    """The probe data's splits after subsetting, its file (None for tensors given as a dict), the hash of its
    tensors (`tensors_sha256`), and the size, median L2 norm (the scale of a relative LC radius) and value range,
    max - min over all values (the scale of a relative PGD radius and noise level), of all its train points,
    whatever `--points` takes; and the (lowest, highest) value of each integer tensor in it (`y_test`: class
    labels, `x_train`: token ids), over every point, so that a bad label or id outside the subset is found too."""

    path: Path | None
    sha256: str
    splits: tuple[Split, ...]
    train_size: int
    train_median_norm: float
    train_value_range: float
    integer_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The probe data as messages name it: its file, or "the probe tensors"."""
        return TENSORS_SOURCE if self.path is None else str(self.path)

    def sizes(self) -> dict[str, int]:
        """Points per analysed split."""
        return {s.name: len(s.x) for s in self.splits}


def label_notes(probes: ProbeSet | None, metrics: tuple[str, ...]) -> list[str]:
    """One line where accuracy is measured (in `metrics`) and the probe data labels one of the train and test
    splits but not the other, which it has points of (most likely a label left out: accuracy is then measured on
    one split only, and `grokmon phases` needs both for accuracy mode). Probe data without an x_test is a choice
    the README documents: no note."""
    if probes is None or "accuracy" not in metrics:
        return []
    labelled = {s.name: s.y is not None for s in probes.splits if s.name in LABELLED_SPLITS}
    if len(labelled) < 2 or len(set(labelled.values())) == 1:
        return []
    have, lack = ("train", "test") if labelled["train"] else ("test", "train")
    return [f"{probes.source} labels x_{have} but not x_{lack} (no y_{lack}): accuracy is measured on {have} only, "
            f"so `grokmon phases` will use geometry mode; add y_{lack} for accuracy mode"]


def tensors_sha256(data: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the probe tensors grokmon reads: each one's name, dtype, shape and bytes, in a fixed order.

    >>> x = torch.zeros(2, 3)
    >>> tensors_sha256({"x_train": x}) == tensors_sha256({"x_train": x.clone(), "notes": torch.ones(1)})
    True
    """
    digest = hashlib.sha256()
    for key in KNOWN_KEYS:
        if key in data:
            tensor = data[key].detach().cpu().contiguous()
            digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def default_probe_file(ckpt_dir: Path) -> Path | None:
    """The probe file in the checkpoint directory (one of DEFAULT_PROBE_NAMES), None without one; ProbeError when
    there are several, since which one is meant cannot be told."""
    present = [Path(ckpt_dir) / name for name in DEFAULT_PROBE_NAMES if (Path(ckpt_dir) / name).is_file()]
    if len(present) > 1:
        raise ProbeError(f"{ckpt_dir}: several probe files ({', '.join(p.name for p in present)}); keep one, or "
                         "choose with --data FILE")
    return present[0] if present else None


def _read(path: Path) -> dict[str, torch.Tensor]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {k: torch.from_numpy(np.array(archive[k])) for k in archive.files}
        if suffix in (".pt", ".pth"):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(loaded, dict):
                raise ProbeError(f"{path}: holds a {type(loaded).__name__}; expected a dict with x_train (and y_train, ...)")
            return loaded
    except ProbeError:
        raise
    except Exception as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            raise ProbeError(f"{path}: holds arrays of Python objects, which would need unpickling to load and are "
                             "refused; save numeric arrays (np.asarray(x, dtype=np.float32)) with numpy.savez") from exc
        reason = first_line(exc)
        if "Weights only load failed" in str(exc):  # torch's long text says how to load unsafely: not our advice
            reason = "not a torch.save file of plain tensors"
        elif suffix in (".pt", ".pth") and not zipfile.is_zipfile(path):
            # bytes that are no torch.save archive fail inside the unpickler with whatever it read ("(101)": a bare key)
            reason = "not a torch.save file: torch's loader could not read its bytes"
        raise ProbeError(f"{path}: cannot read probe data ({reason}); write it with safetensors or numpy.savez") from exc
    raise ProbeError(f"Expected probe data to end in {', '.join(PROBE_SUFFIXES)}, but got {path.name}")


def _as_tensor(path: Path | str, key: str, value: object) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise ProbeError(f"{path}: {key} is a {type(value).__name__}, expected a tensor")
    return value


def _check(path: Path | str, raw: dict) -> dict[str, torch.Tensor]:
    if "x_train" not in raw:
        raise ProbeError(f"{path}: no x_train (found {', '.join(map(str, raw)) or 'nothing'}); probe files need x_train")
    data = {k: _as_tensor(path, k, raw[k]) for k in KNOWN_KEYS if k in raw}
    for split in LABELLED_SPLITS:
        x, y = data.get(f"x_{split}"), data.get(f"y_{split}")
        if y is not None and x is None:
            raise ProbeError(f"{path}: y_{split} without x_{split}")
        if x is None:
            continue
        if x.ndim < 2 or len(x) == 0:
            raise ProbeError(f"{path}: x_{split} has shape {tuple(x.shape)}; expected (points, features...)")
        if x.dtype == torch.bool or x.is_complex():
            raise ProbeError(f"{path}: x_{split} has dtype {x.dtype}; expected real numbers")
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise ProbeError(f"{path}: x_{split} holds NaN or infinite values")
        if split == "test" and x.shape[1:] != data["x_train"].shape[1:]:
            raise ProbeError(
                f"{path}: x_test points have shape {tuple(x.shape[1:])} but x_train points {tuple(data['x_train'].shape[1:])}"
            )
        if y is not None:
            if len(y) != len(x):
                raise ProbeError(f"{path}: y_{split} has {len(y)} labels for {len(x)} points in x_{split}")
            if y.dtype == torch.bool or y.is_complex():
                raise ProbeError(f"{path}: y_{split} has dtype {y.dtype}; expected int class indices or float targets")
            if y.is_floating_point() and not torch.isfinite(y).all():
                raise ProbeError(f"{path}: y_{split} holds NaN or infinite values")
    return data


def _subset(x: torch.Tensor, y: torch.Tensor | None, points: int, generator: torch.Generator):
    if points >= len(x):
        return x, y
    index = torch.randperm(len(x), generator=generator)[:points].sort().values
    return x[index], (None if y is None else y[index])


def as_numbers(probes: ProbeSet, dtype: torch.dtype) -> ProbeSet:
    """Integer inputs that the model computes on (pixels, counts) as `dtype` numbers."""
    return replace(probes, splits=tuple(replace(s, x=s.x.to(dtype)) for s in probes.splits))


def as_token_ids(probes: ProbeSet, vocab: int | None, seed: int) -> ProbeSet:
    """Integer inputs that the model embeds, as token ids: the random split holds uniformly random ids in
    [0, vocab) of the train points' shape, as many as the train split, seeded (a box of token ids is not a
    distribution); without a vocabulary there is no random split.

    >>> train = Split("train", torch.zeros(3, 2, dtype=torch.long), None)
    >>> probes = ProbeSet(Path("p.safetensors"), "", (train, Split("random", torch.zeros(3, 2), None)), 3, 0.0, 0.0)
    >>> random = as_token_ids(probes, vocab=7, seed=0).splits[1].x
    >>> random.dtype, tuple(random.shape), bool(random.max() < 7)
    (torch.int64, (3, 2), True)
    """
    kept = tuple(s for s in probes.splits if s.name != "random")
    if vocab is None:
        return replace(probes, splits=kept)
    x_train = probes.splits[0].x
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, tuple(x_train.shape), generator=generator)
    return replace(probes, splits=(*kept, Split("random", ids, None)))


def load_probes(path: Path, points: int, seed: int, dtype: torch.dtype) -> ProbeSet:
    """Read, check and subset probe data: `points` per split (seeded; every point, in order, when fewer).

    Float inputs come in `dtype`; integer inputs stay int64 until `as_numbers` or `as_token_ids` settles what
    they are.
    """
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"{path}: no such probe data file; pass --data FILE with x_train (and y_train, x_test, y_test)")
    return _probe_set(_check(path, _read(path)), path, points, seed, dtype)


def probes_from_tensors(tensors: dict, points: int, seed: int, dtype: torch.dtype) -> ProbeSet:
    """`load_probes` for tensors given as a dict (`x_train`, and `y_train`, `x_test`, `y_test`): the same
    checks, subsets, random split and hash as a file holding them.

    >>> probes = probes_from_tensors({"x_train": torch.zeros(3, 2)}, points=2, seed=0, dtype=torch.float64)
    >>> probes.sizes(), probes.source
    ({'train': 2, 'random': 2}, 'the probe tensors')
    """
    if not isinstance(tensors, dict):
        raise ProbeError(f"Expected probes to be a probe file or a dict of tensors, but got {type(tensors).__name__}")
    data = {key: value.detach().cpu() for key, value in _check(TENSORS_SOURCE, tensors).items()}
    return _probe_set(data, None, points, seed, dtype)


def _probe_set(data: dict[str, torch.Tensor], path: Path | None, points: int, seed: int,
               dtype: torch.dtype) -> ProbeSet:
    if points < 1:
        raise ProbeError(f"Expected --points to be at least 1, but got {points}")
    generator = torch.Generator().manual_seed(seed)
    splits = []
    for name in LABELLED_SPLITS:
        if f"x_{name}" not in data:
            continue
        x, y = _subset(data[f"x_{name}"], data.get(f"y_{name}"), points, generator)
        if y is not None and y.is_floating_point():
            y = y.to(dtype)
        elif y is not None:
            y = y.long()
        splits.append(Split(name, x.to(dtype) if x.is_floating_point() else x.long(), y))
    x_train = data["x_train"].to(torch.float64)  # drawn in float64 whatever --dtype: the same points either way
    low, high = x_train.min(dim=0).values, x_train.max(dim=0).values
    count = min(points, len(x_train))
    uniform = torch.rand((count, *x_train.shape[1:]), generator=generator, dtype=torch.float64)
    splits.append(Split("random", (low + (high - low) * uniform).to(dtype), None))
    norms = x_train.reshape(len(x_train), -1).norm(dim=1)
    ranges = {k: (int(v.min()), int(v.max())) for k, v in data.items() if not v.is_floating_point() and v.numel()}
    return ProbeSet(path, tensors_sha256(data), tuple(splits), len(x_train),
                    float(norms.quantile(0.5)),  # the middle of an even count, not its lower half
                    float(x_train.max() - x_train.min()), ranges)
