"""zoo.provenance: the command line as a user types it, and the commit of the code that ran."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from zoo.provenance import git_commit, run_command


@pytest.mark.parametrize("argv,expected", [
    (["/venv/bin/lightning", "fit", "--config", "a b.yaml"], "lightning fit --config 'a b.yaml'"),
    (["/venv/lib/site-packages/zoo/__main__.py", "fit"], "python -m zoo fit"),
    (["/venv/lib/site-packages/pytest/__main__.py", "-q"], "python -m pytest -q"),
    (["benchmarks/speed.py", "--plan", "cpu"], "python benchmarks/speed.py --plan cpu"),
    ([], ""),
])
def test_run_command(argv, expected):
    assert run_command(argv) == expected


def test_git_commit_marks_a_dirty_tree(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    assert git_commit(tmp_path) == ""  # not a checkout
    run = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    assert re.fullmatch(r"[0-9a-f]{7,}", git_commit(tmp_path))
    (tmp_path / "f.txt").write_text("b")
    assert git_commit(tmp_path).endswith("+dirty")
