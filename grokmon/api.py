"""What the CLI and Python users call: analyze(), info(), phases(), report(), compare()."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd

from .errors import ConfigError, GrokmonError, ResultsError
from .results import read_results
from .results.parquet import DEFAULT_NAME as DEFAULT_OUTPUT_NAME

if TYPE_CHECKING:
    from .analysis.events import ProgressEvent
    from .analysis.survey import RunInfo


def analyze(
    ckpt_dir: str | Path,
    output: str | Path | None = None,
    *,
    model: str | None = None,
    model_kwargs: str | dict | None = None,
    activation: str | None = None,
    embedding: str | None = None,
    position: str | int | None = None,
    data: str | Path | None = None,
    weights: str | None = None,
    points: int | None = None,
    metrics: str | list[str] | None = None,
    lc_directions: int | None = None,
    lc_radius: str | float | None = None,
    robust_eps: str | float | None = None,
    robust_steps: int | None = None,
    noise_sigma: str | float | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    executor: str = "local",
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> pd.DataFrame:
    """Measure every checkpoint of a run and write one Parquet row per (checkpoint, split); the README's
    `analyze` options table says what each option does.

    Options left as None come from `CKPT_DIR/grokmon.toml`, else the defaults. An existing output with the same
    configuration is resumed: only checkpoints without an `ok` row for their files as they are now are measured.
    Rows are written after every checkpoint, atomically; failed checkpoints get `status = "error"` rows (also when
    none of them can be read), existing rows are kept, and the DataFrame returned holds every row. Checkpoints still being written are skipped (the first progress event's
    `notes` say so). `device` may name several devices, `executor="ray"` uses Ray actors: the table is the same.
    """
    from .analysis.events import ProgressEvent
    from .analysis.executors import choose_executor
    from .analysis.store import ResultsStore
    from .analysis.threads import cpu_threads
    from .analysis.writer_lock import writing
    from .inputs.run import resolve_inputs

    execution = choose_executor(executor, device, workers, threads)
    with cpu_threads(threads):
        inputs = resolve_inputs(ckpt_dir, execution.driver_device, model=model, model_kwargs=model_kwargs,
                                activation=activation, embedding=embedding, position=position,
                                data=data, weights=weights, points=points, metrics=metrics,
                                lc_directions=lc_directions, lc_radius=lc_radius, robust_eps=robust_eps,
                                robust_steps=robust_steps, noise_sigma=noise_sigma, seed=seed, dtype=dtype)
        destination = Path(output) if output is not None else inputs.ckpt_dir / DEFAULT_OUTPUT_NAME
        notify = progress or (lambda event: None)

        def waiting(message: str) -> None:
            notify(ProgressEvent(done=0, total=len(inputs.checkpoints), device=execution.description,
                                 notes=(message,), waiting=True))

        with writing(destination, waiting):
            store = ResultsStore(destination, inputs, overwrite)
            pending = store.pending(inputs.checkpoints, writing={name for name, _ in inputs.found.in_progress})
            store.save(pending)
            total = len(inputs.checkpoints)
            opening = ProgressEvent(done=total - len(pending), total=total, device=execution.description,
                                    notes=(*inputs.notes(), *store.notes))
            execution.run(inputs, pending, store, notify, done=total - len(pending), total=total, opening=opening)
    return store.frame()


def info(ckpt_dir: str | Path, *, device: str = "auto", **options) -> RunInfo:
    """The checkpoints found, the model that would be built, the probe splits and the measured input (a token
    model's embedding module and D); nothing is computed.

    Accepts the same options as `analyze` (model, model_kwargs, activation, embedding, data, weights, points,
    ...). Needs no probe data and no checkpoint: what is missing is listed in `RunInfo.missing`, one line each
    with its fix.
    """
    from .analysis.survey import survey

    return survey(ckpt_dir, device, **options)


def load_results(results, with_deleted: bool = False) -> tuple[pd.DataFrame, dict, tuple[int, ...]]:
    """The rows of a results file (path) or table (DataFrame), its metadata, and the steps left out: without
    `with_deleted`, the rows whose checkpoint has been deleted since it was measured (`deleted`) are not kept."""
    frame, metadata = (results, {}) if isinstance(results, pd.DataFrame) else read_results(Path(results))
    if with_deleted or "deleted" not in frame or not frame["deleted"].eq(True).any():
        return frame, metadata, ()
    gone = frame["deleted"].eq(True)
    kept = frame[~gone]
    if not len(kept):
        raise ResultsError(f"{'the table' if not metadata else results}: every checkpoint it holds has been deleted "
                           "since it was measured; pass --with-deleted (with_deleted=True) to judge them")
    return kept, metadata, tuple(sorted({int(s) for s in frame.loc[gone, "step"]}))


def phases(results, thresholds=None, *, mode: str = "auto", with_deleted: bool = False):
    """Label every checkpoint of a results file (path) or table (DataFrame) with a phase; give the verdict at
    every checkpoint (`PhaseReport.history`) and for the last one.

    `thresholds`: a PhaseThresholds (None: the defaults). Nothing else is read, so a results file means the
    same on every machine; `grokmon phases` resolves the manifest's `[phases]` and `--set` into thresholds
    (`grokmon.inputs.config.phase_thresholds`). Rows of checkpoints deleted since they were measured are left
    out unless `with_deleted` (a Trainer's `save_total_limit` deletes old checkpoints: judge the whole history).
    """
    from .phasing.classifier import classify

    frame, _, _ = load_results(results, with_deleted)
    return classify(frame, thresholds, mode=mode)


def report(results, output: str | Path | None = None, *, mode: str = "auto", thresholds=None,
           with_deleted: bool = False) -> Path:
    """Render a results file as a self-contained HTML report or a single figure (by `output`'s suffix); phases
    judged with `thresholds` (a PhaseThresholds; None: the defaults)."""
    from .reporting.writer import render_report

    frame, metadata, left_out = load_results(results, with_deleted)
    if output is None:
        if isinstance(results, pd.DataFrame):
            raise ConfigError("report() of a DataFrame needs an output path")
        output = Path(results).with_suffix(".html")
    phase_report = phases(frame, thresholds, mode=mode)
    return render_report(frame, metadata, phase_report, Path(output), len(left_out))


def compare(runs, output: str | Path | None = None, *, names: list[str] | None = None, mode: str = "auto",
            thresholds=None, with_deleted: bool = False):
    """Compare runs: for each, when it fitted, generalised and reached test accuracy 0.5 and 0.95, and its verdict.

    `runs` are results files, checkpoint directories holding `grokmon.parquet`, or DataFrames. `names` label them
    (default: the folder or file name). `thresholds`: a PhaseThresholds for every run, or one per run (None: the
    defaults). With `output` (.html, .png, .svg, .pdf) the comparison figure or page is written too. Returns a
    `grokmon.reporting.Comparison` (`.summaries`, `.to_dict()`, `.headline()`).
    """
    from .phasing import PhaseThresholds
    from .reporting.compare import ComparedRun, Comparison, names_for, summarise
    from .reporting.writer import render_comparison
    from .results.parquet import results_file

    runs = list(runs)
    paths = [None if isinstance(run, pd.DataFrame) else results_file(run) for run in runs]
    each = list(thresholds) if isinstance(thresholds, (list, tuple)) else [thresholds] * len(runs)
    compared = []
    for name, run, path, settings in zip(names_for(paths, names), runs, paths, each):
        frame, metadata, left_out = load_results(run if path is None else path, with_deleted)
        settings = settings or PhaseThresholds()
        try:
            report = phases(frame, settings, mode=mode)
        except GrokmonError as exc:
            raise type(exc)(f"{path or name}: {exc}") from exc
        fitted = settings.fitted_accuracy
        compared.append(ComparedRun(summarise(name, path, frame, report, fitted), frame, report, metadata, left_out))
    comparison = Comparison(tuple(compared))
    if output is not None:
        render_comparison(comparison, Path(output))
    return comparison
