"""`grokmon analyze` end to end on a few checkpoints of the shipped sample run, through the CLI."""

import csv
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grokmon.cli import app
from grokmon.results import read_results

SAMPLE = Path(__file__).resolve().parent.parent / "sample_checkpoints"


def _curve():
    with open(SAMPLE / "training_curve.csv", newline="") as handle:
        return {int(r["step"]): r for r in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def few_sample_checkpoints(tmp_path_factory):
    """First, a memorising, and last checkpoint of the sample run, with its probes and manifest."""
    root = tmp_path_factory.mktemp("sample") / "run"
    root.mkdir()
    checkpoints = sorted(SAMPLE.glob("step_*.safetensors"))
    curve = _curve()
    memorising = next(p for p in checkpoints
                      if float(curve[int(p.stem.split("_")[1])]["train_accuracy"]) >= 0.99)
    for path in {checkpoints[0], memorising, checkpoints[-1]}:
        shutil.copy(path, root / path.name)
    for name in ("probes.safetensors", "grokmon.toml"):
        shutil.copy(SAMPLE / name, root / name)
    return root


def test_analyze_sample_checkpoints_end_to_end(few_sample_checkpoints):
    run = few_sample_checkpoints
    result = CliRunner().invoke(app, ["analyze", str(run), "--points", "256", "--quiet"])
    assert result.exit_code == 0, result.output
    frame, metadata = read_results(run / "grokmon.parquet")
    curve = _curve()
    steps = sorted(int(p.stem.split("_")[1]) for p in run.glob("step_*.safetensors"))
    assert sorted(frame["step"].unique()) == steps
    assert set(frame["status"]) == {"ok"} and len(frame) == 3 * len(steps)
    assert metadata["model"]["kind"] == "mlp"
    for step in steps:
        train = frame[(frame.step == step) & (frame.split == "train")].iloc[0]
        test = frame[(frame.step == step) & (frame.split == "test")].iloc[0]
        # 256-point subsets of the sets the curve was measured on: within sampling error of it.
        assert train["accuracy"] == pytest.approx(float(curve[step]["train_accuracy"]), abs=0.1)
        assert test["accuracy"] == pytest.approx(float(curve[step]["test_accuracy"]), abs=0.1)
    geometry = ["centroid_alignment", "centroid_norm", "jacobian_erank", "jacobian_pc1", "jacobian_fro", "lc"]
    assert frame[geometry].notna().all().all()
    assert all(len(layers) == 2 for layers in frame["lc_layers"])  # two hidden ReLU layers
    last = frame[(frame.step == steps[-1]) & (frame.split == "test")].iloc[0]
    assert last["accuracy"] >= 0.9
