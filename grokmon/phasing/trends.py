"""One metric's course over a run: noise scale, change points and trend, judged on the log-step axis.

A series (one metric on one split) is cut into pieces that are each a straight line in log10(step) by
ruptures' `Pelt` with the linear-regression cost, on the series divided by its noise scale (so the cost is
a chi-square and the penalty is in noise units). Each piece's slope gets a weighted least-squares fit
(`numpy.polyfit`) with a standard error; a piece is rising or falling only when that slope is significant
against the standard errors *and* the change across the piece is worth speaking of. The pieces never
straddle a change point, so transitions are not smeared or shifted the way a moving window would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import ruptures

_MAD_TO_SD = 1.4826
# Below this many checkpoints most midpoints sit on a bend of the curve, and their deviation is signal, not noise.
_MIN_FOR_SCATTER = 8


@dataclass(frozen=True)
class Trend:
    """One series aligned on the run's checkpoints (NaN where the checkpoint has no value)."""

    value: np.ndarray      # the table's mean
    sigma: np.ndarray      # noise scale used: max(SE, floor, checkpoint-to-checkpoint scatter)
    fit: np.ndarray        # the piecewise-linear fit in log-step
    slope: np.ndarray      # slope of the piece holding the checkpoint, per decade of steps
    slope_z: np.ndarray    # that slope over its standard error
    direction: np.ndarray  # +1 rising, -1 falling, 0 flat (or not known)
    piece: np.ndarray      # index of the piece holding the checkpoint, -1 where missing

    @property
    def present(self) -> np.ndarray:
        """Where the series has a value (a checkpoint that failed, or lacks the metric, has none)."""
        return np.isfinite(self.value)

    def level(self, sigmas: float) -> np.ndarray:
        """The fitted value where the checkpoint agrees with it (within `sigmas` noise units), else the raw value.

        Denoises a level without trusting a piece that a checkpoint clearly leaves (a piece forced long, or a
        change faster than the saves).
        """
        off = np.abs(self.value - self.fit) > sigmas * self.sigma
        return np.where(off | ~np.isfinite(self.fit), self.value, self.fit)

    @property
    def span(self) -> float:
        """Range of the fitted curve over the run: the scale of the changes worth speaking of."""
        fit = self.fit[np.isfinite(self.fit)]
        return float(fit.max() - fit.min()) if len(fit) else 0.0


def empty_trend(n: int) -> Trend:
    """The Trend of a series with no value at any of `n` checkpoints."""
    nan = np.full(n, np.nan)
    return Trend(nan, nan, nan, nan, nan, np.zeros(n, dtype=int), np.full(n, -1))


def noise_scale(x: np.ndarray, v: np.ndarray, se: np.ndarray, se_floor_fraction: float) -> np.ndarray:
    """Per-checkpoint noise: the table's SE (floored), scaled up when neighbouring checkpoints scatter more.

    The SE over probe points cannot see training noise. Each checkpoint's deviation from the straight line
    through its two neighbours, divided by the noise that line should have, has a robust (median) size; when
    that is above 1, every SE is multiplied by it. Where the table has no SE the scatter alone sets the noise.
    """
    se = np.where(np.isfinite(se), np.abs(se), 0.0)
    floor = se_floor_fraction * float(np.percentile(se, 90)) if len(se) else 0.0
    tiny = 1e-9 * max(1.0, float(np.max(np.abs(v)))) if len(v) else 1e-9
    base = np.maximum.reduce([se, np.full(len(v), floor), np.full(len(v), tiny)])
    if len(v) >= _MIN_FOR_SCATTER:
        gap = x[2:] - x[:-2]
        weight = np.divide(x[1:-1] - x[:-2], gap, out=np.full(len(gap), 0.5), where=gap > 0)
        middle = v[:-2] + weight * (v[2:] - v[:-2])
        expected = np.sqrt(base[1:-1] ** 2 + ((1 - weight) * base[:-2]) ** 2 + (weight * base[2:]) ** 2)
        factor = _MAD_TO_SD * float(np.median(np.abs(v[1:-1] - middle) / expected))
        if factor > 1.0:
            base = base * factor
    return base


def _pieces(x: np.ndarray, v: np.ndarray, sigma: np.ndarray, min_size: int, penalty: float) -> list[int]:
    """End indices (exclusive) of the straight pieces, last one len(x)."""
    n = len(x)
    if n < 2 * min_size:
        return [n]
    signal = np.column_stack([v / sigma, x / sigma, 1.0 / sigma])
    algo = ruptures.Pelt(model="linear", min_size=min_size, jump=1).fit(signal)
    return [int(b) for b in algo.predict(pen=penalty * math.log(n))]


def _line(x: np.ndarray, v: np.ndarray, sigma: np.ndarray) -> tuple[float, float, float]:
    """Weighted least-squares line: (slope, its SE from the noise scale, intercept).

    The SE is not inflated by the misfit: within a piece that is curvature, and scatter beyond the table's SE
    is already in `sigma`.
    """
    if len(x) < 2 or np.ptp(x) == 0:
        return 0.0, math.inf, float(np.average(v, weights=sigma**-2))
    coef, cov = np.polyfit(x, v, 1, w=1.0 / sigma, cov="unscaled")
    return float(coef[0]), math.sqrt(max(cov[0, 0], 0.0)), float(coef[1])


def analyse(x: np.ndarray, value: np.ndarray, se: np.ndarray, th) -> Trend:
    """Cut one series into straight pieces in log-step and judge each piece's direction against the noise.

    `x` is log10 step for every checkpoint of the run; `value`, `se` may hold NaN (missing checkpoints).
    `th` is a PhaseThresholds.
    """
    n = len(x)
    ok = np.isfinite(value)
    if ok.sum() == 0:
        return empty_trend(n)
    xs, vs = x[ok], value[ok]
    sigma_s = noise_scale(xs, vs, se[ok], th.se_floor_fraction)
    # short runs may cut pieces down to two checkpoints, so that a change in a handful of saves is still seen
    min_piece = max(2, min(th.min_piece_checkpoints, len(xs) // 4))
    ends = _pieces(xs, vs, sigma_s, min_piece, th.changepoint_penalty)
    fit_s, slope_s, z_s, piece_s = (np.zeros(len(xs)) for _ in range(4))
    start = 0
    for k, end in enumerate(ends):
        sl = slice(start, end)
        slope, slope_se, intercept = _line(xs[sl], vs[sl], sigma_s[sl])
        fit_s[sl] = intercept + slope * xs[sl]
        slope_s[sl], z_s[sl], piece_s[sl] = slope, slope / slope_se if slope_se > 0 else 0.0, k
        start = end
    span = float(fit_s.max() - fit_s.min())
    direction_s = np.zeros(len(xs), dtype=int)
    start = 0
    for k, end in enumerate(ends):
        sl = slice(start, end)
        change = slope_s[start] * float(xs[end - 1] - xs[start])
        worth = abs(slope_s[start]) >= th.min_relative_change * span and abs(change) >= float(np.median(sigma_s[sl]))
        if abs(z_s[start]) >= th.slope_sigma and worth:
            direction_s[sl] = int(np.sign(slope_s[start]))
        if k > 0 and direction_s[start] == 0:
            # A step between two pieces (a change faster than the saves) counts at the first checkpoint after it.
            jump = fit_s[start] - fit_s[start - 1]
            noise = math.hypot(sigma_s[start], sigma_s[start - 1])
            if abs(jump) >= th.slope_sigma * noise and abs(jump) >= th.min_relative_change * span:
                direction_s[start] = int(np.sign(jump))
        start = end

    def spread(values, fill=np.nan, dtype=float):
        out = np.full(n, fill, dtype=dtype)
        out[ok] = values
        return out

    return Trend(spread(vs), spread(sigma_s), spread(fit_s), spread(slope_s), spread(z_s),
                 spread(direction_s, 0, int), spread(piece_s, -1, int))


def log_steps(steps: np.ndarray) -> np.ndarray:
    """log10(step); step 0 sits one spacing before the first positive step (log10 0 is -inf).

    >>> log_steps(np.array([0, 10, 100, 1000])).tolist()
    [0.0, 1.0, 2.0, 3.0]
    >>> log_steps(np.array([0, 1000, 2000])).round(3).tolist()
    [2.699, 3.0, 3.301]
    """
    x = np.log10(np.maximum(steps.astype(float), 1.0))
    positive = np.flatnonzero(steps > 0)
    if len(positive) and steps[0] == 0:
        first = x[positive[0]]
        gap = x[positive[1]] - first if len(positive) > 1 else 1.0
        x[steps == 0] = first - max(gap, 1e-3)
    return x


def strength_of(z: float, th) -> float:
    """Evidence strength in [0, 1] of a z-score: 0.5 at the significance threshold, 1 at twice it."""
    if not math.isfinite(z):
        return 0.0
    return float(np.clip(abs(z) / (2.0 * th.slope_sigma), 0.0, 1.0))


def running(values: np.ndarray, op) -> np.ndarray:
    """Index of the running max (op=max) or min (op=min) of `values`, ignoring NaN; -1 before the first value.

    >>> running(np.array([np.nan, 2.0, 1.0, 3.0]), min).tolist()
    [-1, 1, 2, 2]
    """
    out = np.full(len(values), -1)
    best = -1
    for i, v in enumerate(values):
        if np.isfinite(v) and (best < 0 or op(values[best], v) != values[best]):
            best = i
        out[i] = best
    return out
