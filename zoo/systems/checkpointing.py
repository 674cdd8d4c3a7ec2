"""Checkpoint files that are never half written: :class:`AtomicCheckpointIO`, the recipes' ``trainer.plugins``.

Lightning's :class:`~lightning.fabric.plugins.io.torch_io.TorchCheckpointIO` serialises a checkpoint into memory and
writes it through an ``fsspec`` transaction, which on a local disk writes a temporary file under the system's
temporary folder (``tempfile.mkstemp``) and then moves it onto the target. When that folder is on another file system
the move is a copy, so a process killed during it (SIGKILL, a pre-empted cluster job, an out-of-memory kill) leaves a
truncated ``last.ckpt`` and resuming fails; it also leaves the whole temporary copy behind, and nothing is flushed to
the disk before the rename. :class:`AtomicCheckpointIO` writes local checkpoints as POSIX programs write files that
must survive a crash:

1. ``torch.save`` into a temporary file *in the checkpoint's own folder* (named ``.<name>.<host>.<pid>.tmp``);
2. ``flush`` + ``os.fsync`` of that file;
3. ``os.replace`` onto the target (atomic on POSIX and Windows within one file system: a reader sees the old
   complete file or the new complete file, never a mix);
4. ``os.fsync`` of the folder, so that the rename itself is on disk.

A kill at any moment therefore leaves the previous checkpoint intact; the only trace is a temporary file, which the
next save into that folder removes when the process that wrote it (same host, by its pid) no longer runs. Remote
paths (``s3://``, ``gs://``, ...) keep Lightning's behaviour (object stores publish an upload only once it is
complete).

Used by every recipe (``zoo/<family>.yaml``)::

    trainer:
      plugins:
        - class_path: zoo.systems.checkpointing.AtomicCheckpointIO
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.utilities import rank_zero_warn

from zoo.fileio import atomic_file, fsync_folder, pid_alive

__all__ = ["AtomicCheckpointIO", "stale_temporary_files"]

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]+)\.(?P<pid>\d+)\.tmp$")


def _host() -> str:
    """This machine's name as it appears in temporary file names (dots would make the name ambiguous)."""
    return socket.gethostname().replace(".", "_") or "host"


def _temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{_host()}.{os.getpid()}.tmp")


def stale_temporary_files(folder: str | Path) -> list[Path]:
    """The temporary files of :class:`AtomicCheckpointIO` in ``folder`` left by processes of this host that no longer
    run (a save killed half way). Files of other hosts (a shared file system) and of running processes are not listed.

    Returns:
        paths, sorted; empty when ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = []
    for entry in folder.iterdir():
        match = _TEMP.match(entry.name)
        if match and match["host"] == _host() and not pid_alive(int(match["pid"])):
            stale.append(entry)
    return sorted(stale)


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`~lightning.fabric.plugins.io.torch_io.TorchCheckpointIO` whose local saves are atomic and durable
    (temporary file in the same folder, ``fsync``, ``os.replace``, ``fsync`` of the folder; see the module docstring).

    Loading and removing are Lightning's. Under DDP / FSDP with full state dicts Lightning calls
    :meth:`save_checkpoint` on global rank 0 only.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` (the dict Lightning builds) to ``path``.

        Raises:
            TypeError: ``storage_options`` given (as Lightning's ``TorchCheckpointIO``).
            OSError: the folder cannot be created or written; the target is then unchanged and no temporary
                file is left.
        """
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"storage_options are not supported by {type(self).__name__}")
        target = Path(os.fspath(path)).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale(target.parent)
        with atomic_file(target, temporary=_temporary_path(target)) as file:
            self._write(checkpoint, file)
        fsync_folder(target.parent)

    def _write(self, checkpoint: dict[str, Any], file: Any) -> None:
        """Serialise ``checkpoint`` into the open temporary ``file`` (a hook for tests that interrupt a save)."""
        torch.save(checkpoint, file)

    @staticmethod
    def _remove_stale(folder: Path) -> None:
        for stale in stale_temporary_files(folder):
            try:
                stale.unlink()
            except OSError as err:
                rank_zero_warn(f"could not remove the interrupted checkpoint write {stale}: {err}")
