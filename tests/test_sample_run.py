"""The sample run: make_samples.py makes what is shipped, and what is shipped tells the grokking story
(memorise, stay stuck, generalise, settle)."""

from __future__ import annotations

import csv
import json
import runpy
import struct
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "sample_checkpoints"


def read_curve() -> list[dict[str, float]]:
    with open(SAMPLE / "training_curve.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: (int(v) if k == "step" else float(v)) for k, v in row.items()} for row in rows]


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file, read without loading any tensor."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length))


def longest_memorisation_ratio(curve: list[dict[str, float]]) -> tuple[float, int, int]:
    """Longest run of consecutive saved steps with train acc >= 0.99 and test acc < 0.5, as last/first step."""
    best = (0.0, -1, -1)
    first = None
    for row in curve:
        if row["train_accuracy"] >= 0.99 and row["test_accuracy"] < 0.5:
            if first is None:
                first = row["step"]
            if first > 0:
                best = max(best, (row["step"] / first, first, row["step"]))
        else:
            first = None
    return best


def test_memorisation_plateau_spans_at_least_a_decade():
    ratio, first, last = longest_memorisation_ratio(read_curve())
    assert ratio >= 10, f"train >= 0.99 and test < 0.5 only from step {first} to {last} (x{ratio:.1f})"


def test_training_set_is_fitted_before_test_accuracy_moves():
    curve = read_curve()
    fitted = next(r["step"] for r in curve if r["train_accuracy"] >= 0.99)
    half = next(r["step"] for r in curve if r["test_accuracy"] >= 0.5)
    assert half >= 10 * fitted


def test_generalises_and_ends_flat():
    curve = read_curve()
    assert curve[-1]["train_accuracy"] >= 0.99
    assert curve[-1]["test_accuracy"] >= 0.95
    last_step = curve[-1]["step"]
    tail = [r for r in curve if r["step"] >= 0.6 * last_step]
    assert len(tail) >= 3
    assert min(r["test_accuracy"] for r in tail) >= 0.95
    assert max(r["test_accuracy"] for r in tail) - min(r["test_accuracy"] for r in tail) <= 0.05


def test_checkpoints_match_the_curve():
    curve = read_curve()
    files = sorted(SAMPLE.glob("step_*.safetensors"))
    assert 40 <= len(files) <= 80
    assert len(files) == len(curve)
    assert sorted(SAMPLE.glob("*.safetensors")) == sorted(files + [SAMPLE / "probes.safetensors"])
    shapes = None
    for path, row in zip(files, curve):
        header = safetensors_header(path)
        step = int(header["__metadata__"]["step"])
        assert step == row["step"], path.name
        assert path.name == f"step_{step:06d}.safetensors"
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        assert all(v["dtype"] == "F32" for v in tensors.values())
        if shapes is None:
            shapes = {k: v["shape"] for k, v in tensors.items()}
        assert {k: v["shape"] for k, v in tensors.items()} == shapes
    # a plain chain of Linear layers, as `--model mlp` rebuilds it
    assert all(k.endswith(".weight") for k in shapes)
    chain = [shapes[k] for k in sorted(shapes, key=lambda k: int(k.split(".")[0]))]
    assert len(chain) >= 3
    assert all(a[0] == b[1] for a, b in zip(chain, chain[1:]))


def test_final_checkpoint_reproduces_the_curve_on_the_probes():
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    probes = load_file(str(SAMPLE / "probes.safetensors"))
    curve = read_curve()
    state = load_file(str(sorted(SAMPLE.glob("step_*.safetensors"))[-1]))
    weights = [state[k] for k in sorted(state, key=lambda k: int(k.split(".")[0]))]

    def accuracy(x, y):
        for i, w in enumerate(weights):
            x = x @ w.T
            if i < len(weights) - 1:
                x = torch.relu(x)
        return float((x.argmax(1) == y).float().mean())

    assert accuracy(probes["x_train"], probes["y_train"]) == pytest.approx(curve[-1]["train_accuracy"], abs=1e-3)
    assert accuracy(probes["x_test"], probes["y_test"]) == pytest.approx(curve[-1]["test_accuracy"], abs=1e-3)


def test_manifest_and_size():
    import tomllib

    manifest = tomllib.loads((SAMPLE / "grokmon.toml").read_text())
    assert manifest["model"] == "mlp"
    assert manifest["activation"] == "relu"
    size = sum(f.stat().st_size for f in SAMPLE.rglob("*") if f.is_file())
    assert size < 8 * 1024 * 1024


@pytest.fixture
def make_samples(monkeypatch):
    """The script's main(), restoring the thread count it sets for its own process."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    script = runpy.run_path(str(SAMPLE / "make_samples.py"), run_name="make_samples")

    def run(*args: str) -> None:
        monkeypatch.setattr(sys, "argv", ["make_samples.py", *args])
        script["main"]()

    yield run
    torch.set_num_threads(threads)


def test_make_samples_makes_the_shipped_checkpoints(make_samples, tmp_path, capsys):
    """The first 21 steps again, seeded: the same steps are saved with the same weights and curve."""
    from safetensors.torch import load_file

    make_samples("--out", str(tmp_path), "--steps", "21")
    capsys.readouterr()
    made = {int(safetensors_header(f)["__metadata__"]["step"]): f for f in tmp_path.glob("step_*.safetensors")}
    shipped = {row["step"]: row for row in read_curve()}
    common = sorted(set(made) & set(shipped))
    assert 0 in common and 21 in common and len(common) >= 10
    for step in common:
        a, b = load_file(str(made[step])), load_file(str(SAMPLE / f"step_{step:06d}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert (a[key] - b[key]).abs().max() <= 1e-5, (step, key)
    with open(tmp_path / "training_curve.csv", newline="") as handle:
        curve = {int(row["step"]): row for row in csv.DictReader(handle)}
    assert sorted(curve) == sorted(made)
    assert float(curve[21]["test_accuracy"]) == pytest.approx(shipped[21]["test_accuracy"], abs=1e-6)
    assert load_file(str(tmp_path / "probes.safetensors")).keys() == {"x_train", "y_train", "x_test", "y_test"}
    assert (tmp_path / "grokmon.toml").read_text() == (SAMPLE / "grokmon.toml").read_text()
