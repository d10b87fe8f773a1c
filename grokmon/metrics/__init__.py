"""The metrics: per-point values of one split of probe points, batched, and their means and standard errors.

One module per metric group (accuracy, centroid, jacobian, local_complexity); batching.py sizes the batches,
summary.py turns per-point values into columns, engine.py runs the requested groups over a split.
"""

from .engine import MetricOptions, compute_split_metrics
from .local_complexity import make_frame

__all__ = ["MetricOptions", "compute_split_metrics", "make_frame"]
