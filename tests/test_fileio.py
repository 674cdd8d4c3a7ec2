"""Atomic writes (zoo.fileio): complete replacement or nothing, never a partial file."""
from __future__ import annotations

import pytest

from zoo.fileio import write_atomic


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    write_atomic(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    import os

    target = tmp_path / "table.csv"
    target.write_text("old")

    def full_disk(fd):  # noqa: ANN001 - os.fsync's signature
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    with pytest.raises(OSError):
        write_atomic(tmp_path / "missing" / "x.csv", "data")
