import pickle

import pytest
import torch
from safetensors.torch import save_file

from conftest import age, train_states
from grokmon.inputs.checkpoints import discover_checkpoints, find_checkpoints, load_checkpoint, step_from_name
from grokmon.errors import CheckpointError

LAYOUTS = ["safetensors", "pt", "pth", "bin", "lightning", "hf", "hf-bin", "nested", "model-key", "ddp", "compiled"]


@pytest.mark.parametrize(
    "name, step",
    [("checkpoint-500", 500), ("epoch=3-step=1200.ckpt", 1200), ("step_7.pt", 7), ("ckpt_42.pth", 42),
     ("model-v2-9000.bin", 9000), ("global_step300.pt", 300), ("weights.safetensors", None)],
)
def test_step_from_name(name, step):
    assert step_from_name(name) == step


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_is_found_in_step_order_with_its_weights(make_run, layout):
    run = make_run(layout, steps=(20, 0, 5))
    found = discover_checkpoints(run, exclude={run / "probes.safetensors"})
    assert [c.step for c in found] == [0, 5, 20]
    expected = train_states([0, 5, 20])
    for ckpt in found:
        state = load_checkpoint(ckpt)
        stripped = {k.split(".", 1)[1] if k.split(".")[0] in ("model", "module", "_orig_mod") else k: v
                    for k, v in state.items()}
        assert set(stripped) == set(expected[ckpt.step])
        for key, value in expected[ckpt.step].items():
            assert torch.equal(stripped[key], value)


def test_hf_folders_ignore_trainer_files(make_run):
    run = make_run("hf", steps=(1, 2))
    found = discover_checkpoints(run)
    assert [c.name for c in found] == ["checkpoint-1", "checkpoint-2"]
    assert all(len(c.files) == 1 and c.files[0].name == "model.safetensors" for c in found)


def test_steps_sort_as_numbers_not_text(tmp_path):
    state = {"w": torch.zeros(2, 2)}
    for step in (9, 10, 100, 2):
        torch.save(state, tmp_path / f"step_{step}.pt")
    assert [c.step for c in discover_checkpoints(tmp_path)] == [2, 9, 10, 100]


def test_metadata_step_wins_over_name(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "step_1.safetensors"), metadata={"step": "77"})
    torch.save({"global_step": 88, "state_dict": {"w": torch.zeros(2)}}, tmp_path / "step_2.ckpt")
    assert [c.step for c in discover_checkpoints(tmp_path)] == [77, 88]


def test_step_stored_in_the_legacy_pickle_format_is_read(tmp_path):
    for version, step in enumerate([100, 200, 300]):
        torch.save({"step": step, "model": {"w": torch.zeros(2)}}, tmp_path / f"run_final_v{version}.pt",
                   _use_new_zipfile_serialization=False)
    found = discover_checkpoints(tmp_path)
    assert [c.step for c in found] == [100, 200, 300]
    assert torch.equal(load_checkpoint(found[0])["w"], torch.zeros(2))


def test_lightning_last_copies_of_one_step_are_one_checkpoint(tmp_path):
    states = train_states([0, 5, 9])
    torch.save({"state_dict": states[0], "global_step": 0}, tmp_path / "epoch=0-step=0.ckpt")
    for name in ("last.ckpt", "last-v1.ckpt"):  # both written after the last named checkpoint, same step
        torch.save({"state_dict": states[9], "global_step": 9}, tmp_path / name)
    assert [(c.step, c.name) for c in discover_checkpoints(tmp_path)] == [(0, "epoch=0-step=0.ckpt"), (9, "last.ckpt")]


def test_probe_file_and_manifest_are_never_checkpoints(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "step_3.pt")
    torch.save({"x_train": torch.zeros(4, 2)}, tmp_path / "my_probes_2.pt")
    (tmp_path / "grokmon.toml").write_text('model = "mlp"\n')
    found = discover_checkpoints(tmp_path, exclude={tmp_path / "my_probes_2.pt"})
    assert [c.name for c in found] == ["step_3.pt"]
    for other in ("probes_v2.safetensors", "probes-digits-1.pt"):  # probe files the run does not use
        (tmp_path / other).write_bytes(b"")
    assert [c.name for c in discover_checkpoints(tmp_path, exclude={tmp_path / "my_probes_2.pt"})] == ["step_3.pt"]


def test_empty_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoints found"):
        discover_checkpoints(tmp_path)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such directory"):
        discover_checkpoints(tmp_path / "nope")


def test_name_without_step_lists_the_files(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "final.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=r"no training step .*best\.pt, final\.pt"):
        discover_checkpoints(tmp_path)


@pytest.mark.parametrize("name, advice", [
    ("final.pt", "torch.save({'step': 500, 'state_dict': model.state_dict()}, path)"),
    ("final.safetensors", "save_file(tensors, path, metadata={'step': '500'})"),
])
def test_a_missing_step_says_how_to_store_one_for_that_format(tmp_path, name, advice):
    if name.endswith(".safetensors"):
        save_file({"w": torch.zeros(2)}, str(tmp_path / name))
    else:
        torch.save({"w": torch.zeros(2)}, tmp_path / name)
    with pytest.raises(CheckpointError, match="no training step") as caught:
        discover_checkpoints(tmp_path)
    assert str(caught.value).endswith(f"rename them like step_500.pt, or save the step with the weights: {advice}")


def test_files_sharing_a_key_are_not_shards(tmp_path):
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    state = train_states([3])[3]
    save_file(state, str(folder / "model-00001-of-00002.safetensors"))
    save_file({"2.bias": state["2.bias"]}, str(folder / "model-00002-of-00002.safetensors"))
    with pytest.raises(CheckpointError, match=r"weight '2.bias' is in both model-00001-of-00002.safetensors and "
                                              r"model-00002-of-00002.safetensors, so they are not shards of one model"):
        load_checkpoint(discover_checkpoints(tmp_path)[0])


def test_weights_naming_no_model_of_the_folder_lists_what_it_holds(tmp_path):
    folder = tmp_path / "step_4"
    folder.mkdir()
    for name in ("model", "model_1"):
        save_file({"w": torch.zeros(2)}, str(folder / f"{name}.safetensors"))
    with pytest.raises(CheckpointError, match=r"step_4: no model 'model_2' here \(it holds model.safetensors, "
                                              r"model_1.safetensors\); give --weights one of those"):
        find_checkpoints(tmp_path, weights="model_2")
    [ckpt] = find_checkpoints(tmp_path, weights="model_1").checkpoints
    assert ckpt.files == (folder / "model_1.safetensors",) and ckpt.step == 4


def test_weights_on_single_file_checkpoints_is_an_error_not_ignored(tmp_path):
    """--weights model_9 on a run of plain files picked nothing and measured the files' one model, silently."""
    for step, state in train_states([0, 5]).items():
        save_file(state, str(tmp_path / f"step_{step}.safetensors"), metadata={"step": str(step)})
    with pytest.raises(CheckpointError, match=r"--weights model_9 .* the checkpoints here are single files "
                                              r"\(step_0.safetensors, ...\), each one model: drop --weights"):
        find_checkpoints(tmp_path, weights="model_9")
    assert [c.step for c in find_checkpoints(tmp_path).checkpoints] == [0, 5]


def test_duplicate_steps_list_the_files(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "step_5.pt")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "ckpt_5.safetensors"))
    with pytest.raises(CheckpointError, match=r"step 5: ckpt_5\.safetensors, step_5\.pt"):
        discover_checkpoints(tmp_path)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle2", "pickle4", "torch.save"])
def test_pickle_that_runs_code_is_refused_and_never_executed(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = {"w": _Payload(str(marker))}
    if writer == "torch.save":
        torch.save(payload, tmp_path / "step_1.pt")
    else:
        with open(tmp_path / "step_1.pt", "wb") as handle:
            pickle.dump(payload, handle, protocol=int(writer[-1]))
    (found,) = discover_checkpoints(tmp_path)
    with pytest.raises(CheckpointError, match="refused: this pickle needs arbitrary Python objects"):
        load_checkpoint(found)
    assert not marker.exists()


def test_non_finite_weights_are_an_error(tmp_path):
    torch.save({"w": torch.tensor([1.0, float("nan")])}, tmp_path / "step_1.pt")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(discover_checkpoints(tmp_path)[0])


@pytest.mark.parametrize("content, match", [
    (b"", r"incomplete \(step_1.pt is empty\), and it is not being written any more"),
    (b"\x00garbage" * 10, "not a readable PyTorch checkpoint"),
])
def test_unreadable_pickles_are_errors(tmp_path, content, match):
    (tmp_path / "step_1.pt").write_bytes(content)
    age(tmp_path / "step_1.pt")
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(discover_checkpoints(tmp_path)[0])


@pytest.mark.parametrize("keep, match", [
    (5000, r"incomplete \(step_1.safetensors holds 5000 of its 40\d+ bytes\)"),
    (b"not json", r"not a safetensors file \(corrupt: its header is not JSON"),
    (b"{notjson", "not a readable safetensors file"),
])
def test_truncated_or_corrupt_safetensors_is_an_error(tmp_path, keep, match):
    path = tmp_path / "step_1.safetensors"
    save_file({"w": torch.randn(100, 100)}, str(path))
    corrupt = isinstance(keep, bytes)
    path.write_bytes(b"\x08" + bytes(7) + keep + bytes(64) if corrupt else path.read_bytes()[:keep])
    age(path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(discover_checkpoints(tmp_path)[0])


def test_tutorial_checkpoint_with_tensors_beside_the_state_dict(tmp_path):
    """PyTorch's "saving a general checkpoint" recipe: the state dict is nested, a loss tensor lies beside it."""
    states = train_states([3])
    torch.save({"model_state_dict": states[3], "optimizer_state_dict": {"state": {}, "param_groups": []},
                "step": 3, "loss": torch.tensor(0.5)}, tmp_path / "ckpt.pt")
    [ckpt] = discover_checkpoints(tmp_path)
    state = load_checkpoint(ckpt)
    assert ckpt.step == 3 and set(state) == set(states[3])


def test_numpy_step_is_read_as_plain_data(tmp_path):
    import numpy as np

    torch.save({"state_dict": train_states([0])[0], "step": np.int64(40)}, tmp_path / "weights.pt")
    [ckpt] = discover_checkpoints(tmp_path)
    assert ckpt.step == 40 and load_checkpoint(ckpt)


@pytest.mark.parametrize("save_last", [False, True])
def test_folder_of_step_files_is_a_run_not_shards(tmp_path, save_last):
    states = train_states([0, 5])
    logs = tmp_path / "version_0" / "checkpoints"
    logs.mkdir(parents=True)
    for step in (0, 5):
        torch.save({"state_dict": states[step], "global_step": step}, logs / f"epoch={step}-step={step}.ckpt")
    if save_last:  # Lightning's ModelCheckpoint(save_last=True): a copy of the newest
        torch.save({"state_dict": states[5], "global_step": 5}, logs / "last.ckpt")
    (tmp_path / "version_0" / "hparams.yaml").write_text("lr: 0.1\n")
    found = discover_checkpoints(tmp_path)
    assert [(c.step, c.name) for c in found] == [(0, "version_0/checkpoints/epoch=0-step=0.ckpt"),
                                                  (5, "version_0/checkpoints/epoch=5-step=5.ckpt")]

    save_file(states[0], str(tmp_path / "version_0" / "step_9.safetensors"))
    with pytest.raises(CheckpointError, match="checkpoints: holds [23] weight files that are not shards"):
        discover_checkpoints(tmp_path / "version_0")


def test_real_shards_are_merged_into_one_checkpoint(tmp_path):
    state = train_states([7])[7]
    folder = tmp_path / "checkpoint-7"
    folder.mkdir()
    keys = sorted(state)
    save_file({k: state[k] for k in keys[:2]}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in keys[2:]}, str(folder / "model-00002-of-00002.safetensors"))
    [ckpt] = discover_checkpoints(tmp_path)
    assert ckpt.step == 7 and ckpt.format == "safetensors (2 shards)" and set(load_checkpoint(ckpt)) == set(keys)


def test_lightning_last_copy_is_dropped_when_its_step_is_saved(tmp_path):
    states = train_states([0, 5])
    for step in (0, 5):
        torch.save({"state_dict": states[step], "global_step": step}, tmp_path / f"epoch={step}-step={step}.ckpt")
    torch.save({"state_dict": states[5], "global_step": 5}, tmp_path / "last.ckpt")
    assert [c.name for c in discover_checkpoints(tmp_path)] == ["epoch=0-step=0.ckpt", "epoch=5-step=5.ckpt"]


def test_trainer_output_dir_skips_the_final_model_saved_beside_the_checkpoints(make_run):
    run = make_run("hf", steps=(0, 5))
    save_file(train_states([5])[5], str(run / "model.safetensors"))  # trainer.save_model(output_dir)
    (run / "config.json").write_text("{}")
    assert [c.name for c in discover_checkpoints(run, exclude={run / "probes.safetensors"})] == ["checkpoint-0", "checkpoint-5"]
    (run / "trainer_state.json").write_text('{"global_step": 5}')  # the final model is checkpoint-5's state
    assert [c.name for c in discover_checkpoints(run, exclude={run / "probes.safetensors"})] == ["checkpoint-0", "checkpoint-5"]


def test_trainer_final_model_past_the_last_checkpoint_is_the_newest_checkpoint(make_run):
    run = make_run("hf", steps=(0, 5))
    save_file(train_states([9])[9], str(run / "model.safetensors"))
    (run / "trainer_state.json").write_text('{"global_step": 9, "log_history": []}')
    found = discover_checkpoints(run, exclude={run / "probes.safetensors"})
    assert [(c.step, c.name) for c in found] == [(0, "checkpoint-0"), (5, "checkpoint-5"), (9, "model.safetensors")]
