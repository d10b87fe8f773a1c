"""The callbacks' common core without a framework: a live module measured in place (modes, gradients, no_grad
and inference mode of the loop), what is recorded so that analyze resumes the file, the time budget, argument
checks."""

import importlib
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from grokmon.errors import ConfigError, ModelError
from grokmon.inputs.probes import load_probes, probes_from_tensors
from grokmon.integrations.monitor import LiveMonitor
from grokmon.results import read_results
from loop_tasks import FEATURES, mlp, task

FAST = dict(points=16, lc_directions=2)


class Residual(nn.Module):
    """The shapes of a plain chain, but not its function: the inferred mlp would be wrong."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(FEATURES, FEATURES), nn.Linear(FEATURES, 2)

    def forward(self, x):
        return self.second(x + torch.relu(self.first(x)))


def _trained_with_gradients(module):
    data = task("plateau")
    nn.functional.cross_entropy(module(data["x_train"]), data["y_train"]).backward()
    return data


def test_measuring_leaves_modes_and_gradients_as_they_were(tmp_path, one_thread):
    net = nn.Sequential(nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    net[1].eval()  # a frozen norm inside a model that trains
    net[4].bias.requires_grad_(False)
    probes = _trained_with_gradients(net)
    modes = [m.training for m in net.modules()]
    grads = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    monitor = LiveMonitor(probes, tmp_path / "out.parquet", every_n_steps=1, **FAST)
    monitor.open(net, tmp_path)
    random_state = torch.get_rng_state()
    with torch.no_grad():  # hooks may run under the loop's no_grad or inference mode
        first = monitor.measure(1)
    with torch.inference_mode():
        second = monitor.measure(2)
    assert torch.equal(torch.get_rng_state(), random_state)  # training's random stream is not drawn from
    assert [m.training for m in net.modules()] == modes
    for parameter, before in zip(net.parameters(), grads):
        assert (parameter.grad is None) == (before is None)
        assert before is None or torch.equal(parameter.grad, before)
    assert [p.requires_grad for p in net.parameters()] == [True, True, True, True, True, False]
    frame, metadata = read_results(tmp_path / "out.parquet")
    metric_values = [{k: v for k, v in m.logged.items() if k.count("/") == 2} for m in (first, second)]
    assert (frame["status"] == "ok").all() and metric_values[0] == metric_values[1] and len(metric_values[0]) > 10
    assert metadata["config"]["model"] == "live:torch.nn.modules.container.Sequential"  # BatchNorm: not an mlp


def test_a_model_analyze_would_build_wrong_is_recorded_as_live(tmp_path, caplog):
    probes = task("plateau")
    monitor = LiveMonitor(probes, tmp_path / "a.parquet", every_n_steps=1, **FAST)
    with caplog.at_level(logging.WARNING, logger="grokmon"):
        monitor.open(Residual(), tmp_path)
    assert monitor.session.config.model == "live:test_live_monitor.Residual"
    assert "will not resume them: the inferred mlp does not compute what the trained model computes" in caplog.text
    with pytest.raises(ModelError, match=r"model 'mlp', as `grokmon analyze` would build it .* does not compute what "
                                         r"the trained test_live_monitor.Residual computes \(its outputs differ"):
        LiveMonitor(probes, tmp_path / "b.parquet", model="mlp", **FAST).open(Residual(), tmp_path)


def test_a_plain_chain_is_recorded_as_the_mlp_analyze_infers(tmp_path):
    monitor = LiveMonitor(task("plateau"), tmp_path / "a.parquet", **FAST)
    monitor.open(mlp(8), tmp_path)
    assert monitor.session.config.model == "mlp" and monitor.session.metadata["model"]["kind"] == "mlp"


def test_probe_tensors_hash_like_a_file_holding_them(tmp_path):
    tensors = task("memorise")
    save_file(tensors, str(tmp_path / "p.safetensors"))
    np.savez(tmp_path / "p.npz", **{k: v.numpy() for k, v in tensors.items()})
    from_dict = probes_from_tensors(tensors, 16, 0, torch.float32)
    for name in ("p.safetensors", "p.npz"):
        from_file = load_probes(tmp_path / name, 16, 0, torch.float32)
        assert from_file.sha256 == from_dict.sha256
        assert all(torch.equal(a.x, b.x) for a, b in zip(from_file.splits, from_dict.splits))
    other = probes_from_tensors({**tensors, "y_test": 1 - tensors["y_test"]}, 16, 0, torch.float32)
    assert other.sha256 != from_dict.sha256


def test_over_the_time_budget_calls_are_skipped_and_logged(tmp_path, caplog):
    monitor = LiveMonitor(task("plateau"), tmp_path / "a.parquet", every_n_steps=1, max_seconds=1e-6, **FAST)
    monitor.open(mlp(8), tmp_path)
    with caplog.at_level(logging.INFO, logger="grokmon"):
        measured, skipped = monitor.measure(1), monitor.measure(2)
    assert measured.seconds > 0 and skipped.seconds is None and not skipped.logged
    assert "grokmon: skipped step 2: measuring took" in caplog.text and "max_seconds=1e-06" in caplog.text
    assert sorted(set(read_results(tmp_path / "a.parquet")[0]["step"])) == [1]


def test_a_model_in_another_dtype_than_asked_for(tmp_path):
    with pytest.raises(ConfigError, match=r"Expected the trained model's parameters in float64, but they are "
                                          r"float32; pass dtype='float32'"):
        LiveMonitor(task("plateau"), tmp_path / "a.parquet", dtype="float64").open(mlp(8), tmp_path)


@pytest.mark.parametrize("arguments, message", [
    (dict(stop_on="later"), "Expected stop_on to be stop or roll-back"),
    (dict(every_n_steps=0), "Expected every_n_steps to be a positive integer"),
    (dict(patience=1.5), "Expected patience to be a positive integer"),
    (dict(max_seconds=0), "Expected max_seconds to be a positive number"),
    (dict(device="cuda"), r"Expected analyze's options \(model, .*\), but got device"),
    (dict(points=0), "Expected points to be a positive integer"),
])
def test_wrong_arguments_are_one_line(tmp_path, arguments, message):
    with pytest.raises(ConfigError, match=message):
        LiveMonitor(task("plateau"), **arguments).open(mlp(8), tmp_path)


def test_a_run_from_step_0_is_measured_before_its_first_step_and_a_resumed_one_is_not(tmp_path):
    net = mlp(8)
    probes = task("plateau")
    monitor = LiveMonitor(probes, tmp_path / "a.parquet", **FAST)
    assert monitor.measure_start(0) is None  # no session yet (another rank's monitor)
    monitor.open(net, tmp_path)
    start = monitor.measure_start(0)
    assert start.step == 0 and "grokmon/train/accuracy" in start.logged
    assert start.report.advice == "inconclusive"  # one checkpoint: never a verdict that acts
    frame, _ = read_results(tmp_path / "a.parquet")
    assert sorted(set(frame["step"])) == [0] and frame["checkpoint"].isna().all()
    resumed = LiveMonitor(probes, tmp_path / "b.parquet", **FAST)
    resumed.open(mlp(8), tmp_path)
    assert resumed.measure_start(1200) is None and not (tmp_path / "b.parquet").exists()


def test_a_new_run_drops_the_rows_of_another_run_in_its_file(tmp_path, caplog):
    first = LiveMonitor(task("plateau"), tmp_path / "a.parquet", every_n_steps=1, **FAST)
    first.open(mlp(8), tmp_path)
    for step in (1, 2, 3):
        first.measure(step)
    resumed = LiveMonitor(task("plateau"), tmp_path / "a.parquet", every_n_steps=1, **FAST)
    resumed.open(mlp(8), tmp_path)
    with caplog.at_level(logging.WARNING, logger="grokmon"):
        assert resumed.measure_start(2) is None  # resumed from step 2: step 3 was what followed it before
    assert "training starts at step 2: the rows of 1 step(s) from 3 to 3 in" in caplog.text
    assert sorted(set(read_results(tmp_path / "a.parquet")[0]["step"])) == [1, 2]
    aside = [p for p in tmp_path.glob("a.before-*.parquet")]
    assert len(aside) == 1 and sorted(set(read_results(aside[0])[0]["step"])) == [1, 2, 3]  # nothing is lost
    assert str(aside[0]) in caplog.text
    resumed.measure(3)
    start = resumed.measure_start(0)  # a second run from step 0 in the same process: its own run
    assert len(start.report.steps) == 1  # judged on its own step 0 alone
    assert sorted(set(read_results(tmp_path / "a.parquet")[0]["step"])) == [0]
    assert resumed.due(1, saving=False) and resumed.streak == 0  # the first run's steps are not this one's


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "modular_transformer"


@pytest.fixture
def token_model():
    """The example transformer (logits at every position, the answer at the last) with trained-looking weights
    of its own (a seed), its probe tensors and the model spec analyze builds it from."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        train, model = importlib.import_module("train"), importlib.import_module("model")
    finally:
        sys.path.remove(str(EXAMPLE))
    x_train, y_train, x_test, y_test = train.dataset(p=7)
    torch.manual_seed(3)
    net = model.build(p=7, width=8, heads=2, hidden=16)
    spec = {"model": f"{EXAMPLE / 'model.py'}:build", "model_kwargs": {"p": 7, "width": 8, "heads": 2, "hidden": 16}}
    return net, {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, spec


@pytest.mark.parametrize("where", ["option", "manifest"])
def test_a_token_model_is_scored_at_the_position_given(tmp_path, token_model, where):
    net, probes, spec = token_model
    if where == "manifest":  # the run folder's grokmon.toml, as analyze of the folder reads it
        (tmp_path / "grokmon.toml").write_text('position = "last"\n')
        options = spec
    else:
        options = {**spec, "position": "last"}
    monitor = LiveMonitor(probes, tmp_path / "out.parquet", every_n_steps=1, points=100, lc_directions=2, **options)
    monitor.open(net, tmp_path)
    logged = monitor.measure(1).logged
    with torch.no_grad():
        for split in ("train", "test"):
            truth = (net(probes[f"x_{split}"])[:, -1].argmax(1) == probes[f"y_{split}"]).double().mean()
            assert logged[f"grokmon/{split}/accuracy"] == pytest.approx(float(truth))
    assert monitor.session.config.model == spec["model"]  # analyze of the saved weights resumes the file
