"""What a checkpoint's files were when they were measured, so that a changed file is measured again.

A results row records the total size of the checkpoint's files, their newest modification time, and a content
fingerprint: a BLAKE2b hash of each file's name, size, first and last MiB and 16 blocks of 64 KiB spread evenly
between them (the whole file when it is smaller than that). The files are unchanged when the size is the same
and either the modification time or the fingerprint is: a copied or restored run (new times, same bytes) is not
measured again, an overwritten checkpoint (a restarted job saving into the same folder) is. Only a file whose
time changed and size did not is read for its fingerprint; otherwise the check is one stat per file.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

_EDGE = 1 << 20  # bytes hashed at each end of a file
_SAMPLES, _SAMPLE = 16, 1 << 16  # blocks hashed between the ends


@dataclass(frozen=True)
class FileIdentity:
    """Size in bytes, newest modification time (seconds since the epoch) and content fingerprint of a checkpoint."""

    size: int
    mtime: float
    fingerprint: str

    def columns(self) -> dict:
        """The identity as a results row holds it (see grokmon.columns.ROW_COLUMNS)."""
        return {"file_size": self.size, "file_mtime": self.mtime, "file_fingerprint": self.fingerprint}


def stat_of(files: tuple[Path, ...]) -> tuple[int, float]:
    """Total size and newest modification time of `files`."""
    stats = [f.stat() for f in files]
    return sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats) / 1e9


def fingerprint(files: tuple[Path, ...]) -> str:
    """A hash of the files' names, sizes and sampled contents (see the module's docstring)."""
    digest = hashlib.blake2b(digest_size=16)
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with open(path, "rb") as handle:
            for offset, length in _blocks(size):
                handle.seek(offset)
                digest.update(handle.read(length))
    return digest.hexdigest()


def _blocks(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the blocks hashed from a file of `size` bytes.

    >>> _blocks(10)
    [(0, 10)]
    """
    if size <= 2 * _EDGE + _SAMPLES * _SAMPLE:
        return [(0, size)]
    step = (size - 2 * _EDGE - _SAMPLE) / (_SAMPLES - 1)
    middle = [(_EDGE + math.floor(k * step), _SAMPLE) for k in range(_SAMPLES)]
    return [(0, _EDGE), *middle, (size - _EDGE, _EDGE)]


def identity_of(files: tuple[Path, ...]) -> FileIdentity:
    """The checkpoint's identity as its files are now."""
    size, mtime = stat_of(files)
    return FileIdentity(size, mtime, fingerprint(files))


def unchanged(recorded: FileIdentity, files: tuple[Path, ...]) -> FileIdentity | None:
    """The files' identity now when they are the ones `recorded` describes (their time may have moved), else None."""
    size, mtime = stat_of(files)
    if size != recorded.size:
        return None
    if mtime == recorded.mtime:
        return recorded
    now = fingerprint(files)
    return FileIdentity(size, mtime, now) if now == recorded.fingerprint else None
