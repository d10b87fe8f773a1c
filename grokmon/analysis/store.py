"""The results file of a run as `analyze` keeps it: resumed when its configuration matches, rewritten after
every checkpoint (atomically), so that a run killed part-way loses at most the checkpoint in flight.

The file describes the checkpoints as they are: rows whose checkpoint file changed since it was measured are
measured again, and rows of a checkpoint that is gone are kept, flagged `deleted` (see `ResultsStore.pending`).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pandas as pd

from ..columns import SPLITS
from ..errors import ConfigError, ResultsError
from ..inputs.checkpoints import Checkpoint
from ..inputs.config import MANIFEST_KEYS
from ..inputs.identity import FileIdentity, identity_of, unchanged
from ..inputs.run import RunInputs
from ..results import read_results, rows_to_frame, write_results
from .session import METRICS_VERSION

# Settings that may differ between an existing results file and a new run without invalidating it (a changed
# [steps] entry invalidates the rows of that checkpoint alone).
NOT_COMPARED = ("data", "phases", "steps")


def comparable_settings(config: dict, probe_hash: str | None) -> dict:
    """What two runs must share for their rows to belong in one file: the configuration and the probe data.

    >>> comparable_settings({"points": 512, "data": "a.safetensors"}, "ab12")
    {'points': 512, 'probe_hash': 'ab12'}
    """
    return {**{k: v for k, v in config.items() if k not in NOT_COMPARED}, "probe_hash": probe_hash}


def results_name_problem(output: Path) -> str | None:
    """What is wrong with `output` as a results file's name on its face (one line), or None."""
    if Path(output).suffix.lower() not in (".parquet", ".pq"):
        return f"{output}: results are a Parquet file; give -o a name ending in .parquet"
    return None


def check_writable(output: Path) -> None:
    """Fail before any work when the results cannot be written: try it with a scratch file."""
    if output.is_dir():
        raise ResultsError(f"{output}: is a directory; give -o a file name like results.parquet")
    wrong = results_name_problem(output)
    if wrong:
        raise ResultsError(wrong)
    blocker = next((p for p in (output.parent, *output.parent.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ResultsError(f"cannot write results to {output}: {blocker} is not a folder; choose another path with -o")
    if output.is_file() and (not os.access(output, os.W_OK) or not output.stat().st_mode & stat.S_IWUSR):
        # the rename that writes results atomically needs only the folder; a file made read-only is kept as it is
        # (its owner's write bit too: root may write any file, and chmod a-w is how it is protected)
        raise ResultsError(f"{output}: the results file is read-only; make it writable (chmod u+w) or choose "
                           "another path with -o")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as exc:
        raise ResultsError(f"{output}: cannot write results there ({exc.strerror}); choose a writable path with -o") from exc


def _flags_for(before: dict, now: dict) -> str:
    """The `analyze` options that give back the settings of `before` where `now` differs (those an option sets):
    a Lightning or Hugging Face callback's results name the model file they were made with, which a plain
    `grokmon analyze` of the folder does not know.

    >>> _flags_for({"model": "net.py:build", "metrics": ["centroid", "lc"], "points": 512},
    ...            {"model": "mlp", "metrics": ["centroid"], "points": 512})
    '--model net.py:build --metrics centroid,lc'
    """
    flags = []
    for key in sorted(set(before) | set(now)):
        value = before.get(key)
        if key not in MANIFEST_KEYS or value is None or value == now.get(key):
            continue
        text = (",".join(map(str, value)) if isinstance(value, list) else json.dumps(value) if isinstance(value, dict)
                else str(value))
        flags.append(f"--{key.replace('_', '-')} {shlex.quote(text)}")
    return " ".join(sorted(flags, key=lambda f: MANIFEST_KEYS.index(f[2:].split()[0].replace('-', '_'))))


def _probes_change(old: dict, old_hash: str | None, probes, new_hash: str | None) -> str:
    """The probe data of the results against the probe data now, in words: a bare hash says nothing.

    >>> _probes_change({"probe_file": "/a/probes.safetensors"}, "9679ab12cd", None, "605a33ef01")
    'probe data: other tensors (/a/probes.safetensors, sha256 9679ab12 -> 605a33ef)'
    """
    def short(digest):
        return "none" if digest is None else digest[:8]

    then, now = old.get("probe_file"), None if probes is None or probes.path is None else str(probes.path.resolve())
    if old_hash is None or new_hash is None:
        return f"probe data: {then if old_hash else 'none'} -> {now if new_hash else 'none'}"
    files = then if then == now or now is None else f"{then} -> {now}"
    return f"probe data: other tensors ({files}, sha256 {short(old_hash)} -> {short(new_hash)})"


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["step"], SPLITS.index(r["split"]) if r["split"] in SPLITS else len(SPLITS),
                                       r["split"]))


def _recorded(row: dict) -> FileIdentity | None:
    """The file identity a row recorded; None for a row written before grokmon recorded one."""
    size, mtime, fingerprint = row.get("file_size"), row.get("file_mtime"), row.get("file_fingerprint")
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (size, mtime, fingerprint)):
        return None
    return FileIdentity(int(size), float(mtime), str(fingerprint))


def _steps_text(steps: list[int]) -> str:
    shown = ", ".join(map(str, steps[:5])) + (", ..." if len(steps) > 5 else "")
    return f"step{'s' if len(steps) > 1 else ''} {shown}"


class ResultsStore:
    """The rows of one results file: those of an earlier run with the same settings, and every new one."""

    def __init__(self, output: Path, inputs: RunInputs, overwrite: bool):
        self.unwritable: ResultsError | None = None  # an existing file that cannot be rewritten: said by `save`
        try:
            check_writable(output)
        except ResultsError as exc:
            if overwrite or not output.is_file():
                raise
            self.unwritable = exc
        self.output = output
        self.ckpt_dir = inputs.ckpt_dir
        self.metadata: dict = {}  # the existing file's, until a session writes its own
        self.notes: list[str] = []  # what pending() changed, one line each
        self._unsaved = False
        self._failed: list[dict] = []  # the existing file's error rows: kept by pending() until measured again
        config = inputs.config.to_dict()
        settings = comparable_settings(config, inputs.probes.sha256 if inputs.probes else None)
        self.rows = [] if overwrite or not output.exists() else self._previous_rows(settings, inputs.probes)
        if self.metadata:  # what may differ without invalidating the rows is this run's (a copied run's own folder)
            now = {**self.metadata, "checkpoint_dir": str(inputs.ckpt_dir.resolve()),
                   "config": {**self.metadata.get("config", {}), **{k: config[k] for k in NOT_COMPARED}}}
            self._unsaved |= now != self.metadata
            self.metadata = now

    def _previous_rows(self, settings: dict, probes) -> list[dict]:
        """The ok rows of the existing file (its error rows are set aside: `pending` keeps them until their
        checkpoints are measured again); a file in which every checkpoint failed holds nothing to protect, so a
        new configuration replaces it."""
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
                   if before.get(k) != settings.get(k) and k != "probe_hash"]
        other_probes = before.get("probe_hash") != settings.get("probe_hash")
        if other_probes:
            changed.append(_probes_change(old, before.get("probe_hash"), probes, settings.get("probe_hash")))
        if changed:
            again = _flags_for(before, settings)
            then = old.get("probe_file") if other_probes else None
            if then and probes is not None and probes.path is not None and str(probes.path.resolve()) == then:
                then += " as it was when they were made: it has changed since"
            made_from = f" and the probe data they were made from ({then})" if then else ""
            resume = (f"to add to them, pass the options they were made with ({again}){made_from} or write them in "
                      "the manifest; " if again else
                      f"to add to them, give them the probe data they were made from ({then}); " if then else "")
            raise ConfigError(f"{self.output}: holds results of another configuration ({'; '.join(changed)}); "
                              f"{resume}pass --overwrite to replace them, or -o another file")
        self.metadata = old
        # a live row's missing checkpoint name reads back as NaN; pending() knows such rows by None
        frame["checkpoint"] = frame["checkpoint"].astype(object).where(frame["checkpoint"].notna(), None)
        self._failed = frame[frame["status"] != "ok"].to_dict("records")
        return frame[frame["status"] == "ok"].to_dict("records")

    def pending(self, checkpoints: tuple[Checkpoint, ...], writing: set[str] = frozenset()) -> list[Checkpoint]:
        """The checkpoints without ok rows that describe their files as they are now, in step order.

        Rows of a checkpoint whose files changed since they were measured (see grokmon.inputs.identity), or whose
        step changed, are dropped and the checkpoint is measured again; rows of a checkpoint that is no longer in
        the run are kept, flagged `deleted` (phases and reports leave them out unless asked: a Trainer's
        `save_total_limit` deletes old checkpoints whose measurements are still the run's history), unless a
        checkpoint of the run now holds their step; rows of one still being written (`writing`: names) are kept
        until it is complete. Error rows of a checkpoint still in the run (or being written) are kept until it is
        measured again (a run that fails before that loses nothing); those of one that is gone are dropped.
        Rows written before grokmon recorded file identities are taken to describe the files as they are now, and
        so are rows a training callback measured live (no checkpoint name) at the step of a saved checkpoint; live
        rows of a step that has no checkpoint are kept.
        """
        current = {c.name: c for c in checkpoints}
        by_name: dict[str | None, list[dict]] = {}
        for row in self.rows:
            by_name.setdefault(row["checkpoint"], []).append(row)
        live = by_name.pop(None, [])
        saved = {c.step: c.name for c in checkpoints if c.name not in by_name}
        for row in live:
            if row["step"] in saved:
                by_name.setdefault(saved[row["step"]], []).append({**row, "checkpoint": saved[row["step"]]})
        kept = [row for row in live if row["step"] not in saved]
        self._unsaved |= len(kept) != len(live)
        changed, gone = [], []
        steps = {c.step for c in checkpoints}
        for name, rows in by_name.items():
            ckpt = current.get(name)
            if ckpt is None:
                if name in writing:
                    kept += rows
                elif int(rows[0]["step"]) not in steps:
                    gone += [] if rows[0].get("deleted") else [int(rows[0]["step"])]
                    kept += [{**row, "deleted": True} for row in rows]
                else:
                    self._unsaved = True  # superseded by the checkpoint saved at its step now
                continue
            recorded = _recorded(rows[0])
            identity = identity_of(ckpt.files) if recorded is None else unchanged(recorded, ckpt.files)
            if identity is None or int(rows[0]["step"]) != ckpt.step:
                changed.append(ckpt.step)
                continue
            self._unsaved |= identity != recorded
            self._unsaved |= bool(rows[0].get("deleted"))
            kept += [{**row, **identity.columns(), "deleted": False} for row in rows]
        self._note(changed, gone)
        done = {row["checkpoint"] for row in kept}
        self.rows = kept + self._retried(current, writing)
        return [c for c in checkpoints if c.name not in done]

    def _retried(self, current: dict[str, Checkpoint], writing: set[str]) -> list[dict]:
        """The earlier error rows that stay until their checkpoint is measured again: those of a checkpoint still
        in the run at the same step, or still being written."""
        def stays(row: dict) -> bool:
            ckpt = current.get(row["checkpoint"])
            return row["checkpoint"] in writing if ckpt is None else int(row["step"]) == ckpt.step

        retried = [row for row in self._failed if stays(row)]
        self._unsaved |= len(retried) != len(self._failed)
        self._failed = []
        return retried

    def _note(self, changed: list[int], gone: list[int]) -> None:
        if changed:
            self.notes.append(f"{_steps_text(sorted(changed))}: the checkpoint changed since it was measured "
                              "(overwritten in place); measuring it again")
        if gone:
            self.notes.append(f"{_steps_text(sorted(gone))}: no longer in {self.ckpt_dir}; "
                              f"{'its' if len(gone) == 1 else 'their'} rows stay in the results, flagged deleted: "
                              "phases and report leave them out unless --with-deleted")
        self._unsaved |= bool(changed or gone)

    def save(self, pending: list[Checkpoint]) -> None:
        """Write the rows kept by `pending` when it dropped or updated any; before any work, fail where the file
        cannot be rewritten and `pending` (the checkpoints to measure) or such a change needs it to be. A results
        file that cannot be written but has nothing new to hold is read as it is (a read-only copy of a finished
        run)."""
        if self.unwritable is not None and (pending or self._unsaved):
            raise self.unwritable
        if self._unsaved and self.metadata:
            self.write(self.metadata)

    def add(self, rows: list[dict], metadata: dict) -> None:
        """Add checkpoints' rows, in place of any earlier rows of their steps, and rewrite the file atomically."""
        steps = {r["step"] for r in rows}
        self.rows = [r for r in self.rows if r["step"] not in steps] + [{"deleted": False, **r} for r in rows]
        self.write(metadata)

    def write(self, metadata: dict) -> None:
        """Rewrite the file atomically with every row."""
        if self.unwritable is not None:
            raise self.unwritable
        write_results(self.output, _sorted(self.rows), metadata)
        self.metadata, self._unsaved = metadata, False

    def drop_after(self, step: int, metadata: dict) -> tuple[list[int], Path | None]:
        """Drop the rows of steps after `step` (every row for step -1) and rewrite the file, after copying it
        aside (`<name>.before-<UTC time>.parquet` beside it: rows of deleted checkpoints cannot be measured again);
        the steps dropped and the copy."""
        gone = sorted({int(r["step"]) for r in self.rows if r["step"] > step})
        if not gone:
            return [], None
        aside = self.output.with_name(f"{self.output.stem}.before-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
                                      f"{self.output.suffix}")
        shutil.copy2(self.output, aside)
        self.rows = [r for r in self.rows if r["step"] <= step]
        self.write(metadata)
        return gone, aside

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
