"""Runs of the kinds new users tried that exposed a defect, trained after the defect was found: regression
fixtures, not an estimate of what the checks give on unseen runs (that is corpus/validation.py). Neither fitted on
nor evaluated with the corpus. `python -m corpus.build --trials` trains and stores them in tests/fixtures/trials/.

The `adam-...` and `sgd-lr0.5-...` runs are digits MLPs (corpus/mlp.py) trained with too high a learning rate for
their batch: train and test accuracy drop by 0.03-0.1 together every few hundred steps and recover, the level
they oscillate about flat from step ~500 on. Saved every 50 steps, as a training script does.
"""

from __future__ import annotations

from .validation import fields_from_name

# "family/run" -> the family's task arguments
PLAIN = {
    "mlp/adam-lr0.06-b32-every50": dict(optimizer="adam", lr=0.06, batch=32, steps=2200),
    "mlp/adam-lr0.06-b32-s1-every50": dict(optimizer="adam", lr=0.06, batch=32, steps=2200, seed=1),
    "mlp/adam-lr0.03-b32-s2-every50": dict(optimizer="adam", lr=0.03, batch=32, steps=2500, seed=2),
    "mlp/adam-lr0.1-b64-s3-every50": dict(optimizer="adam", lr=0.1, batch=64, steps=2500, seed=3),
    "mlp/sgd-lr0.5-b32-s4-every50": dict(optimizer="sgd", lr=0.5, batch=32, steps=2500, seed=4),
}
OVERRIDES = {key: fields for key in PLAIN if (fields := fields_from_name(key))}
