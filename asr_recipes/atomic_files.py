"""Writing a file so that a crash never leaves it half-written under its real name.

The data goes to a hidden temporary file in the target's directory (same file system, so the
rename is atomic), is flushed and fsynced, and is then renamed over the target. A process killed
at any moment leaves either the old file or the new one. Temporary names look like
``.<name>.tmp-<random>.tmp``: checkpoint.files.remove_stale_temp_files deletes leftovers
(``.*.tmp-*``) when training restarts.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic_with(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Calls ``write(f)`` on a binary temp file, then renames it to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Writes ``data`` (str as UTF-8) to ``path`` atomically; returns the path."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return write_atomic_with(path, lambda f: f.write(payload))
