"""Runs that generalise, then lose it: a training set corrupted late (a fraction of its labels replaced by random
ones: the network memorises them and its clean test accuracy falls) or a learning rate blown up late (the
weights are thrown off the solution; ReLU units die). Each is a run of another family with one event, and is
held out with that family: the collapse is what happens to that network, not a family of its own."""

from __future__ import annotations

import torch

from .common import Task
from .families import FAMILIES


def label_noise(fraction: float, seed: int = 123, in_data: bool = False):
    """An event: replace `fraction` of the labels trained on by uniformly random ones (seeded). `in_data`: the train
    set's own labels, which its truth curve and probes then use too (a data set whose labels are noisy, as its user
    has it; at step 0 the run trains on them from the start)."""
    def corrupt(task: Task) -> None:
        generator = torch.Generator().manual_seed(seed)
        n = len(task.train_labels)
        hit = torch.randperm(n, generator=generator)[: int(fraction * n)]
        classes = int(task.y_train.max()) + 1
        task.train_labels = task.train_labels.clone()
        task.train_labels[hit] = torch.randint(0, classes, (len(hit),), generator=generator)
        if in_data:
            task.y_train = task.train_labels.clone()
    return corrupt


def clean_labels():
    """An event: train on the clean labels again (a corrupted data pipeline fixed mid-run)."""
    def restore(task: Task) -> None:
        task.train_labels = task.y_train.clone()
    return restore


def lr_blowup(factor: float):
    """An event: multiply the learning rate by `factor` for the rest of the run."""
    def blow(task: Task) -> None:
        for group in task.optimizer.param_groups:
            group["lr"] *= factor
    return blow


# run name -> (family, {step: event}, the family's task arguments)
RUNS = {
    "cnn-label-noise": ("cnn", {600: label_noise(0.6)}, dict(steps=4000)),
    "cnn-lr-blowup": ("cnn", {800: lr_blowup(100)}, dict(steps=3000)),
    "cnn-lr-spike": ("cnn", {1000: lr_blowup(30), 1010: lr_blowup(1 / 30)}, dict(steps=3000, seed=2)),
    "modular-lr-blowup": ("modular", {3500: lr_blowup(20)},
                          dict(p=31, width=128, weight_decay=1.0, fraction=0.5, steps=5000)),
    "modular-label-noise": ("modular", {4000: label_noise(0.3)}, dict(p=47, width=64, weight_decay=1.0, steps=7000)),
    "xor-label-noise": ("xor", {1500: label_noise(0.5)},
                        dict(loss="mse", dim=12, spread=0.35, init_scale=4, weight_decay=0.5, lr=2e-3, steps=6000)),
    "omnigrok-label-noise": ("omnigrok", {8000: label_noise(0.5)},
                             dict(init_scale=8, width=100, lr=2e-3, weight_decay=0.05, steps=14000)),
    "transformer-label-noise": ("transformer", {7000: label_noise(0.4)}, dict(steps=11000)),
}


def task(family: str, events: dict, arguments: dict) -> Task:
    made = FAMILIES[family].task(**arguments)
    made.events.update(events)
    return made
