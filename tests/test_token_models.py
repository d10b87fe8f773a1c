"""Token models measured at the token embedding's output: a hand-written transformer against the float64
reference, sequence outputs and `--position`, the LC radius resolved at each checkpoint, and the example
transformer run (examples/modular_transformer) analysed end to end."""

import importlib
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from grokmon import analyze, info, phases
from grokmon.errors import ConfigError, ModelError, ProbeError
from grokmon.inputs.models import TensorOutput
from token_reference import HandRest, HandTransformer, reference_errors

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "modular_transformer"
FAST = {"device": "cpu", "threads": 1, "lc_directions": 3, "points": 24}


@pytest.fixture(scope="module")
def example():
    """examples/modular_transformer's train and model modules, imported from their folder."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield importlib.import_module("train"), importlib.import_module("model")
    finally:
        sys.path.remove(str(EXAMPLE))


@pytest.mark.parametrize("seed", [0, 1])
def test_hand_written_transformer_matches_the_float64_reference(seed):
    torch.manual_seed(seed)
    model = HandTransformer().double().eval()
    tokens = torch.randint(0, model.vocab, (6, model.context))
    labels = torch.randint(0, model.vocab, (6,))
    errors = reference_errors(TensorOutput(model).eval(), model.embed, HandRest(model), tokens, labels)
    assert max(errors.values()) < 1e-6, errors
    assert errors["lc_points"] == 0


def _sequence_run(tmp_path, example, steps=(0, 3)):
    """A run of the example's transformer (logits at every position) with a few weight states, p = 7."""
    train, model = example
    run = tmp_path / "sequence"
    run.mkdir()
    x_train, y_train, x_test, y_test = train.dataset(p=7)
    save_file({"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
              str(run / "probes.safetensors"))
    torch.manual_seed(0)
    nets = {}
    for step in steps:
        nets[step] = model.build(p=7, width=8, heads=2, hidden=16).eval()
        save_file(nets[step].state_dict(), str(run / f"step_{step}.safetensors"))
    spec = {"model": f"{EXAMPLE / 'model.py'}:build", "model_kwargs": {"p": 7, "width": 8, "heads": 2, "hidden": 16}}
    return run, spec, nets, (x_train, y_train, x_test, y_test)


def test_sequence_outputs_need_a_position_and_are_scored_there(tmp_path, example):
    run, spec, nets, (x_train, y_train, x_test, y_test) = _sequence_run(tmp_path, example)
    with pytest.raises(ConfigError, match=r"sequence of outputs per point \(shape \(3, 7\)\).*pass --position last"):
        analyze(run, **spec, **FAST)
    assert "pass --position last" in info(run, **spec, device="cpu").missing[0]  # info says it before analyze
    with pytest.raises(ModelError, match="--position 3 is outside the model's 3 output positions"):
        analyze(run, **spec, position=3, **FAST)
    frame = analyze(run, **spec, position="last", **FAST | {"points": 100})
    assert set(frame["status"]) == {"ok"}
    for step, net in nets.items():
        with torch.no_grad():
            truth = (net(x_test)[:, -1].argmax(1) == y_test).double().mean()
        row = frame[(frame.step == step) & (frame.split == "test")].iloc[0]
        assert row["accuracy"] == pytest.approx(float(truth))
    same = analyze(run, **spec, position=-1, output=tmp_path / "again.parquet", **FAST | {"points": 100})
    pd.testing.assert_series_equal(same["accuracy"], frame["accuracy"])


def test_token_ids_outside_the_vocabulary_are_one_line_before_any_checkpoint(tmp_path, example):
    run, spec, _, (x_train, y_train, x_test, y_test) = _sequence_run(tmp_path, example)
    x_test = x_test.clone()
    x_test[-1, 0] = 8  # the vocabulary: 0..6 and "=" (7)
    save_file({"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
              str(run / "probes.safetensors"))
    with pytest.raises(ProbeError, match=r"x_test holds token ids from 0 to 8, but the model's embedding embed has "
                                         r"8 tokens \(ids 0 to 7\)"):
        analyze(run, **spec, position="last", **FAST)
    assert not (run / "grokmon.parquet").exists()


def test_relative_lc_radius_follows_each_checkpoints_embedding(tmp_path, example):
    run, spec, nets, (x_train, *_) = _sequence_run(tmp_path, example)
    with torch.no_grad():
        nets[3].embed.weight.mul_(4.0)  # the embedding's scale moves; so must the radius
    save_file(nets[3].state_dict(), str(run / "step_3.safetensors"))
    frame = analyze(run, **spec, position="last", lc_radius="10%", **FAST | {"points": 1000})
    for step, net in nets.items():
        with torch.no_grad():
            norms = net.embed(x_train).reshape(len(x_train), -1).double().norm(dim=1)
        rows = frame[frame.step == step]
        assert rows["lc_radius"].tolist() == pytest.approx([0.1 * float(norms.quantile(0.5))] * 3)
    random = frame[frame.split == "random"]
    assert random["n_points"].tolist() == [len(x_train)] * 2 and random["lc"].notna().all()
    fixed = analyze(run, **spec, position="last", lc_radius="0.3", output=tmp_path / "fixed.parquet", **FAST)
    assert fixed["lc_radius"].tolist() == [0.3] * 6


def test_the_example_transformer_run_is_analysed_end_to_end(tmp_path, example):
    train, _ = example
    run = tmp_path / "run"
    curve = train.train(run, steps=2, p=11, log=lambda line: None)
    assert [row[0] for row in curve] == [0, 1, 2]
    frame = analyze(run, **FAST | {"points": 100, "lc_directions": 2})  # the manifest names the model and position
    assert set(frame["status"]) == {"ok"} and len(frame) == 3 * len(curve)
    for name in ("accuracy", "centroid_alignment_min", "centroid_alignment_max", "jacobian_erank", "lc", "lc_radius"):
        assert frame[name].notna().any(), name
    train_rows = frame[frame.split == "train"].reset_index()
    assert (train_rows["centroid_alignment_min"] <= train_rows["centroid_alignment"]).all()
    assert (train_rows["centroid_alignment"] <= train_rows["centroid_alignment_max"]).all()
    last = train_rows.iloc[-1]
    assert len(last["lc_layers"]) == 1  # the one MLP activation: softmax and the residual stream are not layers
    assert train_rows["accuracy"].tolist() == pytest.approx([row[1] for row in curve])  # every train pair
    assert phases(run / "grokmon.parquet").mode == "accuracy"
