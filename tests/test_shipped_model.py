"""The model and calibrations `phases` ships (grokmon/phasing/model.json) are what corpus/fit.py fits on the stored
corpus today: a change to the accuracy rules that moves a reading's strength moves its calibration samples, and a
model.json left as it was is stale (stop 39's climb-before-the-fit change left the `fitting` map so until a refit)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="fitting needs the corpus extra: pip install 'grokmon[corpus]'")

from corpus.fit import choose, fold_models, prepare_all, to_json  # noqa: E402
from grokmon.phasing.model import MODEL_FILE  # noqa: E402

GEOMETRY_ARRAYS = ("mean", "scale", "coef", "intercept", "prior", "initial", "rates")


def test_the_shipped_model_is_the_one_corpus_fit_gives():
    prepared = prepare_all()
    c, temper = choose(prepared)
    _, final = fold_models(prepared, c, temper)
    refit, shipped = to_json(final, c), json.loads(MODEL_FILE.read_text())
    # the accuracy calibration is isotonic maps of the rules' strengths: no optimiser, the same on every machine
    for phase, refitted in refit["accuracy_calibration"].items():
        ours = shipped["accuracy_calibration"].get(phase)
        assert ours is not None and len(ours["x"]) == len(refitted["x"]), f"stale accuracy calibration of {phase}"
        for axis in ("x", "y"):
            np.testing.assert_allclose(ours[axis], refitted[axis], rtol=1e-9, atol=1e-12, err_msg=phase)
    assert shipped["accuracy_calibration"].keys() == refit["accuracy_calibration"].keys()
    # the geometry model is an optimiser's (L-BFGS): another machine's floating point moves its last digits
    assert shipped["geometry"]["features"] == refit["geometry"]["features"], "stale geometry features"
    for name in GEOMETRY_ARRAYS:
        np.testing.assert_allclose(np.asarray(shipped["geometry"][name], float),
                                   np.asarray(refit["geometry"][name], float), rtol=1e-3, atol=1e-4, err_msg=name)
