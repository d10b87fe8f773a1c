"""Integer probe inputs: numbers (pixels, counts) for a model that computes on them, token ids for one that
embeds them (measured on accuracy and loss alone)."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

from grokmon import analyze, info
from grokmon.cli import app
from grokmon.errors import ProbeError

P = 7  # tokens 0..6: the sum of two tokens mod P


def _token_net():
    return nn.Sequential(nn.Embedding(P, 4), nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, P))


def _token_run(tmp_path, labels=True):
    run = tmp_path / "tokens"
    run.mkdir()
    (run / "net.py").write_text(
        "from torch import nn\n"
        f"def build():\n    return nn.Sequential(nn.Embedding({P}, 4), nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), "
        f"nn.Linear(16, {P}))\n")
    pairs = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    probes = {"x_train": pairs[:30].int(), "x_test": pairs[30:].int()}
    if labels:
        probes |= {"y_train": pairs[:30].sum(1) % P, "y_test": pairs[30:].sum(1) % P}
    save_file(probes, str(run / "probes.safetensors"))
    torch.manual_seed(0)
    states = []
    for step in (0, 10, 20):
        net = _token_net()
        states.append(net)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(run / f"step_{step}.safetensors"))
    return run, states, probes


@pytest.mark.parametrize("casts_itself", [False, True])
def test_token_ids_are_embedded_and_measured_on_accuracy_alone(tmp_path, casts_itself):
    run, states, probes = _token_run(tmp_path)
    if casts_itself:
        (run / "net.py").write_text((run / "net.py").read_text() + (
            "\nclass Casts(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.net = build()\n"
            "    def forward(self, x):\n        return self.net(x.long())\n"
            "def build_casting():\n    return Casts()\n"))
        for path in run.glob("step_*.safetensors"):  # the same weights under the wrapper's prefix
            save_file({f"net.{k}": v for k, v in load_file(str(path)).items()}, str(path))
    factory = "build_casting" if casts_itself else "build"
    frame = analyze(run, model=f"{run / 'net.py'}:{factory}", device="cpu")
    assert set(frame["status"]) == {"ok"}
    assert list(frame["split"]) == ["train", "test"] * 3  # no random split of token ids
    assert "centroid_norm" not in frame or frame["centroid_norm"].isna().all()
    with torch.no_grad():
        expected = (states[2].eval()(probes["x_test"].long()).argmax(1) == probes["y_test"]).double().mean()
    last_test = frame[(frame.step == 20) & (frame.split == "test")]
    assert float(last_test["accuracy"].iloc[0]) == pytest.approx(float(expected))
    found = info(run, model=f"{run / 'net.py'}:{factory}", device="cpu")
    assert found.splits == {"train": 30, "test": 19} and found.inputs == "token ids"


def test_geometry_asked_for_on_token_ids_is_one_line_naming_the_probe_file(tmp_path):
    run, _, _ = _token_run(tmp_path)
    result = CliRunner().invoke(app, ["analyze", str(run), "--model", f"{run / 'net.py'}:build", "--metrics",
                                      "centroid,accuracy", "--device", "cpu"])
    assert result.exit_code == 1
    assert "probes.safetensors: x_train holds integer token ids" in result.output
    assert "--metrics accuracy" in result.output and "Traceback" not in result.output


def test_token_ids_without_labels_have_nothing_to_measure(tmp_path):
    run, _, _ = _token_run(tmp_path, labels=False)
    with pytest.raises(ProbeError, match="token ids .* no labels"):
        analyze(run, model=f"{run / 'net.py'}:build", device="cpu")


def test_integer_pixels_for_a_model_that_computes_on_them_are_numbers(tmp_path):
    run = tmp_path / "pixels"
    run.mkdir()
    generator = torch.Generator().manual_seed(0)
    save_file({"x_train": torch.randint(0, 256, (20, 6), dtype=torch.uint8, generator=generator),
               "y_train": torch.randint(0, 3, (20,), generator=generator)}, str(run / "probes.safetensors"))
    for step in (0, 1):
        net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
        save_file(net.state_dict(), str(run / f"step_{step}.safetensors"))
    frame = analyze(run, device="cpu", lc_directions=3)
    assert set(frame["status"]) == {"ok"}
    assert list(frame["split"]) == ["train", "random"] * 2
    assert frame["centroid_norm"].notna().all() and frame["lc"].notna().all()
