"""The results file of a run as `analyze` keeps it: resumed when its configuration matches, rewritten after
every checkpoint (atomically), so that a run killed part-way loses at most the checkpoint in flight."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from ..columns import SPLITS
from ..errors import ConfigError, ResultsError
from ..inputs.checkpoints import Checkpoint
from ..inputs.run import RunInputs
from ..results import read_results, rows_to_frame, write_results
from .session import METRICS_VERSION

# Settings that may differ between an existing results file and a new run without invalidating it.
NOT_COMPARED = ("data", "phases")


def comparable_settings(config: dict, probe_hash: str | None) -> dict:
    """What two runs must share for their rows to belong in one file: the configuration and the probe data.

    >>> comparable_settings({"points": 512, "data": "a.safetensors"}, "ab12")
    {'points': 512, 'probe_hash': 'ab12'}
    """
    return {**{k: v for k, v in config.items() if k not in NOT_COMPARED}, "probe_hash": probe_hash}


def check_writable(output: Path) -> None:
    """Fail before any work when the results cannot be written: try it with a scratch file."""
    if output.is_dir():
        raise ResultsError(f"{output}: is a directory; give -o a file name like results.parquet")
    if output.suffix.lower() not in (".parquet", ".pq"):
        raise ResultsError(f"{output}: results are a Parquet file; give -o a name ending in .parquet")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as exc:
        raise ResultsError(f"{output}: cannot write results there ({exc.strerror}); choose a writable path with -o") from exc


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["step"], SPLITS.index(r["split"]) if r["split"] in SPLITS else len(SPLITS),
                                       r["split"]))


class ResultsStore:
    """The rows of one results file: those of an earlier run with the same settings, and every new one."""

    def __init__(self, output: Path, inputs: RunInputs, overwrite: bool):
        check_writable(output)
        self.output = output
        settings = comparable_settings(inputs.config.to_dict(), inputs.probes.sha256 if inputs.probes else None)
        self.rows = [] if overwrite or not output.exists() else self._previous_rows(settings)

    def _previous_rows(self, settings: dict) -> list[dict]:
        """The ok rows of the existing file (failures are retried); a file in which every checkpoint failed holds
        nothing to protect, so a new configuration replaces it."""
        try:
            frame, old = read_results(self.output)
        except ResultsError as exc:
            raise ResultsError(f"{exc}; pass --overwrite to replace it, or -o another file") from exc
        if not (frame["status"] == "ok").any():
            return []
        if old.get("metrics_version") != METRICS_VERSION:
            raise ConfigError(
                f"{self.output}: was written by grokmon {old.get('grokmon_version', '?')}, whose metric values differ "
                f"from this version's (metrics version {old.get('metrics_version', 1)}, now {METRICS_VERSION}); pass "
                "--overwrite to recompute them all, or -o another file"
            )
        before = comparable_settings(old.get("config", {}), old.get("probe_hash"))
        changed = [f"{k}: {before.get(k)!r} -> {settings.get(k)!r}" for k in sorted(set(before) | set(settings))
                   if before.get(k) != settings.get(k)]
        if changed:
            raise ConfigError(f"{self.output}: holds results of another configuration ({'; '.join(changed)}); "
                              "pass --overwrite to replace them, or -o another file")
        return frame[frame["status"] == "ok"].to_dict("records")

    def pending(self, checkpoints: tuple[Checkpoint, ...]) -> list[Checkpoint]:
        """The checkpoints without an ok row, in step order."""
        done = {r["step"] for r in self.rows}
        return [c for c in checkpoints if c.step not in done]

    def add(self, rows: list[dict], metadata: dict) -> None:
        """Add checkpoints' rows, in place of any earlier rows of their steps, and rewrite the file atomically."""
        steps = {r["step"] for r in rows}
        self.rows = [r for r in self.rows if r["step"] not in steps] + rows
        self.write(metadata)

    def write(self, metadata: dict) -> None:
        """Rewrite the file atomically with every row."""
        write_results(self.output, _sorted(self.rows), metadata)

    def name_checkpoints(self, names: dict[int, str]) -> bool:
        """Give rows without a checkpoint name the name of their step's checkpoint in `names`; whether any changed."""
        changed = False
        for row in self.rows:
            if row["checkpoint"] is None and row["step"] in names:
                row["checkpoint"], changed = names[row["step"]], True
        return changed

    def frame(self) -> pd.DataFrame:
        """Every row, as `read_results` would return them."""
        return rows_to_frame(_sorted(self.rows))
