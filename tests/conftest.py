"""Tiny real training runs written to temporary folders in every checkpoint layout grokmon reads."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

IN_FEATURES, HIDDEN, CLASSES = 6, 8, 3


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: on a shared 2-core CPU, thread synchronisation costs more than it gains."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_mlp(bias: bool = True) -> nn.Sequential:
    return nn.Sequential(nn.Linear(IN_FEATURES, HIDDEN, bias=bias), nn.ReLU(), nn.Linear(HIDDEN, CLASSES, bias=bias))


def train_states(steps: list[int], bias: bool = True, seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """State dicts of a tiny MLP trained with SGD on a fixed toy task, saved at `steps`."""
    torch.manual_seed(seed)
    model = tiny_mlp(bias)
    x = torch.randn(64, IN_FEATURES)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    states = {}
    for step in range(max(steps) + 1):
        if step in steps:
            states[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return states


def age(path: Path, seconds: float = 3600) -> Path:
    """Date a file back: a broken file that has not changed for an hour is no longer being written, it is broken."""
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def write_probes(path: Path, n_train: int = 40, n_test: int = 30, labels: bool = True) -> Path:
    generator = torch.Generator().manual_seed(1)
    tensors = {"x_train": torch.randn(n_train, IN_FEATURES, generator=generator),
               "x_test": torch.randn(n_test, IN_FEATURES, generator=generator)}
    if labels:
        tensors["y_train"] = torch.randint(0, CLASSES, (n_train,), generator=generator)
        tensors["y_test"] = torch.randint(0, CLASSES, (n_test,), generator=generator)
    save_file(tensors, str(path))
    return path


def write_run(root: Path, layout: str, steps=(0, 5, 20), bias: bool = True) -> Path:
    """A checkpoint directory of `layout` with probes.safetensors; returns the directory."""
    root.mkdir(parents=True, exist_ok=True)
    for step, state in train_states(list(steps), bias).items():
        if layout == "safetensors":  # step only in the metadata
            save_file(state, str(root / f"weights_{chr(97 + len(list(root.glob('weights_*'))))}.safetensors"),
                      metadata={"step": str(step)})
        elif layout in ("pt", "pth", "bin"):
            torch.save(state, root / f"step_{step}.{layout}")
        elif layout == "lightning":
            torch.save({"epoch": 1, "global_step": step, "state_dict": {f"model.{k}": v for k, v in state.items()},
                        "optimizer_states": [], "callbacks": {}}, root / f"epoch=1-step={step}.ckpt")
        elif layout == "hf":
            folder = root / f"checkpoint-{step}"
            folder.mkdir()
            save_file(state, str(folder / "model.safetensors"))
            torch.save({"state": {}}, folder / "optimizer.pt")
            torch.save({"last_epoch": step}, folder / "scheduler.pt")
            torch.save({"python": 1}, folder / "rng_state.pth")
            (folder / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
        elif layout == "hf-bin":
            folder = root / f"checkpoint-{step}"
            folder.mkdir()
            torch.save(state, folder / "pytorch_model.bin")
            torch.save({"state": {}}, folder / "optimizer.pt")
        elif layout == "nested":
            torch.save({"step": step, "model_state_dict": state, "optimizer_state_dict": {}}, root / f"ckpt_{step}.pt")
        elif layout == "model-key":
            torch.save({"model": state, "iter_num": step}, root / f"ckpt_{step}.pt")
        elif layout == "ddp":
            torch.save({f"module.{k}": v for k, v in state.items()}, root / f"step_{step}.pt")
        elif layout == "compiled":
            torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, root / f"step_{step}.pt")
        else:
            raise ValueError(layout)
    write_probes(root / "probes.safetensors")
    return root


@pytest.fixture
def make_run(tmp_path):
    def make(layout: str = "safetensors", steps=(0, 5, 20), bias: bool = True, name: str = "run") -> Path:
        return write_run(tmp_path / name, layout, steps, bias)

    return make


SAMPLE = Path(__file__).resolve().parent.parent / "sample_checkpoints"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def sample_subset(tmp_path_factory) -> Path:
    """Every third checkpoint of the shipped sample run (20 of 60, steps 0 to 5,458), analysed on 128 points per
    split with one thread, without the Jacobian group (the slowest; about 2 s): `grokmon.parquet` in the folder."""
    import shutil

    import grokmon

    folder = tmp_path_factory.mktemp("sample") / "sample"
    folder.mkdir()
    for path in sorted(SAMPLE.glob("step_*.safetensors"))[::3]:
        shutil.copyfile(path, folder / path.name)
    for name in ("probes.safetensors", "grokmon.toml"):
        shutil.copyfile(SAMPLE / name, folder / name)
    threads = torch.get_num_threads()
    try:
        grokmon.analyze(folder, points=128, metrics="accuracy,centroid,lc", threads=1)
    finally:
        torch.set_num_threads(threads)
    return folder
