"""grokmon: training-dynamics monitor for PyTorch checkpoints.

The functions are imported lazily so that `import grokmon` and `grokmon --help` stay fast (no torch).
"""

__version__ = "0.1.0"
__all__ = ["analyze", "info", "phases", "report", "__version__"]


def __getattr__(name):
    if name in ("analyze", "info", "phases", "report"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'grokmon' has no attribute {name!r}")
