"""analyze with the robustness, weights, gradient and llc groups: options, metadata, per-checkpoint columns,
a run without probe data, and the delayed-robustness run trained by tests/data/delayed_robustness/make_run.py."""

import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import tiny_mlp, train_states
from grokmon import analyze
from grokmon.cli import app
from grokmon.errors import ConfigError
from grokmon.metrics.weights import weight_values
from grokmon.results import read_results

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = dict(points=12, lc_directions=2, device="cpu")
DELAYED = Path(__file__).parent / "data" / "delayed_robustness"


def test_default_run_has_robustness_gradient_and_weights_on_every_split_row(make_run):
    run = make_run(steps=(0, 20))
    frame, metadata = analyze(run, **FAST), read_results(run / "grokmon.parquet")[1]
    for step, state in train_states([0, 20]).items():
        rows = frame[frame["step"] == step]
        model = tiny_mlp()
        model.load_state_dict(state)
        expected = weight_values(model)
        assert list(rows["weight_norm"]) == [pytest.approx(expected["weight_norm"], rel=1e-6)] * 3
        assert list(rows["weight_entropy"]) == [pytest.approx(expected["weight_entropy"], rel=1e-6)] * 3
    labelled, unlabelled = frame[frame["split"] != "random"], frame[frame["split"] == "random"]
    assert labelled[["robust_accuracy", "noise_accuracy", "grad_norm", "grad_entropy"]].notna().all().all()
    assert unlabelled[["robust_accuracy", "grad_norm"]].isna().all().all() and "llc" in frame
    assert frame["llc"].isna().all() and (labelled["robust_accuracy"] <= labelled["accuracy"] + 1e-12).all()
    assert "llc" not in metadata["config"]["metrics"]  # the rest of the metadata: test_analyze.py


def test_weights_alone_need_no_probe_data_and_never_take_a_probe_file_for_a_checkpoint(make_run):
    run = make_run(steps=(0, 5))
    alone = make_run(steps=(0, 5), name="no-probes")
    (alone / "probes.safetensors").unlink()
    for folder in (run, alone):
        frame = analyze(folder, metrics="weights", device="cpu")
        assert list(frame["split"]) == ["train", "train"] and list(frame["n_points"]) == [0, 0]
        assert frame["weight_norm"].notna().all() and set(frame["status"]) == {"ok"}
        assert "accuracy" not in frame or frame["accuracy"].isna().all()
        assert read_results(folder / "grokmon.parquet")[1]["probe_hash"] is None


def test_attack_and_noise_options_come_from_flags_or_the_manifest(make_run):
    run = make_run(steps=(0, 20))
    (run / "grokmon.toml").write_text('robust_eps = 0.5\nnoise_sigma = "200%"\nrobust_steps = 3\n')
    analyze(run, metrics="accuracy,robustness", **FAST)
    metadata = read_results(run / "grokmon.parquet")[1]
    x_train = load_file(str(run / "probes.safetensors"))["x_train"]
    assert metadata["robust_eps_absolute"] == 0.5 and metadata["config"]["robust_steps"] == 3
    assert metadata["noise_sigma_absolute"] == pytest.approx(2 * float(x_train.max() - x_train.min()))
    (run / "grokmon.toml").write_text("robust_steps = 0\n")
    with pytest.raises(ConfigError, match="robust_steps to be a positive integer"):
        analyze(run, **FAST)


@pytest.mark.parametrize("args", [["--robust-eps", "-1"], ["--noise-sigma", "big"], ["--robust-steps", "0"]])
def test_bad_attack_flags_are_usage_errors(make_run, args):
    result = CliRunner().invoke(app, ["analyze", str(make_run(steps=(0,))), *args])
    assert result.exit_code == 2


def test_llc_without_devinterp_is_one_line_naming_the_extra(make_run, monkeypatch):
    for name in [m for m in sys.modules if m == "devinterp" or m.startswith("devinterp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "devinterp", None)
    args = ["analyze", str(make_run(steps=(0,))), "--metrics", "llc", "--device", "cpu", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr.strip() == ("grokmon: error: the llc metric needs devinterp; install it with "
                                     "pip install 'grokmon[devinterp]'")


def test_llc_on_a_run_stands_on_every_split_row_with_its_chain_health(make_run):
    pytest.importorskip("devinterp")
    from grokmon.metrics import LLCSettings

    run = make_run(steps=(20,))
    frame = analyze(run, metrics="weights,llc", **FAST)
    assert frame["llc"].nunique() == 1 and frame["llc_chain_ok"].tolist() == [True] * 3
    assert read_results(run / "grokmon.parquet")[1]["llc_sampler"] == LLCSettings().to_dict()


def test_robust_accuracy_rises_long_after_test_accuracy_settled_on_the_digits_run(tmp_path):
    frame = analyze(DELAYED, tmp_path / "digits.parquet", metrics="accuracy,robustness", robust_eps="5%",
                    points=200, device="cpu")
    test = frame[frame["split"] == "test"].set_index("step")
    steps = list(test.index)
    settled = next(s for s in steps if (test.loc[s:, "accuracy"] > test["accuracy"].max() - 0.02).all())
    after = test.loc[settled:]
    assert np.ptp(after["accuracy"]) < 0.03 and settled < 1000  # test accuracy flat from early on
    low = after["robust_accuracy"].idxmin()
    high = after.loc[low:, "robust_accuracy"].idxmax()
    rise = after.loc[high, "robust_accuracy"] - after.loc[low, "robust_accuracy"]
    noise = np.hypot(after.loc[high, "robust_accuracy_se"], after.loc[low, "robust_accuracy_se"])
    assert low > 2 * settled and high > 4 * low and rise > 4 * noise  # robustness grows long after generalising
