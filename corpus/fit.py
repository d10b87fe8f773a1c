"""Fit the geometry model and the calibrations on the corpus and write grokmon/phasing/model.json.

    python -m corpus.fit        # needs the `corpus` extra (scikit-learn); a few seconds

- Labels: the true phase of every checkpoint (corpus/truth.py, from the truth curves).
- Features: grokmon.phasing.geometry_features at the default thresholds, the same code `phases` runs.
- Model: scikit-learn's LogisticRegression (multinomial, L2) on the features standardised over the checkpoints
  where they are evidence (an absent group's features 0); the phase chain's rates per decade from the labelled
  sequences (transitions / decades spent, plus a small pseudo-count on the transitions docs/phases.md allows);
  the regularisation C and the temper chosen by the log-loss of the filtered advice probabilities on held-out
  families.
- Jackknife: the same fit once without each family, shipped with the model (a verdict one of them does not
  share is `inconclusive`); each held-out fold's model carries its own, fitted without one more family.
- Calibration: isotonic regression (scikit-learn) of "the advice was right" on the raw confidence, per
  advice, on held-out predictions (each family predicted by the model fitted without it); the accuracy
  mode's on its rules' raw strengths.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np

from grokmon.phasing.accuracy_reading import calibration_key
from grokmon.phasing.classifier import accuracy_readings
from grokmon.phasing.geometry_features import design_matrix, evidence_mask, feature_names, group_evidence
from grokmon.phasing.model import (ADVICE_ORDER, MODEL_FILE, Calibration, Fitted, GeometryModel,
                                   advice_probabilities, most_likely)
from grokmon.phasing.table import RunTable
from grokmon.phasing.types import ADVICE_FOR_PHASE, PHASES, PhaseThresholds

from .load import Run, corpus_runs, every, log_spaced

K = len(PHASES)
# transitions the chain may make (besides those seen): forward through the phases, a plateau that resumes
# generalising, a collapse that recovers, a fitted set that is lost
ALLOWED = {("fitting", "memorisation"), ("fitting", "generalisation"), ("fitting", "robustness_plateau"),
           ("memorisation", "generalisation"), ("generalisation", "robustness_plateau"),
           ("robustness_plateau", "generalisation"), ("generalisation", "collapse"), ("robustness_plateau", "collapse"),
           ("collapse", "generalisation"), ("collapse", "robustness_plateau"), ("memorisation", "collapse"),
           ("fitting", "collapse")}
PSEUDO_COUNT, PSEUDO_DECADES = 0.2, 1.0
C_GRID, TEMPER_GRID = (0.03, 0.1, 0.3, 1.0), (0.3, 0.5, 0.7, 1.0)
# checkpoints closer together than this quantile of the corpus's gaps weigh less (model.py, evidence per decade):
# only spacings denser than nearly all the corpus was fitted on (held out: 12 failed checks; the median, which also
# thins the corpus's own extra saves at the moves and delays onsets, 16; no weighting 13)
GAP_QUANTILE = 0.1
IDENTITY = Calibration({})
# the save schedules the corpus runs are replayed with for the calibration of readings on a stretched line (a span
# holding fewer than three checkpoints): every 2nd, 3rd and 4th checkpoint, and at most 20 and 12 log-spaced ones
SPARSE_SCHEDULES = ((every, 2), (every, 3), (every, 4), (log_spaced, 20), (log_spaced, 12))


class Prepared:
    """A run's design matrix, axis and labels, computed once."""

    def __init__(self, run: Run, th: PhaseThresholds):
        self.run = run
        table = RunTable(run.table, th.se_floor_fraction)
        self.x = table.x
        self.design, self.count = design_matrix(group_evidence(table, th.trend_decades, th.slope_sigma), len(table.x))
        self.labels = np.array([PHASES.index(p) for p in run.phases])
        self.th = th
        self.accuracy = accuracy_readings(table, th)


def fit_logistic(prepared: list[Prepared], c: float) -> dict:
    from sklearn.linear_model import LogisticRegression

    rows = np.vstack([p.design[p.count > 0] for p in prepared])
    y = np.concatenate([p.labels[p.count > 0] for p in prepared])
    evidence = evidence_mask(rows) > 0  # each feature standardised over the checkpoints where it is evidence
    mean, scale = np.zeros(rows.shape[1]), np.ones(rows.shape[1])
    for j in np.flatnonzero(evidence.any(axis=0)):
        mean[j], scale[j] = rows[evidence[:, j], j].mean(), rows[evidence[:, j], j].std()
    scale[scale < 1e-9] = 1.0
    lr = LogisticRegression(C=c, max_iter=5000).fit((rows - mean) / scale * evidence, y)
    coef, intercept = np.zeros((K, rows.shape[1])), np.full(K, -30.0)  # a phase never seen: never predicted
    coef[lr.classes_], intercept[lr.classes_] = lr.coef_, lr.intercept_
    prior = np.bincount(y, minlength=K) / len(y)
    return {"mean": mean, "scale": scale, "coef": coef, "intercept": intercept, "prior": np.maximum(prior, 1e-6)}


def fit_chain(prepared: list[Prepared]) -> dict:
    """Transition rates per decade and the first checkpoint's phase distribution, from the labels."""
    counts, time = np.zeros((K, K)), np.zeros(K)
    first = np.zeros(K)
    for p in prepared:
        first[p.labels[0]] += 1
        for a, b, gap in zip(p.labels[:-1], p.labels[1:], np.diff(p.x)):
            time[a] += gap
            if a != b:
                counts[a, b] += 1
    for a, b in ALLOWED:
        counts[PHASES.index(a), PHASES.index(b)] += PSEUDO_COUNT
    rates = counts / (time + PSEUDO_DECADES)[:, None]
    np.fill_diagonal(rates, 0.0)
    np.fill_diagonal(rates, -rates.sum(axis=1))
    return {"rates": rates, "initial": (first + 0.1) / (first + 0.1).sum()}


def model_for(prepared: list[Prepared], c: float, temper: float, calibration: Calibration = IDENTITY,
              left_out: str | None = None) -> GeometryModel:
    gap = float(np.quantile(np.concatenate([np.diff(p.x) for p in prepared]), GAP_QUANTILE))
    return GeometryModel(tuple(feature_names()), temper=temper, reference_gap=gap, calibration=calibration,
                         left_out=left_out, **fit_logistic(prepared, c), **fit_chain(prepared))


def predictions(model: GeometryModel, p: Prepared) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Per checkpoint: predicted advice, the phase read, the advice's raw probability, all advice probabilities
    (as geometry_mode reads them)."""
    posterior = model.filtered(p.design, p.x, p.count > 0)
    advice, phase, probability = most_likely(posterior)
    return ([ADVICE_ORDER[k] for k in advice], [PHASES[k] for k in phase], probability,
            advice_probabilities(posterior))


def held_out(prepared: list[Prepared], c: float, temper: float) -> dict[str, GeometryModel]:
    """Per family, the model fitted without it."""
    families = sorted({p.run.family for p in prepared})
    return {f: model_for([p for p in prepared if p.run.family != f], c, temper, left_out=f) for f in families}


def log_loss(prepared: list[Prepared], models: dict[str, GeometryModel]) -> float:
    """Mean -log P(true advice) of the filtered advice probabilities, each run by its family's held-out model."""
    total, count = 0.0, 0
    for p in prepared:
        _, _, _, stacked = predictions(models[p.run.family], p)
        ok = p.count > 0
        truth = [ADVICE_ORDER.index(a) for a in p.run.advice]
        picked = stacked[np.arange(len(truth)), truth]
        total -= float(np.sum(np.log(np.clip(picked[ok], 1e-6, 1.0))))
        count += int(ok.sum())
    return total / max(count, 1)


def isotonic(samples: list[tuple[str, float, bool]]) -> Calibration:
    """Per phase read, the isotonic map from raw confidence to the share whose advice was right."""
    from sklearn.isotonic import IsotonicRegression

    maps = {}
    for phase in sorted({a for a, _, _ in samples}):
        raw = np.array([r for a, r, _ in samples if a == phase])
        right = np.array([float(ok) for a, _, ok in samples if a == phase])
        if len(raw) < 10:
            continue
        fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, right)
        maps[phase] = (np.asarray(fit.X_thresholds_, float), np.asarray(fit.y_thresholds_, float))
    return Calibration(maps)


def geometry_samples(prepared: list[Prepared], models: dict[str, GeometryModel]) -> dict[str, list]:
    """Held-out (phase read, raw probability, advice right) per family."""
    out: dict[str, list] = {}
    for p in prepared:
        advice, phases, raw, _ = predictions(models[p.run.family], p)
        for i in np.flatnonzero(p.count > 0):
            out.setdefault(p.run.family, []).append((phases[i], float(raw[i]), advice[i] == p.run.advice[i]))
    return out


def accuracy_samples(prepared: list[Prepared]) -> dict[str, list]:
    """Per family, (calibration key, raw strength, advice right) of every accuracy reading: the runs as saved give
    the phases' maps; the same runs saved as SPARSE_SCHEDULES give the maps of readings on a stretched line."""
    out: dict[str, list] = {}

    def add(family: str, reading, truth: str) -> None:
        if reading.strength <= 0.0:  # no strength, no confidence, whatever the map (Calibration): not a sample of it
            return
        right = ADVICE_FOR_PHASE[reading.phase] == truth
        out.setdefault(family, []).append((calibration_key(reading), reading.strength, right))

    for p in prepared:
        for reading, truth in zip(p.accuracy, p.run.advice):
            if reading.phase is not None:
                add(p.run.family, reading, truth)
        for schedule, count in SPARSE_SCHEDULES:
            replay = p.run.subset(schedule(p.run, count))
            for reading, truth in zip(_readings(replay.table, p.th), replay.advice):
                if reading.phase is not None and reading.stretched:
                    add(p.run.family, reading, truth)
    return out


def _readings(table, th: PhaseThresholds) -> list:
    return accuracy_readings(RunTable(table, th.se_floor_fraction), th)


def pooled(samples: dict[str, list], leave: str | None = None) -> list:
    return [s for f, group in samples.items() if f != leave for s in group]


def choose(prepared: list[Prepared]) -> tuple[float, float]:
    scores = {(c, t): log_loss(prepared, held_out(prepared, c, t)) for c, t in itertools.product(C_GRID, TEMPER_GRID)}
    return min(scores, key=scores.get)


def fold_models(prepared: list[Prepared], c: float, temper: float) -> tuple[dict[str, Fitted], Fitted]:
    """Per family, the Fitted a held-out evaluation uses (model and calibrations without that family), and the
    Fitted to ship (model on every run, calibrations on every family's held-out predictions)."""
    models = held_out(prepared, c, temper)
    geo, acc = geometry_samples(prepared, models), accuracy_samples(prepared)
    folds = {}
    for f, m in models.items():  # each fold's jackknife: fitted without f and one more family
        nested = held_out([p for p in prepared if p.run.family != f], c, temper)
        m = replace(m, calibration=isotonic(pooled(geo, f)), left_out=None, jackknife=tuple(nested.values()))
        folds[f] = Fitted(m, isotonic(pooled(acc, f)))
    final = model_for(prepared, c, temper, isotonic(pooled(geo)))
    return folds, Fitted(replace(final, jackknife=tuple(models.values())), isotonic(pooled(acc)))


def to_json(fitted: Fitted, c: float) -> dict:
    def cal(calibration: Calibration) -> dict:
        return {a: {"x": xs.tolist(), "y": ys.tolist()} for a, (xs, ys) in calibration.maps.items()}

    def geometry(g: GeometryModel) -> dict:
        doc = {"features": list(g.features), "mean": g.mean.tolist(), "scale": g.scale.tolist(),
               "coef": g.coef.tolist(), "intercept": g.intercept.tolist(), "prior": g.prior.tolist(),
               "initial": g.initial.tolist(), "rates": g.rates.tolist(), "temper": g.temper,
               "reference_gap": g.reference_gap}
        if g.left_out is None:
            doc["calibration"] = cal(g.calibration)
        else:
            doc["left_out"] = g.left_out
        if g.jackknife:
            doc["jackknife"] = [geometry(m) for m in g.jackknife]
        return doc

    return {"fitted_by": "corpus/fit.py", "C": c, "phases": list(PHASES), "geometry": geometry(fitted.geometry),
            "accuracy_calibration": cal(fitted.accuracy)}


def prepare_all(th: PhaseThresholds | None = None) -> list[Prepared]:
    th = th or PhaseThresholds()
    return [Prepared(run, th) for run in corpus_runs()]


def main() -> None:
    prepared = prepare_all()
    c, temper = choose(prepared)
    _, final = fold_models(prepared, c, temper)
    MODEL_FILE.write_text(json.dumps(to_json(final, c), indent=1) + "\n")
    print(f"{len(prepared)} runs, C={c}, temper={temper}: wrote {MODEL_FILE}")


if __name__ == "__main__":
    main()
