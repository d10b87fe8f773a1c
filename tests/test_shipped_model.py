"""The model and calibrations `phases` ships (grokmon/phasing/model.json) are what corpus/fit.py fits on the stored
corpus today: a change to the accuracy rules that moves a reading's strength moves its calibration samples, and a
model.json left as it was is stale (stop 39's climb-before-the-fit change left the `fitting` map so until a refit)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn", reason="fitting needs the corpus extra: pip install 'grokmon[corpus]'")

from corpus.fit import choose, fold_models, prepare_all, to_json  # noqa: E402
from grokmon.phasing.model import MODEL_FILE  # noqa: E402


def test_the_shipped_model_is_the_one_corpus_fit_gives():
    prepared = prepare_all()
    c, temper = choose(prepared)
    _, final = fold_models(prepared, c, temper)
    refit = json.dumps(to_json(final, c), indent=1) + "\n"
    assert refit == MODEL_FILE.read_text(), "grokmon/phasing/model.json is stale: run python -m corpus.fit"
