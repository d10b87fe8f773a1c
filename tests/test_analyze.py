"""End to end: tiny runs of every layout in, the Parquet table and its metadata out; resume; the CLI."""

import json
import math
import re
import os
import shutil

import pandas as pd
import pyarrow.parquet as pq
from safetensors.torch import load_file, save_file
import pytest
import torch
from typer.testing import CliRunner

from conftest import CLASSES, age, train_states
from grokmon import analyze
from grokmon.cli import app
from grokmon.errors import ConfigError, ResultsError
from grokmon.results import read_results

LAYOUTS = ["safetensors", "pt", "lightning", "hf", "hf-bin", "nested", "model-key", "ddp", "compiled"]
FAST = dict(points=16, lc_directions=3, device="cpu")
CLI_FAST = ["--points", "4", "--lc-directions", "2", "--device", "cpu"]


def _accuracy(state, x, y):
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, CLASSES))
    model.load_state_dict(state)
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_one_row_per_checkpoint_and_split(make_run, layout):
    run = make_run(layout, steps=(20, 0, 5))
    frame = analyze(run, **FAST)
    assert list(frame["step"]) == [0, 0, 0, 5, 5, 5, 20, 20, 20]
    assert list(frame["split"]) == ["train", "test", "random"] * 3
    assert set(frame["status"]) == {"ok"} and frame["error"].isna().all()
    assert (frame["n_points"] == 16).all()
    on_disk, metadata = read_results(run / "grokmon.parquet")
    pd.testing.assert_frame_equal(on_disk.drop(columns=["lc_layers", "lc_layers_se"]),
                                  frame.drop(columns=["lc_layers", "lc_layers_se"]), check_dtype=False)
    assert metadata["config"]["points"] == 16 and metadata["model"]["kind"] == "mlp"


def test_accuracy_matches_the_trained_weights(make_run):
    run = make_run("pt", steps=(0, 30))
    frame = analyze(run, points=1000, metrics="accuracy", device="cpu")
    from safetensors.torch import load_file

    probes = load_file(str(run / "probes.safetensors"))
    states = train_states([0, 30])
    for step in (0, 30):
        for split in ("train", "test"):
            row = frame[(frame.step == step) & (frame.split == split)].iloc[0]
            assert row["accuracy"] == pytest.approx(_accuracy(states[step], probes[f"x_{split}"], probes[f"y_{split}"]))
    random_rows = frame[frame.split == "random"]
    assert random_rows["accuracy"].isna().all()
    assert "centroid_alignment" in frame and frame["centroid_alignment"].isna().all()


def test_metadata_document(make_run):
    from grokmon import __version__
    from grokmon.analysis.session import METRICS_VERSION
    from grokmon.inputs.probes import tensors_sha256
    from grokmon.results import SCHEMA_VERSION

    run = make_run()
    analyze(run, **FAST)
    metadata = json.loads(pq.read_schema(run / "grokmon.parquet").metadata[b"grokmon"])
    probes = run / "probes.safetensors"
    x_train = load_file(str(probes))["x_train"].double()
    assert metadata["grokmon_version"] == __version__ and metadata["torch_version"] == torch.__version__
    assert (metadata["schema_version"], metadata["metrics_version"]) == (SCHEMA_VERSION, METRICS_VERSION)
    assert metadata["config"] == {
        "model": "mlp", "model_kwargs": {}, "activation": "relu", "embedding": None, "position": None,
        "data": None, "points": 16,
        "metrics": ["accuracy", "centroid", "jacobian", "lc", "robustness", "weights", "gradient"],
        "lc_directions": 3, "lc_radius": "50%", "robust_eps": "1%", "robust_steps": 10, "noise_sigma": "5%",
        "seed": 0, "dtype": "float32", "phases": {}, "weights": None, "steps": {}}
    assert metadata["model"] == {"kind": "mlp", "activation": "relu", "parameters": 6 * 8 + 8 + 8 * 3 + 3,
                                 "layers": [{"in": 6, "out": 8, "bias": True}, {"in": 8, "out": 3, "bias": True}]}
    assert metadata["device"] == "cpu" and metadata["checkpoint_dir"] == str(run.resolve())
    assert metadata["probe_file"] == str(probes.resolve())
    assert metadata["probe_hash"] == tensors_sha256(load_file(str(probes)))  # of the tensors, not the file's bytes
    assert metadata["probe_points"] == {"train": 16, "test": 16, "random": 16}
    assert (metadata["embedding"], metadata["input_dim"]) == (None, 6)
    radius = 0.5 * float(x_train.norm(dim=1).quantile(0.5))
    assert metadata["lc_radius_absolute"] == pytest.approx(radius, rel=1e-9)
    assert metadata["lc_directions_used"] == 3
    value_range = float(x_train.max() - x_train.min())
    assert metadata["robust_eps_absolute"] == pytest.approx(0.01 * value_range, rel=1e-9)
    assert metadata["noise_sigma_absolute"] == pytest.approx(0.05 * value_range, rel=1e-9)
    assert metadata["llc_sampler"] is None


def test_resume_computes_only_new_checkpoints(make_run):
    run = make_run("pt", steps=(0, 5))
    events = []
    first = analyze(run, progress=events.append, **FAST)
    assert [e.step for e in events] == [None, 0, 5]
    for step, state in train_states([40, 60]).items():
        torch.save(state, run / f"step_{step}.pt")
    events.clear()
    second = analyze(run, progress=events.append, **FAST)
    assert [e.step for e in events] == [None, 40, 60]
    assert events[0].done == 2 and events[0].total == 4
    assert list(second["step"].unique()) == [0, 5, 40, 60]
    kept = second[second.step.isin([0, 5])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, first, check_dtype=False)
    events.clear()
    analyze(run, progress=events.append, **FAST)
    assert [e.step for e in events] == [None]


def test_changed_configuration_is_refused_unless_overwrite(make_run):
    run = make_run()
    analyze(run, **FAST)
    with pytest.raises(ConfigError, match=r"another configuration \(points: 16 -> 8\); to add to them, pass the "
                                          r"options they were made with \(--points 16\) or write them in the "
                                          r"manifest; pass --overwrite"):
        analyze(run, **{**FAST, "points": 8})
    frame = analyze(run, overwrite=True, **{**FAST, "points": 8})
    assert (frame["n_points"] == 8).all()


def test_other_probe_data_is_named_in_words(make_run):
    """Probe tensors rewritten in place: the refusal said only 'probe_hash: '9679...' -> '605a...''."""
    run = make_run()
    analyze(run, **FAST)
    probes = run / "probes.safetensors"
    tensors = load_file(str(probes))
    save_file({**tensors, "x_test": tensors["x_test"] + 0.01}, str(probes))
    with pytest.raises(ConfigError) as refused:
        analyze(run, **{**FAST, "points": 8})
    message = str(refused.value)
    assert "probe_hash" not in message
    assert re.search(rf"points: 16 -> 8; probe data: other tensors \({re.escape(str(probes.resolve()))}, sha256 "
                     r"[0-9a-f]{8} -> [0-9a-f]{8}\)\); to add to them, pass the options they were made with "
                     rf"\(--points 16\) and the probe data they were made from \({re.escape(str(probes.resolve()))} "
                     r"as it was when they were made: it has changed since\)", message), message


def test_results_of_another_metrics_version_are_not_mixed_in(make_run, monkeypatch):
    import grokmon.analysis.store as store

    run = make_run()
    analyze(run, **FAST)
    monkeypatch.setattr(store, "METRICS_VERSION", store.METRICS_VERSION + 1)
    with pytest.raises(ConfigError, match=r"written by grokmon .* metric values differ .*--overwrite"):
        analyze(run, **FAST)


def test_manifest_supplies_options_and_flags_win(make_run):
    run = make_run()
    (run / "grokmon.toml").write_text('model = "mlp"\nactivation = "relu"\npoints = 7\nmetrics = ["accuracy"]\n')
    frame = analyze(run, device="cpu")
    assert (frame["n_points"] == 7).all() and frame["centroid_norm"].isna().all()
    frame = analyze(run, run / "other.parquet", points=9, device="cpu")
    assert (frame["n_points"] == 9).all()


@pytest.mark.parametrize(("line", "match"), [
    ("model_kwargs = 5", "model_kwargs to be a table"), ("metrics = 5", "metrics to be a list"),
    ("data = 5", "data to be a file path"), ("model = 5", "model to be a string"),
    ("points = \"many\"", "points to be an integer"), ("[phases]\nnot_a_threshold = 3", r"\[phases\].*not_a_threshold"),
    ("[phases]\nslope_sigma = -3", r"\[phases\].*slope_sigma to be > 0"),
    ("activation = \"swish\"", "activation to be one of relu"), ("dtype = \"float16\"", "dtype to be float32"),
    ("lc_radius = \"abc\"", "lc_radius to be a positive"), ("metrics = []", "metrics to be a comma"),
    ("model_kwargs = \"{bad\"", "model_kwargs to be a JSON object"), ("points = 0", "points to be a positive"),
    ("seed = -1", "seed to be a non-negative integer"),
])
def test_manifest_values_of_the_wrong_kind_are_one_line_errors(make_run, line, match):
    run = make_run()
    (run / "grokmon.toml").write_text(line + "\n")
    with pytest.raises(ConfigError, match=f"grokmon.toml: .*{match}"):
        analyze(run, **FAST)


def test_phases_follow_the_manifest_as_it_is_now(make_run):
    from grokmon import phases
    from grokmon.inputs.config import phase_thresholds
    from grokmon.results import read_metadata

    run = make_run(steps=tuple(range(0, 60, 10)))
    results = run / "grokmon.parquet"

    def reason() -> str:  # as `grokmon phases` resolves them: the manifest now, else the stored copy
        return phases(results, phase_thresholds(read_metadata(results))).reason

    (run / "grokmon.toml").write_text("[phases]\nmin_checkpoints = 50\n")
    analyze(run, **FAST)
    assert "min_checkpoints=50" in reason()
    assert "min_checkpoints=50" not in phases(results).reason  # the Python API reads no manifest: the defaults
    (run / "grokmon.toml").write_text("[phases]\nmin_checkpoints = 1000\n")
    assert "min_checkpoints=1000" in reason()
    (run / "grokmon.toml").write_text("[phases]\nslope_sigma = -1\n")
    with pytest.raises(ConfigError, match="grokmon.toml: \\[phases\\]"):
        reason()
    (run / "grokmon.toml").write_text('model = "unterminated\n[phases]\nmin_checkpoints = 1000\n')
    with pytest.raises(ConfigError, match="grokmon.toml: not valid TOML"):  # as analyze says: not the stored copy
        reason()
    (run / "grokmon.toml").write_text("points = 1.5\n[phases]\nmin_checkpoints = 7\n")
    assert "min_checkpoints=7" in reason()  # other keys are analyze's business
    (run / "grokmon.toml").write_text("[phases]\nfitted_accuracy = true\n")
    with pytest.raises(ConfigError, match="fitted_accuracy to be a finite float"):
        reason()
    (run / "grokmon.toml").unlink()
    assert "min_checkpoints=" not in reason()  # the manifest deleted: the defaults (5 checkpoints are enough)
    moved = run.with_name(run.name + "-moved")
    run.rename(moved)
    results = moved / "grokmon.parquet"
    assert "min_checkpoints=50" in reason()  # the directory analysed from is gone: the copy stored at analysis


def test_a_moved_run_not_analysed_again_says_its_manifest_is_not_read(make_run, tmp_path):
    """The run folder moved whole, its manifest edited, not analysed again: the stored [phases] decide (the folder it
    was analysed from is gone), and a note says so where it had said nothing."""
    run = make_run(steps=tuple(range(0, 60, 10)))
    (run / "grokmon.toml").write_text("[phases]\nmin_checkpoints = 50\n")
    analyze(run, **FAST)
    moved = tmp_path / "moved"
    shutil.move(str(run), moved)
    (moved / "grokmon.toml").write_text("[phases]\nmin_checkpoints = 40\n")
    result = runner.invoke(app, ["phases", str(moved / "grokmon.parquet")])
    assert result.exit_code == 0 and "min_checkpoints=50" in result.stdout
    assert (f"grokmon: note: {moved / 'grokmon.toml'} is not read: these results were analysed in {run.resolve()}, "
            "which is gone, so the [phases] stored with them decide (min_checkpoints=50)") in result.stderr
    analyze(moved, **FAST)  # analysed where it is now: its own manifest, no note
    result = runner.invoke(app, ["phases", str(moved / "grokmon.parquet")])
    assert "min_checkpoints=40" in result.stdout and "is not read" not in result.stderr


def test_a_copied_run_not_analysed_again_says_its_manifest_is_not_read(make_run, tmp_path):
    """The run folder copied, the copy's manifest edited (even broken), not analysed again: the original's manifest
    decides, as the results say where they were analysed; a note says so where it had said nothing (a new user)."""
    run = make_run(steps=tuple(range(0, 60, 10)))
    (run / "grokmon.toml").write_text("[phases]\nmin_checkpoints = 50\n")
    analyze(run, **FAST)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for text in ("[phases]\nmin_checkpoints = 40\n", "[phases\nnot toml"):
        (copy / "grokmon.toml").write_text(text)
        result = runner.invoke(app, ["phases", str(copy / "grokmon.parquet")])
        assert result.exit_code == 0 and "min_checkpoints=50" in result.stdout
        assert (f"grokmon: note: {copy / 'grokmon.toml'} is not read: these results were analysed in {run.resolve()}, "
                "which is still there, so its manifest's [phases] decide (min_checkpoints=50); run `grokmon analyze "
                f"{copy}` once to judge them by this manifest") in " ".join(result.stderr.split())


def test_a_copied_run_analysed_in_its_new_folder_is_judged_by_its_own_manifest(make_run, tmp_path):
    from grokmon import phases
    from grokmon.inputs.config import phase_thresholds
    from grokmon.results import read_metadata

    run = make_run(steps=tuple(range(0, 60, 10)))
    analyze(run, **FAST)
    copy = tmp_path / "copied"
    shutil.copytree(run, copy)
    (copy / "grokmon.toml").write_text("[phases]\nmin_checkpoints = 50\n")
    events = []
    analyze(copy, progress=events.append, **FAST)  # nothing to measure: the rows are resumed
    assert events[0].done == events[0].total
    metadata = read_metadata(copy / "grokmon.parquet")
    assert metadata["checkpoint_dir"] == str(copy.resolve()) and metadata["config"]["phases"] == {"min_checkpoints": 50}
    assert "min_checkpoints=50" in phases(copy / "grokmon.parquet", phase_thresholds(metadata)).reason
    assert read_metadata(run / "grokmon.parquet")["checkpoint_dir"] == str(run.resolve())


def test_factory_model_with_kwargs(make_run, tmp_path):
    run = make_run("nested")
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "def build(hidden):\n    return nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 3))\n"
    )
    frame = analyze(run, model=f"{tmp_path / 'net.py'}:build", model_kwargs='{"hidden": 8}', **FAST)
    assert set(frame["status"]) == {"ok"}
    assert read_results(run / "grokmon.parquet")[1]["model"]["kwargs"] == {"hidden": 8}


def test_bad_checkpoint_among_good_ones_gets_an_error_row(make_run):
    run = make_run("pt", steps=(0, 5, 9))
    (run / "step_5.pt").write_bytes(b"truncated")
    frame = analyze(run, **FAST)
    bad = frame[frame.step == 5]
    assert set(bad["status"]) == {"error"} and bad["error"].str.contains("step_5.pt").all()
    assert set(frame[frame.step != 5]["status"]) == {"ok"}
    assert math.isnan(bad["accuracy"].iloc[0])


runner = CliRunner()


def test_cli_analyze_then_info(make_run):
    run = make_run("hf", steps=(0, 5))
    result = runner.invoke(app, ["analyze", str(run), "--points", "8", "--lc-directions", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "6 rows, 2 checkpoints, 0 failed" in result.stdout
    result = runner.invoke(app, ["info", str(run)])
    assert result.exit_code == 0
    assert "checkpoint-5" in result.stdout and "6x8 -> 8x3" in result.stdout


@pytest.mark.parametrize("setup, args, message", [
    (lambda run: (run / "grokmon.toml").write_text('model = "conv"\n'), [],
     "grokmon.toml: Expected model to be mlp, file.py:function or package.module:function, but got 'conv'"),
    (lambda run: (run / "probes.safetensors").unlink(), [], "no probe data"),
    (lambda run: (run / "step_0.pt").rename(run / "final.pt"), [], "no training step"),
    (lambda run: None, ["--device", "cuda:7"], "--device cuda:7"),
])
def test_cli_user_errors_are_one_line_and_exit_1(make_run, setup, args, message):
    run = make_run("pt", steps=(0, 5))
    setup(run)
    result = runner.invoke(app, ["analyze", str(run), "--quiet", *args])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grokmon: error:") and message in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [
    ["--metrics", "centroid,speed"], ["--points", "0"], ["--device", "bogus"], ["--dtype", "float16"],
    ["--lc-radius", "abc"], ["--activation", "swish"], ["--model-kwargs", "notjson"], ["--lc-directions", "0"],
    ["--model", "conv"], ["--model", "bad"], ["--model", "m.py:"], ["--model", "net.py"], ["--model", "a b:build"],
    ["-o", "results.csv"],  # as `report -o run.txt`: a name wrong on its face (it exited 1)
])
def test_cli_bad_option_values_are_usage_errors_exit_2(make_run, args):
    run = make_run("pt", steps=(0, 5))
    result = runner.invoke(app, ["analyze", str(run), "--quiet", *args])
    assert result.exit_code == 2, result.output
    assert args[0] in result.output and "Traceback" not in result.output
    assert not (run / "grokmon.parquet").exists()


def test_the_api_refuses_a_results_name_that_is_not_parquet(make_run):
    run = make_run("pt", steps=(0, 5))
    with pytest.raises(ResultsError, match="results.csv: results are a Parquet file; give -o a name ending in .parquet"):
        analyze(run, run / "results.csv", **FAST)
    assert not (run / "results.csv").exists()


def test_cli_debug_shows_the_traceback_of_a_failed_checkpoint(make_run):
    run = make_run("pt", steps=(0, 5))
    (run / "step_0.pt").write_bytes(b"")
    age(run / "step_0.pt")  # an hour old: broken, not being written
    result = runner.invoke(app, ["analyze", str(run), "--quiet", "--debug", *CLI_FAST])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "step_0.pt is empty" in result.stderr
    quiet = runner.invoke(app, ["analyze", str(run), "--quiet", *CLI_FAST])
    assert "Traceback" not in quiet.stderr


def test_cli_failed_checkpoint_exits_1_after_writing_the_rest(make_run):
    run = make_run("pt", steps=(0, 5))
    (run / "step_0.pt").write_bytes(b"")
    age(run / "step_0.pt")  # an hour old: broken, not being written
    result = runner.invoke(app, ["analyze", str(run), "--quiet", "--points", "4", "--lc-directions", "2"])
    assert result.exit_code == 1
    assert "step 0 (step_0.pt)" in result.stderr and "step_0.pt is empty" in result.stderr
    frame, _ = read_results(run / "grokmon.parquet")
    assert list(frame.groupby("step")["status"].first()) == ["error", "ok"]


def test_default_lc_directions_adapt_to_small_inputs_but_explicit_ones_must_fit(make_run):
    run = make_run(steps=(0,))
    analyze(run, points=8, device="cpu")
    assert read_results(run / "grokmon.parquet")[1]["lc_directions_used"] == 6
    with pytest.raises(ConfigError, match="Expected --lc-directions to be between 1 and the input dimension 6"):
        analyze(run, run / "b.parquet", points=8, lc_directions=25, device="cpu")


def test_results_file_gets_the_permissions_of_a_plain_write(make_run):
    run = make_run()
    old = os.umask(0o022)
    try:
        analyze(run, **FAST)
    finally:
        os.umask(old)
    assert (run / "grokmon.parquet").stat().st_mode & 0o777 == 0o644

    os.chmod(run / "grokmon.parquet", 0o640)
    analyze(run, overwrite=True, **FAST)
    assert (run / "grokmon.parquet").stat().st_mode & 0o777 == 0o640


WIDE_MODEL = """
from torch import nn

def mlp(width=8):
    return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3))

def cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
"""


def test_a_model_that_fits_no_checkpoint_is_one_line_and_the_fix_needs_no_overwrite(make_run):
    run = make_run("pt", steps=(0, 5, 20))
    (run / "nets.py").write_text(WIDE_MODEL)
    args = ["analyze", str(run), "--quiet", "--points", "4", "--lc-directions", "2", "--model", "nets.py:mlp"]
    result = runner.invoke(app, [*args, "--model-kwargs", '{"width": 16}'])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grokmon: error: step_0.pt: weight shapes do not fit the model")
    assert "check --model / --model-kwargs" in lines[0]
    assert not (run / "grokmon.parquet").exists()  # told before anything was measured: no file of failures
    result = runner.invoke(app, [*args, "--model-kwargs", '{"width": 8}'])
    assert result.exit_code == 0, result.output
    assert "9 rows, 3 checkpoints, 0 failed" in result.stdout


def test_a_wrong_model_is_blamed_on_the_keys_not_on_the_probes(make_run):
    run = make_run("pt", steps=(0, 5))
    (run / "nets.py").write_text(WIDE_MODEL)
    result = runner.invoke(app, ["analyze", str(run), "--quiet", "--points", "4", "--model", "nets.py:cnn"])
    assert result.exit_code == 1
    assert "weights do not fit the model: missing" in result.stderr and "probe" not in result.stderr


@pytest.mark.parametrize("labels, message", [
    (torch.full((40,), 7), r"y_train does not fit the model: Expected class labels in \[0, 3\)"),
    (torch.randn(40), r"y_train does not fit the model: Expected float targets with 3 value.*got shape \(4,\)$"),
    (torch.full((40,), 2.0), r"got shape \(4,\) \(class labels must be integers: store y as torch.long\)"),
])
def test_labels_that_do_not_fit_the_model_are_one_line_naming_the_probe_file(make_run, labels, message):
    from safetensors.torch import load_file, save_file

    run = make_run("pt", steps=(0, 5))
    probes = load_file(str(run / "probes.safetensors"))
    probes["y_train"] = labels
    save_file(probes, str(run / "probes.safetensors"))
    result = runner.invoke(app, ["analyze", str(run), "--quiet", "--points", "4"])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "probes.safetensors: " in line
    assert re.search(message, line), line


def test_a_bad_label_outside_the_measured_points_is_found_too(make_run):
    from safetensors.torch import load_file, save_file

    run = make_run("pt", steps=(0, 5))
    probes = load_file(str(run / "probes.safetensors"))
    measured = torch.randperm(len(probes["x_train"]), generator=torch.Generator().manual_seed(0))[:4]
    outside = next(i for i in range(len(probes["x_train"])) if i not in measured)  # --points 4 never reads it
    probes["y_train"][outside] = 7
    save_file(probes, str(run / "probes.safetensors"))
    result = runner.invoke(app, ["analyze", str(run), "--quiet", "--points", "4"])
    assert result.exit_code == 1 and not (run / "grokmon.parquet").exists()
    assert re.search(r"y_train does not fit the model: Expected class labels in \[0, 3\) .* to 7$",
                     result.stderr.strip())


DICT_MODEL = """
from torch import nn

class Wrapped(nn.Sequential):
    def __init__(self, kind):
        super().__init__(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        self.kind = kind

    def forward(self, x):
        out = super().forward(x)
        return {"loss": None, "logits": out} if self.kind == "dict" else (out, x)

def plain():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

def wrapped(kind):
    return Wrapped(kind)
"""


@pytest.mark.parametrize("kind", ["dict", "tuple"])
def test_models_returning_a_dict_or_tuple_are_measured_on_their_logits(make_run, kind):
    run = make_run("pt", steps=(0, 5))
    (run / "nets.py").write_text(DICT_MODEL)
    plain = analyze(run, run / "plain.parquet", model="nets.py:plain", **FAST)
    wrapped = analyze(run, run / "wrapped.parquet", model="nets.py:wrapped", model_kwargs={"kind": kind}, **FAST)
    assert (wrapped["status"] == "ok").all()
    for column in ("accuracy", "loss", "centroid_alignment", "jacobian_erank", "lc"):
        assert wrapped[column].tolist() == pytest.approx(plain[column].tolist(), rel=1e-6, nan_ok=True), column


@pytest.mark.parametrize("dropped, note, named", [
    (("y_test",), "labels x_train but not x_test (no y_test): accuracy is measured on train only",
     "this table has it on train only (the probe data had no y_test;"),
    (("x_test", "y_test"), None, "this table has it on train only (the probe data had no x_test: no test split;"),
])
def test_labels_on_the_train_split_only_are_noted_and_named_when_accuracy_mode_is_asked_for(make_run, dropped, note,
                                                                                           named):
    """Labels left out of x_test: analyze says accuracy is on train only (phases will use geometry); no x_test at all
    is a documented choice (no note). `phases --mode accuracy` names the split that has accuracy and why the other
    lacks it, instead of "none". Without accuracy in --metrics: no note."""
    from safetensors.torch import load_file, save_file

    run = make_run("pt", steps=(0, 5, 20))
    probes = load_file(str(run / "probes.safetensors"))
    for key in dropped:
        del probes[key]
    save_file(probes, str(run / "probes.safetensors"))
    result = runner.invoke(app, ["analyze", str(run), "--quiet", "--points", "4"])
    assert result.exit_code == 0, result.output
    said = result.stdout + result.stderr
    assert (note in said) if note else ("accuracy is measured" not in said)  # no test split: a documented choice
    shown = runner.invoke(app, ["info", str(run)])
    assert shown.exit_code == 0 and ((note in shown.stdout) if note else ("accuracy is measured" not in shown.stdout))
    phases = runner.invoke(app, ["phases", str(run / "grokmon.parquet"), "--mode", "accuracy"])
    assert phases.exit_code == 1
    [line] = phases.stderr.strip().splitlines()
    assert named in line, line
    geometry = runner.invoke(app, ["analyze", str(run), "--quiet", "--points", "4", "--metrics", "lc", "-o",
                                   str(run / "lc.parquet")])
    assert geometry.exit_code == 0 and "accuracy is measured" not in geometry.stdout + geometry.stderr


@pytest.mark.parametrize("radius, said", [(None, None), ("150%", None), ("500%", "reaches far past the probe points"),
                                          ("0.05%", "holds almost no neuron's boundary"),
                                          ("ten medians", "reaches far past the probe points")])
def test_an_lc_radius_far_from_the_probe_points_scale_is_noted(make_run, radius, said):
    """The note compares the radius, absolute or a percentage, with the median norm of the train probes; the
    default and radii up to twice that norm are not noted."""
    from safetensors.torch import load_file

    run = make_run("pt", steps=(0, 5))
    median = load_file(str(run / "probes.safetensors"))["x_train"].flatten(1).norm(dim=1).median().item()
    args = [] if radius is None else ["--lc-radius", f"{10 * median:.6g}" if radius == "ten medians" else radius]
    result = runner.invoke(app, ["analyze", str(run), "--quiet", "--points", "4", "--metrics", "lc", *args])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "lc_radius" in line]
    if said is None:
        assert not notes, notes
    else:
        [line] = notes
        assert line.startswith("grokmon: note: lc_radius ") and said in line and "median train-probe norm" in line


def test_a_second_analyze_of_the_same_results_waits_and_measures_what_the_first_left(make_run, tmp_path):
    """Two analyze at once on one results file (a CI hook while `watch` runs) each rewrote it with its own rows, the
    last to finish winning (41 checkpoints back to 34). The second waits for the first, says so, then reads its rows."""
    import threading
    import time

    from grokmon.analysis.writer_lock import lock_path, writing

    run = make_run("pt", steps=(0, 5, 20))
    finished = tmp_path / "first.parquet"
    analyze(run, finished, **FAST)
    output = run / "grokmon.parquet"
    events, held, release = [], threading.Event(), threading.Event()

    def first_analyze():  # holds the lock as another analyze would, and writes what it measured
        with writing(output, lambda message: None):
            held.set()
            release.wait(30)
            shutil.copy(finished, output)

    holder = threading.Thread(target=first_analyze)
    holder.start()
    held.wait(30)
    second = threading.Thread(target=lambda: analyze(run, output, progress=events.append, **FAST))
    second.start()
    deadline = time.time() + 30
    while not events and time.time() < deadline:
        time.sleep(0.01)
    assert events and events[0].waiting and "another grokmon analyze (pid" in events[0].notes[0], events
    assert second.is_alive() and not output.exists()  # it waits, and writes nothing meanwhile
    release.set()
    holder.join(30)
    second.join(60)
    assert [e.step for e in events[1:]] == [None]  # the opening only: all three were in the first one's file
    assert events[1].done == 3
    assert read_results(output)[0].equals(read_results(finished)[0])
    assert lock_path(output).name == ".grokmon.parquet.lock"
