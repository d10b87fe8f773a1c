"""GrokmonCallback in real Hugging Face Trainer runs of tiny models: rows per save or per N steps, the same values
as `grokmon analyze` of the saved checkpoints, the log history, stopping on the verdict."""

import json
import logging
import shutil

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="needs the [integrations] extra (transformers)")

from safetensors.torch import save_file  # noqa: E402

from grokmon import analyze  # noqa: E402
from grokmon.integrations.huggingface import GrokmonCallback  # noqa: E402
from grokmon.results import read_results  # noqa: E402
from loop_tasks import SETTINGS, mlp, save_probes, task  # noqa: E402

FAST = dict(points=32, lc_directions=3)
VALUES = ["accuracy", "loss", "centroid_alignment", "centroid_norm", "jacobian_erank", "jacobian_fro", "lc"]


class Classifier(torch.nn.Module):
    """What a Trainer trains: the loss from `labels`, the logits always."""

    def __init__(self, width, dtype):
        super().__init__()
        self.model = mlp(width, dtype)

    def forward(self, x, labels=None):
        logits = self.model(x)
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


class Points(torch.utils.data.Dataset):
    def __init__(self, probes):
        self.x, self.y = probes["x_train"], probes["y_train"]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def train(root, kind, callbacks, steps, save_steps=None, dtype=torch.float64):
    probes = task(kind, dtype=dtype)
    width, lr = SETTINGS[kind]
    args = transformers.TrainingArguments(
        output_dir=str(root), max_steps=steps, per_device_train_batch_size=64, learning_rate=lr,
        lr_scheduler_type="constant", save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
        save_only_model=True, report_to="none", disable_tqdm=True, use_cpu=True, logging_strategy="no",
        dataloader_num_workers=0, seed=0)
    trainer = transformers.Trainer(model=Classifier(width, dtype), args=args, train_dataset=Points(probes),
                                   callbacks=callbacks)
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, one_thread):
    """A float64 run saving every 5 steps, measured at every save, and by a second callback every 2 steps."""
    root = tmp_path_factory.mktemp("hf")
    probes = task("plateau", dtype=torch.float64)
    every_two = GrokmonCallback(probes, root / "every_two.parquet", every_n_steps=2, metrics="accuracy")
    trainer = train(root / "out", "plateau", [GrokmonCallback(probes, **FAST), every_two], steps=15, save_steps=5)
    return root / "out", trainer, save_probes(probes, root / "probes.safetensors")


def test_one_set_of_rows_before_the_first_step_and_per_save_named_by_its_folder(saved_run):
    out, _, _ = saved_run
    frame, metadata = read_results(out / "grokmon.parquet")
    assert list(frame["step"]) == [0, 0, 0, 5, 5, 5, 10, 10, 10, 15, 15, 15]
    assert frame.loc[frame.step == 0, "checkpoint"].isna().all()  # the model before training: nothing saved
    assert list(frame["checkpoint"].dropna().unique()) == ["checkpoint-5", "checkpoint-10", "checkpoint-15"]
    assert metadata["config"]["dtype"] == "float64" and (frame["status"] == "ok").all()


def with_initial_checkpoint(out, tmp_path):
    """A copy of the run folder with the model as it was before training saved as checkpoint-0."""
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    shutil.copytree(copy / "checkpoint-5", copy / "checkpoint-0")
    initial = Classifier(SETTINGS["plateau"][0], torch.float64).state_dict()  # mlp() seeds: the run's own start
    save_file(initial, str(copy / "checkpoint-0" / "model.safetensors"))
    state = copy / "checkpoint-0" / "trainer_state.json"
    if state.exists():
        state.write_text(json.dumps({**json.loads(state.read_text()), "global_step": 0, "log_history": []}))
    return copy


def test_values_equal_analyze_of_the_saved_checkpoints_which_resumes_the_file(saved_run, tmp_path):
    out, _, probe_file = saved_run
    live, _ = read_results(out / "grokmon.parquet")
    # the rows measured before the first step are those of the initial model, saved
    offline = analyze(with_initial_checkpoint(out, tmp_path), tmp_path / "offline.parquet", data=probe_file,
                      dtype="float64", device="cpu", **FAST)
    assert list(offline["step"]) == list(live["step"])
    for column in VALUES:
        torch.testing.assert_close(torch.tensor(live[column].to_numpy(dtype=float)),
                                   torch.tensor(offline[column].to_numpy(dtype=float)), rtol=0, atol=1e-6,
                                   equal_nan=True, msg=column)
    events = []
    analyze(out, data=probe_file, dtype="float64", device="cpu", progress=events.append, **FAST)
    assert [(e.done, e.total) for e in events] == [(3, 3)]
    assert sorted(set(read_results(out / "grokmon.parquet")[0]["step"])) == [0, 5, 10, 15]  # the live rows stay


def test_the_log_history_holds_grokmon_values(saved_run):
    out, trainer, _ = saved_run
    frame, _ = read_results(out / "grokmon.parquet")
    entries = [e for e in trainer.state.log_history if "grokmon/train/lc" in e]  # the save-mode callback's
    assert [e["step"] for e in entries] == [0, 5, 10, 15]
    train_rows = frame[frame.split == "train"]
    assert [e["grokmon/train/lc"] for e in entries] == list(train_rows["lc"])
    assert {"grokmon/phase", "grokmon/advice", "grokmon/random/centroid_alignment"} <= set(entries[-1])


class Reporter(transformers.TrainerCallback):
    """What a `report_to` integration sees: every on_log call's values."""

    def __init__(self):
        self.logged = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logged.append(dict(logs or {}))


def test_an_attached_callback_logs_through_the_trainer_so_reporters_receive_the_values(tmp_path, one_thread):
    probes = task("plateau", dtype=torch.float32)
    width, lr = SETTINGS["plateau"]
    reporter = Reporter()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=64, learning_rate=lr, save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=True, logging_strategy="no", seed=0)
    trainer = transformers.Trainer(model=Classifier(width, torch.float32), args=args, train_dataset=Points(probes),
                                   callbacks=[reporter])
    GrokmonCallback.attach(trainer, probes, every_n_steps=3, metrics="accuracy", points=32)
    trainer.train()
    seen = [entry for entry in reporter.logged if "grokmon/train/accuracy" in entry]
    assert len(seen) == 3
    history = [entry for entry in trainer.state.log_history if "grokmon/train/accuracy" in entry]
    assert [e["step"] for e in history] == [0, 3, 6]
    assert [e["grokmon/test/accuracy"] for e in history] == [e["grokmon/test/accuracy"] for e in seen]


def test_the_console_gets_a_summary_line_and_the_reporters_every_value(tmp_path, one_thread, capsys):
    """The console printer (PrinterCallback under disable_tqdm) printed all ~50 keys of every measurement."""
    probes = task("plateau", dtype=torch.float32)
    width, lr = SETTINGS["plateau"]
    reporter = Reporter()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=64, learning_rate=lr, save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=True, logging_strategy="no", seed=0)
    trainer = transformers.Trainer(model=Classifier(width, torch.float32), args=args, train_dataset=Points(probes),
                                   callbacks=[reporter])
    GrokmonCallback.attach(trainer, probes, every_n_steps=2, **FAST)
    order = [type(cb).__name__ for cb in trainer.callback_handler.callbacks]
    trainer.train()
    assert [type(cb).__name__ for cb in trainer.callback_handler.callbacks] == order  # the printer is back in place
    printed = [line for line in capsys.readouterr().out.splitlines() if "grokmon/" in line]
    assert len(printed) == 3 and all("grokmon/test/accuracy" in line and "grokmon/advice" in line for line in printed)
    assert all("grokmon/train/lc" not in line and line.count("grokmon/") < 10 for line in printed), printed
    seen = [entry for entry in reporter.logged if "grokmon/train/accuracy" in entry]
    assert len(seen) == 3 and all(len([k for k in entry if k.startswith("grokmon/")]) > 20 for entry in seen)
    assert all("grokmon/train/lc" in entry for entry in trainer.state.log_history if "grokmon/seconds" in entry)


def test_every_n_steps_measures_at_those_steps_whether_saved_or_not(saved_run):
    out, _, _ = saved_run
    frame, _ = read_results(out.parent / "every_two.parquet")
    assert sorted(set(frame["step"])) == [0, 2, 4, 6, 8, 10, 12, 14]
    names = frame.groupby("step")["checkpoint"].first().dropna().to_dict()
    assert names == {10: "checkpoint-10"}  # the one step of them that was also saved


def test_analyze_resuming_an_every_n_steps_file_keeps_the_rows_of_steps_never_saved(saved_run, tmp_path):
    out, _, probe_file = saved_run
    shutil.copy(out.parent / "every_two.parquet", tmp_path / "every_two.parquet")
    events = []
    frame = analyze(out, tmp_path / "every_two.parquet", data=probe_file, dtype="float64", device="cpu",
                    metrics="accuracy", progress=events.append)
    assert sorted(set(frame["step"])) == [0, 2, 4, 5, 6, 8, 10, 12, 14, 15]  # 5 and 15: measured now
    notes = [n for e in events for n in e.notes]
    assert not frame["deleted"].any() and not any("no longer in" in n for n in notes), notes


def reasons_of(trainer) -> list[str]:
    return [e["grokmon/stop"] for e in trainer.state.log_history if "grokmon/stop" in e]


@pytest.mark.parametrize("kind, stops", [("plateau", True), ("memorise", False)])
def test_stop_on_stop_ends_a_plateaued_run_not_a_memorising_one(tmp_path, one_thread, kind, stops):
    callback = GrokmonCallback(task(kind), metrics="accuracy", stop_on="stop", patience=2, points=32)
    warnings: list[str] = []  # what transformers' default verbosity (warning) shows
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    GrokmonCallback.log.addHandler(handler)
    try:
        # 50 steps: a stop needs the plateau to have held while the step count doubled (docs/phases.md)
        trainer = train(tmp_path, kind, [callback], steps=50, save_steps=5, dtype=torch.float32)
    finally:
        GrokmonCallback.log.removeHandler(handler)
    assert [w for w in warnings if w.startswith("grokmon: stopping")] == ([reasons_of(trainer)[0]] if stops else [])
    assert (trainer.state.global_step < 50) is stops
    reasons = reasons_of(trainer)
    assert len(reasons) == int(stops)
    frame, _ = read_results(tmp_path / "grokmon.parquet")
    last = frame[frame.step == frame.step.max()].set_index("split")["accuracy"]
    assert last["train"] > 0.95 and (last["test"] < 0.7) is not stops  # fitted; generalised or memorised
    if stops:
        assert reasons[0].startswith(f"grokmon: stopping at step {trainer.state.global_step}: the verdict has been stop")


def test_a_resumed_run_is_not_measured_before_its_first_step(tmp_path, one_thread):
    probes = task("plateau", dtype=torch.float32)
    width, lr = SETTINGS["plateau"]

    def trainer_for(steps, callbacks):
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=64, learning_rate=lr,
            save_strategy="steps", save_steps=5, report_to="none", disable_tqdm=True, use_cpu=True,
            logging_strategy="no", seed=0)
        return transformers.Trainer(model=Classifier(width, torch.float32), args=args, train_dataset=Points(probes),
                                    callbacks=callbacks)

    trainer_for(5, []).train()
    callback = GrokmonCallback(probes, tmp_path / "resumed.parquet", metrics="accuracy", points=32)
    trainer_for(10, [callback]).train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-5"))
    frame, _ = read_results(tmp_path / "resumed.parquet")
    assert sorted(set(frame["step"])) == [10]  # from step 5 on: no step 0 of a run that did not start there
