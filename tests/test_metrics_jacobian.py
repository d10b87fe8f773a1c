"""Jacobian spectra: the singular-value routine, edge cases, and the sketch used for many outputs."""

import math

import pytest
import torch
from torch import nn

from grokmon.metrics import MetricOptions, compute_split_metrics
from grokmon.metrics.jacobian import (forward_jacobians, input_jacobians, jacobian_values, singular_values,
                                      sketched_jacobians, spectrum_values)
from reference import ARCHITECTURES, ScalarNet, make, spectrum


pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.mark.parametrize("shape", [(6, 3, 8), (6, 8, 3), (4, 5, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_singular_values_match_svd(shape, dtype):
    j = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tol = 1e-10 if dtype is torch.float64 else 1e-5
    torch.testing.assert_close(singular_values(j.to(dtype)), torch.linalg.svdvals(j), rtol=tol, atol=tol)


def test_rank_deficient_jacobian_has_exact_zero_singular_values():
    u = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    j = (u @ torch.randn(2, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))[None]
    s = singular_values(j)
    assert (s[0, 2:] == 0).all() and (s[0, :2] > 0).all()
    erank, pc1, fro = spectrum(j[0].numpy())
    got = spectrum_values(s)
    assert float(got["jacobian_erank"][0]) == pytest.approx(erank, rel=1e-9)
    assert float(got["jacobian_pc1"][0]) == pytest.approx(pc1, rel=1e-9)
    assert float(got["jacobian_fro"][0]) == pytest.approx(fro, rel=1e-9)


def test_spectrum_edge_cases_zero_rank_one_and_flat():
    values = spectrum_values(torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 1.0]], dtype=torch.float64))
    assert values["jacobian_erank"].tolist() == [0.0, 1.0, pytest.approx(2.0)]
    assert values["jacobian_pc1"].tolist() == [0.0, 1.0, 0.5]
    assert values["jacobian_fro"].tolist() == [0.0, 3.0, pytest.approx(math.sqrt(2))]


def test_scalar_output_has_effective_rank_exactly_one():
    model, x = make(ScalarNet, seed=6, n=30)
    values = jacobian_values(model, x)
    alive = values["jacobian_fro"] > 0
    assert alive.sum() > 20
    assert values["jacobian_erank"][alive].tolist() == [1.0] * int(alive.sum())
    assert values["jacobian_pc1"][alive].tolist() == [1.0] * int(alive.sum())


def test_rank_one_jacobian_with_many_outputs_has_effective_rank_one():
    torch.manual_seed(0)
    bottleneck = nn.Sequential(nn.Linear(6, 1), nn.Tanh(), nn.Linear(1, 8)).double().eval()
    values = jacobian_values(bottleneck, torch.randn(10, 6, dtype=torch.float64))
    torch.testing.assert_close(values["jacobian_erank"], torch.ones(10, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(values["jacobian_pc1"], torch.ones(10, dtype=torch.float64), rtol=1e-12, atol=0)


def _wide_output_model(d, hidden, k, decay, act=nn.ReLU):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d, hidden), act(), nn.Linear(hidden, hidden), act(),
                          nn.Linear(hidden, k)).double().eval()
    with torch.no_grad():  # a decaying spectrum, as in trained networks
        model[4].weight.mul_(torch.logspace(0, -decay, hidden, dtype=torch.float64))
    return model


def _relative_errors(model, x, **kwargs):
    exact = {k: v.mean() for k, v in spectrum_values(singular_values(input_jacobians(model, x))).items()}
    sketch = {k: v.mean() for k, v in spectrum_values(singular_values(sketched_jacobians(model, x, **kwargs))).items()}
    return {k: abs(float(sketch[k] / exact[k]) - 1) for k in exact}


def test_sketch_is_exact_when_the_rank_fits_the_sketch():
    model = _wide_output_model(d=24, hidden=64, k=600, decay=2)  # rank <= 24 < m
    x = torch.randn(12, 24, dtype=torch.float64)
    assert max(_relative_errors(model, x, size=32, seed=0).values()) < 1e-8


def test_sketch_error_for_a_rank_above_the_sketch_is_within_the_documented_tolerance():
    # jacobian.py: ranks 66-79 > m = 64 with a decaying spectrum, measured erank -2 %, pc1 and norm < 0.03 %.
    model = _wide_output_model(d=120, hidden=160, k=500, decay=2)
    x = torch.randn(8, 120, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert (singular_values(input_jacobians(model, x)) > 0).sum(dim=1).min() > 64
    errors = _relative_errors(model, x, size=64, seed=0)
    assert errors["jacobian_erank"] < 0.05, errors
    assert errors["jacobian_pc1"] < 0.005 and errors["jacobian_fro"] < 0.005, errors


def test_sketch_bounds_a_flat_spectrum_it_cannot_hold():
    # Full rank 40 > m = 16, flat spectrum: the sketch keeps the top of it: erank <= m, fro <= exact fro.
    model = _wide_output_model(d=40, hidden=48, k=400, decay=0, act=nn.Tanh)
    x = torch.randn(6, 40, dtype=torch.float64)
    exact = spectrum_values(singular_values(input_jacobians(model, x)))
    sketch = spectrum_values(singular_values(sketched_jacobians(model, x, size=16, seed=0)))
    assert (sketch["jacobian_erank"] <= 16).all() and (sketch["jacobian_erank"] < exact["jacobian_erank"]).all()
    assert (sketch["jacobian_fro"] <= exact["jacobian_fro"] * (1 + 1e-12)).all()


def test_sketch_is_seeded_and_independent_of_chunk_size():
    model = _wide_output_model(d=10, hidden=16, k=300, decay=1)
    x = torch.randn(5, 10, dtype=torch.float64)
    a = sketched_jacobians(model, x, size=6, seed=3)
    torch.testing.assert_close(sketched_jacobians(model, x, size=6, seed=3, chunk_size=2), a, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(sketched_jacobians(model, x, size=6, seed=4), a)


def test_many_outputs_switch_to_the_sketch_above_the_threshold():
    model = _wide_output_model(d=12, hidden=16, k=300, decay=1, act=nn.Tanh)  # rank 12 > m = 8
    x = torch.randn(6, 12, dtype=torch.float64)
    options = MetricOptions(groups=("jacobian",), jacobian_max_outputs=256, jacobian_sketch_size=8)
    got = compute_split_metrics(model, x, None, options=options, frame=None)
    sketch = spectrum_values(singular_values(sketched_jacobians(model, x, size=8, seed=0)))
    exact = jacobian_values(model, x, max_outputs=300)
    assert got["jacobian_erank"] == pytest.approx(float(sketch["jacobian_erank"].mean()), rel=1e-9)
    assert got["jacobian_erank"] != pytest.approx(float(exact["jacobian_erank"].mean()), rel=1e-6)


class _Attention(nn.Module):
    """A transformer block (fused attention kernels on CPU and CUDA) with a 300-way head."""

    def __init__(self):
        super().__init__()
        self.block = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(4 * 8, 300)

    def forward(self, x):
        return self.head(self.block(x).flatten(1))


def test_sketch_runs_through_fused_attention_and_matches_the_exact_spectrum():
    torch.manual_seed(0)
    model = _Attention().double().eval()
    x = torch.randn(3, 4, 8, dtype=torch.float64)
    exact = jacobian_values(model, x, max_outputs=1000)  # rank <= D = 32 < m: the sketch is exact
    sketch = jacobian_values(model, x, max_outputs=256, sketch_size=64)
    for key in exact:
        torch.testing.assert_close(sketch[key], exact[key], rtol=1e-8, atol=1e-10)


class _NoForwardMode(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * 2

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


def test_an_operation_without_forward_mode_gets_the_exact_jacobian():
    model = nn.Sequential(nn.Linear(4, 300), nn.ReLU()).double().eval()
    twice = nn.Module()
    twice.forward = lambda x: _NoForwardMode.apply(model(x))
    x = torch.randn(5, 4, dtype=torch.float64)
    exact = jacobian_values(twice, x, max_outputs=300)
    for sketch_size in (2, 128):  # D = 4 > m: the sketch's fallback; D <= m: forward mode's fallback
        for key, value in jacobian_values(twice, x, sketch_size=sketch_size).items():
            torch.testing.assert_close(value, exact[key])


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_forward_mode_jacobians_equal_the_backward_ones(arch):
    model, x = make(arch, seed=3)
    torch.testing.assert_close(forward_jacobians(model, x, chunk_size=3), input_jacobians(model, x),
                               rtol=1e-10, atol=1e-12)


def test_many_outputs_from_few_inputs_use_the_exact_forward_jacobian(monkeypatch):
    # D = 12 <= m = 16: the sketch would be exact too, so only the path taken tells them apart
    import grokmon.metrics.jacobian as jacobian

    model = _wide_output_model(d=12, hidden=16, k=300, decay=1, act=nn.Tanh)
    x = torch.randn(6, 12, dtype=torch.float64)
    exact = jacobian_values(model, x, max_outputs=300)

    def no_sketch(*args, **kwargs):
        raise AssertionError("the sketch ran although D <= m")

    monkeypatch.setattr(jacobian, "sketched_jacobians", no_sketch)
    got = jacobian_values(model, x, max_outputs=256, sketch_size=16)
    for key in exact:
        torch.testing.assert_close(got[key], exact[key], rtol=1e-9, atol=1e-12)
