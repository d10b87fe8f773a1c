"""A run made ready to measure, once: the model built, the probes fitted to it, the metric options and metadata.

`open_session` reads the first checkpoint that loads (an inferred MLP is read off its shapes), loads its weights
into the model (a model that does not fit them is the model's fault, said before anything is measured), checks
that the probe points and labels fit the model with those real weights, and writes down everything a result
depends on. Every checkpoint after that only loads weights into the same model. A token model's points are its
embedding's outputs, which move with the weights: `Session.split_metrics` makes them at each checkpoint.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import __version__
from ..errors import UnreadableCheckpoints, error_message
from ..inputs.checkpoints import Checkpoint
from ..inputs.config import AnalyzeConfig, resolve_radius
from ..inputs.embedding import TokenEmbedding
from ..inputs.models import BuiltModel, build_from_factory, infer_mlp, load_weights
from ..inputs.probes import Split
from ..inputs.run import RunInputs
from ..metrics import MetricOptions, compute_split_metrics, make_frame
from ..metrics.embedded import AtEmbedding, embedding_outputs
from ..metrics.llc import require_devinterp
from ..results import SCHEMA_VERSION
from .loading import Loaded, load
from .probe_fit import check_labels_exist, check_probes_fit, settle_inputs

# Bumped whenever a metric's values change for the same configuration, so a resumed file never mixes them.
METRICS_VERSION = 3


@dataclass(frozen=True)
class Session:
    """Everything a checkpoint is measured with; the same for every checkpoint of the run."""

    inputs: RunInputs
    config: AnalyzeConfig  # as measured: a token model's has no robustness group
    model: BuiltModel
    splits: tuple[Split, ...]  # on the device, in the form the model takes; none without probe data
    options: MetricOptions  # a token model's LC radius given as a percentage is resolved at each checkpoint
    frame: torch.Tensor | None  # the LC directions, one frame for the whole run
    metadata: dict
    embedding: TokenEmbedding | None = None  # a token model's token embedding: the geometry is measured at its output

    def split_metrics(self) -> list[tuple[Split, dict]]:
        """Every split's metric columns at the weights loaded now. A token model's geometry and accuracy are
        measured on the network after its embedding at the embedding's outputs, with a percentage LC radius
        resolved at these weights; its gradient on the model itself at the tokens (the embedding's own
        gradient counts)."""
        measured = self.model.measured
        if self.embedding is None:
            return [(s, compute_split_metrics(measured, s.x, s.y, options=self.options, frame=self.frame))
                    for s in self.splits]
        module = self.embedding.module
        embedded = [embedding_outputs(measured, module, s.x) for s in self.splits]
        radius = resolve_radius(self.config.lc_radius, median_norm(embedded[0]))
        at_embedding = replace(self.options, groups=tuple(g for g in self.options.groups if g != "gradient"),
                               lc_radius=radius)
        on_tokens = replace(self.options, groups=tuple(g for g in self.options.groups if g == "gradient"))
        rows = []
        for split, x in zip(self.splits, embedded):
            row = compute_split_metrics(AtEmbedding(measured, module, split.x), x, split.y, options=at_embedding,
                                        frame=self.frame)
            if on_tokens.groups:
                row.update(compute_split_metrics(measured, split.x, split.y, options=on_tokens, frame=None))
            rows.append((split, row))
        return rows


def median_norm(x: torch.Tensor) -> float:
    """The median L2 norm of the points (N, ...), the middle of an even count.

    >>> median_norm(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
    3.0
    """
    return float(x.reshape(len(x), -1).to(torch.float64).norm(dim=1).quantile(0.5))


def build_model(config: AnalyzeConfig, ckpt_dir: Path, state: dict | None, device: torch.device,
                dtype: torch.dtype) -> BuiltModel:
    """The run's network on `device` and `dtype`, in eval mode: from the factory, or read off `state` (mlp)."""
    if config.model == "mlp":
        built = infer_mlp(state, config.activation)
    else:
        built = build_from_factory(config.model, config.model_kwargs, ckpt_dir,
                                   base_first="model" in config.from_manifest)
    built.module.to(device=device, dtype=dtype).eval()
    return replace(built, position=config.position)


def first_loadable(checkpoints: list[Checkpoint]) -> list[Loaded]:
    """The checkpoints read in order up to the first that loads (the ones before it hold their errors).

    UnreadableCheckpoints when none of them can be read: there is nothing to build or measure, but each one's
    failure is in it, to be written as its error rows.
    """
    read = []
    for ckpt in checkpoints:
        read.append(load(ckpt))
        if read[-1].error is None:
            return read
    failures = [(r.checkpoint, error_message(r.error), r.identity.columns() if r.identity is not None else {})
                for r in read]
    raise UnreadableCheckpoints(f"none of the {len(read)} checkpoints to analyse can be read; the first: "
                                f"{failures[0][1]}", failures)


def metric_options(inputs: RunInputs, config: AnalyzeConfig, dim: int = 0,
                   median: float = 0.0) -> tuple[MetricOptions, torch.Tensor | None]:
    """The metric options of the run (absolute LC radius, PGD radius and noise level, directions that fit the
    `dim` values of a measured point) and its LC frame; `median` is the median norm of the train points that a
    percentage LC radius is relative to. Without probe data there is nothing to resolve them against: only
    data-free groups are measured then."""
    if "llc" in config.metrics:
        require_devinterp()
    if inputs.probes is None:
        return MetricOptions(groups=config.metrics, seed=config.seed), None
    probes = inputs.probes
    directions = config.lc_directions
    if "lc_directions" not in config.explicit:
        directions = min(directions, dim)  # the default adapts to low-dimensional inputs; an explicit value must fit
    options = MetricOptions(
        groups=config.metrics, lc_directions=directions, seed=config.seed,
        lc_radius=resolve_radius(config.lc_radius, median),
        robust_eps=resolve_radius(config.robust_eps, probes.train_value_range, "robust_eps"),
        robust_steps=config.robust_steps,
        noise_sigma=resolve_radius(config.noise_sigma, probes.train_value_range, "noise_sigma"))
    frame = None
    if "lc" in options.groups:
        frame = make_frame(dim, directions, config.seed, dtype=inputs.dtype, device=inputs.device)
    return options, frame


def run_metadata(inputs: RunInputs, model: BuiltModel | None, options: MetricOptions,
                 embedding: TokenEmbedding | None = None, dim: int | None = None) -> dict:
    """The results file's `grokmon` document: what a result depends on, so it can be reproduced and resumed.

    A token model's percentage LC radius has no one absolute value (each row's `lc_radius` holds it). Without a
    model (no checkpoint could be read to build it) `model` is null."""
    probes = inputs.probes
    per_checkpoint = embedding is not None and str(inputs.config.lc_radius).strip().endswith("%")
    return {
        "grokmon_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "metrics_version": METRICS_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint_dir": str(inputs.ckpt_dir.resolve()),
        "config": inputs.config.to_dict(),
        "lc_radius_absolute": None if per_checkpoint else options.lc_radius,
        "lc_directions_used": options.lc_directions,
        "robust_eps_absolute": options.robust_eps,
        "noise_sigma_absolute": options.noise_sigma,
        "llc_sampler": options.llc.to_dict() if "llc" in options.groups else None,
        "model": None if model is None else model.description,
        "embedding": None if embedding is None else {"module": embedding.name, "vocab": embedding.vocab},
        "input_dim": dim,
        "device": str(inputs.device),
        "torch_version": torch.__version__,
        "probe_file": str(probes.path.resolve()) if probes is not None and probes.path is not None else None,
        "probe_hash": probes.sha256 if probes is not None else None,
        "probe_points": probes.sizes() if probes is not None else {},
    }


def unmeasured_metadata(inputs: RunInputs) -> dict:
    """The `grokmon` document of a results file whose checkpoints all failed to load: the configuration and probe
    data as given, no model, no resolved metric options (nothing was measured; the next run measures afresh)."""
    metadata = run_metadata(inputs, None, MetricOptions(groups=inputs.config.metrics, seed=inputs.config.seed))
    return {**metadata, "lc_radius_absolute": None, "lc_directions_used": None, "robust_eps_absolute": None,
            "noise_sigma_absolute": None, "llc_sampler": None}


def open_session(inputs: RunInputs, pending: list[Checkpoint]) -> tuple[Session, list[Loaded]]:
    """Build the model and fit the probes to it once, from the first of `pending` that loads.

    Returns the session and the checkpoints read on the way (measure them first: they are not read again).
    """
    read = first_loadable(pending)
    model = build_model(inputs.config, inputs.ckpt_dir, read[-1].state, inputs.device, inputs.dtype)
    first = read[-1]
    return prepare_session(inputs, model, lambda: load_weights(model, first.state, first.checkpoint.name),
                           weights_from=first.checkpoint.name), read


def prepare_session(inputs: RunInputs, model: BuiltModel, load_first=lambda: None,
                    weights_from: str | None = None) -> Session:
    """The session of `model` (in eval mode): the probes settled to the way it takes them and checked against it
    with real weights (`load_first()` puts them in, after the checks that need no weights), the options, the
    metadata. A model that is already trained (the live one of a training loop) needs no `load_first`. Without
    probe data (data-free groups only) there is nothing to settle or check, and no split. `weights_from`: the
    checkpoint `load_first` reads (named where the probes do not fit: it may be another model's)."""
    if inputs.probes is None:
        load_first()
        options, frame = metric_options(inputs, inputs.config)
        return Session(inputs, inputs.config, model, (), options, frame, run_metadata(inputs, model, options))
    config, probes, embedding = settle_inputs(inputs.config, inputs.probes, model, inputs.dtype, inputs.device)
    check_labels_exist(config, probes)
    load_first()
    check_probes_fit(model.measured, probes, config, inputs.device, weights_from)
    splits = tuple(Split(s.name, s.x.to(inputs.device), None if s.y is None else s.y.to(inputs.device))
                   for s in probes.splits)
    dim, median = point_scale(model, embedding, splits[0], probes.train_median_norm)
    options, frame = metric_options(inputs, config, dim, median)
    metadata = run_metadata(inputs, model, options, embedding, dim)
    return Session(inputs, config, model, splits, options, frame, metadata, embedding)


def point_scale(model: BuiltModel, embedding: TokenEmbedding | None, train: Split,
                train_median_norm: float) -> tuple[int, float]:
    """D, the values per measured point, and the median norm of the train points at the weights loaded now:
    the probe points' (all of x_train), or a token model's embedded train split."""
    if embedding is None:
        return math.prod(train.x.shape[1:]), train_median_norm
    embedded = embedding_outputs(model.measured, embedding.module, train.x)
    return embedded.shape[1], median_norm(embedded)
