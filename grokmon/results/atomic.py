"""Writing a file so that readers see the old version or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write` on a temporary file beside `path`, flush it to disk, then rename it over `path`.

    Missing folders are created. Raises OSError when the folder or file cannot be written; the temporary
    file never stays behind.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     atomic_write(Path(folder) / "a" / "b.txt", lambda handle: handle.write(b"done"))
    ...     (Path(folder) / "a" / "b.txt").read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename, so a power cut cannot leave it empty
        os.chmod(tmp_name, _file_mode(path))
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _file_mode(path: Path) -> int:
    """The permissions a plain `open(path, "w")` would give: the existing file's, else 0o666 less the umask.

    mkstemp creates its file 0o600, which would leave results unreadable to the rest of a team.
    """
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
