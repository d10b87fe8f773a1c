"""Names of the result table's columns: the one place the row layout is spelled out (no torch here)."""

METRIC_GROUPS = ("accuracy", "centroid", "jacobian", "lc")

GROUP_COLUMNS = {
    "accuracy": ("accuracy", "loss"),
    "centroid": ("centroid_alignment", "centroid_norm", "centroid_inner"),
    "jacobian": ("jacobian_erank", "jacobian_pc1", "jacobian_fro"),
    "lc": ("lc", "lc_layers"),
}

LIST_COLUMNS = ("lc_layers", "lc_layers_se")

METRIC_COLUMNS = tuple(
    name for group in METRIC_GROUPS for metric in GROUP_COLUMNS[group] for name in (metric, f"{metric}_se")
)

# The columns every row carries, before the metrics, with their kind ("int", "str", "float").
ROW_COLUMNS = {"step": "int", "checkpoint": "str", "split": "str", "n_points": "int", "seconds": "float",
               "status": "str", "error": "str"}

SPLITS = ("train", "test", "random")  # in the order rows, tables and figures show them
LABELLED_SPLITS = SPLITS[:2]  # the splits a probe file holds (x_train/y_train, x_test/y_test)
