"""Names of the result table's columns: the one place the row layout is spelled out (no torch here)."""

GROUPS = ("accuracy", "centroid", "jacobian", "lc")

GROUP_COLUMNS = {
    "accuracy": ("accuracy", "loss"),
    "centroid": ("centroid_alignment", "centroid_norm", "centroid_inner"),
    "jacobian": ("jacobian_erank", "jacobian_pc1", "jacobian_fro"),
    "lc": ("lc", "lc_layers"),
}

LIST_COLUMNS = ("lc_layers", "lc_layers_se")

METRIC_COLUMNS = tuple(
    name for group in GROUPS for metric in GROUP_COLUMNS[group] for name in (metric, f"{metric}_se")
)

ROW_COLUMNS = ("step", "checkpoint", "split", "n_points", "seconds", "status", "error")

SPLITS = ("train", "test", "random")
