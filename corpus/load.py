"""The stored corpus: every fixture with its family, results table, truth curve and true labels."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import truth

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "corpus"
VALIDATION = ROOT / "tests" / "fixtures" / "validation"  # runs kept out of fitting (corpus/validation.py)
TRIALS = ROOT / "tests" / "fixtures" / "trials"  # regression runs of new users' kinds (corpus/trials.py)
SAMPLE_FIXTURE = ROOT / "tests" / "fixtures" / "sample.parquet"
SAMPLE_CURVE = ROOT / "sample_checkpoints" / "training_curve.csv"


@dataclass(frozen=True)
class Run:
    """One stored run: its results table and the truth read from its truth curve, aligned on its checkpoints."""

    name: str
    family: str
    scenario: str
    table: pd.DataFrame
    steps: np.ndarray
    train: np.ndarray   # truth: accuracy on the whole train set (clean labels) at each checkpoint
    test: np.ndarray    # truth: accuracy on the whole test set
    robust: np.ndarray | None = None  # measured robust accuracy (test probes) at each checkpoint, where present

    @cached_property
    def phases(self) -> list[str]:
        return truth.phases(self.train, self.test, self.steps, self.robust)

    @cached_property
    def advice(self) -> list[str]:
        return [truth.ADVICE[p] for p in self.phases]

    @cached_property
    def onset(self) -> int | None:
        return truth.onset_index(self.train, self.test, self.steps)

    @cached_property
    def never_loses(self) -> bool:
        return truth.never_loses(self.train, self.test)

    def subset(self, keep) -> "Run":
        """The run as if only the checkpoints at indices `keep` had been saved (its truth read from those)."""
        keep = sorted(set(int(k) for k in keep))
        steps = self.steps[keep]
        return replace(self, table=self.table[self.table["step"].isin(steps)].reset_index(drop=True), steps=steps,
                       train=self.train[keep], test=self.test[keep],
                       robust=None if self.robust is None else self.robust[keep])

    def prefix(self, i: int) -> pd.DataFrame:
        """The results table cut after checkpoint i: what `phases` saw when step i was the newest."""
        return self.table.iloc[: int(np.searchsorted(self.table["step"].to_numpy(), self.steps[i], side="right"))]


def every(run: Run, k: int) -> list[int]:
    """Indices of every k-th checkpoint and the last: the run saved k times less often."""
    return [*range(0, len(run.steps), k), len(run.steps) - 1]


def log_spaced(run: Run, count: int) -> list[int]:
    """Indices of at most `count` checkpoints on a log-spaced schedule: the first and last, and the nearest to each
    of the steps spaced evenly in log10(step) between the second and the last (where two targets share a nearest
    checkpoint, fewer); every index for a run of fewer than three checkpoints."""
    if len(run.steps) < 3:
        return list(range(len(run.steps)))
    targets = np.geomspace(max(int(run.steps[1]), 1), int(run.steps[-1]), count - 1)
    return [0, len(run.steps) - 1, *(int(np.argmin(np.abs(run.steps - t))) for t in targets)]


def _run(path: Path, table: pd.DataFrame, about: dict, curve: list[dict]) -> Run:
    table = table.sort_values("step", kind="stable", ignore_index=True)  # rows in step order: a prefix is a head
    steps = np.array(sorted(table.loc[table["status"] == "ok", "step"].unique()), dtype=np.int64)
    by_step = {int(row["step"]): row for row in curve}
    train = np.array([float(by_step[int(s)]["train_accuracy"]) for s in steps])
    test = np.array([float(by_step[int(s)]["test_accuracy"]) for s in steps])
    return Run(about.get("run", path.stem), about.get("family", "sample"), about.get("scenario", "plain"),
               table, steps, train, test, _robust(table, steps))


def _robust(table: pd.DataFrame, steps: np.ndarray) -> np.ndarray | None:
    """The test probes' robust accuracy at every checkpoint, or None where the results do not measure it."""
    if "robust_accuracy" not in table.columns:
        return None
    rows = table[(table["split"] == "test") & (table["status"] == "ok")].drop_duplicates("step", keep="last")
    values = rows.set_index("step")["robust_accuracy"].reindex(steps).to_numpy(dtype=float)
    return None if np.isnan(values).any() else values


def corpus_runs(folder: Path = FIXTURES) -> list[Run]:
    """Every corpus fixture, in name order."""
    from grokmon.results.parquet import read_results

    runs = []
    for path in sorted(folder.glob("*.parquet")):
        table, metadata = read_results(path)
        about = metadata["corpus"]
        runs.append(_run(path, table, about, about["truth"]))
    return runs


def sample_run() -> Run:
    """The shipped sample run's stored results, with the truth curve make_samples.py wrote."""
    from grokmon.results.parquet import read_results

    table, _ = read_results(SAMPLE_FIXTURE)
    with open(SAMPLE_CURVE, newline="") as handle:
        curve = list(csv.DictReader(handle))
    return _run(SAMPLE_FIXTURE, table, {"run": "sample", "family": "sample"}, curve)
