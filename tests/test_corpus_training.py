"""The corpus's training loop (corpus/common.py): the cosine schedule and the saves every N steps that the
validation runs use, on a small MLP trained for a few steps on synthetic data (no scikit-learn needed)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from corpus.collapse import lr_blowup
from corpus.common import WARMUP_FRACTION, Task, lr_factor, train


def small_task(steps: int, lr: float = 1e-2, **fields) -> Task:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=generator)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    return Task(model, x[:64], y[:64], x[64:], y[64:], optimizer, steps, batch=16, **fields)


def test_the_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    steps = 1000
    factor = lr_factor("cosine", steps)
    warm = int(WARMUP_FRACTION * steps)
    cosine = lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))  # noqa: E731
    assert factor(0) == pytest.approx(1 / warm)
    assert factor(warm // 2 - 1) == pytest.approx(0.5 * cosine(warm // 2 - 1))  # the ramp times the cosine
    assert factor(warm - 1) == pytest.approx(cosine(warm - 1))
    assert factor(steps // 2) == pytest.approx(0.5)
    assert factor(steps) == pytest.approx(0.0, abs=1e-12)
    values = [factor(s) for s in range(warm, steps + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # decays monotonically after the warm-up
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("linear", steps)


def test_a_cosine_run_saved_every_n_steps_ends_at_learning_rate_zero(tmp_path):
    task = small_task(60, save_every=25, schedule="cosine")
    curve = train(task, tmp_path, log=lambda _: None)
    assert [row["step"] for row in curve] == [0, 25, 50, 60]
    assert sorted(p.name for p in tmp_path.glob("step_*")) == [f"step_{s:06d}.safetensors" for s in (0, 25, 50, 60)]
    assert task.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_an_event_keeps_the_learning_rate_it_set_and_a_schedule_with_events_is_refused(tmp_path):
    task = small_task(20, lr=1e-3, events={10: lr_blowup(10)})
    (tmp_path / "constant").mkdir()
    train(task, tmp_path / "constant", log=lambda _: None)
    assert task.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)
    scheduled = small_task(20, events={10: lr_blowup(10)}, schedule="cosine")
    with pytest.raises(ValueError, match="cannot have events"):
        train(scheduled, tmp_path, log=lambda _: None)


def test_a_validation_runs_name_sets_its_save_schedule_and_learning_rate_schedule():
    from corpus.validation import OVERRIDES, fields_from_name

    assert fields_from_name("mlp/w128-adam-cosine-s3-every50") == {"save_every": 50, "schedule": "cosine"}
    assert fields_from_name("cnn/c16-every75-s2") == {"save_every": 75}
    assert fields_from_name("xor/d20-cosine") == {"schedule": "cosine"}
    assert fields_from_name("modular/p41-w64-wd2-depth1") == {} and fields_from_name("mlp/everyday-s1") == {}
    assert sum(f.get("schedule") == "cosine" for f in OVERRIDES.values()) == 6


def test_a_teacher_run_fits_its_train_set_and_stays_far_from_generalising(tmp_path):
    """corpus/teacher.py: a random teacher's labels on 150 points; the student fits them and test accuracy stops
    well short of train's (the validation runs that memorise and never generalise)."""
    from corpus.teacher import task, teacher_data

    first, again = teacher_data(30, 10, 150, seed=0), teacher_data(30, 10, 150, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and len(first[1].unique()) >= 5
    curve = train(task(steps=600), tmp_path, log=lambda _: None)
    assert curve[-1]["train_accuracy"] == 1.0 and max(row["test_accuracy"] for row in curve) < 0.6
