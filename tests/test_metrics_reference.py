"""The batched metrics against the slow per-point float64 references of tests/reference.py."""

import math

import numpy as np
import pytest
import torch

from grokmon.metrics import MetricOptions, compute_split_metrics, make_frame
from grokmon.metrics.centroid import centroid_values
from grokmon.metrics.jacobian import input_jacobians, jacobian_values
from grokmon.metrics.local_complexity import local_complexity
from reference import (ARCHITECTURES, BiasFreeMLP, ScalarNet, jacobian, make, reference_accuracy, reference_lc,
                       reference_metrics, summary)

pytestmark = pytest.mark.usefixtures("one_thread")

IDS = {"ids": lambda a: a.__name__}


@pytest.mark.parametrize("arch", ARCHITECTURES, **IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_centroid_and_spectrum_match_per_point_reference(arch, seed):
    model, x = make(arch, seed)
    expected = reference_metrics(model, x)
    got = {**centroid_values(model, x), **jacobian_values(model, x)}
    for name, values in expected.items():
        torch.testing.assert_close(got[name], torch.from_numpy(values), rtol=1e-6, atol=1e-12, msg=name)


@pytest.mark.parametrize("arch", ARCHITECTURES, **IDS)
def test_batched_jacobian_equals_per_point_jacobian_for_any_chunk_size(arch):
    model, x = make(arch, seed=3)
    expected = torch.stack([jacobian(model, point) for point in x])
    for chunk_size in (None, 1, 2):
        torch.testing.assert_close(input_jacobians(model, x, chunk_size=chunk_size), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", ARCHITECTURES, **IDS)
@pytest.mark.parametrize("radius", [0.05, 0.5])
def test_local_complexity_equals_explicit_vertex_loop(arch, radius):
    model, x = make(arch, seed=4)
    dim = math.prod(arch.input_shape)
    frame = make_frame(dim, min(4, dim), seed=7, dtype=torch.float64)
    counts = local_complexity(model, x, frame, radius)
    np.testing.assert_array_equal(counts.numpy(), reference_lc(model, x, frame, radius))


@pytest.mark.parametrize("arch", ARCHITECTURES, **IDS)
def test_split_summary_matches_reference_mean_and_standard_error(arch):
    model, x = make(arch, seed=5, n=11)
    k = model(x[:1]).shape[1]
    y = torch.randint(0, max(k, 2), (11,), generator=torch.Generator().manual_seed(0))
    frame = make_frame(math.prod(arch.input_shape), 3, seed=1, dtype=torch.float64)
    got = compute_split_metrics(model, x, y, options=MetricOptions(lc_directions=3, lc_radius=0.3), frame=frame)

    expected = reference_metrics(model, x)
    counts = reference_lc(model, x, frame, 0.3)
    expected["lc"] = counts.sum(axis=1)
    if k > 1:
        expected.update(reference_accuracy(model, x, y))
    for name, values in expected.items():
        mean, se = summary(values)
        assert got[name] == pytest.approx(mean, rel=1e-6, abs=1e-12), name
        assert got[f"{name}_se"] == pytest.approx(se, rel=1e-6, abs=1e-12), name
    assert got["centroid_alignment_min"] == pytest.approx(expected["centroid_alignment"].min(), rel=1e-6, abs=1e-12)
    assert got["centroid_alignment_max"] == pytest.approx(expected["centroid_alignment"].max(), rel=1e-6, abs=1e-12)
    assert got["lc_radius"] == 0.3
    assert got["lc_layers"] == pytest.approx(counts.mean(axis=0).tolist())
    assert got["lc_layers_se"] == pytest.approx((counts.std(axis=0, ddof=1) / math.sqrt(11)).tolist())
    assert all(isinstance(v, float) for k_, v in got.items() if k_ not in ("lc_layers", "lc_layers_se"))


def test_regression_targets_give_mse_and_no_accuracy():
    model, x = make(BiasFreeMLP, seed=6, n=10)
    target = torch.randn(10, 5, dtype=torch.float64)
    got = compute_split_metrics(model, x, target, options=MetricOptions(groups=("accuracy",)), frame=None)
    mean, se = summary(reference_accuracy(model, x, target)["loss"])
    assert got == {"accuracy": None, "accuracy_se": None, "loss": pytest.approx(mean), "loss_se": pytest.approx(se),
                   "chance_accuracy": None}


def test_chance_accuracy_is_the_share_of_the_most_common_label():
    model, x = make(BiasFreeMLP, seed=8, n=40)
    y = torch.randint(0, 5, (40,), generator=torch.Generator().manual_seed(8))
    got = compute_split_metrics(model, x, y, options=MetricOptions(groups=("accuracy",)), frame=None)
    counts = [int((y == k).sum()) for k in range(5)]
    assert got["chance_accuracy"] == pytest.approx(max(counts) / 40) and "chance_accuracy_se" not in got


def test_a_single_logit_networks_chance_accuracy_is_that_of_its_two_labels():
    model, x = make(ScalarNet, seed=9, n=9)
    y = torch.tensor([1, 1, 0, 1, 0, 1, 1, 0, 1])
    got = compute_split_metrics(model, x, y, options=MetricOptions(groups=("accuracy",)), frame=None)
    assert got["chance_accuracy"] == pytest.approx(6 / 9)


def test_single_logit_with_binary_labels_is_binary_cross_entropy():
    model, x = make(ScalarNet, seed=7, n=12)
    y = torch.arange(12) % 2
    with torch.no_grad():
        logit = model(x)[:, 0]
    got = compute_split_metrics(model, x, y, options=MetricOptions(groups=("accuracy",)), frame=None)
    assert got["accuracy"] == pytest.approx(float(((logit > 0).long() == y).double().mean()))
    p = torch.sigmoid(logit)
    assert got["loss"] == pytest.approx(float(-(y * p.log() + (1 - y) * (1 - p).log()).mean()))
