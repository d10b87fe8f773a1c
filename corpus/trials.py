"""Runs of the kinds new users tried that exposed a defect, trained after the defect was found: regression
fixtures, not an estimate of what the checks give on unseen runs (that is corpus/validation.py). Neither fitted on
nor evaluated with the corpus. `python -m corpus.build --trials` trains and stores them in tests/fixtures/trials/.

The `adam-...` and `sgd-lr0.5-...` runs are digits MLPs (corpus/mlp.py) trained with too high a learning rate for
their batch: train and test accuracy drop by 0.03-0.1 together every few hundred steps and recover, the level
they oscillate about flat from step ~500 on. Saved every 50 steps, as a training script does.

The `transformer/...-ordered` runs: a+b mod 31 split by ordered pair (corpus/transformer.py), so that test accuracy
reaches ~0.5 as the train set is fitted (the held-out pairs whose swap is trained). At lr 3e-3 it holds 0.53 for a
decade and then groks to 0.98; at lr 1e-3 it creeps from 0.47 to 0.58 by the end. A new user's such runs read
`stop` 1.00 at test 0.61 on their memorisation stage (docs/phases.md, "Memorisation level").

The `COLLAPSE` runs: a digits MLP trained with Adam on a train set 30 % of whose labels are random, its probes
too (test accuracy peaks before the train set is fitted and falls as the noise is memorised; the `noisy25` runs: 25 %,
saved every 75 steps to step 3,000, where test accuracy still falls for a few hundred steps after the fit, which a
new user's such run read `inconclusive` "not yet a collapse" to its end), and a digits MLP trained on half its
labels random from step 1,500 and on clean ones again from step 4,000 (test accuracy falls, then climbs back).
"""

from __future__ import annotations

from . import collapse
from .validation import fields_from_name

# "family/run" -> the family's task arguments
PLAIN = {
    "mlp/adam-lr0.06-b32-every50": dict(optimizer="adam", lr=0.06, batch=32, steps=2200),
    "mlp/adam-lr0.06-b32-s1-every50": dict(optimizer="adam", lr=0.06, batch=32, steps=2200, seed=1),
    "mlp/adam-lr0.03-b32-s2-every50": dict(optimizer="adam", lr=0.03, batch=32, steps=2500, seed=2),
    "mlp/adam-lr0.1-b64-s3-every50": dict(optimizer="adam", lr=0.1, batch=64, steps=2500, seed=3),
    "mlp/sgd-lr0.5-b32-s4-every50": dict(optimizer="sgd", lr=0.5, batch=32, steps=2500, seed=4),
    "transformer/p31-wd1-lr1e-3-f0.6-ordered": dict(p=31, weight_decay=1.0, lr=1e-3, fraction=0.6, steps=12000,
                                                    ordered=True),
    "transformer/p31-wd1-lr3e-3-f0.6-ordered": dict(p=31, weight_decay=1.0, lr=3e-3, fraction=0.6, steps=12000,
                                                    ordered=True),
}
# "family/run" -> (family, {step: event}, the family's task arguments), as corpus.collapse.RUNS
COLLAPSE = {
    "mlp/adam-w256-noisy-labels": ("mlp", {0: collapse.label_noise(0.3, seed=5, in_data=True)},
                                   dict(width=256, optimizer="adam", lr=1e-3, steps=8000, seed=5)),
    "mlp/adam-w256-noisy25-every75": ("mlp", {0: collapse.label_noise(0.25, seed=6, in_data=True)},
                                      dict(width=256, optimizer="adam", lr=1e-3, steps=3000, seed=6)),
    "mlp/sgd-m0.9-lr0.05-noisy25-every75": ("mlp", {0: collapse.label_noise(0.25, seed=7, in_data=True)},
                                            dict(momentum=0.9, lr=0.05, steps=3000, seed=7)),
    "mlp/sgd-m0.9-noise0.5-then-clean-every100": ("mlp", {1500: collapse.label_noise(0.5),
                                                          4000: collapse.clean_labels()},
                                                  dict(momentum=0.9, lr=0.02, steps=8000)),
}
OVERRIDES = {key: fields for key in (*PLAIN, *COLLAPSE) if (fields := fields_from_name(key))}
