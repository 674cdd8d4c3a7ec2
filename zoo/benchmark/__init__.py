"""Leaderboard benchmarks: suites of entries x evaluation sets, cached LQ, metrics, speed, memory, markdown.

Public API (imported lazily, so that ``vsrzoo`` starts fast)::

    from zoo.benchmark import run_suite, load_suite, load_clips, build_upscaler
    result = run_suite("configs/benchmarks/sample_tiny.yaml", output_dir="benchmarks/results")
    result.md_path            # the leaderboard: benchmarks/results/sample_tiny.md (+ .csv)

Command line: ``vsrzoo benchmark --suite configs/benchmarks/<suite>.yaml`` (see :mod:`zoo.benchmark.command`).

Modules: :mod:`~zoo.benchmark.suite` (YAML schema), :mod:`~zoo.benchmark.sets` (evaluation clips, LQ cache),
:mod:`~zoo.benchmark.entries` (upscalers), :mod:`~zoo.benchmark.runner` (the run), :mod:`~zoo.benchmark.report`
(CSV and markdown).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Suite": "suite", "EvalSet": "suite", "Entry": "suite", "MetricOptions": "suite", "load_suite": "suite",
    "Clip": "sets", "iter_clips": "sets", "load_clips": "sets", "lq_cache_dir": "sets",
    "Upscaler": "entries", "BicubicUpsampler": "entries", "build_upscaler": "entries",
    "run_suite": "runner", "SuiteResult": "runner", "PeakMemory": "runner",
    "read_csv": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):  # noqa: ANN202 - lazy exports
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"zoo.benchmark.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'zoo.benchmark' has no attribute {name!r}")
