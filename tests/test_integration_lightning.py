"""GrokmonCallback in real Lightning trainings of tiny models: rows per save or per N steps, the same values as
`grokmon analyze` of the saved checkpoints, the loggers' values, stopping on the verdict."""

import logging
import shutil

import pandas as pd
import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="needs the [integrations] extra (lightning)")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import Logger  # noqa: E402

from grokmon import analyze  # noqa: E402
from grokmon.integrations.lightning import GrokmonCallback  # noqa: E402
from grokmon.results import read_results  # noqa: E402
from loop_tasks import SETTINGS, mlp, save_probes, task  # noqa: E402

FAST = dict(points=32, lc_directions=3)
VALUES = ["accuracy", "loss", "centroid_alignment", "centroid_norm", "centroid_inner", "jacobian_erank",
          "jacobian_pc1", "jacobian_fro", "lc"]


class Recorder(Logger):
    """A logger that keeps what it is given."""

    def __init__(self):
        super().__init__()
        self.logged: dict[int, dict] = {}

    name, version = "recorder", 0

    def log_metrics(self, metrics, step=None):
        self.logged.setdefault(step, {}).update(metrics)

    def log_hyperparams(self, params, *args, **kwargs):
        pass


class Classifier(pl.LightningModule):
    def __init__(self, width, lr, dtype):
        super().__init__()
        self.model, self.lr = mlp(width, dtype), lr

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def fit(root, kind, callbacks, steps, dtype=torch.float64, logger=False, checkpoints=True):
    probes = task(kind, dtype=dtype)
    data = torch.utils.data.TensorDataset(probes["x_train"], probes["y_train"])
    module = Classifier(*SETTINGS[kind], dtype)
    trainer = pl.Trainer(max_steps=steps, default_root_dir=root, callbacks=callbacks, logger=logger,
                         enable_checkpointing=checkpoints, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", log_every_n_steps=1)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=64))
    return trainer, module


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, one_thread):
    """A float64 run saving a checkpoint every 5 steps, measured at every save."""
    root = tmp_path_factory.mktemp("lightning")
    probes = task("plateau", dtype=torch.float64)
    callback, recorder = GrokmonCallback(probes, **FAST), Recorder()
    saves = ModelCheckpoint(dirpath=root / "ckpts", every_n_train_steps=5, save_top_k=-1)
    fit(root, "plateau", [callback, saves], steps=20, logger=recorder)
    return root / "ckpts", callback, recorder, save_probes(probes, root / "probes.safetensors")


def test_one_set_of_rows_before_the_first_step_and_per_save_named_by_its_file(saved_run):
    ckpts, callback, _, _ = saved_run
    frame, metadata = read_results(ckpts / "grokmon.parquet")
    assert callback.monitor.store.output == ckpts / "grokmon.parquet"
    assert list(frame["step"]) == [0, 0, 0, 5, 5, 5, 10, 10, 10, 15, 15, 15, 20, 20, 20]
    assert frame.loc[frame.step == 0, "checkpoint"].isna().all()  # the module before training: nothing saved
    assert set(frame["checkpoint"].dropna()) == {p.name for p in ckpts.glob("*.ckpt")}
    assert (frame["status"] == "ok").all() and metadata["model"]["kind"] == "mlp"
    assert metadata["config"]["dtype"] == "float64" and metadata["probe_file"] is None


def with_initial_checkpoint(ckpts, tmp_path):
    """A copy of the checkpoint folder with the module as it was before training saved at step 0."""
    copy = tmp_path / "ckpts"
    shutil.copytree(ckpts, copy)
    saved = torch.load(copy / "epoch=4-step=5.ckpt", weights_only=False)
    initial = Classifier(*SETTINGS["plateau"], torch.float64).state_dict()
    torch.save({**saved, "state_dict": initial, "global_step": 0, "epoch": 0}, copy / "epoch=0-step=0.ckpt")
    return copy


def test_values_equal_analyze_of_the_saved_checkpoints(saved_run, tmp_path):
    ckpts, _, _, probe_file = saved_run
    live, _ = read_results(ckpts / "grokmon.parquet")
    # the rows measured before the first step are those of the initial module, saved
    offline = analyze(with_initial_checkpoint(ckpts, tmp_path), tmp_path / "offline.parquet", data=probe_file,
                      dtype="float64", device="cpu", **FAST)
    assert list(offline["checkpoint"][3:]) == list(live["checkpoint"][3:])
    assert list(offline["step"]) == list(live["step"])
    for column in VALUES:
        torch.testing.assert_close(torch.tensor(live[column].to_numpy(dtype=float)),
                                   torch.tensor(offline[column].to_numpy(dtype=float)), rtol=0, atol=1e-6,
                                   equal_nan=True, msg=column)


def test_analyze_of_the_checkpoints_resumes_the_callbacks_file(saved_run):
    ckpts, _, _, probe_file = saved_run
    before, _ = read_results(ckpts / "grokmon.parquet")
    events = []
    frame = analyze(ckpts, data=probe_file, dtype="float64", device="cpu", progress=events.append, **FAST)
    assert [(e.done, e.total) for e in events] == [(4, 4)]  # nothing left to compute
    identity = ["file_size", "file_mtime", "file_fingerprint"]  # the live rows take the saved files' identity
    saved = frame.step > 0  # the rows before the first step have no file, and stay
    assert before[identity].isna().all().all() and frame.loc[saved, identity].notna().all().all()
    assert frame.loc[~saved, identity].isna().all().all() and list(frame.loc[~saved, "step"]) == [0, 0, 0]
    pd.testing.assert_frame_equal(frame.drop(columns=identity), before.drop(columns=identity))


def test_the_trainers_logger_receives_grokmon_values(saved_run):
    ckpts, _, recorder, _ = saved_run
    frame, _ = read_results(ckpts / "grokmon.parquet")
    assert sorted(s for s, values in recorder.logged.items() if "grokmon/seconds" in values) == [0, 5, 10, 15, 20]
    last = recorder.logged[20]
    row = frame[(frame.step == 20) & (frame.split == "test")].iloc[0]
    assert last["grokmon/test/centroid_alignment"] == row["centroid_alignment"]
    assert last["grokmon/train/accuracy"] == frame[(frame.step == 20) & (frame.split == "train")].iloc[0]["accuracy"]
    assert {"grokmon/phase", "grokmon/advice", "grokmon/confidence"} <= set(last)


class Spy(pl.Callback):
    """Notes the module's train/eval modes and gradients at the end of every batch."""

    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append(([m.training for m in pl_module.modules()],
                          [None if p.grad is None else p.grad.clone() for p in pl_module.parameters()]))


def test_every_n_steps_without_checkpoints_leaves_the_training_as_it_was(tmp_path, one_thread):
    callback = GrokmonCallback(task("plateau"), every_n_steps=3, metrics="centroid,lc", **FAST)
    before, after = Spy(), Spy()  # called just before and just after the callback
    _, measured = fit(tmp_path / "a", "plateau", [before, callback, after], steps=7, dtype=torch.float32,
                      checkpoints=False)
    _, plain = fit(tmp_path / "b", "plateau", [], steps=7, dtype=torch.float32, checkpoints=False)
    frame, _ = read_results(tmp_path / "a" / "grokmon.parquet")
    assert sorted(set(frame["step"])) == [0, 3, 6] and frame["checkpoint"].isna().all()
    for (modes, grads), (modes_after, grads_after) in zip(before.seen, after.seen):
        assert modes == modes_after and all(modes)
        assert all(torch.equal(a, b) for a, b in zip(grads, grads_after)) and None not in grads
    for (name, a), (_, b) in zip(measured.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(a, b), name  # measuring changed neither the gradients nor the random stream
    assert measured.training == plain.training


def _stopping(root, kind):
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    messages: list[str] = []
    log = logging.getLogger("lightning.pytorch.callbacks.grokmon")
    log.addHandler(handler)
    try:
        callback = GrokmonCallback(task(kind), metrics="accuracy", stop_on="stop", patience=2, points=32)
        saves = ModelCheckpoint(dirpath=root, every_n_train_steps=5, save_top_k=-1)
        # 50 steps: a stop needs the plateau to have held while the step count doubled (docs/phases.md)
        trainer, _ = fit(root, kind, [callback, saves], steps=50, dtype=torch.float32)
    finally:
        log.removeHandler(handler)
    return trainer, messages


def test_stop_on_stop_ends_a_plateaued_run_and_says_why(tmp_path, one_thread):
    trainer, messages = _stopping(tmp_path, "plateau")
    assert trainer.global_step < 50
    assert any(m.startswith(f"grokmon: stopping at step {trainer.global_step}: the verdict has been stop 2 time(s)")
               for m in messages)


def test_stop_on_stop_lets_a_memorising_run_train_on(tmp_path, one_thread):
    trainer, messages = _stopping(tmp_path, "memorise")
    assert trainer.global_step == 50 and not any("stopping" in m for m in messages)
    frame, _ = read_results(tmp_path / "grokmon.parquet")
    last = frame[frame.step == 50].set_index("split")["accuracy"]
    assert last["train"] > 0.95 and last["test"] < 0.7  # fitted, not generalised: memorised


def test_a_resumed_fit_is_not_measured_before_its_first_step(saved_run, tmp_path, one_thread):
    ckpts, _, _, _ = saved_run
    probes = task("plateau", dtype=torch.float64)
    data = torch.utils.data.TensorDataset(probes["x_train"], probes["y_train"])
    callback = GrokmonCallback(probes, tmp_path / "resumed.parquet", every_n_steps=5, metrics="accuracy", points=32)
    trainer = pl.Trainer(max_steps=15, default_root_dir=tmp_path, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    trainer.fit(Classifier(*SETTINGS["plateau"], torch.float64), torch.utils.data.DataLoader(data, batch_size=64),
                ckpt_path=str(ckpts / "epoch=9-step=10.ckpt"))
    frame, _ = read_results(tmp_path / "resumed.parquet")
    assert sorted(set(frame["step"])) == [15]  # from step 10 on: no step 0 of a run that did not start there
