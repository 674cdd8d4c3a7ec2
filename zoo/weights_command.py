"""``vsrzoo weights list | download NAME | verify [NAME]``: the weight files of the catalogue (:func:`zoo.hub.weight_files`).

- ``list``: one row per entry: name, kind, size, license, present?, local path, source.
- ``download NAME [--dir DIR]``: ``'file'`` entries are streamed from their URL into a temporary name in the target
  folder (``$TORCH_HOME/hub/checkpoints`` or ``DIR``) and renamed only after the byte count (against the server's
  ``Content-Length``), the recorded size and the SHA-256 (full digest or the prefix in the file name) pass; a wrong
  hash or a truncated or interrupted transfer leaves nothing behind. A present file that verifies is not fetched
  again. ``'hf_folder'`` entries go through ``huggingface_hub.snapshot_download(repo_id, local_dir=...)`` into
  ``$TORCH_HOME/hub/vsrzoo/<folder>`` (or ``DIR/<folder>``); ``'manual'`` entries print where to get them and
  where to put them.
- ``verify [NAME] [--dir DIR]``: OK / MISSING / BAD per entry (size and hash of files, required files of folders);
  exit status 1 if any is BAD.

The download loop is ours rather than ``torch.hub.download_url_to_file``: that one keeps a body that ends before its
``Content-Length`` (``http.client`` returns the short read without an error), so a truncated file with no recorded
hash would be kept.

Errors (unknown name, refused or failed download) are :class:`~zoo.errors.ZooError`: one line, exit status 2.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zoo.catalogue import WeightFile
from zoo.errors import ConfigError, WeightsError, ZooError

__all__ = ["Check", "catalogue", "check", "download", "weights_main"]

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def catalogue() -> dict[str, WeightFile]:
    """The entries this command works on (:func:`zoo.hub.weight_files`; tests replace this function)."""
    from zoo.hub import weight_files

    return weight_files()


@dataclass(frozen=True)
class Check:
    """The state of one entry on disk.

    Attributes:
        status: ``'OK'``, ``'MISSING'`` or ``'BAD'``.
        detail: what was checked, or what is wrong.
    """

    status: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == "OK"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _check_file(entry: WeightFile, path: Path) -> str | None:
    """What is wrong with the bytes at ``path`` against the recorded size and hash (None: nothing)."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"{size} bytes, expected {entry.size}"
    if entry.expected_hash:
        digest = _sha256(path)
        if not digest.startswith(entry.expected_hash):
            return f"sha256 {digest} does not start with {entry.expected_hash}"
    return None


def check(entry: WeightFile, root: Path | None = None, *, hash_files: bool = True) -> Check:
    """Is ``entry`` at its local place (``entry.path(root)``), complete and intact?

    Args:
        entry: the catalogue entry.
        root: the folder to look in (None: the entry's default, :meth:`WeightFile.path`).
        hash_files: False skips hashing (``list``: presence and size only).

    Returns:
        MISSING (nothing there), BAD (wrong size or hash, a folder missing a required file, a file where a folder
        belongs or the reverse) or OK (with what could be checked).
    """
    path = entry.path(root)
    if not path.exists():
        return Check("MISSING", f"{path} not found")
    if entry.is_folder:
        if not path.is_dir():
            return Check("BAD", f"{path} is not a folder")
        missing = entry.missing_required(path)
        if missing:
            return Check("BAD", f"incomplete: {', '.join(missing)} missing")
        return Check("OK", f"{len(entry.required)} required files present" if entry.required else "folder present")
    if not path.is_file():
        return Check("BAD", f"{path} is not a file")
    if not hash_files:
        size = path.stat().st_size
        if entry.size is not None and size != entry.size:
            return Check("BAD", f"{size} bytes, expected {entry.size}")
        return Check("OK", "present (not hashed)")
    problem = _check_file(entry, path)
    if problem is not None:
        return Check("BAD", problem)
    checked = [label for label, known in (("size", entry.size is not None), ("sha256", entry.sha256),
                                          ("sha256 prefix", entry.hash_prefix and not entry.sha256)) if known]
    return Check("OK", " and ".join(checked) + " match" if checked else "present; no size or hash recorded to check")


def _fetch(url: str, tmp: Path, *, progress: bool) -> None:
    """Stream ``url`` into ``tmp``; the byte count must equal the response's ``Content-Length`` when it gives one.

    Raises:
        WeightsError: an HTTP or network error, or a truncated body.
    """
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "vsrzoo"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, open(tmp, "wb") as out:
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None and length.isdigit() else None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr)
            received = 0
            try:
                while block := response.read(_CHUNK):
                    out.write(block)
                    received += len(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
    except urllib.error.HTTPError as exc:
        raise WeightsError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsError(f"download of {url} failed: {type(exc).__name__}: {reason}") from exc
    if expected is not None and received != expected:
        raise WeightsError(f"download of {url} truncated: {received} of {expected} bytes")


def _download_file(entry: WeightFile, root: Path | None, *, progress: bool) -> str:
    destination = entry.path(root)
    if destination.is_file():
        state = check(entry, root)
        if state.ok:
            return f"{entry.name}: already present and verified ({state.detail}) at {destination}; not downloaded again"
        print(f"{entry.name}: {destination} is BAD ({state.detail}); downloading it again", file=sys.stderr)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
    try:
        _fetch(entry.url, tmp, progress=progress)
        problem = _check_file(entry, tmp)
        if problem is not None:
            raise WeightsError(f"{entry.name}: downloaded file refused ({problem}); nothing was kept")
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)  # a refused, truncated or interrupted transfer leaves nothing
    return f"{entry.name}: downloaded {entry.url} -> {destination} ({check(entry, root, hash_files=False).detail})"


def _download_folder(entry: WeightFile, root: Path | None) -> str:
    destination = entry.path(root)
    if destination.is_dir() and entry.required and not entry.missing_required(destination):
        return f"{entry.name}: already present at {destination} (required files present); not downloaded again"
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    except ImportError as exc:
        raise WeightsError(f"{entry.name}: huggingface_hub is needed to download {entry.repo_id}") from exc
    try:
        snapshot_download(entry.repo_id, local_dir=str(destination), allow_patterns=list(entry.allow_patterns) or None)
    except GatedRepoError as exc:
        raise WeightsError(f"{entry.name}: {entry.repo_id} is gated: accept its conditions at {entry.source} and log "
                           "in (`hf auth login`, or set HF_TOKEN), then run this again") from exc
    except RepositoryNotFoundError as exc:
        raise WeightsError(f"{entry.name}: repository {entry.repo_id} not found (or private) on Hugging Face") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise WeightsError(f"{entry.name}: download of {entry.repo_id} failed: {str(exc).splitlines()[0]}") from exc
    missing = entry.missing_required(destination)
    if missing:
        raise WeightsError(f"{entry.name}: {entry.repo_id} downloaded to {destination} but {', '.join(missing)} "
                           "missing")
    return f"{entry.name}: {entry.repo_id} -> {destination}"


def _manual(entry: WeightFile, root: Path | None) -> str:
    destination = entry.path(root)
    state = check(entry, root)
    lines = [f"{entry.name}: a manual download (no direct link); license: {entry.license}",
             f"  get it from: {entry.source}",
             f"  put it at:   {destination}{'/' if entry.is_folder else ''}"]
    if entry.note:
        lines.append(f"  {entry.note}")
    lines.append(f"  now: {state.status} ({state.detail})")
    return "\n".join(lines)


def download(entry: WeightFile, root: str | Path | None = None, *, progress: bool = True) -> str:
    """Fetch ``entry`` to its local place (``entry.path(root)``).

    Args:
        entry: the catalogue entry.
        root: the folder to put it in (None: :func:`zoo.catalogue.checkpoints_dir` for files,
            :func:`zoo.catalogue.folders_dir` for folders).
        progress: show a progress bar on stderr (files).

    Returns:
        The line(s) to print: what was done, or (manual entries) where to get it and where to put it.

    Raises:
        WeightsError: a network or HTTP error, a truncated transfer, a wrong size or hash (the file is removed), a
            gated or unknown Hugging Face repository, an incomplete snapshot.
    """
    root = Path(root).expanduser() if root is not None else None
    if entry.kind == "file":
        return _download_file(entry, root, progress=progress)
    if entry.kind == "hf_folder":
        return _download_folder(entry, root)
    return _manual(entry, root)


def _size(entry: WeightFile) -> str:
    if entry.size is not None:
        return f"{entry.size} B"
    return entry.approx_size or "unknown"


def _table(entries: Sequence[WeightFile], root: Path | None) -> str:
    rows = ["| name | kind | size | license | present | local path | source |", "|---|---|---|---|---|---|---|"]
    for entry in entries:
        kind = entry.kind + (" (gated)" if entry.gated else "")
        state = check(entry, root, hash_files=False)
        present = {"OK": "yes", "MISSING": "no"}.get(state.status, "BAD")
        source = entry.url or entry.source
        rows.append(f"| {entry.name} | {kind} | {_size(entry)} | {entry.license} | {present} | {entry.path(root)} | "
                    f"{source} |")
    return "\n".join(rows)


def _named(name: str) -> WeightFile:
    entries = catalogue()
    if name not in entries:
        raise ConfigError(f"unknown weights {name!r}; known: {', '.join(entries)} (`vsrzoo weights list`)")
    return entries[name]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsrzoo weights", description="The weight files the zoo can use: list, download, "
                                "verify. Files go to $TORCH_HOME/hub/checkpoints, folders to $TORCH_HOME/hub/vsrzoo.")
    sub = p.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="every file: kind, size, license, present?, local path, source")
    fetch = sub.add_parser("download", help="fetch one entry (manual entries: print where to get it)")
    fetch.add_argument("name", help="a name of `vsrzoo weights list`")
    fetch.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    verify = sub.add_parser("verify", help="check present files (size, sha256); exit 1 if any is BAD")
    verify.add_argument("name", nargs="?", default=None, help="one entry (default: all)")
    for sub_parser in (listing, fetch, verify):
        sub_parser.add_argument("--dir", default=None, help="the folder to use instead of the default places")
    return p


def weights_main(argv: Sequence[str]) -> int:
    """``vsrzoo weights``: see ``vsrzoo weights --help``. Exit status 0, 1 (``verify`` found a BAD file) or 2 (a
    :class:`~zoo.errors.ZooError`: unknown name, refused or failed download)."""
    args = _parser().parse_args(list(argv))
    root = Path(args.dir).expanduser() if args.dir else None
    try:
        if args.action == "list":
            print(_table(list(catalogue().values()), root))
            return 0
        if args.action == "download":
            print(download(_named(args.name), root, progress=not args.no_progress))
            return 0
        bad = False
        for entry in [_named(args.name)] if args.name else list(catalogue().values()):
            state = check(entry, root)
            print(f"{state.status:7s} {entry.name}: {state.detail}")
            bad = bad or state.status == "BAD"
        return 1 if bad else 0
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
