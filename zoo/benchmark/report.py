"""Leaderboard files: ``<suite>.csv`` (every row, per clip and mean) and ``<suite>.md`` (the leaderboard).

Every value is formatted once, by :func:`format_row`, and the same strings go into the CSV and the markdown, so
each number of the markdown can be found verbatim in the CSV (the tests check it). The markdown names the exact
command that produced it, the date, the device, the package versions and the suite file's hash, and explains
every empty column (an unavailable metric) and every skipped entry or set.
"""
from __future__ import annotations

import csv
import io
import math
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from zoo.fileio import write_atomic

__all__ = ["COLUMNS", "MEAN", "device_name", "environment", "format_number", "format_row", "read_csv", "render_markdown",
           "write_report"]

#: The ``clip`` value of the rows that average a set's clips.
MEAN = "mean"
#: Text of a cell whose metric was not computed (the markdown says why).
NOT_COMPUTED = "n/a"

#: CSV columns in order: (key, markdown header, decimals or None for text, which sets: 'gt', 'lq' or 'all').
COLUMNS: tuple[tuple[str, str, int | None, str], ...] = (
    ("set", "Set", None, "all"),
    ("protocol", "Protocol", None, "all"),
    ("entry", "Entry", None, "all"),
    ("label", "Label", None, "all"),
    ("weights", "Weights", None, "all"),
    ("clip", "Clip", None, "all"),
    ("frames", "Frames", None, "all"),
    ("lq_size", "LQ size", None, "all"),
    ("psnr", "PSNR-Y ↑", 2, "gt"),
    ("ssim", "SSIM-Y ↑", 4, "gt"),
    ("lpips", "LPIPS ↓", 4, "gt"),
    ("dists", "DISTS ↓", 4, "gt"),
    ("ewarp_gt_raft", "E*warp GT-RAFT (×1e-3) ↓", 3, "gt"),
    ("ewarp_gt_dis", "E*warp GT-DIS (×1e-3) ↓", 3, "gt"),
    ("ewarp_gt_farneback", "E*warp GT-Farneback (×1e-3) ↓", 3, "gt"),
    ("ewarp_sr_raft", "E*warp SR-RAFT (×1e-3) ↓", 3, "all"),
    ("ewarp_sr_dis", "E*warp SR-DIS (×1e-3) ↓", 3, "all"),
    ("ewarp_sr_farneback", "E*warp SR-Farneback (×1e-3) ↓", 3, "all"),
    ("tlpips", "tLPIPS ↓", 4, "gt"),
    ("tof", "tOF ↓", 3, "gt"),
    ("niqe", "NIQE ↓", 3, "lq"),
    ("params_m", "Params (M)", 3, "all"),
    ("fps", "FPS", 3, "all"),
    ("peak_mem_mib", "Peak mem (MiB)", 1, "all"),
    ("status", "Status", None, "all"),
    ("note", "Note", None, "all"),
)
#: E*warp columns: the flow's source (GT or SR clip) and estimator are part of the name; a table shows those that
#: have values.
EWARP_KEYS = tuple(key for key, *_ in COLUMNS if key.startswith("ewarp_"))
_METRIC_KEYS = ("psnr", "ssim", "lpips", "dists", *EWARP_KEYS, "tlpips", "tof", "niqe")
_TABLE_TEXT = ("entry", "weights")


def format_number(value: Any, decimals: int) -> str:
    """``value`` with ``decimals`` decimals; ``''`` for absent or NaN values, ``'inf'`` / ``'-inf'``."""
    if value is None or value == "":
        return ""
    value = float(value)
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{decimals}f}"


def format_row(row: Mapping[str, Any]) -> dict[str, str]:
    """Format a raw result row (numbers as floats, absent values missing or None) into CSV strings.

    Numbers get the column's fixed number of decimals; absent numbers become ``''``; text is kept.
    """
    out = {}
    for key, _, decimals, _ in COLUMNS:
        value = row.get(key)
        if decimals is None:
            out[key] = "" if value is None else str(value)
        else:
            out[key] = format_number(value, decimals)
    return out


def device_name(device: Any) -> str:
    """Human name of the device: the GPU's name, or the CPU model (``/proc/cpuinfo``) with the torch thread count."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {model}, {torch.get_num_threads()} torch threads"


_PACKAGES = ("torch", "torchvision", "numpy", "basicsr-fixed", "lpips", "opencv-python-headless", "av", "pillow",
             "scipy", "diffusers")


def environment() -> dict[str, str]:
    """Versions of Python, vsrzoo and the packages that produce the numbers, and the git commit when available."""
    import zoo

    versions = {"python": platform.python_version(), "vsrzoo": zoo.__version__}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    from zoo.provenance import git_commit

    commit = git_commit()
    if commit:
        versions["git commit"] = commit + (" (uncommitted changes in the working tree)" if commit.endswith("+dirty")
                                           else "")
    return versions


def _csv_text(rows: Sequence[Mapping[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[c[0] for c in COLUMNS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row.get(key, "") for key, *_ in COLUMNS})
    return buffer.getvalue()


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a leaderboard CSV as dicts of strings."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: Sequence[Mapping[str, str]], keys: Sequence[str]) -> list[str]:
    headers = {key: header for key, header, *_ in COLUMNS}
    lines = ["| " + " | ".join(headers[k] for k in keys) + " |",
             "|" + "|".join("---" if k in _TABLE_TEXT or k in ("clip", "lq_size", "note") else "---:"
                            for k in keys) + "|"]
    for row in rows:
        cells = []
        for key in keys:
            value = row.get(key, "")
            if key == "entry":
                value = f"**{value}**" if row.get("weights") == "none" else value
            if value == "" and key in _METRIC_KEYS and row.get("status") == "ok":
                value = NOT_COMPUTED
            elif value == "" and row.get("status") != "ok" and key not in ("note",):
                value = "—"
            cells.append(_md_escape(value))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _set_keys(has_gt: bool, rows: Sequence[Mapping[str, str]], *, per_clip: bool) -> list[str]:
    kind = "gt" if has_gt else "lq"
    keys = ["clip", "entry"] if per_clip else ["entry", "weights"]
    keys += [key for key, _, decimals, sets in COLUMNS
             if decimals is not None and sets in (kind, "all") and key not in ("params_m",)
             and (key not in EWARP_KEYS or any(row.get(key) for row in rows))]
    if per_clip:
        keys = [k for k in keys if k != "peak_mem_mib"] + ["peak_mem_mib"]
    else:
        keys.insert(keys.index("fps"), "params_m")
    if any(row.get("note") for row in rows):
        keys.append("note")
    return keys


def render_markdown(*, suite: Any, rows: Sequence[Mapping[str, str]], meta: Mapping[str, Any]) -> str:
    """The leaderboard markdown.

    Args:
        suite: the :class:`~zoo.benchmark.suite.Suite` that was run.
        rows: formatted rows (:func:`format_row`), per clip and ``clip == 'mean'``.
        meta: ``date``, ``device``, ``versions`` (dict), ``command``, ``cache_dir``, ``notes`` (list of str),
            ``set_info`` (dict set name -> dict with ``clips``, ``frames``, ``lq_size``, ``gt_size``, ``missing``),
            ``metric_notes`` (list of str).
    """
    title = suite.title or suite.name
    lines = [f"# Leaderboard: {title}", ""]
    lines += ["Every number below was produced by the command named here and copied by the program from "
              f"`{suite.name}.csv` (the same strings); none was typed.", ""]
    lines += [f"- **Command:** `{meta['command']}`",
              f"- **Date:** {meta['date']}",
              f"- **Device:** {meta['device']}",
              "- **Versions:** " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())]
    if suite.path is not None:
        lines.append(f"- **Suite file:** `{suite.path}` (sha256 {suite.sha256[:12]})")
    lines.append(f"- **LQ cache:** `{meta['cache_dir']}` (synthetic LQ frames, 8-bit PNG, reused by every entry "
                 f"and rerun)")
    if suite.description:
        lines += ["", suite.description.strip()]

    lines += ["", "## Evaluation sets", "",
              "| Set | Protocol | Clips | Frames per clip | GT crop | LQ size | Seed | Description |",
              "|---|---|---|---|---|---|---|---|"]
    for eval_set in suite.sets:
        info = meta["set_info"].get(eval_set.name, {})
        clips = ", ".join(info.get("clips", [])) or f"skipped: {eval_set.missing}"
        frames = info.get("frames", "") or (str(eval_set.num_frames) if eval_set.num_frames else "all")
        gt_crop = "—" if not eval_set.has_gt else info.get("gt_size", "")
        seed = str(eval_set.seed) if eval_set.protocol == "realbasicvsr" else "—"
        lines.append("| " + " | ".join(_md_escape(str(x)) for x in (
            eval_set.name, eval_set.protocol, clips, frames, gt_crop, info.get("lq_size", ""), seed,
            eval_set.description)) + " |")

    made_by = meta.get("weights_made_by", {})
    lines += ["", "## Entries", "", "| Entry | Description | Weights | Weights made by | Options | Inference |",
              "|---|---|---|---|---|---|"]
    for entry in suite.entries:
        if entry.is_bicubic:
            weights = "none"
        elif entry.is_random and entry.net is not None:
            weights = f"random (not trained): `{entry.net['class_path']}` {dict(entry.net.get('init_args') or {})}"
        elif entry.is_random:
            weights = (f"random (not trained): zoo.hub.load_pretrained({entry.family!r}, None, "
                       f"variant={entry.variant!r})")
        else:
            weights = f"`{entry.weights}`"
        inference = (f"chunk_frames={entry.chunk_frames}, overlap={entry.overlap}, tile={entry.tile}, "
                     f"tile_overlap={entry.tile_overlap}, dtype={entry.dtype}")
        options = ", ".join(f"{k}={v}" for k, v in entry.options.items()) or "—"
        lines.append("| " + " | ".join(_md_escape(str(x)) for x in (
            entry.name, entry.label or "—", weights, made_by.get(entry.name) or "—", options, inference)) + " |")

    lines += ["", "## Conventions and notes", ""]
    lines += [f"- {note}" for note in meta.get("metric_notes", [])]
    lines += [f"- {note}" for note in meta.get("notes", [])]

    for eval_set in suite.sets:
        set_rows = [r for r in rows if r["set"] == eval_set.name]
        lines += ["", f"## {eval_set.name} ({eval_set.protocol})", ""]
        if not set_rows:
            lines.append(f"Skipped: {eval_set.missing or 'no rows'}.")
            continue
        mean_rows = [r for r in set_rows if r["clip"] == MEAN]
        lines += _table(mean_rows, _set_keys(eval_set.has_gt, mean_rows, per_clip=False))
        clip_rows = [r for r in set_rows if r["clip"] != MEAN]
        if clip_rows:
            lines += ["", "<details><summary>Per clip</summary>", ""]
            lines += _table(clip_rows, _set_keys(eval_set.has_gt, clip_rows, per_clip=True))
            lines += ["", "</details>"]
    lines.append("")
    return "\n".join(lines)


def write_report(*, suite: Any, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any],
                 output_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<output_dir>/<suite.name>.csv`` and ``.md`` from raw rows (formatted once by :func:`format_row`).

    Each file is written atomically (:func:`zoo.fileio.write_atomic`): an interrupted run leaves the previous
    report whole.

    Returns:
        ``(csv_path, md_path)``.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    formatted = [format_row(row) for row in rows]
    csv_path = output_dir / f"{suite.name}.csv"
    md_path = output_dir / f"{suite.name}.md"
    write_atomic(csv_path, _csv_text(formatted))
    write_atomic(md_path, render_markdown(suite=suite, rows=formatted, meta=meta))
    return csv_path, md_path


def timestamp() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
