"""``vsrzoo benchmark``: run a benchmark suite and write its leaderboard (CSV + markdown); ``vsrzoo compare``:
several models on the same frames of one video (:mod:`zoo.benchmark.compare`).

Imports nothing heavy at module level (``zoo.cli`` imports this module to register the command).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

__all__ = ["benchmark_main", "benchmark_parser", "compare_main", "compare_parser"]


def benchmark_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vsrzoo benchmark``."""
    p = argparse.ArgumentParser(
        prog="vsrzoo benchmark",
        description="Evaluate the entries of a benchmark suite (bicubic baseline, trained checkpoints, ...) on its "
        "evaluation sets and write <output-dir>/<suite>.csv and <suite>.md (the leaderboard, naming this command).",
    )
    p.add_argument("--suite", required=True, help="suite YAML, e.g. configs/benchmarks/sample_tiny.yaml")
    p.add_argument("--output-dir", default="benchmarks/results", help="where the CSV and markdown go "
                   "(default: benchmarks/results)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--entries", default=None, help="comma-separated entry names to run (bicubic always runs)")
    p.add_argument("--sets", default=None, help="comma-separated set names to run (default: all)")
    p.add_argument("--cache-dir", default=None, help="LQ cache folder (default: the suite's cache_dir)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def benchmark_main(argv: Sequence[str]) -> int:
    """Entry point of ``vsrzoo benchmark`` (see ``vsrzoo benchmark --help``); returns the exit status."""
    args = benchmark_parser().parse_args(list(argv))
    command = " ".join(shlex.quote(part) for part in ["vsrzoo", "benchmark", *argv])
    from zoo.errors import ZooError

    try:
        from zoo.benchmark.runner import run_suite

        result = run_suite(args.suite, output_dir=args.output_dir, device=args.device,
                           entries=_names(args.entries), sets=_names(args.sets), cache_dir=args.cache_dir,
                           command=command, progress=not args.quiet)
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {result.csv_path} and {result.md_path}")
    return 0


def compare_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vsrzoo compare``."""
    p = argparse.ArgumentParser(
        prog="vsrzoo compare",
        description="Upscale the same frames of a video with several models and write a labelled side-by-side (or "
        "grid) mp4 with the source fps and audio, a PNG of its middle frame, and a table (CSV, markdown, printed) of "
        "s/frame, peak memory, NIQE and E*warp (with --gt: PSNR-Y/SSIM-Y/LPIPS/E*warp against the GT).",
        epilog="models: bicubic | FAMILY:WEIGHTS (a path, or a name the family ships, e.g. realesrgan:x4plus) | "
        "FAMILY:random[:VARIANT] (random networks: meaningless output); prefix LABEL= to name a panel.",
    )
    p.add_argument("input", help="video file or folder of frames (the LQ)")
    p.add_argument("-o", "--output", required=True, help="output .mp4; .png, .csv and .md of the same name go next "
                   "to it")
    p.add_argument("--model", action="append", required=True, metavar="MODEL",
                   help="a model to compare (repeatable, panel order)")
    p.add_argument("--gt", default=None, help="ground truth (video or frames, x4 the input's size, same frames)")
    p.add_argument("--start", type=int, default=0, help="first frame compared (default 0)")
    p.add_argument("--max-frames", type=int, default=None, help="number of frames compared (default: all; every "
                   "model's output of them is held in memory)")
    p.add_argument("--crop", default=None, metavar="X,Y,W,H", help="compare on this LQ region only (faster)")
    p.add_argument("--zoom", type=int, default=1, help="enlarge every panel this many times, nearest-neighbour")
    p.add_argument("--layout", choices=["row", "grid"], default="row", help="panels side by side or in a grid")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def compare_main(argv: Sequence[str]) -> int:
    """Entry point of ``vsrzoo compare`` (see ``vsrzoo compare --help``); returns the exit status."""
    args = compare_parser().parse_args(list(argv))
    from zoo.errors import ZooError

    try:
        from zoo.benchmark.compare import compare, parse_crop

        if args.max_frames is not None and args.max_frames < 1 or args.start < 0:
            from zoo.errors import ConfigError

            raise ConfigError("--max-frames must be >= 1 and --start >= 0")
        result = compare(args.input, args.output, args.model, gt=args.gt, start=args.start,
                         max_frames=args.max_frames, crop=parse_crop(args.crop) if args.crop else None,
                         zoom=args.zoom, layout=args.layout, device=args.device, progress=not args.quiet)
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.md_path.read_text())
    print(f"wrote {result.video}, {result.picture}, {result.csv_path} and {result.md_path}")
    return 0
