"""Causal features of a run's geometry: at checkpoint i, numbers computed from checkpoints 0..i only.

Four independent groups of evidence (BACKGROUND: what moving to the general solution does to each):

| group | series (simplifying direction) |
|---|---|
| complexity | `lc` falling |
| alignment | `centroid_alignment` rising |
| rank | `jacobian_erank` falling, `jacobian_pc1` rising |
| scale | log10 `centroid_norm` falling, log10 `jacobian_fro` falling |

A group is read from the first of its series that the table has (`--metrics` may leave some out), on the
first split that has it (train, test, random), turned so that up means simplifying, and described at every
checkpoint by FEATURES (trends judged against its noise, where it stands in the range it has covered so far,
how long since its extremes). A series that has not moved at all so far (a single-logit network's rank: 1 at
every point) is absent there: the group is no evidence. With one output the centroid is the Jacobian and
the two norms are one series; they are one group, read once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .series import Track, trends

VOTE_GROUPS = {
    "complexity": (("lc", -1),),
    "alignment": (("centroid_alignment", +1),),
    "rank": (("jacobian_erank", -1), ("jacobian_pc1", +1)),
    "scale": (("centroid_norm", -1), ("jacobian_fro", -1)),
}
SPLITS = ("train", "test", "random")
LOG_METRICS = ("centroid_norm", "jacobian_fro")  # norms change by factors: judged on log10
SERIES_WORDS = {"lc": "local complexity", "centroid_alignment": "centroid alignment",
                "jacobian_erank": "effective rank", "jacobian_pc1": "Jacobian top share",
                "centroid_norm": "centroid norm", "jacobian_fro": "Jacobian norm"}
FEATURES = ("short_trend", "long_trend", "pace", "position", "moved", "since_top", "since_bottom", "step")
LONG_DECADES = 1.0   # the long trend's window
SINCE_CAP = 2.0      # decades since an extreme, capped
MOVED_DECADES = 3.0  # log10 of the range in noise units that counts as fully moved


@dataclass(frozen=True)
class GroupEvidence:
    """Per checkpoint: the group's features (n x len(FEATURES)), whether it is present, and its short-trend
    z-score in the simplifying direction (for the reason); the metric it was read from."""

    features: np.ndarray
    present: np.ndarray
    z: np.ndarray
    metric: str


def series_features(x: np.ndarray, series: Track, sign: int, trend_decades: float, slope_sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FEATURES of one series at every checkpoint (rows NaN where it is absent), its presence, its z-score."""
    n = len(x)
    u = sign * series.value
    turned = Track(u, series.se, series.sigma)
    short, long = trends(x, turned, (trend_decades, LONG_DECADES))
    out = np.full((n, len(FEATURES)), np.nan)
    present = np.zeros(n, dtype=bool)
    z = np.zeros(n)
    idx = np.flatnonzero(series.present)
    if not len(idx):
        return out, present, z
    us, xs, sigma = u[idx], x[idx], series.sigma[idx]
    top, bottom = np.maximum.accumulate(us), np.minimum.accumulate(us)
    scale = np.maximum.accumulate(np.abs(us))
    moved = (top - bottom) > 1e-6 * np.maximum(scale, 1e-12)
    width = np.maximum(top - bottom, 3 * sigma)
    order = np.arange(len(us))
    top_at = np.maximum.accumulate(np.where(us >= top, order, 0))  # the latest checkpoint at the running extreme
    bottom_at = np.maximum.accumulate(np.where(us <= bottom, order, 0))
    zs, zl = short.z[idx], long.z[idx]  # 0 where a slope cannot be judged
    slope = np.where(short.count[idx] >= 3, short.slope[idx], 0.0)
    fastest = np.maximum.accumulate(np.abs(slope))
    step = np.empty_like(us)
    step[0], step[1:] = 0.0, np.diff(us)
    rows = np.empty((len(us), len(FEATURES)))
    rows[:, 0], rows[:, 1] = np.tanh(zs / slope_sigma), np.tanh(zl / slope_sigma)
    rows[:, 2] = np.divide(slope, fastest, out=np.zeros_like(slope), where=fastest > 0)
    rows[:, 3] = (us - bottom) / width
    rows[:, 4] = np.clip(np.log10(1.0 + (top - bottom) / sigma) / MOVED_DECADES, 0.0, 1.0)
    rows[:, 5] = np.minimum(xs - xs[top_at], SINCE_CAP) / SINCE_CAP
    rows[:, 6] = np.minimum(xs - xs[bottom_at], SINCE_CAP) / SINCE_CAP
    rows[:, 7] = np.tanh(step / (slope_sigma * sigma))
    out[idx[moved]] = rows[moved]
    present[idx] = moved
    z[idx] = np.where(moved, zs, 0.0)
    return out, present, z


def group_evidence(table, trend_decades: float, slope_sigma: float) -> dict[str, GroupEvidence]:
    """The evidence of every group that has a series in `table` (a RunTable): its first member the table has,
    on the first split that has it."""
    out = {}
    for group, members in VOTE_GROUPS.items():
        found = next(((metric, sign, split) for metric, sign in members for split in SPLITS
                      if table.has(metric, split)), None)
        if found is None:
            continue
        metric, sign, split = found
        series = table.track(metric, split, log=metric in LOG_METRICS)
        features, present, z = series_features(table.x, series, sign, trend_decades, slope_sigma)
        out[group] = GroupEvidence(features, present, z, metric)
    return out


def design_matrix(evidence: dict[str, GroupEvidence], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's input at every checkpoint: each group's FEATURES (0 where absent) and its presence flag, in
    VOTE_GROUPS order (the model reads the features through `evidence_mask`); and the number of groups present."""
    columns, count = [], np.zeros(n)
    for group in VOTE_GROUPS:
        ev = evidence.get(group)
        if ev is None:
            columns += [np.zeros((n, len(FEATURES))), np.zeros((n, 1))]
            continue
        columns += [np.where(ev.present[:, None], np.nan_to_num(ev.features), 0.0), ev.present[:, None].astype(float)]
        count += ev.present
    return np.hstack(columns), count


def evidence_mask(design: np.ndarray) -> np.ndarray:
    """0 for the FEATURES of a group absent at that checkpoint, else 1: an absent group's features are no
    evidence (its standardised features count as 0, not as the value 0 would stand for); its presence flag is."""
    width = len(FEATURES) + 1
    mask = np.ones_like(design)
    for k in range(len(VOTE_GROUPS)):
        mask[:, k * width:(k + 1) * width - 1] = design[:, [(k + 1) * width - 1]]
    return mask


def feature_names() -> list[str]:
    """Column names of `design_matrix`, for the model file."""
    return [f"{group}.{name}" for group in VOTE_GROUPS for name in (*FEATURES, "present")]
