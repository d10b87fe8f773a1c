"""Runs kept out of everything the classifier is fitted or chosen on: new seeds and settings of every family,
plain and collapsing, chosen before any was trained. `python -m corpus.build --validation` trains and stores
them in tests/fixtures/validation/; `python -m corpus.evaluate --validation` judges them with the shipped model.
They estimate what the checks give on real runs the corpus has not seen. The `mlp` runs are a family the fitted
corpus lacks: plain digits MLPs (corpus/mlp.py), the run most training scripts make. The `teacher` runs are
another: MLPs that memorise a random teacher's labels and never generalise (corpus/teacher.py).

The runs named `...-everyN` are saved every N steps and nowhere else, as most training scripts save (the corpus
is saved on a log-spaced grid, plus where test accuracy moved): on the log-step axis their checkpoints crowd
at the end of the run and the early phases have few of them. The runs named `...-cosine-...` warm the learning
rate up over the first 5 % of the steps and decay it to 0 along a cosine (corpus/common.py, `Task.schedule`), as
most training stacks do; the corpus's learning rates are constant.
"""

from __future__ import annotations

from . import collapse

# "family/run" -> the family's task arguments
PLAIN = {
    "modular/p43-w80-wd0.7-s2": dict(p=43, width=80, weight_decay=0.7, steps=8000, seed=2),
    "omnigrok/init7-n400-wd0.15-s1": dict(init_scale=7, width=100, train_points=400, weight_decay=0.15, steps=14000,
                                          seed=1),
    "cnn/c12-wd0.3-s1": dict(channels=12, weight_decay=0.3, steps=3000, seed=1),
    "xor/d24-bce-wd0.3-s1": dict(dim=24, spread=0.45, weight_decay=0.3, lr=3e-3, steps=6000, seed=1),
    "transformer/p41-wd1.5-s3": dict(p=41, weight_decay=1.5, steps=10000, seed=3),
    "modular/p41-w96-wd1-s4-every200": dict(p=41, width=96, weight_decay=1.0, steps=8000, seed=4),
    "omnigrok/init8-n500-wd0.1-s2-every400": dict(init_scale=8, width=100, train_points=500, weight_decay=0.1,
                                                  steps=16000, seed=2),
    "cnn/c16-wd0.1-s2-every75": dict(channels=16, weight_decay=0.1, steps=3000, seed=2),
    "xor/d20-bce-wd0.5-s2-every125": dict(dim=20, spread=0.4, weight_decay=0.5, lr=3e-3, steps=5000, seed=2),
    "transformer/p43-wd2-s2-every250": dict(p=43, weight_decay=2.0, steps=10000, seed=2),
    "mlp/w128-sgd-lr0.01": dict(steps=4000),
    "mlp/w64-sgd-lr0.05-m0.9": dict(width=64, lr=0.05, momentum=0.9, steps=3000),
    "mlp/w128-adam-lr1e-3": dict(optimizer="adam", lr=1e-3, steps=2000),
    "mlp/w256-adamw-lr3e-4-wd0.05": dict(width=256, optimizer="adam", lr=3e-4, weight_decay=0.05, steps=3000),
    "mlp/w32-sgd-lr0.1-n300": dict(width=32, lr=0.1, train_points=300, steps=3000),
    "mlp/w96-sgd-lr0.03-s1": dict(width=96, lr=0.03, steps=3000, seed=1),
    "mlp/w128-adam-lr5e-4-wd0.01-s2-every50": dict(optimizer="adam", lr=5e-4, weight_decay=0.01, steps=2500, seed=2),
    "mlp/w128-adam-lr2e-3-wd0.01-cosine-s3-every50": dict(optimizer="adam", lr=2e-3, weight_decay=0.01, steps=2500,
                                                          seed=3),
    "mlp/w64-sgd-lr0.1-m0.9-cosine-s4": dict(width=64, lr=0.1, momentum=0.9, steps=3000, seed=4),
    # few train points: test accuracy settles well below train's, learned with it (ordinary, with a gap)
    "mlp/w128-adam-lr1e-3-n50-every50": dict(optimizer="adam", lr=1e-3, train_points=50, steps=1500),
    "cnn/c16-lr3e-3-cosine-s3-every60": dict(lr=3e-3, steps=3000, seed=3),
    # a random teacher's labels on too few points, no weight decay: memorises and never generalises
    "teacher/d30-k10-n150-adam": dict(steps=4000),
    "teacher/d30-k10-n300-adam-s1-every100": dict(train_points=300, steps=4000, seed=1),
    "teacher/d24-k8-n200-sgd-m0.9-s2": dict(dim=24, classes=8, train_points=200, optimizer="sgd", lr=0.02, steps=4000,
                                           seed=2),
    "modular/p47-w96-wd1-cosine-s5-every200": dict(p=47, width=96, weight_decay=1.0, steps=8000, seed=5),
    "xor/d16-bce-wd0.3-cosine-s3-every100": dict(dim=16, spread=0.4, weight_decay=0.3, lr=3e-3, steps=5000, seed=3),
    "transformer/p41-wd1-cosine-s4-every200": dict(p=41, weight_decay=1.0, steps=8000, seed=4),
}
# "family/run" -> (family, {step: event}, the family's task arguments), as corpus.collapse.RUNS
COLLAPSE = {
    "modular/modular-lr-blowup-s3": ("modular", {4000: collapse.lr_blowup(20)},
                                     dict(p=37, width=96, weight_decay=1.0, fraction=0.5, steps=6000, seed=3)),
    "cnn/cnn-label-noise-s1": ("cnn", {700: collapse.label_noise(0.5, seed=7)}, dict(channels=12, steps=4000, seed=1)),
    "cnn/cnn-lr-blowup-s2-every75": ("cnn", {800: collapse.lr_blowup(100)}, dict(steps=3000, seed=2)),
    "modular/modular-label-noise-s2-every175": ("modular", {4000: collapse.label_noise(0.3, seed=9)},
                                                dict(p=47, width=64, weight_decay=1.0, steps=7000, seed=2)),
    "mlp/mlp-label-noise": ("mlp", {1500: collapse.label_noise(0.5)}, dict(momentum=0.9, lr=0.02, steps=4000)),
    "mlp/mlp-lr-blowup": ("mlp", {1200: collapse.lr_blowup(30)}, dict(optimizer="adam", lr=1e-3, steps=3000, seed=1)),
}
def fields_from_name(key: str) -> dict:
    """The Task fields a run's name sets, from its dash-separated words: `everyN` saves every N steps only,
    `cosine` the warm-up + cosine schedule (tests/test_corpus_training.py)."""
    words = key.split("/")[-1].split("-")
    every = [int(w[len("every"):]) for w in words if w.startswith("every") and w[len("every"):].isdigit()]
    return {**({"save_every": every[0]} if every else {}), **({"schedule": "cosine"} if "cosine" in words else {})}


# "family/run" -> the Task fields its name sets
OVERRIDES = {key: fields for key in (*PLAIN, *COLLAPSE) if (fields := fields_from_name(key))}
