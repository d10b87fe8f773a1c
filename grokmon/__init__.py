"""grokmon: training-dynamics monitor for PyTorch checkpoints.

The functions are imported lazily so that `import grokmon` and `grokmon --help` stay fast (no torch).
No submodule shares a name with them, so importing one never replaces `grokmon.phases`, `grokmon.report`, `grokmon.compare` or `grokmon.watch`.
"""

__version__ = "0.1.0"
__all__ = ["analyze", "compare", "info", "phases", "report", "watch", "PhaseReport", "PhaseThresholds", "__version__"]

_LAZY = {
    "analyze": "api",
    "compare": "api",
    "info": "api",
    "phases": "api",
    "report": "api",
    "watch": "analysis.follow",
    "PhaseReport": "phasing",
    "PhaseThresholds": "phasing",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'grokmon' has no attribute {name!r}")
