"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written file.

Every file the zoo writes for a user (reports, tables, pictures, manifests) goes through :func:`write_atomic`: the
bytes go to a hidden temporary file in the destination folder (``.NAME.partial-XXXXXXXX``), are flushed to disk
(``fsync``) and the temporary file is renamed over the destination with :func:`os.replace`, which POSIX and
Windows perform atomically within one file system. If anything fails (a full disk, Ctrl-C), the temporary file is
removed and the destination is untouched.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "fsync_folder", "partial_name", "pid_alive", "write_atomic"]


def partial_name(path: str | Path) -> Path:
    """A fresh hidden temporary name next to ``path``: ``<folder>/.<name>.partial-<8 hex digits>``."""
    path = Path(path)
    return path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (``os.kill(pid, 0)`` probes without signalling; a zombie,
    killed but not yet reaped, counts as dead). Used to tell a live writer's temporary file from a killed one's."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def fsync_folder(folder: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, *, temporary: str | Path | None = None) -> Iterator[BinaryIO]:
    """Open ``path`` for writing atomically: the block writes into a binary handle on a temporary file in the same
    folder, which is flushed, fsync'ed and renamed over ``path`` when the block ends without an exception, and
    removed otherwise (``path`` is then untouched).

    Args:
        path: destination file; its folder must exist.
        temporary: the temporary file's path (default :func:`partial_name` of ``path``); it must be in ``path``'s
            folder for the rename to be atomic.

    Raises:
        OSError: the folder does not exist, or a write, flush or rename failed (e.g. no space left).
    """
    path = Path(path)
    tmp = Path(temporary) if temporary is not None else partial_name(path)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    with atomic_file(path) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else bytes(data))
    return path
