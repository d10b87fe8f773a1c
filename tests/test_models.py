import pytest
import torch
from torch import nn

from conftest import tiny_mlp
from grokmon.errors import ModelError
from grokmon.inputs.models import BuiltModel, build_from_factory, fit_state_dict, infer_mlp, load_weights


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu", "leaky_relu", "tanh"])
def test_inferred_mlp_computes_what_the_trained_network_computes(bias, activation):
    torch.manual_seed(0)
    act = {"relu": nn.ReLU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh}[activation]
    original = nn.Sequential(nn.Linear(5, 7, bias=bias), act(), nn.Linear(7, 7, bias=bias), act(), nn.Linear(7, 2, bias=bias))
    built = infer_mlp(original.state_dict(), activation)
    load_weights(built, original.state_dict(), "test")
    x = torch.randn(11, 5)
    torch.testing.assert_close(built.module(x), original(x))
    assert [layer["bias"] for layer in built.description["layers"]] == [bias] * 3
    assert [(layer["in"], layer["out"]) for layer in built.description["layers"]] == [(5, 7), (7, 7), (7, 2)]


def test_inferred_mlp_orders_layers_by_number_not_text():
    layers = [nn.Linear(4 + i, 5 + i) for i in range(12)]
    state = {f"layers.{i}.{name}": p for i, layer in enumerate(layers) for name, p in layer.state_dict().items()}
    built = infer_mlp(state, "relu")
    assert [layer["in"] for layer in built.description["layers"]] == list(range(4, 16))
    as_safetensors_gives_it = dict(sorted(state.items()))
    built = infer_mlp(as_safetensors_gives_it, "relu")
    assert [layer["in"] for layer in built.description["layers"]] == list(range(4, 16))


class Named(nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.input, self.hidden, self.output = (nn.Linear(a, b) for a, b in zip(widths, widths[1:]))

    def forward(self, x):
        return self.output(torch.relu(self.hidden(torch.relu(self.input(x)))))


@pytest.mark.parametrize("widths", [(6, 9, 5, 3), (4, 4, 4, 4)], ids=["shapes", "square"])
def test_inferred_mlp_follows_module_order_of_named_layers(widths):
    torch.manual_seed(0)
    original = Named(widths)
    built = infer_mlp(original.state_dict(), "relu")
    load_weights(built, original.state_dict(), "test")
    x = torch.randn(5, widths[0])
    torch.testing.assert_close(built.module(x), original(x))


def test_inferred_mlp_finds_the_one_chain_the_shapes_allow_in_sorted_keys():
    torch.manual_seed(0)
    original = Named((6, 9, 5, 3))
    built = infer_mlp(dict(sorted(original.state_dict().items())), "relu")  # hidden, input, output
    load_weights(built, original.state_dict(), "test")
    x = torch.randn(5, 6)
    torch.testing.assert_close(built.module(x), original(x))


def test_inferred_mlp_flattens_image_inputs():
    original = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    built = infer_mlp(original.state_dict(), "relu")
    load_weights(built, original.state_dict(), "test")
    x = torch.randn(2, 1, 4, 4)
    torch.testing.assert_close(built.module(x), original(x))


def test_not_a_chain_points_to_model_flag():
    state = {"a.weight": torch.zeros(4, 3), "b.weight": torch.zeros(2, 5)}
    with pytest.raises(ModelError, match="not a chain of layers.*--model"):
        infer_mlp(state, "relu")


def test_conv_weights_are_not_an_mlp():
    state = {"conv.weight": torch.zeros(4, 1, 3, 3), "fc.weight": torch.zeros(2, 4)}
    with pytest.raises(ModelError, match="not a plain MLP.*conv.weight.*--model"):
        infer_mlp(state, "relu")


def test_unknown_activation():
    with pytest.raises(ModelError, match="Expected --activation to be one of"):
        infer_mlp(tiny_mlp().state_dict(), "swishy")


def test_factory_from_file_with_kwargs(tmp_path):
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "def build(width=4):\n    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))\n"
    )
    built = build_from_factory(f"{tmp_path / 'net.py'}:build", {"width": 9}, tmp_path)
    assert built.module[0].out_features == 9
    assert built.description["class"] == "Sequential"


def test_factory_relative_to_base_dir(tmp_path):
    (tmp_path / "net.py").write_text("from torch import nn\ndef build():\n    return nn.Linear(3, 2)\n")
    assert isinstance(build_from_factory("net.py:build", {}, tmp_path).module, nn.Linear)


def test_manifest_model_file_is_looked_up_in_the_run_folder_first(tmp_path, monkeypatch):
    run, elsewhere = tmp_path / "run", tmp_path / "cwd"
    run.mkdir(), elsewhere.mkdir()
    (run / "net.py").write_text("from torch import nn\ndef build():\n    return nn.Linear(3, 2)\n")
    (elsewhere / "net.py").write_text("def build():\n    raise RuntimeError('the wrong net.py')\n")
    monkeypatch.chdir(elsewhere)
    assert isinstance(build_from_factory("net.py:build", {}, run, base_first=True).module, nn.Linear)
    with pytest.raises(ModelError, match="the wrong net.py"):
        build_from_factory("net.py:build", {}, run)  # a --model flag is relative to the working directory


def test_model_file_may_import_its_neighbours(tmp_path):
    (tmp_path / "blocks_for_grokmon_test.py").write_text("from torch import nn\ndef block():\n    return nn.Linear(3, 2)\n")
    (tmp_path / "net.py").write_text("from blocks_for_grokmon_test import block\ndef build():\n    return block()\n")
    assert isinstance(build_from_factory(f"{tmp_path / 'net.py'}:build", {}, tmp_path).module, nn.Linear)


def test_package_model_is_imported_from_the_working_directory_by_the_console_script(tmp_path):
    import subprocess
    import sys

    package = tmp_path / "netpkg_for_grokmon_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text("from torch import nn\ndef build():\n    return nn.Linear(3, 2)\n")
    code = ("import sys; sys.path = [p for p in sys.path if p not in ('', '.')]; "
            "from grokmon.inputs.models import build_from_factory; "
            "print(type(build_from_factory('netpkg_for_grokmon_test.nets:build', {}, None).module).__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Linear"


def test_factory_from_module():
    built = build_from_factory("torch.nn:Linear", {"in_features": 3, "out_features": 2}, None)
    assert built.expected_keys == {"weight", "bias"}


@pytest.mark.parametrize("spec, match", [
    ("nonsense", "Expected --model to be"),
    ("no_such_module_xyz:f", "cannot import"),
    ("torch.nn:NoSuchThing", "has no function"),
    ("torch:get_default_dtype", "Expected model torch:get_default_dtype to return an nn.Module"),
    ("torch:zeros", "raised TypeError"),
])
def test_factory_errors(spec, match):
    with pytest.raises(ModelError, match=match):
        build_from_factory(spec, {}, None)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "model.", "model.module.", "net."])
def test_prefixes_are_stripped_when_that_makes_keys_fit(prefix):
    state = {f"{prefix}{k}": v for k, v in tiny_mlp().state_dict().items()}
    fitted = fit_state_dict(state, frozenset(tiny_mlp().state_dict()), "ckpt")
    assert set(fitted) == set(tiny_mlp().state_dict())


def test_keys_that_do_not_fit_are_named():
    state = tiny_mlp().state_dict()
    state["extra.weight"] = state.pop("2.weight")
    with pytest.raises(ModelError, match=r"missing 2\.weight; unexpected extra\.weight"):
        fit_state_dict(state, frozenset(tiny_mlp().state_dict()), "ckpt")


def test_shapes_that_do_not_fit_are_named():
    built = build_from_factory("torch.nn:Linear", {"in_features": 3, "out_features": 2}, None)
    with pytest.raises(ModelError, match=r"weight \(2, 4\) vs model \(2, 3\)"):
        load_weights(built, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, "ckpt")


def test_a_model_of_another_depth_names_its_wrong_shapes_besides_the_keys():
    """A 64-32-10 model for 64-128-128-10 weights: the extra layer's keys and the shapes that differ."""
    deep = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    shallow = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    built = BuiltModel(shallow, {}, expected_keys=frozenset(shallow.state_dict()))
    with pytest.raises(ModelError) as caught:
        load_weights(built, deep.state_dict(), "step_50.pt")
    message = str(caught.value)
    assert "unexpected 4.bias, 4.weight" in message
    assert "wrong shape: 0.bias (128,) vs model (32,), 0.weight (128, 64) vs model (32, 64), 2.bias (128,) vs model " \
           "(10,), 2.weight (128, 128) vs model (10, 32)" in message


def test_a_module_with_extra_state_loads_its_own_weights():
    class Noted(nn.Linear):
        def get_extra_state(self):
            return {"note": "not a tensor"}

        def set_extra_state(self, state):
            self.note = state["note"]

    module = Noted(3, 2)
    built = BuiltModel(module, {}, expected_keys=frozenset(module.state_dict()))
    load_weights(built, Noted(3, 2).state_dict(), "ckpt")
    assert module.note == "not a tensor"


def test_a_prefix_that_fits_some_keys_names_the_keys_it_leaves_out():
    from grokmon.errors import ModelError
    from grokmon.inputs.models import fit_state_dict

    state = {k: torch.zeros(3) for k in ("0.weight", "2.weight", "4.weight")}
    with pytest.raises(ModelError) as caught:
        fit_state_dict(state, frozenset({"weight", "bias"}), "step_3.pt")
    assert str(caught.value) == ("step_3.pt: weights do not fit the model: missing bias (of the keys "
                                 "under '0.'; the others: 2.weight, 4.weight); check --model / --model-kwargs")


def test_the_inferred_mlp_names_a_wrong_shape_by_the_checkpoint_key():
    """The inferred MLP keeps its layers under names of its own; a shape that does not fit is named by the key the
    checkpoint has (it read '3.weight', a key no checkpoint had, for the checkpoint's '2.weight')."""
    first = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).state_dict()
    built = infer_mlp(first, "relu")
    wrong = dict(first, **{"2.weight": torch.zeros(16, 8)})
    with pytest.raises(ModelError, match=r"weight shapes do not fit the model: 2\.weight \(16, 8\) vs model \(16, 16\);"):
        load_weights(built, wrong, "step_5.pt")
