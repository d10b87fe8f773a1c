"""The corpus's families by name: each a module with `RUNS` (name -> task arguments) and `task(**arguments) -> Task`."""

from __future__ import annotations

from . import cnn, mlp, modular, omnigrok, teacher, transformer, xor

FAMILIES = {"modular": modular, "omnigrok": omnigrok, "cnn": cnn, "xor": xor, "transformer": transformer, "mlp": mlp,
            "teacher": teacher}
