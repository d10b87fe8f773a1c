"""Weight and gradient norms and absolute entropies against explicit float64 sums."""

import pytest
import torch
from torch import nn

from grokmon.metrics import MetricOptions, compute_checkpoint_metrics, compute_split_metrics
from grokmon.metrics.gradient import gradient_values
from grokmon.metrics.weights import weight_values
from reference import ARCHITECTURES, BiasFreeMLP, ScalarNet, SmallCNN, abs_entropy, all_parameter_values, make, \
    reference_gradient

pytestmark = pytest.mark.usefixtures("one_thread")

IDS = {"ids": lambda a: a.__name__}


def _labels(model, x, seed=0):
    with torch.no_grad():
        k = model(x[:1]).shape[1]
    return torch.randint(0, max(k, 2), (len(x),), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHITECTURES, **IDS)
def test_weight_norm_and_entropy_are_the_explicit_sums_over_every_parameter(arch):
    model, _ = make(arch, seed=1)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = 0.0  # 0 log 0 counts as 0
    norm, entropy = abs_entropy(all_parameter_values(model.parameters()))
    got = weight_values(model)
    assert got == {"weight_norm": pytest.approx(norm, rel=1e-12), "weight_entropy": pytest.approx(entropy, rel=1e-12)}
    assert compute_checkpoint_metrics(model, None, options=MetricOptions(groups=("weights", "centroid"))) == got


def test_shared_parameters_count_once_and_buffers_not_at_all():
    layer = nn.Linear(3, 3, bias=False)
    model = nn.Sequential(layer, nn.ReLU(), layer, nn.BatchNorm1d(3))
    norm, entropy = abs_entropy(all_parameter_values([layer.weight, model[3].weight, model[3].bias]))
    assert weight_values(model) == {"weight_norm": pytest.approx(norm), "weight_entropy": pytest.approx(entropy)}


@pytest.mark.parametrize("arch", ARCHITECTURES, **IDS)
def test_gradient_of_the_mean_loss_matches_per_point_autograd_for_any_batch(arch):
    model, x = make(arch, seed=2, n=10)
    y = _labels(model, x)
    norm, entropy = abs_entropy(all_parameter_values(reference_gradient(model, x, y)))
    for batch in (1, 3, 10):
        got = gradient_values(model, x, y, batch)
        assert got["grad_norm"] == pytest.approx(norm, rel=1e-9)
        assert got["grad_entropy"] == pytest.approx(entropy, rel=1e-9, abs=1e-12)


def test_gradient_of_float_targets_is_of_the_mean_squared_error():
    model, x = make(BiasFreeMLP, seed=3, n=8)
    y = torch.randn(8, 5, dtype=torch.float64)
    norm, entropy = abs_entropy(all_parameter_values(reference_gradient(model, x, y)))
    got = compute_split_metrics(model, x, y, options=MetricOptions(groups=("gradient",)), frame=None)
    assert got == {"grad_norm": pytest.approx(norm, rel=1e-9), "grad_entropy": pytest.approx(entropy, rel=1e-9)}
    assert compute_split_metrics(model, x, None, options=MetricOptions(groups=("gradient",)), frame=None) == \
        {"grad_norm": None, "grad_entropy": None}


def test_gradient_leaves_grad_fields_requires_grad_and_eval_mode_as_they_were():
    model, x = make(SmallCNN, seed=4, n=6)
    y = _labels(model, x)
    expected = abs_entropy(all_parameter_values(reference_gradient(model, x, y)))
    first, frozen = model.conv1.weight, model.head.bias
    first.grad = torch.full_like(first, 7.0)
    frozen.requires_grad_(False)
    got = gradient_values(model, x, y, batch=4)
    assert (got["grad_norm"], got["grad_entropy"]) == pytest.approx(expected, rel=1e-9)  # the frozen one counted
    assert torch.equal(first.grad, torch.full_like(first, 7.0))
    assert all(p.grad is None for p in model.parameters() if p is not first)
    assert not frozen.requires_grad and all(p.requires_grad for p in model.parameters() if p is not frozen)
    assert not any(m.training for m in model.modules())


def test_single_logit_gradient_is_of_binary_cross_entropy():
    model, x = make(ScalarNet, seed=5, n=12)
    y = torch.arange(12) % 2
    norm, entropy = abs_entropy(all_parameter_values(reference_gradient(model, x, y)))
    assert gradient_values(model, x, y, batch=5) == {"grad_norm": pytest.approx(norm, rel=1e-9),
                                                      "grad_entropy": pytest.approx(entropy, rel=1e-9)}
