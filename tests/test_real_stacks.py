"""Checkpoints written by the real training stacks: the transformers Trainer, the Lightning Trainer, accelerate
and torch.distributed.checkpoint. Each layout is found in step order, read without running code from it, and
measured to the values that the library's own loading (`from_pretrained`, `load_from_checkpoint`,
`load_state`, `dcp.load`) gives. Tiny networks, a few steps each, trained once per module."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from grokmon import analyze, info
from grokmon.cli import app
from grokmon.errors import CheckpointError

CLI_FAST = ["--points", "64", "--metrics", "accuracy", "--device", "cpu", "--threads", "1", "-q"]


def _data():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(48, 6, generator=generator)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


X, Y = _data()


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _with_probes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"x_train": X, "y_train": Y}, str(folder / "probes.safetensors"))
    return folder


def _measured(folder: Path, **options):
    """analyze on every train point, accuracy and loss only: the values a direct evaluation gives."""
    frame = analyze(folder, folder.parent / f"{folder.name}.parquet", points=64, metrics="accuracy", device="cpu",
                    overwrite=True, **options)
    assert set(frame["status"]) == {"ok"}, frame["error"].dropna().unique()
    return frame[frame.split == "train"].set_index("step")


def _assert_measures(row, model: nn.Module) -> None:
    with torch.no_grad():
        logits = model.eval()(X)
    assert row["accuracy"] == pytest.approx(float((logits.argmax(1) == Y).double().mean()))
    assert row["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, Y)), rel=1e-5)


# --- the transformers Trainer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory, one_thread):
    transformers = pytest.importorskip("transformers", reason="the [integrations] extra (transformers) is not installed")

    class TinyConfig(transformers.PretrainedConfig):
        model_type = "grokmon-tiny"

    class Tiny(transformers.PreTrainedModel):
        config_class = TinyConfig

        def __init__(self, config):
            super().__init__(config)
            self.net = mlp()
            self.post_init()

        def forward(self, x, labels=None):
            logits = self.net(x)
            return {"logits": logits, **({"loss": nn.functional.cross_entropy(logits, labels)} if labels is not None
                                         else {})}

    class Points(torch.utils.data.Dataset):
        def __len__(self):
            return len(X)

        def __getitem__(self, i):
            return {"x": X[i], "labels": Y[i]}

    root = tmp_path_factory.mktemp("hf") / "run"
    args = transformers.TrainingArguments(output_dir=str(root), max_steps=6, save_steps=2, learning_rate=0.05,
                                          per_device_train_batch_size=16, report_to=[], use_cpu=True,
                                          logging_steps=100, disable_tqdm=True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.Trainer(model=Tiny(TinyConfig()), args=args, train_dataset=Points()).train()
    return _with_probes(root), Tiny


def test_trainer_checkpoints_measure_like_from_pretrained(hf_run):
    root, tiny = hf_run
    measured = _measured(root)
    assert list(measured.index) == [2, 4, 6]
    for step in (2, 4, 6):
        _assert_measures(measured.loc[step], tiny.from_pretrained(str(root / f"checkpoint-{step}")).net)


def test_sharded_model_with_an_index_is_one_checkpoint_and_a_temp_folder_is_in_progress(hf_run, tmp_path):
    root, tiny = hf_run
    run = _with_probes(tmp_path / "run")
    model = tiny.from_pretrained(str(root / "checkpoint-6"))
    model.save_pretrained(str(run / "checkpoint-6"), max_shard_size=200)  # bytes: two shards and an index json
    shutil.copytree(root / "checkpoint-4", run / "tmp-checkpoint-8")  # a save the Trainer has not renamed yet
    shards = set(json.loads((run / "checkpoint-6" / "model.safetensors.index.json").read_text())["weight_map"].values())
    found = info(run, device="cpu")
    assert len(shards) > 1 and [(c.step, c.format) for c in found.checkpoints] == [(6, f"safetensors ({len(shards)} shards)")]
    assert found.notes == ("tmp-checkpoint-8: a Trainer's temporary folder, renamed to checkpoint-N when the save "
                           "completes; skipped, the next analyze measures it",)
    _assert_measures(_measured(run).loc[6], model.net)


# --- the Lightning Trainer ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lightning(one_thread):
    lightning = pytest.importorskip("lightning", reason="the [integrations] extra (lightning) is not installed")
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    return lightning


def _lightning_modules(L):
    class Steps:
        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, index):
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    class WithObjects(Steps, L.LightningModule):
        """save_hyperparameters() keeps the network object and a Path in every checkpoint."""

        def __init__(self, net: nn.Module, data_dir: Path, lr: float = 0.1):
            super().__init__()
            self.save_hyperparameters()
            self.net = net

    class Plain(Steps, L.LightningModule):
        def __init__(self, lr: float = 0.1):
            super().__init__()
            self.save_hyperparameters()
            self.net = mlp()

    return WithObjects, Plain


def _fit(L, root: Path, module, max_steps: int, resume: Path | None = None, **checkpointing) -> None:
    saver = L.pytorch.callbacks.ModelCheckpoint(every_n_train_steps=2, save_top_k=-1, **checkpointing)
    trainer = L.Trainer(max_steps=max_steps, callbacks=[saver], logger=L.pytorch.loggers.CSVLogger(str(root)),
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, data, ckpt_path=str(resume) if resume else None)


@pytest.fixture(scope="module")
def lightning_runs(lightning, tmp_path_factory):
    """A run whose hyperparameters hold objects (save_last=True), and a run resumed from step 2 by a second job."""
    with_objects, plain = _lightning_modules(lightning)
    root = tmp_path_factory.mktemp("lightning")
    torch.manual_seed(0)
    _fit(lightning, root / "objects", with_objects(mlp(), root / "data"), 6, save_last=True)
    _fit(lightning, root / "resumed", plain(), 4)
    logs = root / "resumed" / "lightning_logs"
    _fit(lightning, root / "resumed", plain(), 8, resume=logs / "version_0" / "checkpoints" / "epoch=0-step=2.ckpt")
    return _with_probes(root / "objects"), _with_probes(root / "resumed"), with_objects, plain


def test_hyperparameters_holding_objects_are_read_without_their_code(lightning_runs):
    objects, _, with_objects, _ = lightning_runs
    folder = objects / "lightning_logs" / "version_0" / "checkpoints"
    assert (folder / "last.ckpt").is_file()
    measured = _measured(objects)
    assert list(measured.index) == [2, 4, 6] and "last.ckpt" not in set(measured["checkpoint"])
    for path in folder.glob("epoch=*.ckpt"):
        module = with_objects.load_from_checkpoint(path, weights_only=False)  # trusting our own file
        _assert_measures(measured.loc[int(path.stem.split("step=")[1])], module.net)


def test_a_resumed_run_is_one_run_and_a_step_saved_twice_is_the_newer_save(lightning_runs):
    _, resumed, _, plain = lightning_runs
    result = CliRunner().invoke(app, ["analyze", str(resumed), *CLI_FAST])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        "grokmon: note: step 4 is saved 2 times (lightning_logs/version_0/checkpoints/epoch=1-step=4.ckpt, "
        "lightning_logs/version_1/checkpoints/epoch=1-step=4.ckpt), by a resumed run; the newest, "
        "lightning_logs/version_1/checkpoints/epoch=1-step=4.ckpt, is used")
    measured = _measured(resumed)
    assert list(measured.index) == [2, 4, 6, 8]
    assert measured.loc[4, "checkpoint"].startswith("lightning_logs/version_1/")
    for step in (2, 4, 6, 8):
        _assert_measures(measured.loc[step], plain.load_from_checkpoint(resumed / measured.loc[step, "checkpoint"]).net)
    assert "step 4 is saved 2 times" in info(resumed, device="cpu").notes[0]


def test_separate_runs_in_version_folders_are_an_error_that_lists_them(lightning_runs, tmp_path):
    _, resumed, _, _ = lightning_runs
    for version in ("version_0", "version_1"):  # the first job's run twice: two runs from scratch
        shutil.copytree(resumed / "lightning_logs" / "version_0", tmp_path / "lightning_logs" / version)
    with pytest.raises(CheckpointError, match=r"holds 2 separate runs \(version_0: steps 2-4; version_1: steps 2-4\)"
                                              r".*point grokmon at one run \(grokmon analyze .*version_1\)"):
        analyze(tmp_path / "lightning_logs", device="cpu", data=str(resumed / "probes.safetensors"))


# --- accelerate --------------------------------------------------------------------------------------------


class StepTracker:
    """Registered with accelerator.register_for_checkpointing: its state (the step) is saved with every save."""

    def __init__(self):
        self.step = 0

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]


@pytest.fixture(scope="module")
def accelerate_run(tmp_path_factory, one_thread):
    """Two prepared models saved with automatic_checkpoint_naming at steps 2, 4, 6, a step tracker registered;
    and the same folders without the tracker's files."""
    accelerate = pytest.importorskip("accelerate", reason="the [integrations] extra (accelerate) is not installed")
    from accelerate.utils import ProjectConfiguration

    root = tmp_path_factory.mktemp("accelerate")
    config = ProjectConfiguration(project_dir=str(root / "tracked"), automatic_checkpoint_naming=True)
    accelerator = accelerate.Accelerator(project_config=config, cpu=True)
    torch.manual_seed(0)
    first, second = mlp(), mlp()
    optimizer = torch.optim.SGD([*first.parameters(), *second.parameters()], lr=0.1)
    first, second, optimizer = accelerator.prepare(first, second, optimizer)
    tracker = StepTracker()
    accelerator.register_for_checkpointing(tracker)
    for step in range(1, 7):
        loss = nn.functional.cross_entropy(first(X), Y) + nn.functional.cross_entropy(second(X * 2), Y)
        optimizer.zero_grad()
        accelerator.backward(loss)
        optimizer.step()
        tracker.step = step
        if step % 2 == 0:
            accelerator.save_state()
    shutil.copytree(root / "tracked", root / "untracked")
    for path in (root / "untracked").rglob("custom_checkpoint_*.pkl"):
        path.unlink()
    return _with_probes(root / "tracked"), _with_probes(root / "untracked"), accelerator


def _loaded_by_accelerate(accelerator, folder: Path) -> tuple[nn.Module, nn.Module]:
    first, second = mlp(), mlp()
    optimizer = torch.optim.SGD([*first.parameters(), *second.parameters()], lr=0.1)
    accelerator._models.clear(), accelerator._optimizers.clear(), accelerator._custom_objects.clear()
    first, second, optimizer = accelerator.prepare(first, second, optimizer)
    accelerator.register_for_checkpointing(StepTracker())
    accelerator.load_state(str(folder))
    return first, second


def test_several_models_need_weights_and_each_measures_like_load_state(accelerate_run):
    tracked, _, accelerator = accelerate_run
    result = CliRunner().invoke(app, ["analyze", str(tracked), *CLI_FAST])
    assert result.exit_code == 1
    assert ("checkpoint_0: holds 2 models (model.safetensors, model_1.safetensors), as accelerate's save_state "
            "writes one file per prepared model; pick one with --weights NAME (model, model_1)") in result.stderr
    by_model = {name: _measured(tracked, weights=name) for name in ("model", "model_1")}
    for index, step in enumerate((2, 4, 6)):  # the steps the tracker stored, not the save numbers 0, 1, 2
        models = _loaded_by_accelerate(accelerator, tracked / "checkpoints" / f"checkpoint_{index}")
        for name, model in zip(("model", "model_1"), models):
            assert by_model[name].loc[step, "checkpoint"] == f"checkpoints/checkpoint_{index}"
            _assert_measures(by_model[name].loc[step], model)
    assert by_model["model"].loc[6, "accuracy"] != by_model["model_1"].loc[6, "accuracy"]


def test_save_numbers_are_never_steps(accelerate_run):
    _, untracked, _ = accelerate_run
    with pytest.raises(CheckpointError, match=r"checkpoint_0, checkpoints/checkpoint_1, checkpoints/checkpoint_2: "
                                              r"accelerate's automatic_checkpoint_naming numbers saves .* not training "
                                              r"steps.*register_for_checkpointing.*\[steps\]"):
        analyze(untracked, weights="model", device="cpu")
    (untracked / "grokmon.toml").write_text('weights = "model"\n[steps]\n"checkpoints/checkpoint_0" = 2\n'
                                            '"checkpoints/checkpoint_1" = 4\n"checkpoints/checkpoint_2" = 6\n')
    assert [c.step for c in info(untracked, device="cpu").checkpoints] == [2, 4, 6]


# --- torch.distributed.checkpoint ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dcp_run(tmp_path_factory, one_thread):
    """Two DCP saves of model, optimizer and step, in folders named by save number: the step is read from them."""
    import torch.distributed.checkpoint as dcp

    root = tmp_path_factory.mktemp("dcp") / "run"
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for save, step in enumerate((3, 7)):
        for _ in range(3 if save == 0 else 4):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            optimizer.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no process group: "assuming the intent is to save in a single process"
            dcp.save({"model": model.state_dict(), "optim": optimizer.state_dict(), "step": step},
                     checkpoint_id=str(root / f"save_{save}"))
    return _with_probes(root)


def test_dcp_folders_are_read_with_torch_dcp_and_measure_like_dcp_load(dcp_run):
    import torch.distributed.checkpoint as dcp

    found = info(dcp_run, device="cpu")
    assert [(c.step, c.name, c.format) for c in found.checkpoints] == [(3, "save_0", "dcp"), (7, "save_1", "dcp")]
    measured = _measured(dcp_run)
    for save, step in enumerate((3, 7)):
        model = mlp()
        state = {"model": model.state_dict()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.load(state, checkpoint_id=str(dcp_run / f"save_{save}"))
        model.load_state_dict(state["model"])
        _assert_measures(measured.loc[step], model)


def test_a_dcp_save_without_its_metadata_is_in_progress(dcp_run, tmp_path):
    run = _with_probes(tmp_path / "run")
    shutil.copytree(dcp_run / "save_0", run / "save_0")
    (run / "save_1").mkdir()
    shutil.copy(dcp_run / "save_1" / "__0_0.distcp", run / "save_1")  # .metadata comes last
    result = CliRunner().invoke(app, ["analyze", str(run), *CLI_FAST])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("grokmon: note: save_1: still being written (no .metadata (written last), "
                                    "changed ")
    assert result.stderr.count("\n") == 1 and "1 checkpoints, 0 failed" in result.stdout
