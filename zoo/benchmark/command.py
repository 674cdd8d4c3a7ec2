"""``vsrzoo benchmark``: run a benchmark suite and write its leaderboard (CSV + markdown).

Imports nothing heavy at module level (``zoo.cli`` imports this module to register the command).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

__all__ = ["benchmark_main", "benchmark_parser"]


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
