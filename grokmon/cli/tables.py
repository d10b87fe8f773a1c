"""Rich renderables for the terminal: what `grokmon phases`, `grokmon compare` and `grokmon info` print."""

from __future__ import annotations

import pandas as pd
from rich import box
from rich.table import Table
from rich.text import Text

from ..errors import failure_kind

ADVICE_STYLE = {"stop": "bold green", "keep-training": "bold cyan", "inconclusive": "bold yellow", "roll-back": "bold red"}


def phase_tables(verdict, asked: str = "auto", left_out: tuple[int, ...] = ()) -> list:
    """The phase segments as a table (with how many of their checkpoints' verdicts were `inconclusive`), then the
    verdict with its reason and confidence; `left_out`: the steps of rows flagged deleted that were not judged."""
    table = Table(title=f"Phases ({verdict.mode} mode)", title_justify="left")
    table.add_column("phase")
    table.add_column("first step", justify="right")
    table.add_column("last step", justify="right")
    table.add_column("checkpoints", justify="right")
    table.add_column("inconclusive", justify="right")
    for segment in verdict.segments:
        count, weak = verdict.counts(segment)
        table.add_row(segment.phase, str(segment.start_step), str(segment.end_step), str(count), _step(weak))
    line = Text()
    line.append("verdict: ")
    line.append(verdict.advice, style=ADVICE_STYLE.get(verdict.advice, "bold"))
    if verdict.advice == "inconclusive" and verdict.current_phase is not None:  # the confidence is the reading's
        line.append(f" (it reads {verdict.current_phase}, and the advice that reading gives has confidence "
                    f"{verdict.confidence:.2f}; the reason says why it does not act)")
    else:
        line.append(f" (confidence {verdict.confidence:.2f})")
    if verdict.best_step is not None and verdict.advice == "roll-back":
        line.append(f", best step {verdict.best_step}")
    line.append(f"\nreason: {verdict.reason}")
    if left_out:
        line.append(f"\n{deleted_note(left_out)}")
    if verdict.advice == "inconclusive":
        what = _what_now(verdict, asked)
        line.append(f"\nwhat now: {'run phases again with --with-deleted, or ' if left_out else ''}{what}")
    return [table, line] if verdict.segments else [line]  # no checkpoint has a phase yet: no empty table


def deleted_note(left_out: tuple[int, ...], run: str = "") -> str:
    """The `note:` line saying that the rows of checkpoints deleted since measured (their steps) were left out."""
    plural = "s" if len(left_out) > 1 else ""
    return (f"note: {run}{': ' if run else ''}the rows of {len(left_out)} checkpoint{plural} deleted since measured "
            f"(step{plural} {_steps_text(list(left_out))}) are left out; --with-deleted judges the whole run")


def _what_now(verdict, asked: str) -> str:
    """What a user can do about an `inconclusive` verdict, from what it lacks (`wants`) and the mode; `asked`: the
    mode asked for (auto falls back to geometry only for a table without accuracy: the probes had no labels, or
    accuracy was left out of --metrics)."""
    later = {"start": "save the initial model as step 0 and analyze it with the rest (or the run's early "
                      "checkpoints, if they were deleted)",
             "denser saves": "save checkpoints closer together from here on, as the reason says, and run phases "
                             "again",
             "metric groups": "analyze with more metric groups (--metrics accuracy,centroid,jacobian,lc)",
             }.get(verdict.wants, "run phases again after more checkpoints")
    if verdict.mode == "accuracy":
        return later  # the verdict line says the reason tells why it does not act
    labels = ("drop --mode geometry if the probes are labelled" if asked == "geometry"
              else "analyze with labelled probes (y_train, y_test) and accuracy in --metrics")
    corpus = ("; \"the corpus\" is the training runs the geometry model was fitted on (docs/phases.md)"
              if "corpus" in verdict.reason else "")
    return f"{later}, or {labels}: the accuracy mode reads what the geometry alone cannot tell here{corpus}"


def _step(value) -> str:
    return "-" if value is None else str(value)


def compare_table(comparison) -> list:
    """One row per run: verdict and the first step at which it fitted, generalised, reached test accuracy."""
    table = Table(title="Runs compared", title_justify="left", box=box.SIMPLE_HEAD, padding=0, pad_edge=False,
                  show_edge=False,
                  caption="first checkpoint at which: fit = train accuracy fitted, gen = labelled generalisation, "
                          "t≥.5 / t≥.95 = test accuracy 0.5 / 0.95 (- = never, n/a = not measured); test = final test "
                          "accuracy",
                  caption_justify="left")
    rows = [[s.name, s.mode, s.advice, f"{s.confidence:.2f}", s.reached("fit_step", "-"),
             _step(s.generalisation_step), s.reached("test_50_step", "-"), s.reached("test_95_step", "-"),
             _step(s.best_step), _step(s.last_step),
             "-" if s.final.get("test_accuracy") is None else f"{s.final['test_accuracy']:.3f}"]
            for s in comparison.summaries]
    headers = ("run", "mode", "advice", "conf", "fit", "gen", "t≥.5", "t≥.95", "best", "last", "test")
    for k, header in enumerate(headers):
        # the names wrap on a narrow terminal (at least 8 characters of them); the words and numbers never do
        widest = max([len(header)] + [len(row[k]) for row in rows])
        table.add_column(header, overflow="fold", min_width=min(widest, 8)) if k == 0 else \
            table.add_column(header, justify="right" if k > 2 else "left", no_wrap=True, min_width=widest)
    for row in rows:
        table.add_row(*row[:2], Text(row[2], style=ADVICE_STYLE.get(row[2], "bold")), *row[3:])
    return [table, Text(comparison.headline())]


def least_width(table: Table) -> int:
    """The width below which rich would cut a cell of `table` (its columns' minimum widths, one space between)."""
    return sum(column.min_width or 1 for column in table.columns) + len(table.columns) - 1


def unfolded_width(table: Table) -> int:
    """The width at which no cell of `table` folds: each column as wide as its widest cell (in terminal cells),
    with rich's padding and borders (3 characters per column, and 1)."""
    from rich.cells import cell_len

    widths = [max([cell_len(str(column.header))] + [cell_len(str(cell)) for cell in column.cells])
              for column in table.columns]
    return sum(widths) + 3 * len(widths) + 1


def history_table(verdict) -> Table:
    """The verdict at every checkpoint, as `phases` gave it when that checkpoint was the newest."""
    table = Table(title=f"Verdict at every checkpoint ({verdict.mode} mode)", title_justify="left")
    table.add_column("step", justify="right")
    table.add_column("phase")
    table.add_column("advice")
    table.add_column("confidence", justify="right")
    table.add_column("reason", overflow="fold")
    weak = False
    for v in verdict.history:
        confidence = f"{v.confidence:.2f}"
        if v.advice == "inconclusive" and v.phase is not None:  # not the verdict's: the reading's, not acted on
            confidence, weak = f"({confidence})", True
        table.add_row(str(v.step), v.phase or "-", Text(v.advice, style=ADVICE_STYLE.get(v.advice, "bold")),
                      confidence, v.reason)
    if weak:
        table.caption = ("(confidence): on an inconclusive row, the confidence of the advice its phase gives, which "
                         "the verdict does not act on (the reason says why)")
        table.caption_justify = "left"
    return table


def info_tables(found) -> list:
    """What `analyze` would use (checkpoints, model, probe splits, configuration) as far as it is there, then a
    line per note and per missing part."""
    parts = []
    if found.checkpoints:
        checkpoints = Table(title=f"{len(found.checkpoints)} checkpoints", title_justify="left")
        checkpoints.add_column("step", justify="right")
        checkpoints.add_column("checkpoint")
        checkpoints.add_column("format")
        for ckpt in found.checkpoints:
            checkpoints.add_row(str(ckpt.step), ckpt.name, ckpt.format)
        parts.append(checkpoints)
    if found.model:
        model = Table(title="model", title_justify="left", show_header=False)
        model.add_column("key")
        model.add_column("value")
        for key, value in found.model.items():
            model.add_row(key, _short(value))
        parts.append(model)
    if found.splits:
        inputs = f" (inputs: {_measured_input(found)})" if found.inputs else ""
        probes = Table(title=f"probe data: {found.probe_file}{inputs}", title_justify="left")
        probes.add_column("split")
        probes.add_column("points", justify="right")
        for split, size in found.splits.items():
            probes.add_row(split, str(size))
        parts.append(probes)
    config = Table(title="configuration", title_justify="left", show_header=False)
    config.add_column("option")
    config.add_column("value")
    for key, value in found.config.to_dict().items():
        config.add_row(key, _short(value))
    config.add_row("device", found.device)
    parts.append(config)
    lines = Text("\n").join([Text(f"note: {note}") for note in found.notes]
                             + [Text(f"missing: {line}", style="yellow") for line in found.missing])
    return parts + ([lines] if lines else [])


def _measured_input(found) -> str:
    """What a point of the geometry is: the probe values, or a token model's embedding output, and D."""
    if found.inputs == "numbers":
        return f"numbers, D = {found.input_dim}"
    if found.inputs != "token ids":
        return found.inputs
    if found.embedding is None:
        return "token ids, no embedding module: accuracy and loss only"
    return f"token ids, measured at the output of {found.embedding}, D = {found.input_dim}"


def _short(value) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return " -> ".join(f"{layer.get('in')}x{layer.get('out')}{'' if layer.get('bias', True) else ' (no bias)'}" for layer in value)
    return str(value)


def failure_lines(frame: pd.DataFrame) -> list[str]:
    """One line per distinct failure of a results table, the checkpoints that share it counted.

    A mistake that hits the whole run (a model that fits no checkpoint) is one line, not one per checkpoint.
    """
    failed = frame[frame["status"] != "ok"].drop_duplicates("step").sort_values("step")
    groups: dict[str, list] = {}
    for row in failed.itertuples():
        generic = failure_kind(row.error, row.checkpoint)
        groups.setdefault(generic, []).append(row)
    lines = []
    for rows in groups.values():
        first = rows[0]
        if len(rows) == 1:
            lines.append(f"step {first.step} ({first.checkpoint}): {first.error}")
            continue
        total = frame["step"].nunique()
        which = f"all {total}" if len(rows) == total else f"{len(rows)} of {total}"
        lines.append(f"{which} checkpoints (steps {_steps_text([r.step for r in rows])}) failed like "
                     f"step {first.step}: {first.error}")
    return lines


def _steps_text(steps: list[int]) -> str:
    """Steps in a sentence: all of up to four, else the first two and the last ("..." hides at least two).

    >>> _steps_text([50, 100, 150, 200]), _steps_text([0, 5, 10, 15, 20])
    ('50, 100, 150, 200', '0, 5, ..., 20')
    """
    return ", ".join(map(str, steps)) if len(steps) <= 4 else f"{steps[0]}, {steps[1]}, ..., {steps[-1]}"
