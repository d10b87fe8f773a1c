"""The results table as the classifier reads it: the ok rows, checked, and one series per (metric, split)
aligned on the analysed checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..columns import GROUP_COLUMNS
from ..errors import ResultsError
from .series import Track, log_steps, track


class RunTable:
    """The checkpoints analysed without error, in step order, and their series (numpy arrays, built once)."""

    def __init__(self, df: pd.DataFrame, se_floor_fraction: float):
        self.df = df
        self.rows = usable_rows(df)
        step = df["step"].to_numpy()[self.rows].astype(np.int64)
        self.steps = np.unique(step)
        self.x = log_steps(self.steps)
        self.se_floor_fraction = se_floor_fraction
        self._position = np.searchsorted(self.steps, step)
        split = df["split"].to_numpy(dtype=object)[self.rows]
        self._split_rows = {name: np.flatnonzero(split == name) for name in set(split)}
        self._columns: dict[str, np.ndarray | None] = {}
        self._cache: dict[tuple[str, str, bool], Track | None] = {}
        self._has: dict[tuple[str, str], bool] = {}

    def _column(self, name: str) -> np.ndarray | None:
        if name not in self._columns:
            self._columns[name] = _numbers(self.df[name])[self.rows] if name in self.df.columns else None
        return self._columns[name]

    def _aligned(self, name: str, split: str) -> np.ndarray | None:
        column, rows = self._column(name), self._split_rows.get(split)
        if column is None or rows is None:
            return None
        out = np.full(len(self.steps), np.nan)
        out[self._position[rows]] = column[rows]
        return out

    def has_split(self, split: str) -> bool:
        """Whether any checkpoint analysed without error has rows on `split`."""
        return split in self._split_rows

    def has(self, metric: str, split: str) -> bool:
        """Whether `metric` holds a value on `split` at any checkpoint."""
        key = (metric, split)
        if key not in self._has:
            column, rows = self._column(metric), self._split_rows.get(split)
            self._has[key] = column is not None and rows is not None and bool(np.isfinite(column[rows]).any())
        return self._has[key]

    def first(self, metric: str, split: str) -> float | None:
        """`metric` on `split` at the first checkpoint; None where it has no value there."""
        values = self._aligned(metric, split)
        return float(values[0]) if values is not None and np.isfinite(values[0]) else None

    def track(self, metric: str, split: str, log: bool = False) -> Track | None:
        """The series of `metric` on `split` with its causal noise (log10 of it for `log`); None if absent."""
        key = (metric, split, log)
        if key not in self._cache:
            self._cache[key] = self._make(metric, split, log) if self.has(metric, split) else None
        return self._cache[key]

    def _make(self, metric: str, split: str, log: bool) -> Track:
        value = self._aligned(metric, split)
        se = self._aligned(f"{metric}_se", split)
        se = np.zeros(len(self.steps)) if se is None else se
        if log:
            with np.errstate(all="ignore"):
                value, se = np.where(value > 0, np.log10(value), np.nan), se / (value * math.log(10))
        return track(self.x, value, se, self.se_floor_fraction)

    def points_so_far(self) -> np.ndarray:
        """The fewest probe points of any split at each checkpoint or before it (NaN when unknown)."""
        points = self._column("n_points")
        fewest = np.full(len(self.steps), np.inf)
        if points is not None:
            np.fmin.at(fewest, self._position, np.where(np.isfinite(points), points, np.inf))
        return np.where(np.isfinite(fewest), np.fmin.accumulate(fewest), np.nan)


def _numbers(column: pd.Series) -> np.ndarray:
    """A column as floats (NaN for nulls and anything that is not a number)."""
    if column.dtype == np.float64:
        return column.to_numpy()
    try:
        return column.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def usable_rows(df: pd.DataFrame) -> np.ndarray:
    """Positions of the rows with status ok, in step order (the last of duplicate (step, split) rows), or
    ResultsError for a table that is not grokmon's results."""
    if not isinstance(df, pd.DataFrame):
        raise ResultsError(f"Expected a pandas DataFrame of grokmon results, but got {type(df).__name__}")
    missing = [c for c in ("step", "split", "status") if c not in df.columns]
    if missing:
        raise ResultsError(
            f"not a grokmon results table: no column {', '.join(missing)} (write one with `grokmon analyze`)")
    if not len(df):
        raise ResultsError("the results table is empty: no checkpoint was analysed")
    ok = np.flatnonzero(df["status"].to_numpy(dtype=object) == "ok")
    if not len(ok):
        first = df.iloc[0]
        raise ResultsError(f"every checkpoint failed in `grokmon analyze` (step {first['step']}: "
                           f"{first.get('error', 'no message')}); fix that and analyze again")
    metrics = [m for cols in GROUP_COLUMNS.values() for m in cols if m != "lc_layers" and m in df.columns]
    if not any(np.isfinite(_numbers(df[m])[ok]).any() for m in metrics):
        raise ResultsError("not a grokmon results table: no metric column holds a value "
                           f"(expected some of {', '.join(m for cols in GROUP_COLUMNS.values() for m in cols)})")
    steps = _numbers(df["step"])[ok]
    if not np.isfinite(steps).all() or (steps != np.round(steps)).any():
        raise ResultsError("not a grokmon results table: column step does not hold integers")
    if (steps < 0).any():
        raise ResultsError("not a grokmon results table: negative steps")
    order = np.argsort(steps, kind="stable")
    ok, steps = ok[order], steps[order]
    _, code = np.unique(df["split"].to_numpy(dtype=object)[ok].astype(str), return_inverse=True)
    key = steps * (code.max() + 1) + code
    if len(np.unique(key)) < len(key):  # keep the last row of each (step, split)
        last = len(key) - 1 - np.unique(key[::-1], return_index=True)[1]
        ok = ok[np.sort(last)]
    return ok
