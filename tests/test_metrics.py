"""Every metric against the slow float64 references of tests/reference.py, on fresh random inputs."""

import math

import numpy as np
import pytest
import torch

from grokmon.errors import ConfigError, ModelError
from grokmon.metrics import MetricOptions, compute_split_metrics, make_frame
from grokmon.metrics.centroid import centroid_values
from grokmon.metrics.jacobian import input_jacobians, jacobian_values, sketch_matrix, spectrum_values
from grokmon.metrics.local_complexity import local_complexity
from reference import ARCHITECTURES, BiasFreeMLP, ScalarNet, jacobian, make, reference_lc, reference_metrics

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
@pytest.mark.parametrize("seed", [0, 1])
def test_centroid_and_spectrum_match_per_point_reference(arch, seed):
    model, x = make(arch, seed)
    reference = reference_metrics(model, x)
    values = {**centroid_values(model, x), **jacobian_values(model, x)}
    for name, expected in reference.items():
        np.testing.assert_allclose(values[name].numpy(), expected, rtol=1e-6, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_batched_jacobian_equals_per_point_jacobian(arch):
    model, x = make(arch, seed=3)
    batched = input_jacobians(model, x)
    for i, point in enumerate(x):
        torch.testing.assert_close(batched[i], jacobian(model, point), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
@pytest.mark.parametrize("radius", [0.05, 0.5])
def test_local_complexity_equals_explicit_vertex_loop(arch, radius):
    model, x = make(arch, seed=4)
    dim = math.prod(arch.input_shape)
    frame = make_frame(dim, min(4, dim), seed=7, dtype=torch.float64)
    counts = local_complexity(model, x, frame, radius)
    np.testing.assert_array_equal(counts.numpy(), reference_lc(model, x, frame, radius))


def test_local_complexity_grows_with_radius():
    model, x = make(BiasFreeMLP, seed=2, n=20)
    frame = make_frame(7, 7, seed=0, dtype=torch.float64)
    small, large = (local_complexity(model, x, frame, r).sum() for r in (1e-4, 1.0))
    assert small < large


def test_bias_free_relu_identity_inner_equals_output_sum():
    model, x = make(BiasFreeMLP, seed=5)
    with torch.no_grad():
        total = model(x).sum(dim=1)
    torch.testing.assert_close(centroid_values(model, x)["centroid_inner"], total, rtol=1e-10, atol=1e-12)


def test_scalar_output_has_rank_one_jacobian_and_sign_of_prediction():
    model, x = make(ScalarNet, seed=6, n=30)
    values = {**jacobian_values(model, x), **centroid_values(model, x)}
    nonzero = values["jacobian_fro"] > 0
    torch.testing.assert_close(values["jacobian_erank"][nonzero], torch.ones(int(nonzero.sum()), dtype=torch.float64))
    torch.testing.assert_close(values["jacobian_pc1"][nonzero], torch.ones(int(nonzero.sum()), dtype=torch.float64))


def test_spectrum_edge_cases():
    values = spectrum_values(torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 1.0]], dtype=torch.float64))
    assert values["jacobian_erank"].tolist() == [0.0, 1.0, pytest.approx(2.0)]
    assert values["jacobian_pc1"].tolist() == [0.0, 1.0, 0.5]
    assert values["jacobian_fro"].tolist() == [0.0, 3.0, pytest.approx(math.sqrt(2))]


def test_frame_is_orthonormal_and_seeded():
    a, b, c = make_frame(30, 25, seed=1), make_frame(30, 25, seed=1), make_frame(30, 25, seed=2)
    torch.testing.assert_close(a @ a.T, torch.eye(25), atol=1e-5, rtol=0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ConfigError, match="Expected --lc-directions to be between 1 and the input dimension 3"):
        make_frame(3, 5, seed=0)


def _options(**kwargs):
    return MetricOptions(lc_directions=4, lc_radius=0.1, **kwargs)


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_results_do_not_depend_on_batch_size(arch):
    model, x = make(arch, seed=8, n=13)
    frame = make_frame(math.prod(arch.input_shape), 4, seed=0, dtype=torch.float64)
    y = torch.randint(0, 3, (13,))
    whole = compute_split_metrics(model, x, y if arch is not ScalarNet else None, options=_options(), frame=frame)
    for size in (1, 4):
        part = compute_split_metrics(model, x, y if arch is not ScalarNet else None,
                                     options=_options(batch_size=size), frame=frame)
        assert part.keys() == whole.keys()
        for key, value in whole.items():
            assert part[key] == (None if value is None else pytest.approx(value, rel=1e-9, abs=1e-12)), key


def test_split_summary_is_mean_and_standard_error():
    model, x = make(BiasFreeMLP, seed=9, n=25)
    frame = make_frame(7, 4, seed=0, dtype=torch.float64)
    result = compute_split_metrics(model, x, None, options=_options(), frame=frame)
    norms = reference_metrics(model, x)["centroid_norm"]
    assert result["centroid_norm"] == pytest.approx(norms.mean(), rel=1e-9)
    assert result["centroid_norm_se"] == pytest.approx(norms.std(ddof=1) / math.sqrt(25), rel=1e-9)
    counts = reference_lc(model, x, frame, 0.1)
    assert result["lc"] == pytest.approx(counts.sum(1).mean())
    assert result["lc_layers"] == pytest.approx(list(counts.mean(0)))
    assert result["lc_layers_se"] == pytest.approx(list(counts.std(0, ddof=1) / 5))
    assert result["accuracy"] is None and result["loss"] is None


def test_accuracy_and_loss_for_classes_and_regression():
    model, x = make(BiasFreeMLP, seed=10, n=40)
    with torch.no_grad():
        out = model(x)
    y = torch.randint(0, 5, (40,))
    result = compute_split_metrics(model, x, y, options=_options(groups=("accuracy",)), frame=None)
    assert result["accuracy"] == pytest.approx(float((out.argmax(1) == y).double().mean()))
    assert result["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)))
    target = torch.randn(40, 5, dtype=torch.float64)
    result = compute_split_metrics(model, x, target, options=_options(groups=("accuracy",)), frame=None)
    assert result["accuracy"] is None
    assert result["loss"] == pytest.approx(float(((out - target) ** 2).mean()))


def test_only_requested_groups_are_returned():
    model, x = make(BiasFreeMLP, seed=11)
    frame = make_frame(7, 4, seed=0, dtype=torch.float64)
    result = compute_split_metrics(model, x, None, options=_options(groups=("centroid", "lc")), frame=frame)
    assert set(result) == {"centroid_alignment", "centroid_alignment_se", "centroid_norm", "centroid_norm_se",
                           "centroid_inner", "centroid_inner_se", "lc", "lc_se", "lc_layers", "lc_layers_se"}


def test_non_finite_outputs_are_a_model_error():
    model, x = make(BiasFreeMLP, seed=12)
    with torch.no_grad():
        model.net[4].weight[0, 0] = float("inf")
    with pytest.raises(ModelError, match="NaN or infinite"):
        compute_split_metrics(model, x, None, options=_options(groups=("centroid",)), frame=None)


def test_sketch_matches_exact_spectrum_for_many_outputs():
    torch.manual_seed(0)
    # Many outputs, a Jacobian of low effective rank: the regime of a language model's vocabulary.
    model = torch.nn.Sequential(torch.nn.Linear(20, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2000)).double().eval()
    x = torch.randn(16, 20, dtype=torch.float64)
    exact = jacobian_values(model, x)
    sketch = sketch_matrix(2000, 64, seed=0, dtype=torch.float64, device="cpu")
    approx = jacobian_values(model, x, sketch)
    rel = lambda name: ((approx[name] - exact[name]).abs() / exact[name]).max().item()
    assert rel("jacobian_fro") < 0.25
    assert rel("jacobian_pc1") < 0.25
    assert rel("jacobian_erank") < 0.25
    options = MetricOptions(groups=("jacobian",), jacobian_max_outputs=256)
    summary = compute_split_metrics(model, x, None, options=options, frame=None)
    assert summary["jacobian_fro"] == pytest.approx(float(approx["jacobian_fro"].mean()), rel=1e-9)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_devices_and_dtypes_agree_with_cpu_float64(device, dtype):
    model, x = make(BiasFreeMLP, seed=13, n=32)
    frame = make_frame(7, 4, seed=0, dtype=torch.float64)
    y = torch.randint(0, 5, (32,))
    expected = compute_split_metrics(model, x, y, options=_options(), frame=frame)
    model = model.to(device=device, dtype=dtype)
    got = compute_split_metrics(model, x.to(device, dtype), y.to(device), options=_options(),
                                frame=frame.to(device, dtype))
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
