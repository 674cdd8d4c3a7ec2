"""Where a result or a checkpoint came from: the command that ran and the git commit of the code that ran it.

Checkpoints written by the zoo's systems record :func:`provenance` under ``checkpoint['vsrzoo']['made_by']``
(:mod:`zoo.systems.base`), and the benchmark prints it next to every entry whose weights carry it, so a leaderboard
names both the command that made its numbers and the command (and commit) that made each checkpoint it scores.
"""
from __future__ import annotations

import datetime
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = ["git_commit", "provenance", "run_command"]

_PROJECT = Path(__file__).resolve().parent.parent


def git_commit(root: str | Path = _PROJECT) -> str:
    """Short hash of ``HEAD`` of the checkout holding the code, with ``+dirty`` when tracked files differ from it;
    empty when the code does not run from a git checkout (an installed package) or git is missing."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=False).stdout.strip()
        if not commit:
            return ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}+dirty" if dirty else commit


def run_command(argv: list[str] | None = None) -> str:
    """The command line of this process as a user would type it (``lightning fit --config ...``)."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
        if argv[0] in ("__main__.py", "-m"):
            argv[0] = "python -m zoo"
    return shlex.join(argv)


def provenance() -> dict[str, str]:
    """``{'command': ..., 'commit': ..., 'date': ISO 8601 UTC}`` of this process."""
    return {"command": run_command(), "commit": git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
