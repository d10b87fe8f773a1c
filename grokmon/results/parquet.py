"""The results file: one Parquet row per (checkpoint, split), with a JSON `grokmon` metadata document.

Writes are atomic (temporary file in the same folder, then rename), so a reader, or a run killed
part-way, only ever sees a complete table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_write
from ..columns import BOOL_COLUMNS, LIST_COLUMNS, METRIC_COLUMNS, ROW_COLUMNS
from ..errors import ResultsError

SCHEMA_VERSION = 1
DEFAULT_NAME = "grokmon.parquet"  # what `analyze` writes into the checkpoint directory
METADATA_KEY = b"grokmon"


def arrow_schema() -> pa.Schema:
    """The fixed Arrow schema of a results table: row columns, then every metric and its standard error."""
    kinds = {"int": pa.int64(), "str": pa.string(), "float": pa.float64(), "bool": pa.bool_()}
    fields = [pa.field(name, kinds[kind]) for name, kind in ROW_COLUMNS.items()]
    for name in METRIC_COLUMNS:
        kind = pa.list_(pa.float64()) if name in LIST_COLUMNS else pa.bool_() if name in BOOL_COLUMNS else pa.float64()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def _clean(value):
    """Plain Python values for Arrow: NaN (pandas' null) becomes None, arrays become lists."""
    if isinstance(value, np.ndarray):
        return [float(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def rows_to_table(rows: list[dict], metadata: dict) -> pa.Table:
    """Build the Arrow table of `rows` (dicts; missing columns become null) with `metadata` attached."""
    schema = arrow_schema()
    columns = {field.name: [_clean(row.get(field.name)) for row in rows] for field in schema}
    table = pa.Table.from_pydict(columns, schema=schema)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})


def write_results(path: Path, rows: list[dict], metadata: dict) -> None:
    """Write `rows` to `path` atomically: a temporary file beside it, then `os.replace`."""
    path = Path(path)
    table = rows_to_table(rows, metadata)
    try:
        atomic_write(path, lambda handle: pq.write_table(table, handle))
    except OSError as exc:
        raise ResultsError(f"{path}: cannot write results ({exc.strerror}); choose another path with -o") from exc


def results_file(run) -> Path:
    """A run's results file: `run` itself, or for a checkpoint directory the `grokmon.parquet` in it."""
    path = Path(run)
    if not path.is_dir():
        return path
    if not (path / DEFAULT_NAME).is_file():
        raise ResultsError(f"{path}: a directory without {DEFAULT_NAME}; run `grokmon analyze {path}` first, "
                           "or give the results file")
    return path / DEFAULT_NAME


def read_metadata(path: Path) -> dict:
    """The `grokmon` metadata document of a results file; ResultsError if it is not one of ours."""
    path = Path(path)
    if path.is_dir():
        hint = f"did you mean {path / DEFAULT_NAME}?" if (path / DEFAULT_NAME).is_file() else \
            f"give the results file `grokmon analyze` wrote (CKPT_DIR/{DEFAULT_NAME} by default)"
        raise ResultsError(f"{path}: is a directory; {hint}")
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file; run `grokmon analyze CKPT_DIR` first")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise ResultsError(f"{path}: not a readable Parquet file ({exc})") from exc
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ResultsError(f"{path}: a Parquet file, but not grokmon results (no `grokmon` metadata)")
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise ResultsError(f"{path}: the `grokmon` metadata is not valid JSON") from exc
    if metadata.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: results schema version {metadata.get('schema_version')!r}, "
            f"this grokmon reads version {SCHEMA_VERSION}; re-run `grokmon analyze --overwrite`"
        )
    return metadata


def read_results(path: Path) -> tuple[pd.DataFrame, dict]:
    """Read a results file: the rows as a DataFrame (sorted by step, split order kept) and its metadata."""
    metadata = read_metadata(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ResultsError(f"{Path(path)}: cannot read results ({exc})") from exc
    missing = [name for name in ("step", "split", "status") if name not in table.column_names]
    if missing:
        raise ResultsError(f"{Path(path)}: results lack the column(s) {', '.join(missing)}")
    return table_to_frame(table), metadata


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """The DataFrame of a results table: list columns as Python lists, nulls as None/NaN."""
    frame = table.to_pandas()
    for name in LIST_COLUMNS:
        if name in frame:
            frame[name] = frame[name].map(lambda v: None if v is None else [float(x) for x in v])
    return frame


def rows_to_frame(rows: list[dict]) -> pd.DataFrame:
    """The DataFrame `read_results` would give for `rows` once written."""
    return table_to_frame(rows_to_table(rows, {}))
