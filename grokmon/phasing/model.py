"""The fitted parts of the classifier, shipped as `model.json` (written by `corpus/fit.py`; numpy only here).

Geometry mode: a multinomial logistic regression gives P(phase | the geometry features at checkpoint i);
divided by the phases' frequencies it is a likelihood, tempered (consecutive checkpoints share most of
their trend windows, so their evidence is not independent), and a forward filter over the checkpoints
combines it with a Markov chain of phases in log-step (transition rates per decade, fitted from the
corpus's labelled sequences). The filter's posterior at checkpoint i uses checkpoints 0..i only, and all
of them come out of one pass. The same fit once without each family of the corpus (the jackknife) says where a
reading does not hold without one of the families (`GeometryModel.dissent`). Both modes: per phase read,
isotonic maps from the raw confidence to the share of corpus verdicts that were right at that confidence
(calibration).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .geometry_features import evidence_mask
from .types import ADVICE_FOR_PHASE, PHASES

MODEL_FILE = Path(__file__).with_name("model.json")
ADVICE_ORDER = tuple(dict.fromkeys(ADVICE_FOR_PHASE[p] for p in PHASES))  # the phases' advice, first seen first
_GIVES = np.array([[ADVICE_FOR_PHASE[p] == a for p in PHASES] for a in ADVICE_ORDER])  # advice x phases
_SQUARINGS = 12  # expm(Q dx) as (I + Q dx / 2^12)^(2^12)


@dataclass(frozen=True)
class Calibration:
    """Per phase read, an increasing step map from the raw confidence to the share of corpus verdicts with
    that reading whose advice was right (held out by family)."""

    maps: dict[str, tuple[np.ndarray, np.ndarray]]

    def __call__(self, phase: str, raw: float) -> float:
        if raw <= 0.0:  # a reading with no strength has no confidence, whatever the map's floor
            return 0.0
        if phase not in self.maps:
            return float(raw)
        xs, ys = self.maps[phase]
        return float(np.interp(raw, xs, ys))

    @classmethod
    def from_dict(cls, doc: dict) -> "Calibration":
        return cls({k: (np.asarray(v["x"], float), np.asarray(v["y"], float)) for k, v in doc.items()})


@dataclass(frozen=True)
class GeometryModel:
    """Logistic regression over the geometry features, a phase chain in log-step, and a calibration."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray        # phases x features
    intercept: np.ndarray   # phases
    prior: np.ndarray       # phase frequencies in the corpus
    initial: np.ndarray     # phase distribution at the first checkpoint
    rates: np.ndarray       # generator of the phase chain, per decade of steps (rows sum to 0)
    temper: float
    reference_gap: float    # a low quantile of the corpus's gaps between checkpoints, in decades (evidence per decade)
    calibration: Calibration
    left_out: str | None = None  # the corpus family this model was fitted without (None: fitted on every family)
    jackknife: tuple["GeometryModel", ...] = ()  # the same fit once without each family (agreement, below)

    def standardised(self, design: np.ndarray) -> np.ndarray:
        """The features in units of the corpus's spread, 0 where they are no evidence (`evidence_mask`)."""
        return (design - self.mean) / self.scale * evidence_mask(design)

    def phase_probabilities(self, design: np.ndarray) -> np.ndarray:
        """P(phase | features) at every checkpoint, from the logistic regression alone."""
        logits = self.standardised(design) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def filtered(self, design: np.ndarray, x: np.ndarray, informative: np.ndarray) -> np.ndarray:
        """P(phase at i | features at 0..i) for every checkpoint i (a forward filter; causal).

        `informative`: where the features carry evidence (elsewhere the chain only moves on).
        """
        return _forward([self], design, x, informative)[0]

    def filtered_with_jackknife(self, design: np.ndarray, x: np.ndarray, informative: np.ndarray) -> np.ndarray:
        """`filtered` of this model and of every jackknife model, in one pass (1 + jackknife models x n x phases)."""
        return _forward([self, *self.jackknife], design, x, informative)

    def transitions(self, gaps: np.ndarray) -> np.ndarray:
        """exp(rates x gap) for every gap (decades), by repeated squaring."""
        small = np.eye(len(PHASES)) + self.rates[None] * (np.maximum(gaps, 0.0)[:, None, None] / 2**_SQUARINGS)
        for _ in range(_SQUARINGS):
            small = small @ small
        return small

    def dissent(self, posteriors: np.ndarray, advice: np.ndarray) -> list[tuple[tuple[str, str], ...]]:
        """Per checkpoint, (family left out, its advice) for every jackknife model whose most likely advice is not
        `advice` there (indices into ADVICE_ORDER; empty where all agree), from their filtered `posteriors`
        (jackknife models x n x phases): a reading that changes when one family of training runs is left out of
        the fit rests on the runs of that family."""
        out: list[list[tuple[str, str]]] = [[] for _ in advice]
        for model, posterior in zip(self.jackknife, posteriors):
            theirs = advice_probabilities(posterior).argmax(axis=1)
            for i in np.flatnonzero(theirs != advice):
                out[i].append((model.left_out, ADVICE_ORDER[theirs[i]]))
        return [tuple(d) for d in out]

    @classmethod
    def from_dict(cls, doc: dict, left_out: str | None = None) -> "GeometryModel":
        """The model of a model.json document; `left_out`: the family a jackknife member was fitted without
        (members carry no calibration of their own)."""
        arrays = {k: np.asarray(doc[k], float)
                  for k in ("mean", "scale", "coef", "intercept", "prior", "initial", "rates")}
        calibration = Calibration({}) if left_out else Calibration.from_dict(doc["calibration"])
        jackknife = tuple(cls.from_dict(d, left_out=d["left_out"]) for d in doc.get("jackknife", ()))
        return cls(tuple(doc["features"]), temper=float(doc["temper"]), calibration=calibration, left_out=left_out,
                   reference_gap=float(doc.get("reference_gap", 0.0)),  # absent (older files): counted in full
                   jackknife=jackknife, **arrays)


def _forward(models, design: np.ndarray, x: np.ndarray, informative: np.ndarray) -> np.ndarray:
    """The forward filter of several models over the same checkpoints at once (models x n x phases).

    Evidence counts per decade of steps, not per checkpoint: a checkpoint closer to the previous one than
    `reference_gap` (fitted: a low quantile of the corpus's gaps) weighs gap / reference_gap. Saved every N
    steps, a run's late checkpoints crowd on the log-step axis and share their trend windows; counted in full,
    ten of them in a tenth of a decade would be read as ten independent readings."""
    gaps = np.diff(x, prepend=x[0])
    likelihood = np.stack([(m.phase_probabilities(design) / m.prior) ** (m.temper * _weights(gaps, m.reference_gap))
                           for m in models])
    likelihood[:, ~informative] = 1.0
    steps = np.stack([m.transitions(gaps) for m in models])  # models x n x phases x phases
    out = np.zeros(likelihood.shape)
    belief = np.stack([m.initial for m in models])
    for i in range(len(x)):
        belief = (np.einsum("mk,mkj->mj", belief, steps[:, i]) if i else belief) * likelihood[:, i]
        belief = belief / belief.sum(axis=1, keepdims=True)
        out[:, i] = belief
    return out


def _weights(gaps: np.ndarray, reference: float) -> np.ndarray:
    """Per checkpoint, the weight of its evidence (n x 1): its gap over the reference gap, at most 1; the
    first checkpoint weighs 1."""
    weights = np.clip(gaps / reference, 0.0, 1.0) if reference > 0 else np.ones(len(gaps))
    weights[:1] = 1.0
    return weights[:, None]


def advice_probabilities(phases: np.ndarray) -> np.ndarray:
    """Sum the phase probabilities (n x phases) into the advice each phase gives (n x ADVICE_ORDER)."""
    return phases @ _GIVES.T


def most_likely(posterior: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per checkpoint of phase probabilities (n x phases): the most likely advice (index into ADVICE_ORDER), the
    most likely phase among those giving it (index into PHASES), and that advice's probability."""
    by_advice = advice_probabilities(posterior)
    advice = by_advice.argmax(axis=1)
    phase = np.where(_GIVES[advice], posterior, -1.0).argmax(axis=1)
    return advice, phase, by_advice.max(axis=1)


@dataclass(frozen=True)
class Fitted:
    """Everything fitted on the corpus: the geometry model and the accuracy mode's calibration."""

    geometry: GeometryModel
    accuracy: Calibration

    @classmethod
    def from_dict(cls, doc: dict) -> "Fitted":
        return cls(GeometryModel.from_dict(doc["geometry"]), Calibration.from_dict(doc["accuracy_calibration"]))


@lru_cache(maxsize=1)
def shipped() -> Fitted:
    """The model and calibrations fitted on the corpus, as shipped in model.json."""
    return Fitted.from_dict(json.loads(MODEL_FILE.read_text()))
