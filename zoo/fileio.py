"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written file.

Every file the zoo writes for a user (reports, tables, pictures, manifests) goes through :func:`write_atomic`: the
bytes go to a hidden temporary file in the destination folder (``.NAME.partial-XXXXXXXX``), are flushed to disk
(``fsync``) and the temporary file is renamed over the destination with :func:`os.replace`, which POSIX and
Windows perform atomically within one file system. If anything fails (a full disk, Ctrl-C), the temporary file is
removed and the destination is untouched.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["partial_name", "write_atomic"]


def partial_name(path: str | Path) -> Path:
    """A fresh hidden temporary name next to ``path``: ``<folder>/.<name>.partial-<8 hex digits>``."""
    path = Path(path)
    return path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    Args:
        path: destination file; its folder must exist.
        data: the whole content; ``str`` is encoded as UTF-8.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the folder does not exist or the write failed (e.g. no space left); nothing is left behind.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = partial_name(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
