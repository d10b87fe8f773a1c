import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from grokmon.inputs.config import resolve_radius
from grokmon.errors import ConfigError, ProbeError
from grokmon.inputs.probes import load_probes


def _tensors(n_train=50, n_test=20):
    g = torch.Generator().manual_seed(3)
    return {"x_train": torch.randn(n_train, 2, 3, generator=g), "y_train": torch.randint(0, 4, (n_train,), generator=g),
            "x_test": torch.randn(n_test, 2, 3, generator=g), "y_test": torch.randint(0, 4, (n_test,), generator=g)}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".npz"])
def test_every_format_reads_the_same(tmp_path, suffix):
    tensors = _tensors()
    path = tmp_path / f"probes{suffix}"
    if suffix == ".safetensors":
        save_file(tensors, str(path))
    elif suffix == ".pt":
        torch.save(tensors, path)
    else:
        np.savez(path, **{k: v.numpy() for k, v in tensors.items()})
    probes = load_probes(path, points=1000, seed=0, dtype=torch.float64)
    assert [s.name for s in probes.splits] == ["train", "test", "random"]
    train, test, random = probes.splits
    assert torch.equal(train.x, tensors["x_train"].double()) and torch.equal(train.y, tensors["y_train"])
    assert torch.equal(test.x, tensors["x_test"].double())
    assert random.y is None and random.x.shape == (50, 2, 3)
    low, high = tensors["x_train"].double().amin(0), tensors["x_train"].double().amax(0)
    assert bool(((random.x >= low) & (random.x <= high)).all())


def test_points_takes_a_seeded_subset_in_file_order(tmp_path):
    path = tmp_path / "p.safetensors"
    save_file(_tensors(), str(path))
    first = load_probes(path, points=10, seed=5, dtype=torch.float32)
    again = load_probes(path, points=10, seed=5, dtype=torch.float32)
    other = load_probes(path, points=10, seed=6, dtype=torch.float32)
    assert first.sizes() == {"train": 10, "test": 10, "random": 10}
    assert torch.equal(first.splits[0].x, again.splits[0].x)
    assert not torch.equal(first.splits[0].x, other.splits[0].x)
    rows = {tuple(r.flatten().tolist()): i for i, r in enumerate(_tensors()["x_train"])}
    index = [rows[tuple(r.flatten().tolist())] for r in first.splits[0].x]
    assert index == sorted(index)


def test_dtype_changes_the_precision_not_the_points(tmp_path):
    path = tmp_path / "p.safetensors"
    save_file(_tensors(), str(path))
    single = load_probes(path, points=10, seed=5, dtype=torch.float32)
    double = load_probes(path, points=10, seed=5, dtype=torch.float64)
    for a, b in zip(single.splits, double.splits):
        torch.testing.assert_close(a.x, b.x.float(), rtol=0, atol=0)


def test_unlabelled_and_train_only(tmp_path):
    path = tmp_path / "p.safetensors"
    save_file({"x_train": torch.rand(8, 3)}, str(path))
    probes = load_probes(path, points=512, seed=0, dtype=torch.float32)
    assert [s.name for s in probes.splits] == ["train", "random"] and probes.splits[0].y is None


def test_float_targets_are_kept_as_regression(tmp_path):
    path = tmp_path / "p.safetensors"
    save_file({"x_train": torch.rand(8, 3), "y_train": torch.rand(8, 2)}, str(path))
    assert load_probes(path, 512, 0, torch.float64).splits[0].y.dtype == torch.float64


@pytest.mark.parametrize("tensors, match", [
    ({"x": torch.zeros(3, 2)}, "no x_train"),
    ({"x_train": torch.zeros(3, 2), "y_train": torch.zeros(4, dtype=torch.long)}, "4 labels for 3 points"),
    ({"x_train": torch.zeros(3, 2), "x_test": torch.zeros(3, 5)}, r"x_test points have shape \(5,\)"),
    ({"x_train": torch.zeros(3)}, r"x_train has shape \(3,\)"),
    ({"x_train": torch.tensor([[1.0, float("nan")]])}, "NaN"),
    ({"x_train": torch.zeros(3, 2, dtype=torch.bool)}, "dtype torch.bool"),
])
def test_malformed_probe_data(tmp_path, tensors, match):
    path = tmp_path / "p.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(ProbeError, match=match):
        load_probes(path, 512, 0, torch.float32)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_float_labels_are_a_probe_error(tmp_path, bad):
    path = tmp_path / "p.safetensors"
    save_file({"x_train": torch.zeros(3, 2), "y_train": torch.tensor([0.5, bad, 1.0])}, str(path))
    with pytest.raises(ProbeError, match="y_train holds NaN or infinite"):
        load_probes(path, 512, 0, torch.float32)


def test_npz_of_python_objects_is_refused_with_what_to_save_instead(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, x_train=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ProbeError, match="arrays of Python objects.*save numeric arrays"):
        load_probes(path, 512, 0, torch.float32)


def test_unreadable_probe_file(tmp_path):
    path = tmp_path / "p.safetensors"
    path.write_bytes(b"nonsense")
    with pytest.raises(ProbeError, match="cannot read probe data"):
        load_probes(path, 512, 0, torch.float32)


@pytest.mark.parametrize("content", [b"hello\n", b"\x80\x02}q\x00.garbage"])
def test_a_pt_file_that_is_no_torch_archive_says_so_not_what_the_unpickler_last_read(tmp_path, content):
    path = tmp_path / "probes.pt"
    path.write_bytes(content)  # a text file under the name read "cannot read probe data (101)"
    with pytest.raises(ProbeError) as caught:
        load_probes(path, 512, 0, torch.float32)
    assert str(caught.value) == (f"{path}: cannot read probe data (not a torch.save file: torch's loader could not read "
                                 "its bytes); write it with safetensors or numpy.savez")


def test_relative_radius_uses_median_train_norm_of_every_train_point(tmp_path):
    path = tmp_path / "p.safetensors"
    save_file({"x_train": torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0], [0.0, 2.0]])}, str(path))
    norm = load_probes(path, 512, 0, torch.float64).train_median_norm
    assert norm == 3.5  # the middle of 1, 2, 5, 10
    assert load_probes(path, 1, 0, torch.float32).train_median_norm == 3.5  # --points does not change it
    assert resolve_radius("2%", norm) == pytest.approx(0.07)
    assert resolve_radius(0.3, norm) == 0.3
    with pytest.raises(ConfigError, match="Expected lc_radius"):
        resolve_radius("-1", norm)
