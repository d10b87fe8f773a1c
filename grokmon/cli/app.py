"""The `grokmon` command: parses options, calls grokmon.api, renders. Heavy imports happen inside commands."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Training-dynamics monitor: grokking progress measures over a run's checkpoints, phases, and a verdict.",
)

ADVICE_EXIT_CODES = {"stop": 0, "keep-training": 10, "inconclusive": 11, "roll-back": 12}
DEBUG_OPTION = typer.Option(False, "--debug", help="Show the full traceback on errors.")
WITH_DELETED_OPTION = typer.Option(False, "--with-deleted", help="Also judge checkpoints deleted since they were measured (a Trainer's save_total_limit rotation).")


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"grokmon {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Training-dynamics monitor: grokking progress measures over a run's checkpoints, phases, and a verdict."""


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stdout():
    from rich.console import Console

    console = Console(highlight=False)
    console.soft_wrap = not console.is_terminal  # a terminal gets lines wrapped at words; a pipe gets them whole
    return console


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job, `timeout`), raised where the process is, as Ctrl-C is: the same clean-up, its
    own line and exit code (143)."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def _fail(exc: BaseException, debug: bool) -> None:
    """The one place errors become exit codes: one line on stderr, exit 1 (130 for Ctrl-C, 143 for SIGTERM)."""
    if debug:
        raise exc
    from ..errors import GrokmonError, first_line, interrupt_in

    exc = interrupt_in(exc) or exc  # a signal whose clean-up failed (in torch, say) is still the signal
    if isinstance(exc, Terminated):
        print("grokmon: terminated (SIGTERM); results written so far are kept, run the command again to resume",
              file=sys.stderr)
        raise typer.Exit(128 + signal.SIGTERM)
    if isinstance(exc, KeyboardInterrupt):
        print("grokmon: interrupted; results written so far are kept, run the command again to resume",
              file=sys.stderr)
        raise typer.Exit(130)
    if isinstance(exc, GrokmonError):
        message = str(exc)
    else:
        message = f"internal error: {type(exc).__name__}: {first_line(exc, 1000)} (run with --debug for the traceback)"
    print(f"grokmon: error: {' '.join(message.split())}", file=sys.stderr)
    raise typer.Exit(1)


@contextlib.contextmanager
def _failure_tracebacks(debug: bool):
    """With --debug, the traceback of every failed checkpoint on stderr as it fails (grokmon's DEBUG log)."""
    if not debug:
        yield
        return
    import logging

    logger, handler = logging.getLogger("grokmon"), logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _checked(parse):
    """A Typer callback: a value that `parse` refuses is a usage error (exit 2), caught before any work."""

    def callback(value):
        from ..errors import ConfigError

        if value is not None:
            try:
                parse(value)
            except ConfigError as exc:
                raise typer.BadParameter(str(exc)) from None
        return value

    return callback


def _choice(*allowed: str):
    def parse(value: str) -> None:
        from ..errors import ConfigError

        if value not in allowed:
            raise ConfigError(f"expected one of {', '.join(allowed)}, got {value!r}")

    return _checked(parse)


def _config_value(name: str):
    """A callback checking one option as the manifest's value of the same name is checked."""

    def parse(value) -> None:
        from ..inputs.config import check_values

        check_values({name: value})

    return _checked(parse)


def _results_name(value: Path) -> None:
    from ..analysis.store import results_name_problem
    from ..errors import ConfigError

    wrong = results_name_problem(value)
    if wrong:
        raise ConfigError(wrong)


def _report_name(value: Path) -> None:
    from ..reporting.formats import checked_output

    checked_output(value)


def _overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--set")
        overrides[name.strip()] = value.strip()
    from ..errors import ConfigError
    from ..phasing.types import PhaseThresholds

    try:
        PhaseThresholds().with_overrides(overrides)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from None
    return overrides


@app.command()
def analyze(
    ckpt_dir: Path = typer.Argument(..., metavar="CKPT_DIR", help="Directory of one run's checkpoints."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", callback=_checked(_results_name), help="Results Parquet \\[default: CKPT_DIR/grokmon.parquet]."),
    model: Optional[str] = typer.Option(None, callback=_config_value("model"), help="mlp, file.py:function or package.module:function \\[default: manifest, else mlp]."),
    model_kwargs: Optional[str] = typer.Option(None, callback=_config_value("model_kwargs"), help='JSON keyword arguments for the model function, e.g. \'{"width": 256}\'.'),
    activation: Optional[str] = typer.Option(None, callback=_config_value("activation"), help="Activation of the inferred mlp: relu, gelu, leaky_relu, tanh \\[default: relu]."),
    embedding: Optional[str] = typer.Option(None, callback=_config_value("embedding"), help="Token models: the module whose output the geometry is measured at, e.g. transformer.wte \\[default: found]."),
    position: Optional[str] = typer.Option(None, callback=_config_value("position"), help="Sequence outputs (N, T, K): the position measured and scored, last or an index."),
    data: Optional[Path] = typer.Option(None, help="Probe data (.safetensors, .pt, .npz) \\[default: manifest, else CKPT_DIR/probes.safetensors, .pt or .npz]."),
    weights: Optional[str] = typer.Option(None, help="The model to measure in checkpoint folders that hold several (accelerate's model, model_1, ...)."),
    points: Optional[int] = typer.Option(None, min=1, help="Points per split, a seeded subset \\[default: 512]."),
    metrics: Optional[str] = typer.Option(None, callback=_config_value("metrics"), help="Comma-separated groups: accuracy,centroid,jacobian,lc,robustness,weights,gradient,llc \\[default: all but llc]."),
    lc_directions: Optional[int] = typer.Option(None, min=1, help="Directions P of the LC cross-polytope \\[default: 25]."),
    lc_radius: Optional[str] = typer.Option(None, callback=_config_value("lc_radius"), help="LC radius: absolute (0.05) or relative to the median train norm (2%) \\[default: 50%]."),
    robust_eps: Optional[str] = typer.Option(None, callback=_config_value("robust_eps"), help="L-inf radius of the PGD attack: absolute (0.03) or relative to the train probes' value range (1%) \\[default: 1%]."),
    robust_steps: Optional[int] = typer.Option(None, min=1, help="PGD steps, each of size 2.5 x eps / steps \\[default: 10]."),
    noise_sigma: Optional[str] = typer.Option(None, callback=_config_value("noise_sigma"), help="Standard deviation of the Gaussian input noise: absolute or relative to the value range \\[default: 5%]."),
    seed: Optional[int] = typer.Option(None, min=0, help="Seed of the subsets, random points, LC frame, input noise and SGLD chains \\[default: 0]."),
    device: str = typer.Option("auto", callback=_config_value("device"), help="auto, cpu, cuda, cuda:N, or several (cuda:0,cuda:1 or cuda:all: one worker each)."),
    dtype: Optional[str] = typer.Option(None, callback=_config_value("dtype"), help="float32 or float64 \\[default: float32]."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads for torch \\[default: the cores other processes leave idle, at least 1]."),
    executor: str = typer.Option("local", callback=_choice("local", "ray"), help="local, or ray: one worker per GPU of a Ray cluster (RAY_ADDRESS, else a local instance); needs grokmon\\[ray]."),
    workers: Optional[int] = typer.Option(None, min=1, help="Ray workers when the cluster has no GPUs \\[default: one per CPU]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output instead of resuming it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Measure every checkpoint and write one Parquet row per (checkpoint, split); resumes an existing output."""
    _check_workers(workers, executor)
    try:
        from ..api import DEFAULT_OUTPUT_NAME, analyze as run_analyze
        from .progress import AnalyzeProgress

        destination = output or ckpt_dir / DEFAULT_OUTPUT_NAME
        with _failure_tracebacks(debug), AnalyzeProgress(_stderr(), quiet=quiet) as progress:
            frame = run_analyze(
                ckpt_dir, destination, model=model, model_kwargs=model_kwargs, activation=activation,
                embedding=embedding, position=position, data=data,
                weights=weights, points=points, metrics=metrics, lc_directions=lc_directions, lc_radius=lc_radius,
                robust_eps=robust_eps, robust_steps=robust_steps, noise_sigma=noise_sigma, seed=seed,
                device=device, dtype=dtype, threads=threads, executor=executor, workers=workers,
                overwrite=overwrite, progress=progress,
            )
    except (Exception, KeyboardInterrupt) as exc:
        _fail(exc, debug)
    from .tables import failure_lines

    failed = frame[frame["status"] != "ok"]["step"].nunique()
    gone = frame.loc[frame["deleted"].eq(True), "step"].nunique() if "deleted" in frame else 0
    typer.echo(f"{destination}: {len(frame)} rows, {frame['step'].nunique()} checkpoints, {failed} failed"
               + (f", {gone} deleted since measured (kept, flagged)" if gone else ""))
    if failed:
        for line in failure_lines(frame):
            print(f"grokmon: error: {line}", file=sys.stderr)
        raise typer.Exit(1)


def _thresholds(results: Path, overrides: dict):
    """The run's manifest `[phases]` (as it is now, else as stored with the results), then --set."""
    from ..inputs.config import moved_manifest_note, phase_thresholds
    from ..results.parquet import read_metadata

    metadata = read_metadata(results)
    note = moved_manifest_note(results, metadata)
    if note:
        print(f"grokmon: note: {note}", file=sys.stderr)
    return phase_thresholds(metadata, overrides)


@app.command()
def phases(
    results: Path = typer.Argument(..., metavar="RESULTS", help="Results Parquet written by `grokmon analyze`."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    exit_code: bool = typer.Option(False, "--exit-code", help="Exit 0 stop, 10 keep-training, 11 inconclusive, 12 roll-back."),
    history: bool = typer.Option(False, "--history", help="Also the verdict at every checkpoint, as it was given when that checkpoint was the newest."),
    mode: str = typer.Option("auto", callback=_choice("auto", "accuracy", "geometry"), help="auto, accuracy or geometry (ignore labels)."),
    with_deleted: bool = WITH_DELETED_OPTION,
    set_: list[str] = typer.Option([], "--set", help="Override a phase threshold, NAME=VALUE (repeatable)."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Label every checkpoint with a training phase and say whether more training is worth it."""
    overrides = _overrides(set_)
    try:
        from ..api import load_results, phases as run_phases

        frame, _, left_out = load_results(results, with_deleted)  # read once: the verdict, and what it left out
        verdict = run_phases(frame, _thresholds(results, overrides), mode=mode, with_deleted=with_deleted)
    except (Exception, KeyboardInterrupt) as exc:
        _fail(exc, debug)
    if as_json:
        typer.echo(json.dumps(verdict.to_dict(history=history) | {"left_out_steps": list(left_out)}, indent=2))
    else:
        from .tables import history_table, phase_tables, unfolded_width

        console, tables = _stdout(), [history_table(verdict)] if history else []
        if tables and not console.is_terminal:  # a pipe or a file has no width: each reason on one line
            console.width = max(console.width, unfolded_width(tables[0]))
        console.print(*tables, *phase_tables(verdict, mode, left_out))
    if exit_code:
        raise typer.Exit(ADVICE_EXIT_CODES[verdict.advice])


@app.command()
def report(
    results: Path = typer.Argument(..., metavar="RESULTS", help="Results Parquet written by `grokmon analyze`."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", callback=_checked(_report_name), help="report.html (self-contained) or a figure: .png, .svg, .pdf \\[default: RESULTS with .html]."),
    mode: str = typer.Option("auto", callback=_choice("auto", "accuracy", "geometry"), help="Phase mode: auto, accuracy or geometry."),
    with_deleted: bool = WITH_DELETED_OPTION,
    set_: list[str] = typer.Option([], "--set", help="Override a phase threshold, NAME=VALUE (repeatable)."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Plot every metric against step with the phases shaded: an HTML report or one figure."""
    overrides = _overrides(set_)
    try:
        from ..api import report as run_report

        written = run_report(results, output, mode=mode, thresholds=_thresholds(results, overrides),
                             with_deleted=with_deleted)
    except (Exception, KeyboardInterrupt) as exc:
        _fail(exc, debug)
    typer.echo(str(written))


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., metavar="RUN", help="Results Parquet files, or checkpoint directories holding grokmon.parquet."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", callback=_checked(_report_name), help="Also write the comparison: compare.html (self-contained) or a figure: .png, .svg, .pdf."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (schema grokmon.compare/1) instead of the table."),
    names: list[str] = typer.Option([], "--name", help="Name of a run in the table and figure, once per RUN in order \\[default: its folder or file name]."),
    mode: str = typer.Option("auto", callback=_choice("auto", "accuracy", "geometry"), help="Phase mode: auto, accuracy or geometry."),
    with_deleted: bool = WITH_DELETED_OPTION,
    set_: list[str] = typer.Option([], "--set", help="Override a phase threshold for every run, NAME=VALUE (repeatable)."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Compare runs: when each fitted, generalised and reached test accuracy 0.5 and 0.95, and each verdict."""
    if names and len(names) != len(runs):
        raise typer.BadParameter(f"give one --name per RUN ({len(runs)} runs, {len(names)} names)", param_hint="--name")
    overrides = _overrides(set_)
    try:
        from ..api import compare as run_compare
        from ..results.parquet import results_file

        thresholds = [_thresholds(results_file(run), overrides) for run in runs]
        comparison = run_compare(runs, output, names=names or None, mode=mode, thresholds=thresholds,
                                 with_deleted=with_deleted)
    except (Exception, KeyboardInterrupt) as exc:
        _fail(exc, debug)
    if as_json:
        typer.echo(json.dumps(comparison.to_dict(), indent=2))
    else:
        from .tables import compare_table, deleted_note, least_width

        console, (table, headline) = _stdout(), compare_table(comparison)
        # narrower than the table's words and numbers, rich would cut them ("27…"): let the line run long instead
        console.width = max(console.width, least_width(table))
        for block in (table, headline, *[deleted_note(run.left_out, run.summary.name) for run in comparison.runs
                                         if run.left_out]):
            console.print(block)  # one after the other: printed together, rich runs strings onto one line
    if output is not None:
        typer.echo(str(output), err=as_json)


@app.command()
def info(
    ckpt_dir: Path = typer.Argument(..., metavar="CKPT_DIR", help="Directory of one run's checkpoints."),
    model: Optional[str] = typer.Option(None, callback=_config_value("model"), help="As for analyze."),
    model_kwargs: Optional[str] = typer.Option(None, callback=_config_value("model_kwargs"), help="As for analyze."),
    activation: Optional[str] = typer.Option(None, callback=_config_value("activation"), help="As for analyze."),
    embedding: Optional[str] = typer.Option(None, callback=_config_value("embedding"), help="As for analyze."),
    position: Optional[str] = typer.Option(None, callback=_config_value("position"), help="As for analyze."),
    data: Optional[Path] = typer.Option(None, help="As for analyze."),
    weights: Optional[str] = typer.Option(None, help="As for analyze."),
    points: Optional[int] = typer.Option(None, min=1, help="As for analyze."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Show what `analyze` would do: checkpoints, model, probe splits, the measured input, and what is missing.
    Nothing is computed."""
    try:
        from ..api import info as run_info

        found = run_info(ckpt_dir, device="cpu", model=model, model_kwargs=model_kwargs, activation=activation,
                         embedding=embedding, position=position, data=data, weights=weights, points=points)
    except (Exception, KeyboardInterrupt) as exc:
        _fail(exc, debug)
    from .tables import info_tables

    _stdout().print(*info_tables(found))


def _verdict_list(value: str) -> None:
    from ..analysis.follow import parse_verdicts

    parse_verdicts(value)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             options_metavar="CKPT_DIR [ANALYZE OPTIONS] [OPTIONS]")
def watch(
    ctx: typer.Context,
    until: Optional[str] = typer.Option(None, callback=_checked(_verdict_list), help="Exit once the verdict is one of these (comma-separated), with the exit code of `phases --exit-code`."),
    interval: float = typer.Option(10.0, min=0.001, help="Seconds between looks at the folder."),
    timeout: Optional[float] = typer.Option(None, min=0.001, help="Exit 11 after this many seconds \\[default: never]."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No line per checkpoint on stderr."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Follow a running job: analyse each new checkpoint, print a line whenever the phase or verdict changes.

    CKPT_DIR is the folder a running job saves checkpoints to. Takes every option of `grokmon analyze` (-o,
    --model, --data, --points, ...) and keeps its results file current. Ctrl-C stops it (exit 130) and keeps
    everything measured.
    """
    options = _analyze_options(ctx)
    try:
        from ..analysis.follow import watch as follow

        errors: set[str] = set()
        for event in follow(until=until or (), interval=interval, timeout=timeout,
                            progress=lambda done: _show_measured(done, quiet), **options):
            _show_watch_event(event, quiet, errors, options["ckpt_dir"])
    except (Exception, KeyboardInterrupt) as exc:
        _fail(exc, debug)
    if event.finished == "until":
        raise typer.Exit(ADVICE_EXIT_CODES[event.report.advice])
    last = "none yet" if event.report is None else event.report.advice
    print(f"grokmon: watch timed out after {timeout:g} s (last verdict: {last})", file=sys.stderr)
    raise typer.Exit(ADVICE_EXIT_CODES["inconclusive"])  # timeout: the verdict asked for was not reached


def _analyze_options(ctx: typer.Context) -> dict:
    """CKPT_DIR and the analyze options among watch's arguments, parsed and checked by the analyze command itself
    (a wrong one is a usage error, exit 2), as keyword arguments of grokmon.analyze."""
    analyze_command = typer.main.get_command(app).get_command(ctx, "analyze")
    parsed = analyze_command.make_context("watch", list(ctx.args), parent=ctx.parent).params
    _check_workers(parsed["workers"], parsed["executor"])
    return {k: v for k, v in parsed.items() if k not in ("quiet", "debug")}


def _check_workers(workers: int | None, executor: str) -> None:
    """--workers without --executor ray is a usage error (exit 2), in analyze and in watch."""
    if workers is not None and executor != "ray":
        raise typer.BadParameter("--workers goes with --executor ray; for several local devices pass --device "
                                 "cuda:0,cuda:1 (or cuda:all)", param_hint="--workers")


def _show_measured(done, quiet: bool) -> None:
    """A checkpoint's line on stderr as soon as it is measured (a first pass over a job's saved checkpoints is
    long: its lines must not wait for the pass to end)."""
    if done.step is None:
        return
    if done.error:
        print(f"grokmon: error: step {done.step} ({done.checkpoint}): {done.error}", file=sys.stderr, flush=True)
    elif not quiet:
        print(f"step {done.step} ({done.checkpoint}): {done.status}, {done.seconds:.2f} s", file=sys.stderr, flush=True)


def _show_watch_event(event, quiet: bool, errors: set[str], folder) -> None:
    """Each new error of the folder (stderr), the verdict on stdout when it changes."""
    if event.waiting and not quiet:
        print(f"grokmon: no checkpoint in {folder} yet; waiting", file=sys.stderr)
    if event.error and event.error not in errors:
        errors.add(event.error)
        print(f"grokmon: error: {event.error} (looking again)", file=sys.stderr)
    for verdict in event.changes:
        typer.echo(f"step {verdict.step}: {verdict.phase or 'no phase yet'}, {verdict.advice} "
                   f"(confidence {verdict.confidence:.2f}): {verdict.reason}")
    sys.stdout.flush()  # piped into a CI log, a verdict shows when it is said


def main() -> None:
    """Console-script entry point. A usage error is one line on stderr and exit 2 (Typer draws it in a box over
    several lines, which a CI log cuts at 80 columns); help asked for by giving no arguments is printed whole."""
    signal.signal(signal.SIGTERM, _terminate)
    # click's exception classes, found through a public one: Typer >= 0.23 carries its own copy of click
    usage_error, click_exception = (next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)
                                    for name in ("UsageError", "ClickException"))
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help; Typer >= 0.23 has printed it already
            if exc.format_message().strip():
                print(exc.format_message(), file=sys.stderr)
        else:
            path = exc.ctx.command_path if exc.ctx is not None else "grokmon"
            print(f"{path}: {exc.format_message()} (see {path} --help)", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click_exception as exc:
        print(f"grokmon: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
