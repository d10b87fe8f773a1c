"""Pickled checkpoints read without running, or even importing, anything the file names.

`torch.load(..., weights_only=True)` rebuilds tensors, containers, numbers and strings only. Trainers often
pickle other objects beside the weights: Lightning's `save_hyperparameters()` keeps a `Path`, or the network
itself, under `hyper_parameters`. Such a file is read with every class or function it names that weights_only
does not know replaced by an inert placeholder: looked up by name in torch's safe-globals list, so never
imported, and when the pickle "calls" it, it only makes an empty placeholder object. The weights come out as
plain tensors, the rest as placeholders. Weights that are themselves such objects are refused (see
`pickled_name`), and so is a file that names a module torch blocks outright (`os`, `sys`, `posix`, `nt`).

Only torch's zip format (the default since torch 1.6) lists its globals without loading; a legacy-format pickle
that needs objects is refused as a whole.
"""

from __future__ import annotations

import re
import threading
import warnings
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError, first_line, reraise_interrupt

# torch's safe-globals list is one per process: one grokmon load at a time adds its placeholders to it.
_LOAD_LOCK = threading.Lock()
_NAMED_GLOBAL = re.compile(r"GLOBAL (\S+) (?:was not|whose module)")
_OBJECT_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


class Placeholder:
    """Stands in for a class or function that a pickle names: never the real one; builds nothing, keeps nothing."""

    pickled_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        pass

    def __repr__(self) -> str:
        return f"<pickled {self.pickled_name}>"


def _placeholder_for(name: str) -> type:
    return type("Placeholder", (Placeholder,), {"pickled_name": name})


def pickled_name(value: object) -> str | None:
    """The name of the class or function a placeholder stands for, or None for plain data.

    >>> pickled_name(_placeholder_for("pathlib.PosixPath")()), pickled_name(3)
    ('pathlib.PosixPath', None)
    """
    if isinstance(value, Placeholder) or (isinstance(value, type) and issubclass(value, Placeholder)):
        return value.pickled_name
    return None


def _numpy_scalar_globals() -> list:
    """What a pickled numpy scalar (`{'step': np.int64(500)}`) needs: plain data, no code, read for real."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [core.multiarray.scalar, np.dtype, *dtype_classes]


def _unknown_globals(path: Path) -> list[str]:
    """The globals of a torch zip pickle that weights_only does not know, listed without loading anything."""
    listing = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch >= 2.5
    if listing is None or not zipfile.is_zipfile(path):
        return []
    try:
        return listing(str(path))
    except Exception as exc:  # unreadable: torch.load reports it properly
        reraise_interrupt(exc)
        return []


def load_pickle(path: Path, mmap: bool = False):
    """The object a pickled checkpoint holds, with placeholders for every class or function weights_only does
    not know. Raises what torch.load raises for a file it cannot or will not read."""
    real = _numpy_scalar_globals()
    known = {f"{g.__module__}.{g.__qualname__}" for g in real}
    stand_ins = [(_placeholder_for(name), name) for name in _unknown_globals(path) if name not in known]
    with _LOAD_LOCK, warnings.catch_warnings(), torch.serialization.safe_globals(real + stand_ins):
        warnings.simplefilter("ignore")  # torch warns about pickle protocols; the outcome is what matters
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def refusal(path: Path | str, what: str) -> CheckpointError:
    """The error for a pickle whose weights need code to load; `what` says which object it wanted."""
    return CheckpointError(
        f"{path}: refused: this pickle needs arbitrary Python objects to load ({what}), and grokmon never runs code "
        "from a checkpoint; re-save the weights as a plain state dict (torch.save(model.state_dict(), ...)) "
        "or as .safetensors"
    )


def load_failure(path: Path, exc: BaseException) -> CheckpointError:
    """Why torch.load could not read `path`, in grokmon's words: refused (it asks for code) or unreadable."""
    message = str(exc)
    named = _NAMED_GLOBAL.search(message)
    if named:
        return refusal(path, f"it names {named.group(1)}")
    if "Weights only load failed" in message and _asks_for_objects(path):
        return refusal(path, "it builds objects that are not tensors")
    if "Weights only load failed" in message or not zipfile.is_zipfile(path):
        # bytes that are no torch.save archive fail inside the unpickler with whatever it was reading
        # ("pop from empty list", a bare key): one wording, so that such files group as one failure
        reason = "torch's safe loader could not read it"
    else:
        reason = first_line(exc)
    return CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason}); it may be truncated or corrupt, "
                           "re-save it")


def _asks_for_objects(path: Path) -> bool:
    """Whether a pickle that weights_only refused builds Python objects (rather than being corrupt). Reads the
    opcodes with pickletools, which never executes anything; only a stream that opens with PROTO and parses to its
    STOP counts (random bytes can hold an object-building opcode before they stop parsing: 1 file in 40 did)."""
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(name)
        else:
            data = path.read_bytes()
        if not data.startswith(b"\x80"):  # every pickle torch.save writes opens with PROTO (protocol 2 or later)
            return False
        names = [op.name for op, _, _ in pickletools.genops(data)]  # raises where the bytes stop being a pickle
        return any(name in _OBJECT_OPCODES for name in names)
    except Exception as exc:
        reraise_interrupt(exc)
        return False
