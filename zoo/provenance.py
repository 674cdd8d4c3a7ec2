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
    empty when the code does not run from a git checkout (an installed package, even one inside another
    repository's virtual environment) or git is missing."""
    if not (Path(root) / ".git").exists():
        return ""
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
    """The command line of this process as a user would type it: ``lightning fit --config ...`` for a console
    script, ``python -m <package> ...`` for ``python -m`` (``sys.argv[0]`` is then the package's ``__main__.py``)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    program = Path(argv[0])
    if program.name == "__main__.py":
        head = f"python -m {program.parent.name}"
    elif program.suffix == ".py":
        head = shlex.join(["python", argv[0]])
    else:
        head = shlex.quote(program.name)
    return " ".join([head, shlex.join(argv[1:])]).strip()


def provenance() -> dict[str, str]:
    """``{'command': ..., 'commit': ..., 'date': ISO 8601 UTC}`` of this process."""
    return {"command": run_command(), "commit": git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
