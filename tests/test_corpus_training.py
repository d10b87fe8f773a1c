"""The corpus's training loop (corpus/common.py): the cosine schedule and the saves every N steps that the
validation runs use, on a real digits MLP trained for a few steps."""

from __future__ import annotations

import math

import pytest

from corpus import mlp
from corpus.common import WARMUP_FRACTION, lr_factor, train


def test_the_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    steps = 1000
    factor = lr_factor("cosine", steps)
    warm = int(WARMUP_FRACTION * steps)
    assert factor(0) == pytest.approx(1 / warm)
    assert factor(warm // 2 - 1) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * (warm // 2 - 1) / steps)))
    assert factor(warm - 1) == pytest.approx(0.5 * (1 + math.cos(math.pi * (warm - 1) / steps)))
    assert factor(steps // 2) == pytest.approx(0.5)
    assert factor(steps) == pytest.approx(0.0, abs=1e-12)
    values = [factor(s) for s in range(warm, steps + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # decays monotonically after the warm-up
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("linear", steps)


def test_a_cosine_run_saved_every_n_steps_ends_at_learning_rate_zero(tmp_path):
    task = mlp.task(width=16, optimizer="adam", lr=1e-2, steps=60)
    task.save_every, task.schedule = 25, "cosine"
    curve = train(task, tmp_path, log=lambda _: None)
    assert [row["step"] for row in curve] == [0, 25, 50, 60]
    assert sorted(p.name for p in tmp_path.glob("step_*")) == [f"step_{s:06d}.safetensors" for s in (0, 25, 50, 60)]
    assert task.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_without_a_schedule_an_event_keeps_the_learning_rate_it_set(tmp_path):
    from corpus.collapse import lr_blowup

    task = mlp.task(width=16, lr=1e-3, steps=20)
    task.events = {10: lr_blowup(10)}
    train(task, tmp_path, log=lambda _: None)
    assert task.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)
