"""`grokmon info` lists what it finds and says what is missing: it needs neither probe data nor checkpoints; a
`probes.pt` or `probes.npz` beside the checkpoints is found like `probes.safetensors`."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import write_probes
from grokmon import analyze, info
from grokmon.cli import app


def test_info_lists_checkpoints_and_model_without_probe_data(make_run):
    run = make_run("hf", steps=(0, 5))
    (run / "probes.safetensors").unlink()
    result = CliRunner().invoke(app, ["info", str(run)])
    assert result.exit_code == 0, result.output
    assert "2 checkpoints" in result.stdout and "checkpoint-5" in result.stdout and "6x8 -> 8x3" in result.stdout
    assert "missing:" in result.stdout and "no probe data; pass --data FILE" in result.stdout
    assert "probes.safetensors (or probes.pt, probes.pth, probes.npz)" in result.stdout
    found = info(run, device="cpu")
    assert [c.step for c in found.checkpoints] == [0, 5] and found.splits == {} and found.inputs is None


def test_info_without_checkpoints_says_so_and_lists_the_probes(tmp_path):
    write_probes(tmp_path / "probes.safetensors")
    found = info(tmp_path, device="cpu")
    assert found.checkpoints == [] and found.splits == {"train": 40, "test": 30, "random": 40}
    assert len(found.missing) == 1 and "no checkpoints found" in found.missing[0]
    result = CliRunner().invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 0 and "no checkpoints found" in result.stdout and "no probe data" not in result.stdout


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_probes_pt_or_npz_beside_the_checkpoints_are_the_default(make_run, suffix):
    run = make_run("pt", steps=(0, 5))
    tensors = load_file(str(run / "probes.safetensors"))
    (run / "probes.safetensors").unlink()
    if suffix == ".pt":
        torch.save(tensors, run / "probes.pt")
    else:
        np.savez(run / "probes.npz", **{k: v.numpy() for k, v in tensors.items()})
    assert info(run, device="cpu").probe_file == run / f"probes{suffix}"
    frame = analyze(run, points=8, metrics="accuracy", device="cpu")
    assert set(frame["status"]) == {"ok"} and sorted(frame["step"].unique()) == [0, 5]
    write_probes(run / "probes.safetensors")
    assert "several probe files (probes.safetensors, probes" in info(run, device="cpu").missing[0]


def test_info_says_what_analyze_would_measure_and_what_would_not_fit(make_run):
    run = make_run("pt", steps=(0, 5))
    tensors = load_file(str(run / "probes.safetensors"))
    save_file({k: v for k, v in tensors.items() if k.startswith("x_")}, str(run / "probes.safetensors"))
    unlabelled = info(run, device="cpu")
    assert unlabelled.missing == () and unlabelled.config.metrics == ("centroid", "jacobian", "lc", "weights")
    save_file({**tensors, "y_train": torch.full_like(tensors["y_train"], 7)}, str(run / "probes.safetensors"))
    [line] = info(run, device="cpu").missing  # as analyze would end, before anything is measured
    assert "y_train does not fit the model: Expected class labels in [0, 3)" in line
