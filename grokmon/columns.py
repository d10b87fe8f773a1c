"""Names of the result table's columns: the one place the row layout is spelled out (no torch here)."""

METRIC_GROUPS = ("accuracy", "centroid", "jacobian", "lc", "robustness", "weights", "gradient", "llc")

# What `--metrics` means when it is not given: every group except llc, which needs the optional extra
# grokmon[devinterp] and costs several times all the others together (SGLD chains per checkpoint).
DEFAULT_GROUPS = tuple(g for g in METRIC_GROUPS if g != "llc")

GROUP_COLUMNS = {
    "accuracy": ("accuracy", "loss", "chance_accuracy"),
    "centroid": ("centroid_alignment", "centroid_norm", "centroid_inner"),
    "jacobian": ("jacobian_erank", "jacobian_pc1", "jacobian_fro"),
    "lc": ("lc", "lc_layers"),
    "robustness": ("robust_accuracy", "noise_accuracy"),
    "weights": ("weight_norm", "weight_entropy"),
    "gradient": ("grad_norm", "grad_entropy"),
    "llc": ("llc", "llc_chain_ok"),
}

# Groups measured once per checkpoint, not per split: their values stand on every split row of the checkpoint.
CHECKPOINT_GROUPS = ("weights", "llc")
CHECKPOINT_COLUMNS = tuple(c for g in CHECKPOINT_GROUPS for c in GROUP_COLUMNS[g])

# Groups that differentiate or perturb the inputs themselves, and so need float inputs (not token ids).
CONTINUOUS_INPUT_GROUPS = ("centroid", "jacobian", "lc", "robustness")

# Groups whose values need labelled probe data (null without labels).
LABELLED_GROUPS = ("accuracy", "robustness", "gradient")

# Groups that need no probe data at all.
DATA_FREE_GROUPS = ("weights",)

# Metrics that are one value, not a mean over points (chance_accuracy: a property of the probe labels), and so
# have no `<metric>_se` column
# (llc has one: the standard error over its chains).
NO_SE = ("weight_norm", "weight_entropy", "grad_norm", "grad_entropy", "llc_chain_ok", "chance_accuracy")

# Columns of a group beside its metrics, one value per split (no `_se`, no panel of their own): the extremes of
# the alignment over the points (GrokAlign logs its min, mean and max) and the absolute LC radius used.
GROUP_EXTRA_COLUMNS = {
    "centroid": ("centroid_alignment_min", "centroid_alignment_max"),
    "lc": ("lc_radius",),
}

LIST_COLUMNS = ("lc_layers", "lc_layers_se")

BOOL_COLUMNS = ("llc_chain_ok",)

METRIC_COLUMNS = tuple(
    name for group in METRIC_GROUPS
    for name in (*(n for metric in GROUP_COLUMNS[group]
                   for n in ((metric,) if metric in NO_SE else (metric, f"{metric}_se"))),
                 *GROUP_EXTRA_COLUMNS.get(group, ()))
)

# The columns every row carries, before the metrics, with their kind ("int", "str", "float", "bool"). The file_*
# columns are the checkpoint files' identity when measured (grokmon.inputs.identity): a changed file is measured
# again; `deleted` marks rows whose checkpoint is no longer in the run (phases and reports leave them out).
ROW_COLUMNS = {"step": "int", "checkpoint": "str", "split": "str", "n_points": "int", "seconds": "float",
               "status": "str", "error": "str", "file_size": "int", "file_mtime": "float", "file_fingerprint": "str",
               "deleted": "bool"}

SPLITS = ("train", "test", "random")  # in the order rows, tables and figures show them
LABELLED_SPLITS = SPLITS[:2]  # the splits a probe file holds (x_train/y_train, x_test/y_test)
