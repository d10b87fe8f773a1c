"""Robust accuracy (PGD) and noise accuracy against per-point float64 references."""

import numpy as np
import pytest
import torch

from grokmon.errors import ConfigError
from grokmon.metrics import MetricOptions, compute_split_metrics
from grokmon.metrics.robustness import gaussian_noise, pgd_attack, robustness_values
from reference import ARCHITECTURES, BiasFreeMLP, SmallCNN, make, reference_noise_accuracy, reference_pgd, summary

pytestmark = pytest.mark.usefixtures("one_thread")

ROBUST = ("robust_accuracy", "robust_accuracy_se", "noise_accuracy", "noise_accuracy_se")


def _labelled(arch, seed, n=9):
    model, x = make(arch, seed, n=n)
    with torch.no_grad():
        k = model(x[:1]).shape[1]
    return model, x, torch.randint(0, max(k, 2), (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_pgd_equals_a_per_point_attack_with_the_same_steps(arch):
    model, x, y = _labelled(arch, seed=2)
    expected_points, expected_hits = reference_pgd(model, x, y, eps=0.3, steps=4)
    torch.testing.assert_close(pgd_attack(model, x, y, eps=0.3, steps=4), expected_points, rtol=0, atol=1e-12)
    got = robustness_values(model, x, y, torch.zeros_like(x), eps=0.3, steps=4)["robust_accuracy"]
    np.testing.assert_array_equal(got.numpy(), expected_hits)


def test_attack_stays_in_the_box_lowers_accuracy_and_is_clean_accuracy_at_zero_radius():
    model, x, y = _labelled(SmallCNN, seed=3, n=40)
    adversarial = pgd_attack(model, x, y, eps=1.0, steps=5)
    assert (adversarial - x).abs().max() <= 1.0 + 1e-12
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).double()
    attacked = robustness_values(model, x, y, torch.zeros_like(x), eps=1.0, steps=5)["robust_accuracy"]
    assert attacked.sum() < clean.sum() and bool((attacked <= clean).all())
    unattacked = robustness_values(model, x, y, torch.zeros_like(x), eps=0.0, steps=5)
    assert torch.equal(unattacked["robust_accuracy"], clean) and torch.equal(unattacked["noise_accuracy"], clean)


def test_noise_accuracy_is_the_per_point_accuracy_at_the_seeded_noise():
    model, x, y = _labelled(BiasFreeMLP, seed=4, n=30)
    noise = gaussian_noise(x.shape, 0.7, seed=5, dtype=x.dtype)
    got = robustness_values(model, x, y, noise, eps=0.1, steps=1)["noise_accuracy"]
    np.testing.assert_array_equal(got.numpy(), reference_noise_accuracy(model, x, y, noise))
    assert torch.equal(gaussian_noise(x.shape, 0.7, seed=5, dtype=torch.float32), noise.float())


def test_noise_accuracy_agrees_with_independent_noise_within_its_standard_error_over_seeds():
    model, x, y = _labelled(BiasFreeMLP, seed=6, n=40)
    options = [MetricOptions(groups=("robustness",), noise_sigma=1.0, seed=s) for s in range(12)]
    ours = [compute_split_metrics(model, x, y, options=o, frame=None)["noise_accuracy"] for o in options]
    rng = np.random.default_rng(0)
    theirs = [reference_noise_accuracy(model, x, y, torch.from_numpy(rng.normal(0, 1.0, x.shape))).mean()
              for _ in range(12)]
    (mean_ours, se_ours), (mean_theirs, se_theirs) = summary(ours), summary(theirs)
    assert se_ours > 0 and abs(mean_ours - mean_theirs) < 3 * np.hypot(se_ours, se_theirs)


def test_split_columns_are_means_with_standard_errors_and_null_without_class_labels():
    model, x, y = _labelled(BiasFreeMLP, seed=7, n=16)
    options = MetricOptions(groups=("robustness",), robust_eps=0.2, robust_steps=3, noise_sigma=0.5, seed=1)
    got = compute_split_metrics(model, x, y, options=options, frame=None)
    _, hits = reference_pgd(model, x, y, eps=0.2, steps=3)
    noisy = reference_noise_accuracy(model, x, y, gaussian_noise(x.shape, 0.5, seed=1, dtype=x.dtype))
    assert (got["robust_accuracy"], got["robust_accuracy_se"]) == pytest.approx(summary(hits))
    assert (got["noise_accuracy"], got["noise_accuracy_se"]) == pytest.approx(summary(noisy))
    for labels in (None, torch.randn(16, 5, dtype=torch.float64)):
        assert compute_split_metrics(model, x, labels, options=options, frame=None) == dict.fromkeys(ROBUST)


@pytest.mark.parametrize("field, value, message", [
    ("robust_eps", -0.1, "Expected --robust-eps to resolve to a non-negative distance"),
    ("noise_sigma", float("nan"), "Expected --noise-sigma to resolve to a non-negative distance"),
    ("robust_steps", 0, "Expected --robust-steps to be a positive integer"),
])
def test_bad_attack_settings_are_config_errors(field, value, message):
    model, x, y = _labelled(BiasFreeMLP, seed=8)
    with pytest.raises(ConfigError, match=message):
        compute_split_metrics(model, x, y, options=MetricOptions(groups=("robustness",), **{field: value}), frame=None)
