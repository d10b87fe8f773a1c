"""One metric's course over a run, judged causally: at checkpoint i only checkpoints 0..i are used.

- The axis is x = log10(1 + step): training dynamics unfold on a log-step axis, and step 0 sits at 0
  without depending on the later saves.
- Noise. The table's standard error (SE) is over probe points; the same points are measured at every
  checkpoint, so it overstates the noise of a change between checkpoints, and it cannot see training noise.
  The noise used is the scatter of the checkpoints so far about the straight line through their
  neighbours (1.4826 x median absolute deviation, in the units of one checkpoint), floored at
  `se_floor_fraction` x the largest SE so far. Before four such deviations exist, the SE itself.
- Trend. A weighted least-squares line through the checkpoints of the last `decades` decades (at least
  three checkpoints), with its slope per decade and the slope's standard error from that noise.

Everything is computed in one pass, so the value at every checkpoint costs what the last one does.
"""

from __future__ import annotations

import heapq

import math
from dataclasses import dataclass

import numpy as np

MAD_TO_SD = 1.4826
MIN_DEVIATIONS = 4  # midpoint deviations needed before the scatter replaces the SE as the noise
MIN_TREND_POINTS = 3


@dataclass(frozen=True)
class Track:
    """One series aligned on the run's checkpoints (NaN where a checkpoint lacks it), with causal noise."""

    value: np.ndarray
    se: np.ndarray
    sigma: np.ndarray  # noise at each checkpoint, estimated from it and the checkpoints before it

    @property
    def present(self) -> np.ndarray:
        return np.isfinite(self.value)


@dataclass(frozen=True)
class Trend:
    """Trailing straight-line fit at every checkpoint (NaN where the series is missing)."""

    slope: np.ndarray     # per decade of steps
    slope_se: np.ndarray
    level: np.ndarray     # the line's value at the checkpoint (denoised current level)
    start: np.ndarray     # index of the window's first checkpoint (-1 where missing)
    covers: np.ndarray    # the run reaches back the whole span here
    count: np.ndarray     # checkpoints in the window
    z: np.ndarray         # slope / slope_se (0 where it cannot be judged)
    level_se: np.ndarray  # standard error of `level` (the line's end: more than the window's mean has)


AXIS_DECIMALS = 12


def log_steps(steps: np.ndarray) -> np.ndarray:
    """x = log10(1 + step), rounded to AXIS_DECIMALS places: log10's last bit differs between machines and numpy
    builds, and steps a decade apart (9 and 99, 6 and 69: common on log-spaced saves) put a checkpoint exactly on a
    window's edge, so unrounded, the same results table could read differently on two machines.

    >>> log_steps(np.array([0, 9, 99])).tolist()
    [0.0, 1.0, 2.0]
    """
    return np.round(np.log10(1.0 + np.asarray(steps, dtype=float)), AXIS_DECIMALS)


def track(x: np.ndarray, value: np.ndarray, se: np.ndarray, se_floor_fraction: float) -> Track:
    """The series with its causal noise scale (see the module docstring)."""
    value = np.asarray(value, dtype=float)
    se = np.where(np.isfinite(se), np.abs(se), 0.0)
    sigma = np.full(len(value), np.nan)
    idx = np.flatnonzero(np.isfinite(value))
    xs, vs, ses = x[idx], value[idx], se[idx]
    noise = ses.copy()
    if len(idx) >= MIN_DEVIATIONS + 2:
        gap = xs[2:] - xs[:-2]
        w = np.divide(xs[1:-1] - xs[:-2], gap, out=np.full(len(gap), 0.5), where=gap > 0)
        middle = vs[:-2] + w * (vs[2:] - vs[:-2])
        deviation = np.abs(vs[1:-1] - middle) / np.sqrt(1 + w * w + (1 - w) ** 2)
        running = _running_median(deviation)  # at checkpoint k the midpoints 1..k-1 are known
        enough = np.arange(2, len(idx)) - 1 >= MIN_DEVIATIONS
        noise[2:] = np.where(enough, MAD_TO_SD * running, ses[2:])
    floor = se_floor_fraction * np.maximum.accumulate(ses)
    sigma[idx] = np.maximum.reduce([noise, floor, 1e-9 * np.maximum(1.0, np.abs(vs))])
    return Track(value, se, sigma)


def _running_median(values: np.ndarray) -> np.ndarray:
    """out[k] = median(values[: k + 1]), in one pass: the smaller half in a max-heap, the larger in a min-heap."""
    low: list[float] = []  # negated: heapq keeps a min-heap
    high: list[float] = []
    out = np.empty(len(values))
    for k, value in enumerate(values.tolist()):
        heapq.heappush(low, -heapq.heappushpop(high, value))
        if len(low) > len(high) + 1:
            heapq.heappush(high, -heapq.heappop(low))
        out[k] = -low[0] if len(low) > len(high) else 0.5 * (-low[0] + high[0])
    return out


def despiked(values: np.ndarray) -> np.ndarray:
    """Each value but the first and last replaced by the median of it and its two neighbours: a checkpoint that
    jumps away and back (a loss spike) is replaced, a monotone stretch is left as it is.

    >>> despiked(np.array([1.0, 1.0, 0.2, 1.0, 2.0, 3.0])).tolist()
    [1.0, 1.0, 1.0, 1.0, 2.0, 3.0]
    """
    out = values.copy()
    if len(values) >= 3:
        out[1:-1] = np.median(np.vstack([values[:-2], values[1:-1], values[2:]]), axis=0)
    return out


def trends(x: np.ndarray, series: Track, spans: tuple[float, ...], robust: bool = False) -> list[Trend]:
    """The trailing line at every checkpoint over the last `decades` decades (at least three checkpoints), for
    each of `spans`, judged with the noise known at that checkpoint. Sums over each window come from cumulative
    sums shared by all spans, so the whole run costs one pass.

    `Trend.covers` says where the run reaches back the span (a checkpoint at or before x - span exists), so
    that the window's checkpoints sample that whole span. `robust`: the checkpoints before the newest one
    enter `despiked` (each is judged with both its neighbours known); the newest enters as it is, so a drop
    there shows at once.

    >>> flat, = trends(np.log10(1 + np.arange(10.0)), Track(np.full(10, 0.5), np.zeros(10), np.full(10, 0.01)), (0.3,))
    >>> float(flat.slope[-1]), int(flat.count[-1]), bool(flat.covers[-1])
    (0.0, 5, True)
    """
    n, k = len(x), len(spans)
    idx = np.flatnonzero(series.present)
    m = len(idx)
    slope, slope_se, level, level_se = (np.full((k, n), np.nan) for _ in range(4))
    z, start, covers, count_out = np.zeros((k, n)), np.full((k, n), -1), np.zeros((k, n), bool), np.zeros((k, n), int)
    if m:
        xs, vs = x[idx], series.value[idx]
        inner = despiked(vs) if robust else vs
        sums = np.zeros((5, m + 1))
        np.cumsum(np.vstack([np.ones_like(xs), xs, inner, xs * xs, xs * inner]), axis=1, out=sums[:, 1:])
        reach = xs[None, :] - np.asarray(spans, float)[:, None]  # spans x checkpoints
        least = np.maximum(0, np.arange(m) + 1 - MIN_TREND_POINTS)
        first = np.minimum(np.searchsorted(xs, reach.ravel(), side="left").reshape(k, m), least)
        count, sx, sv, sxx, sxv = sums[:, None, 1:] - sums[:, first]
        newest = vs - inner  # the newest checkpoint enters as it is
        sv, sxv = sv + newest, sxv + xs * newest
        spread = sxx - sx * sx / count
        ok = spread > 1e-12
        safe = np.where(ok, spread, 1.0)
        b = np.where(ok, (sxv - sx * sv / count) / safe, 0.0)
        se = np.where(ok, series.sigma[idx] / np.sqrt(safe), np.inf)
        slope[:, idx], slope_se[:, idx], z[:, idx] = b, se, np.where(ok, b / np.where(ok, se, 1.0), 0.0)
        level[:, idx] = sv / count + b * (xs - sx / count)
        lever = np.where(ok, (xs - sx / count) ** 2 / safe, 0.0)  # the newest checkpoint's distance from the mean x
        level_se[:, idx] = series.sigma[idx] * np.sqrt(1.0 / count + lever)
        start[:, idx], count_out[:, idx], covers[:, idx] = idx[first], count, xs[0] <= reach
    return [Trend(slope[j], slope_se[j], level[j], start[j], covers[j], count_out[j], z[j], level_se[j])
            for j in range(k)]


def normal_cdf(z: float) -> float:
    """P(Z <= z) for a standard normal Z.

    >>> round(normal_cdf(0.0), 2), round(normal_cdf(1.96), 3)
    (0.5, 0.975)
    """
    if not math.isfinite(z):
        return 1.0 if z > 0 else 0.0
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def strength_of(z: float, sigmas: float) -> float:
    """Evidence strength in [0, 1] of a z-score: 0.5 at `sigmas`, 1 at twice it."""
    if not math.isfinite(z):
        return 0.0
    return float(min(1.0, abs(z) / (2.0 * sigmas)))
