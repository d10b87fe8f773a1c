"""Where results leave: the Parquet table with its metadata, written atomically."""

from .atomic import atomic_write
from .parquet import SCHEMA_VERSION, read_metadata, read_results, rows_to_frame, write_results

__all__ = ["SCHEMA_VERSION", "atomic_write", "read_metadata", "read_results", "rows_to_frame",
           "write_results"]
