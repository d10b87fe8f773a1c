"""Several runs side by side: when each one fitted, generalised and reached a test accuracy (no torch; never prints).

The steps of a run's summary, all taken from checkpoints measured without error, in step order:

- `fit_step`: the first checkpoint whose train accuracy is at least the phase threshold `fitted_accuracy`
  (0.95 unless the run's manifest or `--set` says otherwise);
- `test_50_step`, `test_95_step`: the first checkpoint whose test accuracy is at least 0.5, 0.95;
- `generalisation_step`: the first checkpoint the phase report labels `generalisation` (either mode);
- `best_step`: the phase report's best step; `last_step`: the newest checkpoint measured.

Each is None when the run never got there (or has no such column). `final` holds the last checkpoint's
mean of every metric column, keyed `<split>_<column>` (`test_accuracy`, `train_lc`, ...).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..results.parquet import DEFAULT_NAME
from .panels import numeric, split_order, value_columns

SCHEMA = "grokmon.compare/1"
TEST_LEVELS = (0.5, 0.95)
_ACCURACY_OF = {"fit_step": "train_accuracy", "test_50_step": "test_accuracy", "test_95_step": "test_accuracy"}


@dataclass(frozen=True)
class RunSummary:
    """One row of the comparison (see the module docstring for what each step means)."""

    name: str
    path: str | None
    mode: str
    advice: str
    confidence: float
    best_step: int | None
    fit_step: int | None
    generalisation_step: int | None
    test_50_step: int | None
    test_95_step: int | None
    last_step: int | None
    final: dict[str, float] = field(default_factory=dict)
    measured: tuple[str, ...] | None = None  # `<split>_accuracy` with a value at some checkpoint (None: see `final`)

    def measures(self, key: str) -> bool:
        """Whether the run has the accuracy a step (`fit_step`, `test_50_step`, `test_95_step`) is read from, at
        any checkpoint: a step that is None is "never" for a run that has it and "not measured" for one without (a
        run on unlabelled probes). The other steps are always measured."""
        column = _ACCURACY_OF.get(key)
        return column is None or column in (self.final if self.measured is None else self.measured)

    def reached(self, key: str, never: str = "-") -> str:
        """A step as a table cell: the step, `never` where the run never got there, "n/a" where it has no
        accuracy to get there by."""
        value = getattr(self, key)
        return "n/a" if not self.measures(key) else never if value is None else str(value)

    def to_dict(self) -> dict:
        """This run's entry of the `grokmon compare --json` document."""
        return {"name": self.name, "path": self.path, "mode": self.mode, "advice": self.advice,
                "confidence": float(self.confidence), "best_step": self.best_step, "fit_step": self.fit_step,
                "generalisation_step": self.generalisation_step, "test_50_step": self.test_50_step,
                "test_95_step": self.test_95_step, "last_step": self.last_step, "final": dict(self.final)}


@dataclass(frozen=True, eq=False)
class ComparedRun:
    """A run as compared: its summary, the table and phase report the figure is drawn from, and the steps of the
    rows flagged deleted that were left out."""

    summary: RunSummary
    frame: pd.DataFrame
    phase_report: object
    metadata: dict
    left_out: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class Comparison:
    """The runs in the order given."""

    runs: tuple[ComparedRun, ...]

    @property
    def summaries(self) -> list[RunSummary]:
        return [run.summary for run in self.runs]

    def to_dict(self) -> dict:
        """The `grokmon compare --json` document (JSON-serialisable)."""
        return {"schema": SCHEMA, "runs": [summary.to_dict() for summary in self.summaries]}

    def headline(self) -> str:
        """One sentence: which run got there first and how much later the others did (see `headline`)."""
        return headline(self.summaries)


def _ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["status"] == "ok"] if "status" in frame else frame
    return rows.assign(step=pd.to_numeric(rows["step"], errors="coerce")).dropna(subset=["step"])


def first_step_at(frame: pd.DataFrame, split: str, column: str, level: float) -> int | None:
    """The first checkpoint (ok rows, step order) at which `split`'s mean `column` is at least `level`.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"step": [0, 10, 100], "split": "test", "status": "ok", "accuracy": [0.1, 0.6, 0.97]})
    >>> first_step_at(df, "test", "accuracy", 0.5), first_step_at(df, "test", "accuracy", 0.99)
    (10, None)
    """
    rows = _ok_rows(frame)
    if column not in rows:
        return None
    rows = rows[rows["split"] == split].sort_values("step", kind="stable")
    reached = rows["step"].to_numpy()[numeric(rows[column]) >= level]
    return int(reached[0]) if len(reached) else None


def first_phase_step(phase_report, phase: str) -> int | None:
    """The first step the phase report labels `phase`."""
    return next((int(step) for step, label in phase_report.steps if label == phase), None)


def final_values(frame: pd.DataFrame) -> dict[str, float]:
    """`<split>_<column>`: the mean at the newest checkpoint measured, for every metric column with a value."""
    rows = _ok_rows(frame)
    if rows.empty:
        return {}
    last = rows[rows["step"] == rows["step"].max()]
    final = {}
    for column in value_columns(last):
        for split in split_order(last):
            value = numeric(last.loc[last["split"] == split, column])
            if len(value) and np.isfinite(value[-1]):
                final[f"{split}_{column}"] = float(value[-1])
    return final


def summarise(name: str, path, frame: pd.DataFrame, phase_report, fitted_accuracy: float) -> RunSummary:
    """The comparison row of one run from its results table and phase report (`path`: its file, or None)."""
    rows = _ok_rows(frame)
    tests = [first_step_at(frame, "test", "accuracy", level) for level in TEST_LEVELS]
    return RunSummary(
        name=name, path=None if path is None else str(path), mode=phase_report.mode, advice=phase_report.advice,
        confidence=float(phase_report.confidence),
        best_step=None if phase_report.best_step is None else int(phase_report.best_step),
        fit_step=first_step_at(frame, "train", "accuracy", fitted_accuracy),
        generalisation_step=first_phase_step(phase_report, "generalisation"),
        test_50_step=tests[0], test_95_step=tests[1],
        last_step=int(rows["step"].max()) if len(rows) else None, final=final_values(frame),
        measured=measured_accuracies(frame),
    )


def measured_accuracies(frame: pd.DataFrame) -> tuple[str, ...]:
    """`<split>_accuracy` for the train and test splits whose accuracy has a finite value at some ok checkpoint."""
    rows = _ok_rows(frame)
    if "accuracy" not in rows:
        return ()
    return tuple(f"{split}_accuracy" for split in ("train", "test")
                 if np.isfinite(numeric(rows.loc[rows["split"] == split, "accuracy"])).any())


def run_names(paths: list[Path | None]) -> list[str]:
    """Names for runs without one: a checkpoint folder's name, or the results file's (its folder's for
    `grokmon.parquet`); `run N` for a table given as a DataFrame; repeats get `#2`, `#3`.

    >>> run_names([Path("sweep/wd0.1/grokmon.parquet"), Path("sweep/wd1"), Path("base.parquet"), Path("x/base.parquet")])
    ['wd0.1', 'wd1', 'base', 'base#2']
    """
    names = []
    for index, path in enumerate(paths):
        if path is None:
            name = f"run {index + 1}"
        elif path.suffix.lower() in (".parquet", ".pq"):
            name = path.parent.name if path.name == DEFAULT_NAME and path.parent.name else path.stem
        else:
            name = path.name or str(path)
        count = sum(1 for n in names if n == name or n.startswith(f"{name}#"))
        names.append(name if count == 0 else f"{name}#{count + 1}")
    return names


def names_for(paths: list[Path | None], names: list[str] | None) -> list[str]:
    """The names of the runs at `paths`: `names` when given (one per run, all different), else `run_names`."""
    if not paths:
        raise ConfigError("Expected at least one run to compare, but got none")
    if names is not None and len(names) != len(paths):
        raise ConfigError(f"Expected one name per run ({len(paths)}), but got {len(names)}")
    chosen = list(names) if names is not None else run_names(paths)
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"Expected a different name for every run, but got {', '.join(chosen)}")
    return chosen


def headline(summaries: list[RunSummary]) -> str:
    """Which run reached test accuracy 0.95 first (when no run has test accuracy: which one the phase report
    labels generalising first), and how many times later each other run did; the runs that never did.

    >>> rows = [RunSummary("a", None, "accuracy", "stop", 0.9, None, 60, 2000, 2700, 3550, 8000, {"test_accuracy": 1.0}),
    ...         RunSummary("b", None, "accuracy", "stop", 0.9, None, 60, 900, 1100, 1431, 8000, {"test_accuracy": 1.0}),
    ...         RunSummary("c", None, "accuracy", "keep-training", 0.8, None, 60, None, None, None, 8000,
    ...                     {"test_accuracy": 0.3})]
    >>> headline(rows)
    'test accuracy 0.95: first b (step 1431), then a (step 3550, 2.5x later); never: c'
    >>> tie = RunSummary("d", None, "accuracy", "stop", 0.9, None, 60, 2000, 2700, 3550, 8000, {"test_accuracy": 1.0})
    >>> headline(rows + [tie])
    'test accuracy 0.95: first b (step 1431), then a and d (step 3550, 2.5x later); never: c'
    >>> headline([RunSummary("a", None, "geometry", "stop", 0.5, None, None, 900, None, None, 8000)])
    'generalisation: first a (step 900)'
    >>> headline(rows + [RunSummary("e", None, "geometry", "stop", 0.5, None, None, 900, None, None, 8000)])
    'test accuracy 0.95: first b (step 1431), then a (step 3550, 2.5x later); never: c; no test accuracy: e'
    """
    labelled = any(s.measures("test_95_step") for s in summaries)
    key, what = ("test_95_step", "test accuracy 0.95") if labelled else ("generalisation_step", "generalisation")
    reached = sorted((getattr(s, key), s.name) for s in summaries if getattr(s, key) is not None)
    never = [s.name for s in summaries if getattr(s, key) is None and s.measures(key)]
    unmeasured = [s.name for s in summaries if not s.measures(key)]  # none when no run has test accuracy
    tail = f"; no test accuracy: {', '.join(unmeasured)}" if unmeasured else ""
    if not reached:
        return f"{what}: reached by none of the runs{tail}"
    together = [(step, " and ".join(n for _, n in group)) for step, group in itertools.groupby(reached, lambda r: r[0])]
    first_step = together[0][0]
    parts = [f"first {together[0][1]} (step {first_step})"]
    for step, names in together[1:]:
        ratio = f", {step / first_step:.1f}x later" if first_step > 0 else ""
        parts.append(f"{names} (step {step}{ratio})")
    text = f"{what}: " + ", then ".join(parts)
    return text + (f"; never: {', '.join(never)}" if never else "") + tail
