"""Integer probe inputs: numbers (pixels, counts) for a model that computes on them, token ids for one that
embeds them (measured at the embedding's output; see test_token_models.py for the values)."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from grokmon import analyze, info
from grokmon.cli import app
from grokmon.errors import ConfigError, ProbeError

P = 7  # tokens 0..6: the sum of two tokens mod P
FAST = {"device": "cpu", "lc_directions": 3, "threads": 1}
MODEL_FILE = f"""\
import torch
import torch.nn.functional as F
from torch import nn

def build():
    return nn.Sequential(nn.Embedding({P}, 4), nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, {P}))

class Casts(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = build()
    def forward(self, x):
        return self.net(x.long())

def build_casting():
    return Casts()

class Positions(nn.Module):
    '''A token embedding and a position embedding, both nn.Embedding; positions are looked up first.'''
    def __init__(self):
        super().__init__()
        self.positions, self.tokens = nn.Embedding(2, 4), nn.Embedding({P}, 4)
        self.head = nn.Linear(8, {P})
    def forward(self, x):
        where = self.positions(torch.arange(x.shape[1]))
        return self.head((self.tokens(x) + where).flatten(1))

def build_positions():
    return Positions()

class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn({P}, 4))
        self.head = nn.Linear(8, {P})
    def forward(self, x):
        return self.head(F.embedding(x, self.table).flatten(1))

def build_functional():
    return Functional()
"""


def _token_run(tmp_path, factory="build", labels=True):
    run = tmp_path / "tokens"
    run.mkdir()
    (run / "net.py").write_text(MODEL_FILE)
    namespace = {}
    exec(MODEL_FILE, namespace)
    pairs = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    probes = {"x_train": pairs[:30].int(), "x_test": pairs[30:].int()}
    if labels:
        probes |= {"y_train": pairs[:30].sum(1) % P, "y_test": pairs[30:].sum(1) % P}
    save_file(probes, str(run / "probes.safetensors"))
    torch.manual_seed(0)
    states = []
    for step in (0, 10):
        net = namespace[factory]()
        states.append(net.eval())
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(run / f"step_{step}.safetensors"))
    return run, states, probes


@pytest.mark.parametrize("factory", ["build", "build_casting"])
def test_token_ids_are_measured_at_the_embedding_output_with_a_random_split(tmp_path, factory):
    run, states, probes = _token_run(tmp_path, factory)
    frame = analyze(run, model=f"{run / 'net.py'}:{factory}", **FAST)
    assert set(frame["status"]) == {"ok"}
    assert list(frame["split"]) == ["train", "test", "random"] * 2
    assert frame["centroid_norm"].notna().all() and frame["lc"].notna().all()
    assert frame[frame.split == "random"]["n_points"].tolist() == [30, 30]
    with torch.no_grad():
        expected = (states[1](probes["x_test"].long()).argmax(1) == probes["y_test"]).double().mean()
    last_test = frame[(frame.step == 10) & (frame.split == "test")]
    assert float(last_test["accuracy"].iloc[0]) == pytest.approx(float(expected))
    found = info(run, model=f"{run / 'net.py'}:{factory}", device="cpu")
    assert found.splits == {"train": 30, "test": 19, "random": 30} and found.inputs == "token ids"
    assert (found.embedding, found.input_dim) == ("0" if factory == "build" else "net.0", 8)


def test_the_token_embedding_is_the_lookup_of_the_tokens_not_of_positions(tmp_path):
    run, _, _ = _token_run(tmp_path, "build_positions")
    model = f"{run / 'net.py'}:build_positions"
    assert info(run, model=model, device="cpu").embedding == "tokens"
    result = CliRunner().invoke(app, ["info", str(run), "--model", model])
    assert result.exit_code == 0 and "measured at the output of tokens, D = 8" in " ".join(result.output.split())
    with pytest.raises(ConfigError, match="--embedding positions: that module is not called on the probe tokens"):
        analyze(run, model=model, embedding="positions", **FAST)
    with pytest.raises(ConfigError, match=r"--embedding head\.x: the model has no module of that name .*tokens"):
        analyze(run, model=model, embedding="head.x", **FAST)
    assert set(analyze(run, model=model, embedding="tokens", **FAST)["status"]) == {"ok"}


def test_a_functional_embedding_is_measured_without_geometry(tmp_path):
    run, _, _ = _token_run(tmp_path, "build_functional")
    model = f"{run / 'net.py'}:build_functional"
    result = CliRunner().invoke(app, ["analyze", str(run), "--model", model, "--metrics", "accuracy,lc",
                                      "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "without an nn.Embedding module; the lc metrics" in result.output and "--embedding" in result.output
    frame = analyze(run, model=model, **FAST)
    assert list(frame["split"]) == ["train", "test"] * 2 and frame["accuracy"].notna().all()
    assert "lc" not in frame or frame["lc"].isna().all()


def test_robustness_is_not_measured_on_token_ids(tmp_path):
    run, _, _ = _token_run(tmp_path)
    with pytest.raises(ProbeError, match=r"\(robustness perturbs the inputs\); the robustness metrics"):
        analyze(run, model=f"{run / 'net.py'}:build", metrics="robustness,centroid", **FAST)


def test_token_ids_without_labels_are_measured_on_geometry_alone(tmp_path):
    run, _, _ = _token_run(tmp_path, labels=False)
    frame = analyze(run, model=f"{run / 'net.py'}:build", **FAST)
    assert set(frame["status"]) == {"ok"} and frame["accuracy"].isna().all()
    assert frame["centroid_alignment_min"].notna().all()


def test_embedding_named_for_float_inputs_is_an_error(tmp_path):
    run = tmp_path / "floats"
    run.mkdir()
    save_file({"x_train": torch.randn(6, 3)}, str(run / "probes.safetensors"))
    save_file(nn.Linear(3, 2).state_dict(), str(run / "step_0.safetensors"))
    with pytest.raises(ConfigError, match="--embedding 0 measures token models, but x_train holds floats"):
        analyze(run, embedding="0", **FAST)


def test_integer_pixels_for_a_model_that_computes_on_them_are_numbers(tmp_path):
    run = tmp_path / "pixels"
    run.mkdir()
    generator = torch.Generator().manual_seed(0)
    save_file({"x_train": torch.randint(0, 256, (20, 6), dtype=torch.uint8, generator=generator),
               "y_train": torch.randint(0, 3, (20,), generator=generator)}, str(run / "probes.safetensors"))
    for step in (0, 1):
        net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
        save_file(net.state_dict(), str(run / f"step_{step}.safetensors"))
    frame = analyze(run, **FAST)
    assert set(frame["status"]) == {"ok"}
    assert list(frame["split"]) == ["train", "random"] * 2
    assert frame["centroid_norm"].notna().all() and frame["lc"].notna().all()
