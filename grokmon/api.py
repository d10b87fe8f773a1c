"""What the CLI and Python users call: analyze(), info(), phases(), report()."""

from __future__ import annotations

import datetime as dt
import logging
import math
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from . import __version__
from .inputs.config import AnalyzeConfig, resolve_config, resolve_radius
from .errors import ConfigError, GrokmonError, ResultsError, first_line
from .results.parquet import SCHEMA_VERSION, read_results, rows_to_frame, write_results

DEFAULT_OUTPUT_NAME = "grokmon.parquet"
_log = logging.getLogger("grokmon")  # a failed checkpoint's traceback, at DEBUG (the CLI's --debug shows it)
# Settings that may differ between an existing results file and a new run without invalidating it.
_NOT_COMPARED = ("data", "phases")
# Bumped whenever a metric's values change for the same configuration, so a resumed file never mixes them.
METRICS_VERSION = 2


@dataclass(frozen=True)
class ProgressEvent:
    """Sent to the progress callback when a run starts (step None) and after every checkpoint."""

    done: int
    total: int
    device: str
    step: int | None = None
    checkpoint: str | None = None
    seconds: float | None = None
    status: str | None = None
    error: str | None = None


@dataclass
class _Run:
    config: AnalyzeConfig
    checkpoints: list
    probes: object
    device: object
    dtype: object


def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"Expected --device to be auto, cpu, cuda or cuda:N, but got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"Expected --device to be auto, cpu, cuda or cuda:N, but got {name!r}")
    return device


def _probe_path(ckpt_dir: Path, config: AnalyzeConfig) -> Path:
    from .inputs.probes import DEFAULT_PROBE_FILE

    if config.data is not None:
        return Path(config.data)
    default = ckpt_dir / DEFAULT_PROBE_FILE
    if default.is_file():
        return default
    raise ConfigError(
        f"{ckpt_dir}: no probe data; pass --data FILE (x_train, and y_train, x_test, y_test) "
        f"or put {DEFAULT_PROBE_FILE} in the checkpoint directory"
    )


def _prepare(ckpt_dir: Path, device: str, options: dict) -> _Run:
    import torch

    from .inputs.checkpoints import check_directory, discover_checkpoints
    from .inputs.probes import load_probes

    check_directory(ckpt_dir)
    config = resolve_config(ckpt_dir, **options)
    probe_path = _probe_path(ckpt_dir, config)
    checkpoints = discover_checkpoints(ckpt_dir, exclude={probe_path})
    dtype = getattr(torch, config.dtype)
    probes = load_probes(probe_path, config.points, config.seed, dtype)
    return _Run(config, checkpoints, probes, _resolve_device(device), dtype)


def _build_model(run: _Run, ckpt_dir: Path, state: dict | None):
    from .inputs.models import build_from_factory, infer_mlp

    if run.config.model == "mlp":
        built = infer_mlp(state, run.config.activation)
    else:
        built = build_from_factory(run.config.model, run.config.model_kwargs, ckpt_dir,
                                   base_first="model" in run.config.from_manifest)
    built.module.to(device=run.device, dtype=run.dtype).eval()
    return built


def _takes_tokens(built, run: _Run) -> bool:
    """Whether the model wants integer probe inputs as token ids (it embeds them, or casts them back to
    integers itself) rather than as numbers it computes on. Tried on the freshly built model: only the
    forward pass's structure matters here, not the weights."""
    import torch

    x = run.probes.splits[0].x[:2].to(run.device)
    numbers = x.to(run.dtype).requires_grad_(True)
    try:
        with torch.enable_grad():
            out = built.measured(numbers)
            (grad,) = torch.autograd.grad(out.sum(), numbers, allow_unused=True) if out.requires_grad else (None,)
        return grad is None  # runs on floats, but its outputs do not depend on them: it casts them to ids
    except Exception:  # does not take floats: token ids if it takes the integers as they are
        pass
    try:
        with torch.no_grad():
            built.measured(x)
        return True
    except Exception:  # neither fits: the probe-fit check names the problem
        return False


def _settle_inputs(run: _Run, built) -> _Run:
    """The run with its probe inputs as the model takes them; token ids are measured on accuracy alone."""
    from dataclasses import replace

    from .errors import ProbeError
    from .inputs.probes import as_model_inputs

    if run.probes.splits[0].x.is_floating_point():
        return run
    tokens = built is not None and _takes_tokens(built, run)
    config = run.config
    if tokens:
        geometry = [g for g in config.metrics if g != "accuracy"]
        if geometry and "metrics" in config.explicit:
            raise ProbeError(f"{run.probes.path}: x_train holds integer token ids that the model embeds; the "
                             f"{'/'.join(geometry)} metrics need float inputs: "
                             + ("set metrics = [\"accuracy\"] in the manifest" if "metrics" in config.from_manifest
                                else "pass --metrics accuracy"))
        if all(s.y is None for s in run.probes.splits):
            raise ProbeError(f"{run.probes.path}: x_train holds integer token ids that the model embeds, and no "
                             "labels: add y_train/y_test so that accuracy and loss can be measured")
        config = replace(config, metrics=("accuracy",))
    return replace(run, config=config, probes=as_model_inputs(run.probes, run.dtype, tokens))


def _check_probes_fit(built, run: _Run) -> None:
    """ProbeError naming the probe file when its points or labels do not fit the model (weights loaded)."""
    import torch

    from .errors import ProbeError
    from .metrics.accuracy import accuracy_values

    x = run.probes.splits[0].x[:2].to(run.device)
    try:
        with torch.no_grad():
            built.measured(x)
    except Exception as exc:
        raise ProbeError(
            f"{run.probes.path}: probe points of shape {tuple(x.shape[1:])} do not fit the model ({first_line(exc)}); "
            "store x_* in the shape the model takes"
        ) from exc
    for split in run.probes.splits:
        if split.y is None or "accuracy" not in run.config.metrics:
            continue
        with torch.no_grad():
            outputs = built.measured(split.x[:2].to(run.device)).reshape(2 if len(split.x) > 1 else 1, -1)
        try:  # the label check wants one output row per label; the values do not matter
            accuracy_values(outputs[:1].expand(len(split.y), -1), split.y)
        except ProbeError as exc:
            raise ProbeError(f"{run.probes.path}: y_{split.name} does not fit the model: {exc}") from exc


def _metadata(run: _Run, ckpt_dir: Path, built, radius: float) -> dict:
    import torch

    return {
        "grokmon_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "metrics_version": METRICS_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint_dir": str(ckpt_dir.resolve()),
        "config": run.config.to_dict(),
        "lc_radius_absolute": radius,
        "lc_directions_used": min(run.config.lc_directions, math.prod(run.probes.splits[0].x.shape[1:])),
        "model": built.description if built is not None else None,
        "device": str(run.device),
        "torch_version": torch.__version__,
        "probe_file": str(run.probes.path.resolve()),
        "probe_hash": run.probes.sha256,
        "probe_points": run.probes.sizes(),
    }


def _comparable(metadata: dict) -> dict:
    config = {k: v for k, v in metadata.get("config", {}).items() if k not in _NOT_COMPARED}
    return {**config, "probe_hash": metadata.get("probe_hash")}


def _previous_rows(output: Path, metadata: dict, overwrite: bool) -> list[dict]:
    """Rows of an earlier run with the same configuration (ok ones only: failures are retried).

    A file in which every checkpoint failed holds nothing to protect: a new configuration replaces it.
    """
    if overwrite or not output.exists():
        return []
    try:
        frame, old = read_results(output)
    except ResultsError as exc:
        raise ResultsError(f"{exc}; pass --overwrite to replace it, or -o another file") from exc
    if not (frame["status"] == "ok").any():
        return []
    if old.get("metrics_version") != METRICS_VERSION:
        raise ConfigError(
            f"{output}: was written by grokmon {old.get('grokmon_version', '?')}, whose metric values differ from "
            f"this version's (metrics version {old.get('metrics_version', 1)}, now {METRICS_VERSION}); pass "
            "--overwrite to recompute them all, or -o another file"
        )
    before, now = _comparable(old), _comparable(metadata)
    changed = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    if changed:
        raise ConfigError(
            f"{output}: holds results of another configuration ({'; '.join(changed)}); "
            "pass --overwrite to replace them, or -o another file"
        )
    return frame[frame["status"] == "ok"].to_dict("records")


def _check_labels(run: _Run) -> None:
    """Accuracy asked for by name needs labels; by default an unlabelled run is measured on geometry alone."""
    if "metrics" in run.config.explicit and "accuracy" in run.config.metrics and all(s.y is None for s in run.probes.splits):
        raise ConfigError(
            f"{run.probes.path}: --metrics accuracy needs labels, but the probe data has no y_train/y_test; "
            "pass --data FILE with labels, or drop accuracy from --metrics"
        )


def _check_writable(output: Path) -> None:
    """Fail before any work when the results cannot be written: try it with a scratch file."""
    if output.is_dir():
        raise ResultsError(f"{output}: is a directory; give -o a file name like results.parquet")
    if output.suffix.lower() not in (".parquet", ".pq"):
        raise ResultsError(f"{output}: results are a Parquet file; give -o a name ending in .parquet")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as exc:
        raise ResultsError(f"{output}: cannot write results there ({exc.strerror}); choose a writable path with -o") from exc


def _error_rows(ckpt, splits, message: str) -> list[dict]:
    return [
        {"step": ckpt.step, "checkpoint": ckpt.name, "split": s.name, "n_points": len(s.x),
         "status": "error", "error": message}
        for s in splits
    ]


def _measure(built, ckpt, splits: list, options, frame) -> list[dict]:
    """Every split's metrics for the checkpoint whose weights the model holds."""
    from .metrics import compute_split_metrics

    return [
        {"step": ckpt.step, "checkpoint": ckpt.name, "split": name, "n_points": len(x), "status": "ok", "error": None,
         **compute_split_metrics(built.measured, x, y, options=options, frame=frame)}
        for name, x, y in splits
    ]


def _message(exc: BaseException) -> str:
    if isinstance(exc, GrokmonError):
        return str(exc)
    return f"{type(exc).__name__}: {first_line(exc, 300)}"


def _sorted_rows(rows: list[dict]) -> list[dict]:
    order = {"train": 0, "test": 1, "random": 2}
    return sorted(rows, key=lambda r: (r["step"], order.get(r["split"], 3), r["split"]))


def analyze(
    ckpt_dir: str | Path,
    output: str | Path | None = None,
    *,
    model: str | None = None,
    model_kwargs: str | dict | None = None,
    activation: str | None = None,
    data: str | Path | None = None,
    points: int | None = None,
    metrics: str | list[str] | None = None,
    lc_directions: int | None = None,
    lc_radius: str | float | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    overwrite: bool = False,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> pd.DataFrame:
    """Measure every checkpoint of a run and write one Parquet row per (checkpoint, split).

    Options left as None come from `CKPT_DIR/grokmon.toml`, else the defaults. An existing output with the
    same configuration is resumed: only checkpoints without an `ok` row are computed. Rows are written
    after every checkpoint, atomically. Failed checkpoints get `status = "error"` rows; the returned
    DataFrame holds every row (check `df.status`). `threads` sets torch's CPU threads for the process.
    """
    import torch
    from .inputs.checkpoints import load_checkpoint
    from .metrics import MetricOptions, make_frame
    from .inputs.models import load_weights

    if threads is not None:
        torch.set_num_threads(threads)
    ckpt_dir = Path(ckpt_dir)
    output = Path(output) if output is not None else ckpt_dir / DEFAULT_OUTPUT_NAME
    run = _prepare(ckpt_dir, device, dict(
        model=model, model_kwargs=model_kwargs, activation=activation, data=data, points=points,
        metrics=metrics, lc_directions=lc_directions, lc_radius=lc_radius, seed=seed, dtype=dtype,
    ))
    built = None if run.config.model == "mlp" else _build_model(run, ckpt_dir, None)
    run = _settle_inputs(run, built)
    _check_labels(run)
    _check_writable(output)
    radius = resolve_radius(run.config.lc_radius, run.probes.train_median_norm)
    metadata = _metadata(run, ckpt_dir, None, radius)
    rows = _previous_rows(output, metadata, overwrite)
    done_steps = {r["step"] for r in rows}
    pending = [c for c in run.checkpoints if c.step not in done_steps]
    total = len(pending) + len({c.step for c in run.checkpoints} & done_steps)
    notify = progress or (lambda event: None)
    if not pending:
        notify(ProgressEvent(done=total, total=total, device=str(run.device)))
        return rows_to_frame(_sorted_rows(rows))

    dim = math.prod(run.probes.splits[0].x.shape[1:])
    directions = run.config.lc_directions
    if "lc_directions" not in run.config.explicit:
        directions = min(directions, dim)  # the default adapts to low-dimensional inputs; an explicit value must fit
    options = MetricOptions(groups=run.config.metrics, lc_directions=directions, lc_radius=radius, seed=run.config.seed)
    frame = None
    if "lc" in options.groups:
        frame = make_frame(dim, directions, options.seed, dtype=run.dtype, device=run.device)
    if built is not None:
        metadata = _metadata(run, ckpt_dir, built, radius)
    probes_fit = False
    notify(ProgressEvent(done=total - len(pending), total=total, device=str(run.device)))
    splits = [(s.name, s.x.to(run.device), None if s.y is None else s.y.to(run.device)) for s in run.probes.splits]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="grokmon-load") as loader:
        # Loading the next checkpoint overlaps with computing this one; at most two are in memory.
        future: Future = loader.submit(load_checkpoint, pending[0])
        for index, ckpt in enumerate(pending):
            start = time.perf_counter()
            try:
                state, failure = future.result(), None
            except Exception as exc:
                state, failure = None, exc
            future = loader.submit(load_checkpoint, pending[index + 1]) if index + 1 < len(pending) else None
            if state is not None and built is None:  # the inferred MLP is read off the first weights
                built = _build_model(run, ckpt_dir, state)
                metadata = _metadata(run, ckpt_dir, built, radius)
            new_rows = None
            if state is not None:
                try:
                    load_weights(built, state, ckpt.name)
                except Exception as exc:  # keys or shapes that do not fit: this checkpoint's row
                    failure = exc
                else:
                    if not probes_fit:  # with real weights loaded, a failure is the probe data's fault
                        _check_probes_fit(built, run)
                        probes_fit = True
                    try:
                        new_rows = _measure(built, ckpt, splits, options, frame)
                    except Exception as exc:  # non-finite outputs and the like: this checkpoint's row
                        failure = exc
                del state
            seconds = time.perf_counter() - start
            if new_rows is None:
                _log.debug("checkpoint %s (step %s) failed", ckpt.name, ckpt.step, exc_info=failure)
                new_rows = _error_rows(ckpt, run.probes.splits, _message(failure))
            for row in new_rows:
                row["seconds"] = seconds
            rows.extend(new_rows)
            write_results(output, _sorted_rows(rows), metadata)
            notify(ProgressEvent(
                done=total - len(pending) + index + 1, total=total, device=str(run.device), step=ckpt.step,
                checkpoint=ckpt.name, seconds=seconds, status=new_rows[0]["status"], error=new_rows[0]["error"],
            ))
    return rows_to_frame(_sorted_rows(rows))


@dataclass(frozen=True)
class RunInfo:
    """What `analyze` would do, without computing anything."""

    checkpoints: list  # of grokmon.checkpoints.Checkpoint
    model: dict
    probe_file: Path
    splits: dict[str, int]
    config: AnalyzeConfig
    device: str
    inputs: str = "numbers"  # or "token ids": integer inputs the model embeds (accuracy and loss only)


def info(ckpt_dir: str | Path, *, device: str = "auto", **options) -> RunInfo:
    """The checkpoints found, the model that would be built and the probe splits; nothing is computed.

    Accepts the same options as `analyze` (model, model_kwargs, activation, data, points, ...).
    """
    from .inputs.checkpoints import load_checkpoint

    ckpt_dir = Path(ckpt_dir)
    run = _prepare(ckpt_dir, device, options)
    state = load_checkpoint(run.checkpoints[-1]) if run.config.model == "mlp" else None
    built = _build_model(run, ckpt_dir, state)
    run = _settle_inputs(run, built)
    inputs = "numbers" if run.probes.splits[0].x.is_floating_point() else "token ids"
    return RunInfo(run.checkpoints, built.description, run.probes.path, run.probes.sizes(), run.config,
                   str(run.device), inputs)


def _load_table(results) -> tuple[pd.DataFrame, dict]:
    if isinstance(results, pd.DataFrame):
        return results, {}
    return read_results(Path(results))


def phases(results, *, mode: str = "auto", overrides: dict | None = None):
    """Label every checkpoint of a results file (path) or table (DataFrame) with a phase; give the verdict.

    Threshold overrides come from the run's manifest `[phases]` (as it is now when the run's directory is
    still there, else as stored in the results' metadata), then `overrides`.
    """
    from .inputs.config import manifest_phase_overrides
    from .phasing.classifier import PhaseThresholds, classify

    frame, metadata = _load_table(results)
    stored = metadata.get("config", {}).get("phases", {}) or {}
    run_dir = metadata.get("checkpoint_dir")
    current = manifest_phase_overrides(Path(run_dir)) if run_dir else None
    if current is not None:
        stored = current
    thresholds = PhaseThresholds().with_overrides({**stored, **(overrides or {})})
    return classify(frame, thresholds, mode=mode)


def report(results, output: str | Path | None = None, *, mode: str = "auto", overrides: dict | None = None) -> Path:
    """Render a results file as a self-contained HTML report or a single figure (by `output`'s suffix)."""
    from .reporting.writer import render_report

    frame, metadata = _load_table(results)
    if output is None:
        if isinstance(results, pd.DataFrame):
            raise ConfigError("report() of a DataFrame needs an output path")
        output = Path(results).with_suffix(".html")
    phase_report = phases(frame if not metadata else results, mode=mode, overrides=overrides)
    return render_report(frame, metadata, phase_report, Path(output))
