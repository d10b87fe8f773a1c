"""compute_split_metrics as the rest of grokmon calls it: columns, batching, devices, activations, errors."""

import math
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grokmon.columns import CHECKPOINT_GROUPS, DEFAULT_GROUPS, GROUP_COLUMNS, GROUP_EXTRA_COLUMNS, METRIC_COLUMNS, NO_SE
from grokmon.errors import ConfigError, ModelError, ProbeError
from grokmon.metrics import MetricOptions, compute_split_metrics, make_frame
from grokmon.metrics.batching import activation_elements, batch_size
from grokmon.metrics.centroid import centroid_values
from grokmon.metrics.local_complexity import local_complexity
from reference import ARCHITECTURES, BiasFreeMLP, FunctionalNet, SmallCNN, make

pytestmark = pytest.mark.usefixtures("one_thread")

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))
OPTIONS = MetricOptions(lc_directions=4, lc_radius=0.2)


def _frame(arch, directions=4, dtype=torch.float64):
    return make_frame(math.prod(arch.input_shape), directions, seed=0, dtype=dtype)


def _labels(model, x):
    return torch.randint(0, model(x[:1]).shape[1], (len(x),), generator=torch.Generator().manual_seed(0))


def test_bias_free_relu_identity_inner_product_equals_output_sum():
    model, x = make(BiasFreeMLP, seed=5, n=20)
    with torch.no_grad():
        total = model(x).sum(dim=1)
    torch.testing.assert_close(centroid_values(model, x)["centroid_inner"], total, rtol=1e-10, atol=1e-12)


def test_frame_is_orthonormal_seeded_and_the_same_on_every_dtype():
    a, b, c = make_frame(30, 25, seed=1, dtype=torch.float64), make_frame(30, 25, seed=1, dtype=torch.float64), \
        make_frame(30, 25, seed=2, dtype=torch.float64)
    torch.testing.assert_close(a @ a.T, torch.eye(25, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(make_frame(30, 25, seed=1), a.float())
    assert make_frame(6, 6, seed=0).shape == (6, 6)


@pytest.mark.parametrize("directions", [0, 4, 2.5])
def test_frame_needs_between_one_and_d_directions(directions):
    with pytest.raises(ConfigError, match="Expected --lc-directions to be between 1 and the input dimension 3"):
        make_frame(3, directions, seed=0)


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_results_do_not_depend_on_batch_size(arch):
    model, x = make(arch, seed=8, n=13)
    y = _labels(model, x) if arch.__name__ != "ScalarNet" else None
    whole = compute_split_metrics(model, x, y, options=OPTIONS, frame=_frame(arch))
    for size in (1, 4, 13):
        part = compute_split_metrics(model, x, y, options=MetricOptions(lc_directions=4, lc_radius=0.2,
                                                                         batch_size=size), frame=_frame(arch))
        assert list(part) == list(whole)
        assert part["lc_layers"] == whole["lc_layers"] and part["lc"] == whole["lc"]
        for key, value in whole.items():
            assert part[key] == (None if value is None else pytest.approx(value, rel=1e-9, abs=1e-12)), key


def test_columns_come_in_the_table_order_and_only_for_requested_groups():
    model, x = make(BiasFreeMLP, seed=11)
    frame = _frame(BiasFreeMLP)
    full = compute_split_metrics(model, x, _labels(model, x), options=OPTIONS, frame=frame)
    per_split = [g for g in DEFAULT_GROUPS if g not in CHECKPOINT_GROUPS]
    assert tuple(full) == tuple(c for c in METRIC_COLUMNS if c.removesuffix("_se") in
                                {m for g in per_split for m in (*GROUP_COLUMNS[g], *GROUP_EXTRA_COLUMNS.get(g, ()))})
    for groups in [("centroid", "lc"), ("jacobian",), ("accuracy",), ("gradient", "weights")]:
        options = MetricOptions(groups=groups, lc_directions=4, lc_radius=0.2)
        got = compute_split_metrics(model, x, None, options=options, frame=frame if "lc" in groups else None)
        expected = [c for g in groups if g not in CHECKPOINT_GROUPS for m in GROUP_COLUMNS[g]
                    for c in ((m,) if m in NO_SE else (m, f"{m}_se"))]
        expected += [c for g in groups for c in GROUP_EXTRA_COLUMNS.get(g, ())]
        assert sorted(got) == sorted(expected)
        for key in got:
            unlabelled = {"accuracy", "gradient"} & set(groups)
            assert got[key] == (None if full[key] is None or unlabelled else pytest.approx(full[key]))
    unlabelled = compute_split_metrics(model, x, None, options=MetricOptions(groups=("accuracy",)), frame=None)
    assert set(unlabelled.values()) == {None}


def test_standard_error_is_sample_std_over_root_n_and_none_for_one_point():
    model, x = make(BiasFreeMLP, seed=9, n=25)
    got = compute_split_metrics(model, x, None, options=OPTIONS, frame=_frame(BiasFreeMLP))
    norms = centroid_values(model, x)["centroid_norm"]
    assert got["centroid_norm_se"] == pytest.approx(float(norms.std(correction=1)) / 5, rel=1e-12)
    one = compute_split_metrics(model, x[:1], None, options=OPTIONS, frame=_frame(BiasFreeMLP))
    assert one["centroid_norm"] == pytest.approx(float(norms[0]))
    assert one["centroid_norm_se"] is None and one["lc_se"] is None and one["lc_layers_se"] is None
    assert len(one["lc_layers"]) == 2


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_devices_and_dtypes_agree_with_cpu_float64(device, dtype):
    model, x = make(SmallCNN, seed=13, n=32)
    y = _labels(model, x)
    expected = compute_split_metrics(model, x, y, options=OPTIONS, frame=_frame(SmallCNN))
    model = model.to(device=device, dtype=dtype)
    got = compute_split_metrics(model, x.to(device, dtype), y.to(device), options=OPTIONS,
                                frame=_frame(SmallCNN, dtype=dtype).to(device))
    assert list(got) == list(expected)
    for key, value in expected.items():
        if key.startswith("lc"):  # a sign flip in float32 is possible in principle; none on these points
            assert got[key] == value, key
        elif value is not None:
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


class _Act(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


ACTIVATIONS = {
    "nn.ReLU": nn.ReLU(), "nn.ReLU(inplace)": nn.ReLU(inplace=True), "nn.GELU": nn.GELU(),
    "nn.GELU(tanh)": nn.GELU("tanh"), "nn.LeakyReLU": nn.LeakyReLU(), "nn.Tanh": nn.Tanh(), "nn.SiLU": nn.SiLU(),
    "nn.ELU": nn.ELU(), "nn.Sigmoid": nn.Sigmoid(), "nn.Softplus": nn.Softplus(), "nn.Mish": nn.Mish(),
    "nn.SELU": nn.SELU(), "nn.CELU": nn.CELU(), "nn.PReLU": nn.PReLU(), "nn.Hardswish": nn.Hardswish(),
    "F.relu": _Act(F.relu), "torch.relu": _Act(torch.relu), "Tensor.relu": _Act(lambda h: h.relu()),
    "Tensor.relu_": _Act(lambda h: h.relu_()), "F.gelu": _Act(F.gelu), "F.silu": _Act(F.silu),
    "torch.tanh": _Act(torch.tanh), "Tensor.sigmoid": _Act(lambda h: h.sigmoid()),
    "F.leaky_relu": _Act(lambda h: F.leaky_relu(h, 0.2)), "F.elu": _Act(F.elu),
    "nn.Hardtanh": nn.Hardtanh(), "nn.Hardtanh(-2, 0.5)": nn.Hardtanh(-2, 0.5), "nn.ReLU6": nn.ReLU6(),
    "F.relu6": _Act(F.relu6), "F.hardtanh(kw)": _Act(lambda h: F.hardtanh(h, min_val=-0.5, max_val=0.5)),
    "nn.Hardsigmoid": nn.Hardsigmoid(),
}
# Where each bends, when not at 0 only (the sign of the pre-activation).
BENDS = {"nn.Hardswish": (-3, 3), "nn.Hardtanh": (-1, 1), "nn.Hardtanh(-2, 0.5)": (-2, 0.5), "nn.ReLU6": (0, 6),
         "F.relu6": (0, 6), "F.hardtanh(kw)": (-0.5, 0.5), "nn.Hardsigmoid": (-3, 3)}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_form_is_one_layer_with_the_explicit_count(name):
    torch.manual_seed(0)
    first = nn.Linear(5, 6).double()
    model = nn.Sequential(first, ACTIVATIONS[name], nn.Linear(6, 2)).double().eval()
    x = 3 * torch.randn(40, 5, dtype=torch.float64)  # wide enough to cross bends away from 0
    frame = make_frame(5, 3, seed=0, dtype=torch.float64)
    counts = local_complexity(model, x, frame, 0.8)
    with torch.no_grad():
        pre = first(x[:, None, :] + 0.8 * torch.cat([frame, -frame])[None])  # (N, 2P, 6)
    crossed = torch.zeros(40, 6, dtype=torch.bool)
    for bend in BENDS.get(name, (0,)):
        above = pre > bend
        crossed |= above.any(1) & ~above.all(1)
    assert counts.shape == (40, 1)
    assert counts[:, 0].tolist() == crossed.sum(1).tolist()
    assert counts.sum() > 0


def test_linear_network_has_no_layers_and_zero_complexity():
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(), nn.Linear(3, 2)).eval()
    got = compute_split_metrics(model, torch.randn(6, 4), None, options=MetricOptions(groups=("lc",), lc_directions=2,
                                                                                        lc_radius=0.1),
                                frame=make_frame(4, 2, seed=0))
    assert got["lc"] == 0.0 and got["lc_layers"] == [] and got["lc_layers_se"] == []


class _Gated(nn.Module):
    """A sigmoid of a parameter (not a per-point pre-activation) next to one real layer."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)
        self.gate = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        return self.b(torch.relu(self.a(x)) * torch.sigmoid(self.gate))


def test_nonlinearities_on_tensors_that_are_not_per_point_are_ignored():
    counts = local_complexity(_Gated().eval(), torch.randn(5, 3), make_frame(3, 2, seed=0), 0.5)
    assert counts.shape == (5, 1)


class _FoldsTokens(nn.Module):
    """A token-wise MLP that folds the tokens into the batch dimension, (N, T, d) -> (N·T, d)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(15, 2)

    def forward(self, x):
        return self.b(F.gelu(self.a(x.reshape(-1, 4))).reshape(len(x), -1))


def test_tokens_folded_into_the_batch_count_per_point():
    torch.manual_seed(0)
    model, x = _FoldsTokens().double().eval(), torch.randn(6, 3, 4, dtype=torch.float64)
    frame = make_frame(12, 5, seed=0, dtype=torch.float64)
    with torch.no_grad():
        vertices = x.reshape(6, 1, 12) + 0.4 * torch.cat([frame, -frame])[None]  # (N, 2P, 12)
        positive = model.a(vertices.reshape(6, 10, 3, 4)).reshape(6, 10, 15) > 0
    expected = (positive.any(1) & ~positive.all(1)).sum(1)
    assert local_complexity(model, x, frame, 0.4)[:, 0].tolist() == expected.tolist()


def test_activations_in_other_threads_are_not_counted():
    model, x = make(FunctionalNet, seed=1)
    frame = _frame(FunctionalNet)
    alone = local_complexity(model, x, frame, 0.2)
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            torch.relu(torch.randn(len(x) * 8, 8, dtype=torch.float64))

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        together = [local_complexity(model, x, frame, 0.2) for _ in range(5)]
    finally:
        stop.set()
        worker.join()
    assert all(torch.equal(t, alone) for t in together)


class _BranchesOnBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return torch.relu(h) if len(x) > 8 else h


def test_a_network_whose_layers_depend_on_the_batch_is_a_model_error():
    options = MetricOptions(groups=("lc",), lc_directions=2, lc_radius=0.1, batch_size=3)
    with pytest.raises(ModelError, match="different number of activation functions on different batches"):
        compute_split_metrics(_BranchesOnBatch().eval(), torch.randn(4, 3), None, options=options,
                              frame=make_frame(3, 2, seed=0))


def test_non_finite_outputs_are_a_model_error():
    model, x = make(BiasFreeMLP, seed=12)
    with torch.no_grad():
        model.net[4].weight[0, 0] = float("inf")
    with pytest.raises(ModelError, match=r"non-finite \(NaN or infinite\) on 9 of 9 probe points"):
        compute_split_metrics(model, x, None, options=MetricOptions(groups=("centroid",)), frame=None)


def test_a_model_in_training_mode_is_refused():
    model, x = make(SmallCNN, seed=0)
    match = r"Expected the model in eval mode, but 5 modules are in training mode \(SmallCNN, conv1, "
    with pytest.raises(ModelError, match=match):
        compute_split_metrics(model.train(), x, None, options=OPTIONS, frame=_frame(SmallCNN))


@pytest.mark.parametrize("options, frame, error, match", [
    (MetricOptions(groups=("centroid", "curve")), None, ConfigError, "Expected metric groups from .* got curve"),
    (MetricOptions(groups=("lc",)), None, ConfigError, r"Expected the LC frame to be a P x 7 matrix .* but got None"),
    (MetricOptions(groups=("lc",)), make_frame(6, 2, seed=0), ConfigError, r"P x 7 matrix .* but got \(2, 6\)"),
    (MetricOptions(groups=("lc",), lc_radius=0.0), make_frame(7, 2, seed=0), ConfigError, "positive distance"),
    (MetricOptions(batch_size=0), None, ConfigError, "Expected batch_size to be a positive integer"),
])
def test_bad_options_are_config_errors(options, frame, error, match):
    model, x = make(BiasFreeMLP)
    with pytest.raises(error, match=match):
        compute_split_metrics(model, x, None, options=options, frame=frame)


@pytest.mark.parametrize("y, match", [
    (torch.tensor([0, 1, 5, 2, 0, 0, 1, 1, 2]), r"Expected class labels in \[0, 5\) .* but got labels from 0 to 5"),
    (torch.zeros(4, dtype=torch.long), r"Expected one label per probe point \(9\), but got 4"),
    (torch.zeros(9, 3, dtype=torch.float64), "Expected float targets with 5 value"),
])
def test_labels_that_do_not_fit_are_probe_errors(y, match):
    model, x = make(BiasFreeMLP)
    with pytest.raises(ProbeError, match=match):
        compute_split_metrics(model, x, y, options=MetricOptions(groups=("accuracy",)), frame=None)


def test_integer_inputs_only_support_accuracy():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 3)).eval()
    tokens = torch.randint(0, 10, (6, 2))
    with pytest.raises(ProbeError, match="Expected floating-point probe inputs for the centroid metrics"):
        compute_split_metrics(model, tokens, None, options=MetricOptions(groups=("centroid",)), frame=None)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    got = compute_split_metrics(model, tokens, labels, options=MetricOptions(groups=("accuracy",)), frame=None)
    with torch.no_grad():
        logits = model(tokens).double()
    assert got["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).double().mean()))
    assert got["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-6)


def test_batch_size_estimate_follows_the_activation_count():
    model, x = make(SmallCNN)
    elements = activation_elements(model, x)
    assert elements >= 3 * 4 * 4 + 4 * 2 * 2 + 3  # conv1 output, conv2 output, logits at least
    assert batch_size(2**14 * elements, "cpu") == 64 * 2**20 // (2**14 * elements)
    assert batch_size(8, "cpu") == 65536 and batch_size(8, "cpu", override=3) == 3


class _CastsToTokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.Embedding(5, 3), nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.embed(x.long()).flatten(1))


@pytest.mark.parametrize("frozen", [False, True])
def test_a_model_that_casts_its_inputs_away_is_a_model_error_for_centroids(frozen):
    model = _CastsToTokens().eval().requires_grad_(not frozen)
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ModelError, match="do not depend differentiably on its inputs"):
        compute_split_metrics(model, x, None, options=MetricOptions(groups=("centroid",)), frame=None)
