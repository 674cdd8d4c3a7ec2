"""Peak memory of ``vsrzoo upscale`` against video length (streaming must keep it flat).

For each requested length N the source clip is looped to N frames (top-left crop ``--crop``, labelled in the output)
into a temporary mp4, then the real command ``python -m zoo upscale INPUT -o OUTPUT <upscale args>`` runs in a fresh
process. Its peak resident set size is the kernel's ``ru_maxrss`` of that one child (``os.wait4``: not mixed with
other children, nor with this process), and its RSS is polled with psutil every ``--poll`` seconds, so the results
also show when the peak is reached: the largest RSS polled until the output's temporary file appears (imports,
network, the first chunk upscaled: the writer opens the encoder with the first finished frame) and the largest
after it (the rest of the video streamed through).

Default command: the tiny random RealBasicVSR (``--model realbasicvsr --random-weights --variant tiny``, chunks of
30 frames with 4 overlapping: the family's defaults) on 32x32 crops of the embedded real sample (20 frames, looped),
one torch thread (``OMP_NUM_THREADS=1``).

Examples::

    python benchmarks/upscale_memory.py --frames 10 100 300 1000 --crop 32x32 --out benchmarks/results/upscale_memory
    # another family / options: everything after --upscale-args goes to `vsrzoo upscale`
    python benchmarks/upscale_memory.py --frames 100 1000 --upscale-args --model realesrgan --random-weights --variant tiny

``--out PREFIX`` writes ``PREFIX.json`` (every figure, the command, the machine, the versions and
:data:`SCRIPT_VERSION`) and ``PREFIX.md`` (the table).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Bumped whenever what is measured or how changes; the committed results record it (tests/test_upscale_memory.py).
SCRIPT_VERSION = 2

DEFAULT_UPSCALE_ARGS = ["--model", "realbasicvsr", "--random-weights", "--variant", "tiny"]


def make_input(source: Path, frames: int, crop: tuple[int, int] | None, path: Path) -> tuple[int, int]:
    """Loop ``source`` to ``frames`` frames (top-left crop ``(h, w)`` if given) into an mp4 at ``path``.

    Returns:
        ``(width, height)`` of the written frames.
    """
    import numpy as np

    from zoo.data.video_io import VideoWriter, open_video

    clip = open_video(source)
    loop = [frame if crop is None else np.ascontiguousarray(frame[: crop[0], : crop[1]])
            for frame in clip.iter_frames(0, min(frames, clip.num_frames))]
    with VideoWriter(path, fps=clip.fps_fraction) as writer:
        for index in range(frames):
            writer.write(loop[index % len(loop)])
    return loop[0].shape[1], loop[0].shape[0]


def measure(input_path: Path, output_path: Path, upscale_args: list[str], *, threads: int = 1,
            poll: float = 0.05) -> dict:
    """Run ``python -m zoo upscale input_path -o output_path *upscale_args`` in a fresh process and measure it.

    Args:
        input_path: the input video.
        output_path: the output mp4 (must not exist).
        upscale_args: the other ``vsrzoo upscale`` arguments (model, weights, chunking).
        threads: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` of the child (0: inherit).
        poll: seconds between two RSS samples (psutil).

    Returns:
        ``{'peak_rss_mib': float (ru_maxrss of the child), 'rss_first_chunk_mib': largest RSS polled until the output's
        temporary file appeared, 'rss_after_mib': largest RSS polled after it, 'seconds': float, 'samples': int}``
        (an RSS is None when no sample fell in its period).

    Raises:
        RuntimeError: the command failed (its stderr tail in the message).
    """
    import psutil

    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "zoo", "upscale", str(input_path), "-o", str(output_path), *upscale_args]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: tqdm's output never blocks the child
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=ROOT)
        watched = psutil.Process(proc.pid)
        samples: list[tuple[bool, float]] = []  # (output started, RSS MiB)
        output_started = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                rss = watched.memory_info().rss / 2**20
            except psutil.Error:
                rss = None
            output_started = output_started or any(output_path.parent.glob(f".{output_path.name}.partial-*"))
            if rss is not None:
                samples.append((output_started, rss))
            time.sleep(poll)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{tail}")
    def largest(after: bool) -> float | None:
        seen = [rss for started, rss in samples if started == after]
        return round(max(seen), 1) if seen else None

    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
            "rss_first_chunk_mib": largest(False), "rss_after_mib": largest(True), "seconds": round(seconds, 1),
            "samples": len(samples)}


def run_sizes(frames_list: list[int], *, source: Path, crop: tuple[int, int] | None, upscale_args: list[str],
              threads: int = 1, poll: float = 0.05, jobs: int = 1, verbose: bool = False) -> list[dict]:
    """:func:`measure` for each length of ``frames_list`` (inputs and outputs in a temporary folder).

    Args:
        jobs: how many measured processes run at once (each one's peak RSS is its own; only the seconds change).

    Returns:
        one dict per length, in the order of ``frames_list``: :func:`measure`'s keys plus ``'frames'`` and
        ``'input'`` (``'WxH'``, ``' (crop)'`` when cropped).
    """
    from concurrent.futures import ThreadPoolExecutor

    with tempfile.TemporaryDirectory(prefix="upscale_memory_") as tmp:
        rows = []
        for frames in frames_list:
            clip = Path(tmp) / f"input_{frames}.mp4"
            width, height = make_input(source, frames, crop, clip)
            rows.append({"frames": frames, "input": f"{width}x{height}" + (" (crop)" if crop else "")})

        def one(row: dict) -> dict:
            frames = row["frames"]
            row.update(measure(Path(tmp) / f"input_{frames}.mp4", Path(tmp) / f"output_{frames}.mp4", upscale_args,
                               threads=threads, poll=poll))
            if verbose:
                print(json.dumps(row), flush=True)
            return row

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(one, rows))


def growth(rows: list[dict], small: int, large: int) -> float:
    """Relative growth of the peak RSS from the ``small``-frame run to the ``large``-frame run (0.05: +5 %)."""
    peak = {row["frames"]: row["peak_rss_mib"] for row in rows}
    return peak[large] / peak[small] - 1.0


def _versions() -> dict:
    import av
    import lightning
    import numpy
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "av": av.__version__, "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
            "numpy": numpy.__version__}


def _machine() -> dict:
    import psutil

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def render_markdown(result: dict) -> str:
    """The results table of a :func:`main` JSON result."""
    lines = [
        "# Peak memory of `vsrzoo upscale` against video length",
        "",
        f"Command (script version {result['script_version']}): `{result['command']}`",
        "",
        f"Each run: `{result['upscale_command']}` in a fresh process, "
        f"`OMP_NUM_THREADS={result['threads']}`; input {result['rows'][0]['input']} looped from "
        f"`{result['source']}`, {result['jobs']} measured at once. Peak RSS = the child's `ru_maxrss` (`os.wait4`); "
        f"RSS polled with psutil every {result['poll_s']} s: the largest until the output's temporary file appears "
        "(imports, network, first chunk upscaled) and the largest after it (the rest of the video streamed).",
        "",
        f"Machine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs, "
        f"{result['machine']['memory_gib']} GiB (shared with other jobs while measured: the seconds are "
        "contaminated, memory is not). Versions: "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".",
        "",
        "| frames | input | peak RSS (MiB) | RSS to first chunk (MiB) | RSS after (MiB) | seconds |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        first, after = (row[k] if row[k] is not None else "n/a" for k in ("rss_first_chunk_mib", "rss_after_mib"))
        lines.append(f"| {row['frames']} | {row['input']} | {row['peak_rss_mib']} | {first} | {after} | "
                     f"{row['seconds']} |")
    lines.append("")
    for key, value in result["growth"].items():
        lines.append(f"Peak RSS growth {key} frames: {value:+.1%}.")
    if result.get("notes"):
        lines += ["", result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[10, 100, 300, 1000], help="input lengths")
    parser.add_argument("--source", type=Path, default=None, help="clip to loop (default: the embedded sample)")
    parser.add_argument("--crop", default="32x32", help="HxW top-left crop of the input ('none': full frames)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (0: inherit)")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between RSS samples")
    parser.add_argument("--jobs", type=int, default=1, help="measured processes run at once (memory is per process)")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    parser.add_argument("--notes", default="", help="a paragraph appended to the markdown")
    parser.add_argument("--upscale-args", nargs=argparse.REMAINDER, default=None,
                        help=f"arguments of `vsrzoo upscale` (default: {' '.join(DEFAULT_UPSCALE_ARGS)})")
    args = parser.parse_args(argv)

    from zoo.testing import sample_clip_dir

    source = args.source or sample_clip_dir()
    crop = None if args.crop.lower() == "none" else tuple(int(v) for v in args.crop.lower().split("x"))
    upscale_args = args.upscale_args or DEFAULT_UPSCALE_ARGS
    rows = run_sizes(args.frames, source=source, crop=crop, upscale_args=upscale_args, threads=args.threads,
                     poll=args.poll, jobs=args.jobs, verbose=True)
    sizes = sorted(args.frames)
    result = {
        "script_version": SCRIPT_VERSION,
        "command": "python benchmarks/upscale_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "upscale_command": "vsrzoo upscale INPUT -o OUTPUT " + " ".join(upscale_args),
        "source": str(Path(source).resolve().relative_to(ROOT)) if Path(source).resolve().is_relative_to(ROOT)
        else str(source),
        "threads": args.threads,
        "poll_s": args.poll,
        "jobs": args.jobs,
        "machine": _machine(),
        "versions": _versions(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
        "growth": {f"{a} -> {b}": round(growth(rows, a, b), 4) for a, b in zip(sizes, sizes[1:])},
        "notes": args.notes,
    }
    if len(sizes) > 2:
        result["growth"][f"{sizes[1]} -> {sizes[-1]}"] = round(growth(rows, sizes[1], sizes[-1]), 4)
    print(render_markdown(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".json", json.dumps(result, indent=2) + "\n"), (".md", render_markdown(result))):
            tmp = args.out.with_name(f".{args.out.name}{suffix}.partial")
            tmp.write_text(text)
            os.replace(tmp, args.out.with_name(args.out.name + suffix))
    return result


if __name__ == "__main__":
    main()
