"""A session over a live module: the model of a training loop measured as it is, on its device, with no file.

`open_live_session` sets up what `open_session` sets up for a run's checkpoints (configuration, probes fitted
to the model, options, metadata), from the module itself. The configuration it records is the one that
`grokmon analyze` of the run's checkpoints would resolve, so that analyze resumes the same results file:

- the options are merged over the run folder's manifest as analyze merges them (`dtype`, when neither sets it,
  is the module's own);
- the probe hash is one of the tensors, whether they come as a file or a dict (`inputs.probes`);
- the model is recorded as analyze would build it (`model`, `model_kwargs`, `activation`: the inferred mlp by
  default) only when that network, given the module's weights, computes what the module computes on the probe
  points. When it does not, the model is recorded as `live:<class>`, which no analyze configuration matches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, GrokmonError, ModelError, reraise_interrupt
from ..inputs.config import DTYPES, AnalyzeConfig, resolve_config
from ..inputs.models import BuiltModel, TensorOutput, load_weights
from ..inputs.probes import ProbeSet, load_probes, probes_from_tensors
from ..inputs.run import RunInputs
from .measure import measure_rows
from .probe_fit import settle_inputs
from .session import Session, build_model, prepare_session

_log = logging.getLogger("grokmon")
VERIFY_POINTS = 8  # probe points on which the model analyze would build is compared with the live one


@contextlib.contextmanager
def measuring(module: nn.Module):
    """`module` in eval mode with autograd on and autocast off (a hook may run under the loop's no_grad,
    inference mode or mixed precision); afterwards every submodule's train/eval mode is as it was."""
    modes = [(m, m.training) for m in module.modules()]
    device = _device_of(module)
    autocast = torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else contextlib.nullcontext()
    module.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad(), autocast:
            yield
    finally:
        for submodule, training in modes:
            submodule.training = training


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return torch.device("cpu") if tensor is None else tensor.device


def _dtype_name(module: nn.Module) -> str | None:
    tensor = next((p for p in module.parameters() if p.is_floating_point()), None)
    return None if tensor is None else str(tensor.dtype).removeprefix("torch.")


def live_config(module: nn.Module, run_dir: Path, options: dict) -> AnalyzeConfig:
    """The options over the run folder's manifest over the defaults, as analyze merges them; the dtype, when
    neither sets it, is the module's. ConfigError when the module's parameters are not in that dtype."""
    config = resolve_config(run_dir, **options)
    own = _dtype_name(module)
    if "dtype" not in config.explicit and own in DTYPES:
        config = dataclasses.replace(config, dtype=own)
    if own is not None and own != config.dtype:
        fix = (f"pass dtype={own!r}" if own in DTYPES else
               f"grokmon measures {' or '.join(DTYPES)} models; train in one of them or measure saved checkpoints")
        raise ConfigError(f"Expected the trained model's parameters in {config.dtype}, but they are {own}; {fix}")
    return config


def live_probes(probes: str | Path | dict, config: AnalyzeConfig, dtype: torch.dtype) -> ProbeSet:
    """The probe data of a callback: a file (as `--data`) or a dict of tensors, subset as analyze subsets it."""
    if isinstance(probes, dict):
        return probes_from_tensors(probes, config.points, config.seed, dtype)
    return load_probes(Path(probes), config.points, config.seed, dtype)


def _differs(built: BuiltModel, module: nn.Module, inputs: RunInputs) -> str | None:
    """Why the model analyze would build, with the module's weights, does not compute what the module computes
    on the first probe points; None when it does."""
    try:
        load_weights(built, module.state_dict(), "the trained model")
        _, probes, _ = settle_inputs(inputs.config, inputs.probes, built, inputs.dtype, inputs.device)
        x = probes.splits[0].x[:VERIFY_POINTS].to(inputs.device)
        with torch.no_grad():
            ours, theirs = built.measured(x), TensorOutput(module, built.position)(x)
    except (GrokmonError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        reraise_interrupt(exc)
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if ours.shape != theirs.shape:
        return f"it gives outputs of shape {tuple(ours.shape[1:])}, the trained model {tuple(theirs.shape[1:])}"
    scale = float(theirs.abs().max()) if theirs.numel() else 0.0
    if not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * (1.0 + scale)):
        return f"its outputs differ from the trained model's by up to {float((ours - theirs).abs().max()):.3g}"
    return None


def recorded_model(module: nn.Module, inputs: RunInputs) -> tuple[AnalyzeConfig, dict]:
    """The configuration and model description to record: the model analyze would build (see the module's
    docstring), or `live:<class>` when that model does not compute what `module` computes. ModelError when the
    model was given (option or manifest) and does not."""
    config = inputs.config
    try:
        built = build_model(inputs.config, inputs.ckpt_dir, module.state_dict(), inputs.device, inputs.dtype)
        reason = _differs(built, module, inputs)
    except GrokmonError as exc:
        built, reason = None, str(exc)
    if reason is None:
        return config, built.description
    name = f"{type(module).__module__}.{type(module).__qualname__}"
    if "model" in config.explicit:
        raise ModelError(f"model {config.model!r}, as `grokmon analyze` would build it for this run's checkpoints, "
                         f"does not compute what the trained {name} computes ({reason}); pass the model "
                         "(file.py:function) that builds this network")
    _log.warning("grokmon: the results record model 'live:%s', so `grokmon analyze` of the checkpoints will not "
                 "resume them: the inferred mlp does not compute what the trained model computes (%s); pass "
                 "model='file.py:function' (analyze's --model) to the callback to make them resumable", name, reason)
    description = {"kind": "live", "class": name, "parameters": sum(p.numel() for p in module.parameters())}
    return dataclasses.replace(config, model=f"live:{name}"), description


def open_live_session(module: nn.Module, probes: str | Path | dict, run_dir: Path, options: dict) -> Session:
    """The session that measures `module` as it trains; `run_dir` is the folder of the run's checkpoints (its
    manifest applies, and relative model files are looked up there, as analyze of that folder does)."""
    config = live_config(module, run_dir, {**options, "data": None if isinstance(probes, dict) else probes})
    dtype = getattr(torch, config.dtype)
    device = _device_of(module)
    inputs = RunInputs(run_dir, config, (), live_probes(probes, config, dtype), device, dtype)
    with measuring(module):
        config, description = recorded_model(module, inputs)
        inputs = dataclasses.replace(inputs, config=config)
        return prepare_session(inputs, BuiltModel(module, description, position=config.position))


def measure_live(session: Session, step: int, checkpoint: str | None = None) -> list[dict]:
    """Every split's metrics of the session's live module as it is now (see `measuring`), one row per split."""
    with measuring(session.model.module):
        return measure_rows(session, step, checkpoint)
