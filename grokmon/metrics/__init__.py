"""The metrics: per-point values of one split of probe points, batched, and their means and standard errors;
and the values measured once per checkpoint.

One module per metric group (accuracy, centroid, jacobian, local_complexity, robustness, gradient; weights and
llc per checkpoint); batching.py sizes the batches, summary.py turns per-point values into columns, engine.py
runs the requested groups over a split or a checkpoint.
"""

from .engine import LLCSettings, MetricOptions, compute_checkpoint_metrics, compute_split_metrics
from .local_complexity import make_frame

__all__ = ["LLCSettings", "MetricOptions", "compute_checkpoint_metrics", "compute_split_metrics", "make_frame"]
