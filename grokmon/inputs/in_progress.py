"""Checkpoints still being written: skipped by this analyze, measured by the next.

A checkpoint is in progress when one of its files changed in the last `WRITE_WINDOW_SECONDS` and it is a
Trainer's temporary folder (`tmp-checkpoint-N`, renamed to `checkpoint-N` once the save completes) or its own
format shows it incomplete. A temporary folder unchanged for longer is a save that never completed (the job
died while saving): it is measured as it is, with a note (`abandoned`), and is an error row where it is
incomplete. Incomplete means: an empty file; a safetensors file shorter than its header
says; a torch zip archive without its central directory (torch.save writes it last); a sharded model with a
shard missing; a DCP folder without `.metadata` (written last). An incomplete checkpoint that has not changed for
longer than the window is no longer being written: it is truncated, and its loading error says so.

Cost on a normal run: one stat per file; only files changed within the window are opened (a few bytes each).
A legacy-format pickle (`_use_new_zipfile_serialization=False`) cannot show that it is incomplete: one caught
mid-write fails to load, and its error row is retried by the next analyze.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from . import dcp
from .layouts import SHARD, index_listing

WRITE_WINDOW_SECONDS = 120.0
MAX_SAFETENSORS_HEADER = 100_000_000  # bytes; the safetensors library refuses larger headers too
_TMP_FOLDER = re.compile(r"^tmp-checkpoint-\d+$")
_ZIP_START = b"PK\x03\x04"


def in_progress(path: Path, files: tuple[Path, ...], now: float) -> str | None:
    """Why the checkpoint at `path` counts as still being written (one phrase), or None."""
    age = _age(path, files, now)
    if age > WRITE_WINDOW_SECONDS:
        return None
    if _TMP_FOLDER.match(path.name):
        return "a Trainer's temporary folder, renamed to checkpoint-N when the save completes"
    reason = incomplete(path, files)
    return f"still being written ({reason}, changed {age:.0f} s ago)" if reason else None


def abandoned(path: Path, files: tuple[Path, ...], now: float) -> str | None:
    """Why the checkpoint at `path` is a Trainer's save that never completed (one phrase), or None: a temporary
    folder that nothing has changed in for longer than the write window."""
    if not _TMP_FOLDER.match(path.name):
        return None
    age = _age(path, files, now)
    if age <= WRITE_WINDOW_SECONDS:
        return None
    return (f"a Trainer's temporary folder unchanged for {age:.0f} s: that save never completed (the Trainer renames "
            "it to checkpoint-N when one does); measured as it is")


def _age(path: Path, files: tuple[Path, ...], now: float) -> float:
    """Seconds since the checkpoint's newest file (or its folder) changed."""
    stamps = [f.stat().st_mtime for f in files if f.exists()] + ([path.stat().st_mtime] if path.is_dir() else [])
    return now - max(stamps)


def incomplete(path: Path, files: tuple[Path, ...]) -> str | None:
    """What shows that the checkpoint at `path` is not completely written, or None when it looks whole."""
    if path.is_dir() and dcp.data_files(path) and not (path / dcp.METADATA_FILE).is_file():
        return f"no {dcp.METADATA_FILE} (written last)"
    missing = _missing_shards(path, files)
    if missing:
        return f"shard {missing[0]} is missing" + (f", and {len(missing) - 1} more" if len(missing) > 1 else "")
    for file in files:
        reason = _incomplete_file(file)
        if reason:
            return f"{file.name} {reason}"
    return None


def _missing_shards(path: Path, files: tuple[Path, ...]) -> list[str]:
    """Shards that an index json or the files' own `-0000k-of-0000n` names call for, and that are not there."""
    expected = set(index_listing(path) or []) if path.is_dir() else set()
    for file in files:
        match = SHARD.search(file.name)
        if match:
            width, total = len(match.group(1)), int(match.group(2))
            stem = file.name[: match.start()]
            expected |= {f"{stem}-{k:0{width}d}-of-{match.group(2)}{match.group(3)}" for k in range(1, total + 1)}
    folder = path if path.is_dir() else path.parent
    return sorted(name for name in expected if not (folder / name).is_file())


def _incomplete_file(path: Path) -> str | None:
    size = path.stat().st_size
    if size == 0:
        return "is empty"
    with open(path, "rb") as handle:
        head = handle.read(8)
        if path.suffix.lower() == ".safetensors":
            return _short_safetensors(handle, head, size)
    if head.startswith(_ZIP_START) and not zipfile.is_zipfile(path):
        return "has no zip central directory (torch.save writes it last)"
    return None


def not_safetensors(path: Path) -> str | None:
    """Why the file at `path` cannot be a safetensors file at all, even a half-written one (random bytes, another
    format under the name), or None when its start looks like one: an absurd header length, or a header that does
    not start with `{`. A file shorter than 9 bytes shows neither."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return None
    header_size = int.from_bytes(head[:8], "little")
    if header_size > MAX_SAFETENSORS_HEADER:
        return f"its first 8 bytes give a {header_size}-byte header, more than any safetensors file has"
    if head[8:9] != b"{":
        return "its header is not JSON (it does not start with '{')"
    return None


def _short_safetensors(handle, head: bytes, size: int) -> str | None:
    """How a safetensors file falls short of the size its header declares, or None when it does not (or is no
    safetensors file at all: loading says it is corrupt)."""
    header_size = int.from_bytes(head, "little") if len(head) == 8 else size
    if not_safetensors(Path(handle.name)):
        return None
    if 8 + header_size > size:
        return f"holds {size} bytes, less than its {header_size}-byte header"
    try:
        header = json.loads(handle.read(header_size))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None  # not a header at all: corrupt, which loading reports
    expected = 8 + header_size + end
    return f"holds {size} of its {expected} bytes" if size < expected else None
