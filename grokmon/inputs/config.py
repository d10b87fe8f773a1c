"""The run's configuration: command-line options over the `grokmon.toml` manifest over the defaults."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..columns import DEFAULT_GROUPS, METRIC_GROUPS
from ..errors import ConfigError

MANIFEST_NAME = "grokmon.toml"
DTYPES = ("float32", "float64")
# Activations of the inferred mlp: option value -> torch.nn class name.
MLP_ACTIVATIONS = {"relu": "ReLU", "gelu": "GELU", "leaky_relu": "LeakyReLU", "tanh": "Tanh"}
DEFAULT_LC_RADIUS = "50%"
# PGD radius and noise scale, as shares of the train probes' value range (max - min over all their values).
# On the sample run (one-hot inputs, range 1) these show robustness still rising after test accuracy settled.
DEFAULT_ROBUST_EPS = "1%"
DEFAULT_ROBUST_STEPS = 10
DEFAULT_NOISE_SIGMA = "5%"
# --device: one device, several (one worker each), or every CUDA device.
DEVICE_NAMES = r"cuda:all|(auto|cpu|cuda(:\d+)?)(,(auto|cpu|cuda(:\d+)?))*"

MANIFEST_KEYS = (
    "model", "model_kwargs", "activation", "embedding", "position", "data", "points", "metrics",
    "lc_directions", "lc_radius", "robust_eps", "robust_steps", "noise_sigma", "seed", "dtype", "phases", "weights",
    "steps",
)


@dataclass(frozen=True)
class AnalyzeConfig:
    """Everything that decides the values `analyze` computes (the device does not: it only changes speed)."""

    model: str = "mlp"
    model_kwargs: dict = field(default_factory=dict)
    activation: str = "relu"
    embedding: str | None = None  # the token-embedding module whose output the geometry is measured at
    position: int | None = None  # the output position measured and scored for sequence outputs (-1: last)
    data: str | None = None
    points: int = 512
    metrics: tuple[str, ...] = DEFAULT_GROUPS
    lc_directions: int = 25
    lc_radius: str = DEFAULT_LC_RADIUS
    robust_eps: str = DEFAULT_ROBUST_EPS
    robust_steps: int = DEFAULT_ROBUST_STEPS
    noise_sigma: str = DEFAULT_NOISE_SIGMA
    seed: int = 0
    dtype: str = "float32"
    phases: dict = field(default_factory=dict)  # threshold overrides for `grokmon phases`
    weights: str | None = None  # the model to measure in checkpoint folders that hold several (model_1)
    steps: dict = field(default_factory=dict)  # checkpoint name -> step, for checkpoints that store none
    explicit: frozenset = field(default=frozenset(), compare=False, repr=False)  # set by flag or manifest
    from_manifest: frozenset = field(default=frozenset(), compare=False, repr=False)  # set by the manifest

    def to_dict(self) -> dict:
        """JSON-ready form, stored in the results' metadata."""
        out = asdict(self)
        out.pop("explicit")
        out.pop("from_manifest")
        out["metrics"] = list(self.metrics)
        return out


def _parse_manifest(path: Path) -> dict:
    """The TOML document of a manifest; ConfigError when it is not valid TOML (OSError when unreadable)."""
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def read_manifest(ckpt_dir: Path) -> dict:
    """The manifest's settings, or {} when the directory has none."""
    path = Path(ckpt_dir) / MANIFEST_NAME
    if not path.is_file():
        return {}
    manifest = _parse_manifest(path)
    unknown = sorted(set(manifest) - set(MANIFEST_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(MANIFEST_KEYS)}")
    for key, value in manifest.items():
        kinds, words = _MANIFEST_TYPES[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise ConfigError(f"{path}: expected {key} to be {words}, but got {value!r}")
    try:
        check_values(manifest)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    _check_phases(path, manifest.get("phases", {}))
    return manifest


def _check_phases(path: Path, phases: object) -> None:
    """ConfigError naming the manifest when its `[phases]` table is not a table of valid thresholds."""
    from ..phasing.types import PhaseThresholds

    if not isinstance(phases, dict):
        raise ConfigError(f"{path}: expected phases to be a table of phase thresholds, but got {phases!r}")
    try:
        PhaseThresholds().with_overrides(phases)
    except ConfigError as exc:
        raise ConfigError(f"{path}: [phases]: {exc}") from None


_MANIFEST_TYPES = {
    "model": (str, "a string like \"mlp\" or \"model.py:build\""), "model_kwargs": ((dict, str), "a table"),
    "activation": (str, "a string"), "embedding": (str, "a module name like \"transformer.wte\""),
    "position": ((str, int), "\"last\" or an integer"), "data": (str, "a file path"), "points": (int, "an integer"),
    "metrics": ((str, list), "a list like [\"centroid\", \"lc\"]"), "lc_directions": (int, "an integer"),
    "lc_radius": ((str, int, float), "a number or a percentage like \"2%\""), "seed": (int, "an integer"),
    "robust_eps": ((str, int, float), "a number or a percentage like \"1%\""), "robust_steps": (int, "an integer"),
    "noise_sigma": ((str, int, float), "a number or a percentage like \"5%\""),
    "dtype": (str, "\"float32\" or \"float64\""), "phases": (dict, "a table of phase thresholds"),
    "weights": (str, "a model name like \"model_1\""),
    "steps": (dict, "a table of checkpoint name = step, like \"checkpoints/checkpoint_0\" = 500"),
}


def manifest_phase_overrides(ckpt_dir: Path) -> dict | None:
    """The manifest's `[phases]` table as it is now, checked: {} when the directory has no manifest (the defaults
    hold), None when the directory itself is gone (the copy stored with the results stands in). A manifest that
    cannot be read or is not valid TOML is a ConfigError, as it is for `analyze`: falling back to the stored copy
    would judge the run by settings the user has since changed. Other keys are `analyze`'s business, not checked
    here."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    path = ckpt_dir / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        phases = _parse_manifest(path).get("phases", {})
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from exc
    _check_phases(path, phases)
    return phases


def phase_thresholds(metadata: dict, overrides: dict | None = None):
    """The thresholds `grokmon phases` and `report` judge a results file with: the defaults, replaced by the
    `[phases]` table of the run's manifest as it is now (none there: the defaults; the copy stored in the results'
    metadata when the run's directory is gone), then by `overrides` (--set)."""
    from ..phasing.types import PhaseThresholds

    stored = metadata.get("config", {}).get("phases", {}) or {}
    run_dir = metadata.get("checkpoint_dir")
    current = manifest_phase_overrides(Path(run_dir)) if run_dir else None
    return PhaseThresholds().with_overrides({**(stored if current is None else current), **(overrides or {})})


def moved_manifest_note(results: Path, metadata: dict) -> str | None:
    """A note when the results sit beside a manifest that `phase_thresholds` does not read: their run directory was
    moved or copied since it was analysed, and not analysed again where it is now. Where the directory it was
    analysed in is gone, the `[phases]` stored with the results decide; where it is still there (a copy), its
    manifest does; either way not the one beside them, whatever it now says. None otherwise."""
    run_dir = metadata.get("checkpoint_dir")
    beside = Path(results).resolve().parent / MANIFEST_NAME
    if not run_dir or not beside.is_file() or beside.parent == Path(run_dir):
        return None
    gone = not Path(run_dir).is_dir()
    if gone:
        decide, where = metadata.get("config", {}).get("phases", {}) or {}, "which is gone, so the [phases] stored with them"
    else:
        try:
            decide = manifest_phase_overrides(Path(run_dir)) or {}
        except ConfigError:  # phase_thresholds says what is wrong with it
            return None
        where = "which is still there, so its manifest's [phases]"
    used = ", ".join(f"{k}={v}" for k, v in sorted(decide.items())) or "none: the defaults"
    return (f"{beside} is not read: these results were analysed in {run_dir}, {where} decide ({used}); run "
            f"`grokmon analyze {beside.parent}` once to judge them by this manifest")


def parse_metrics(value: str | list | tuple) -> tuple[str, ...]:
    """Metric groups from 'centroid,lc' or a list, in canonical order.

    >>> parse_metrics("lc, centroid")
    ('centroid', 'lc')
    """
    names = [str(v).strip() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    unknown = [n for n in names if n not in METRIC_GROUPS]
    if unknown or not names:
        raise ConfigError(f"Expected metrics to be a comma-separated subset of {','.join(METRIC_GROUPS)}, but got {value!r}")
    return tuple(g for g in METRIC_GROUPS if g in names)


def parse_model_kwargs(value: str | dict) -> dict:
    """Keyword arguments for the model factory, from JSON text or a manifest table."""
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ConfigError(f"Expected model_kwargs to be a JSON object, but got {value!r} ({exc})") from exc
    if not isinstance(parsed, dict):
        raise ConfigError(f"Expected model_kwargs to be a JSON object, but got {value!r}")
    return parsed


def parse_position(value: str | int) -> int:
    """The output position `--position` picks: `last` is -1, an integer counts from 0 (negative: from the end).

    >>> parse_position("last"), parse_position("2"), parse_position(-2)
    (-1, 2, -2)
    """
    text = str(value).strip()
    if text == "last":
        return -1
    if isinstance(value, bool) or not re.fullmatch(r"-?[0-9]+", text):
        raise ConfigError(f"Expected position to be last or an integer, but got {value!r}")
    return int(text)


_RADIUS = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*$")


def resolve_radius(value: str | float, scale: float, name: str = "lc_radius") -> float:
    """An absolute distance from a number as given, or a percentage of `scale` (for lc_radius the median
    train-probe norm; for robust_eps and noise_sigma the train probes' value range).

    >>> resolve_radius("0.05", 10.0), resolve_radius("2%", 10.0)
    (0.05, 0.2)
    """
    match = _RADIUS.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"Expected {name} to be a positive number or percentage like 2%, but got {value!r}")
    number = float(match.group(1))
    return round(number / 100 * scale, 12) if match.group(2) else number


# An LC radius outside this share of the median train-probe norm measures little about the data: above it nearly
# every neuron's boundary crosses the neighbourhood and LC saturates (the sample run: 123 of its 128 neurons at
# 28 times; at 75-100 % its first layer already saturates, README); below it almost none does, and LC is 0 or near
# it at every checkpoint (the sample run: 0.28 on train at 0.00007 times)
LC_RADIUS_SENSIBLE = (0.001, 2.0)


def lc_radius_note(value: str | float, median_norm: float) -> str | None:
    """A line for analyze's notes where the LC radius resolves outside LC_RADIUS_SENSIBLE of the median train
    norm (None inside it, or with no norm to compare against).

    >>> lc_radius_note("50%", 1.4) is None
    True
    >>> lc_radius_note("40", 1.4)[:55]
    'lc_radius 40 is 28.57 times the median train-probe norm'
    """
    if not median_norm > 0:
        return None
    share = resolve_radius(value, median_norm) / median_norm
    low, high = LC_RADIUS_SENSIBLE
    if low <= share <= high:
        return None
    where = ("reaches far past the probe points: nearly every neuron's boundary crosses it, and LC saturates"
             if share > high else "holds almost no neuron's boundary: LC is then 0 or near it at every checkpoint")
    return (f"lc_radius {value} is {share:.4g} times the median train-probe norm {median_norm:.4g}, and a "
            f"neighbourhood that size {where}; the default is {DEFAULT_LC_RADIUS} of that norm")


def resolve_config(ckpt_dir: Path, **options) -> AnalyzeConfig:
    """Merge options (None = not given) over the manifest over the defaults, checking each value."""
    manifest = read_manifest(ckpt_dir)
    merged = {k: v for k, v in manifest.items()}
    merged.update({k: v for k, v in options.items() if v is not None})
    if "metrics" in merged:
        merged["metrics"] = parse_metrics(merged["metrics"])
    if "model_kwargs" in merged:
        merged["model_kwargs"] = parse_model_kwargs(merged["model_kwargs"])
    if "position" in merged:
        merged["position"] = parse_position(merged["position"])
    if options.get("data") is None and "data" in manifest:
        merged["data"] = str(Path(ckpt_dir) / manifest["data"])  # manifest paths are relative to the run
    elif merged.get("data") is not None:
        merged["data"] = str(merged["data"])
    from_manifest = frozenset(k for k in manifest if options.get(k) is None)
    config = AnalyzeConfig(**merged, explicit=frozenset(merged), from_manifest=from_manifest)
    check_values(asdict(config))
    return config


_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def check_model_spec(value) -> None:
    """ConfigError unless `value` has the form of a model: `mlp`, `file.py:function` or `package.module:function`
    (whether the file, module and function exist is for building the model to tell).

    >>> check_model_spec("nets/conv.py:build"), check_model_spec("mypkg.nets:build")
    (None, None)
    >>> check_model_spec("conv")
    Traceback (most recent call last):
    ...
    grokmon.errors.ConfigError: Expected model to be mlp, file.py:function or package.module:function, but got 'conv'
    """
    target, sep, name = str(value).rpartition(":")
    if value == "mlp" or (sep and name.isidentifier()
                          and (target.endswith(".py") and len(target) > 3 or _MODULE_PATH.fullmatch(target))):
        return
    raise ConfigError(f"Expected model to be mlp, file.py:function or package.module:function, but got {value!r}")


def check_values(values: dict) -> None:
    """ConfigError for the first option value that is wrong on its face (no file or model needed to tell).

    >>> check_values({"points": 0})
    Traceback (most recent call last):
    ...
    grokmon.errors.ConfigError: Expected points to be a positive integer, but got 0
    """
    for name in ("points", "lc_directions", "robust_steps", "seed"):
        if name not in values:
            continue
        value, least = values[name], 0 if name == "seed" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            kind = "a non-negative" if least == 0 else "a positive"
            raise ConfigError(f"Expected {name} to be {kind} integer, but got {value!r}")
    if "device" in values and not re.fullmatch(DEVICE_NAMES, str(values["device"])):
        raise ConfigError("Expected device to be auto, cpu, cuda, cuda:N, a comma-separated list of them (cuda:0,cuda:1) "
                          f"or cuda:all, but got {values['device']!r}")
    if "dtype" in values and values["dtype"] not in DTYPES:
        raise ConfigError(f"Expected dtype to be {' or '.join(DTYPES)}, but got {values['dtype']!r}")
    if values.get("model") is not None:
        check_model_spec(values["model"])
    if "activation" in values and values["activation"] not in MLP_ACTIVATIONS:
        raise ConfigError(f"Expected activation to be one of {', '.join(MLP_ACTIVATIONS)}, but got "
                          f"{values['activation']!r}")
    for name in ("lc_radius", "robust_eps", "noise_sigma"):
        if name in values:
            resolve_radius(values[name], 1.0, name)
    if "metrics" in values:
        parse_metrics(values["metrics"])
    if "model_kwargs" in values:
        parse_model_kwargs(values["model_kwargs"])
    for name, step in values.get("steps", {}).items():
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ConfigError(f"Expected steps.{name} to be a non-negative integer step, but got {step!r}")
    if values.get("position") is not None:
        parse_position(values["position"])
    if values.get("embedding") is not None and not re.fullmatch(r"[A-Za-z0-9_.]+", str(values["embedding"])):
        raise ConfigError(f"Expected embedding to be a module name like transformer.wte, but got {values['embedding']!r}")
