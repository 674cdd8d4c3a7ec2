"""What the full-sampling benchmarks of the diffusion families share: one measurement per fresh process, the JSON +
markdown report written atomically, and the device line.

Used by ``benchmarks/sateco_sampling.py`` and ``benchmarks/dc_vsr_sampling.py``: each script's ``worker`` measures one
configuration and prints its result after a prefix; :func:`measure` runs it in a new Python process (so that its peak
RSS is its own) and :func:`write_report` stores the results with the command that made them and renders the markdown
from the stored JSON (every figure printed as it is stored).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it (no partial file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def measure(script: str | Path, prefix: str, spec: dict, what: str) -> dict:
    """``script --worker JSON(spec)`` in a fresh Python process; the JSON it printed after ``prefix``.

    Raises:
        SystemExit: the worker failed (the end of its stderr is printed; ``what`` names the measurement).
    """
    done = subprocess.run([sys.executable, str(script), "--worker", json.dumps(spec)], capture_output=True, text=True)
    found = [line[len(prefix):] for line in done.stdout.splitlines() if line.startswith(prefix)]
    if done.returncode or not found:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"the measurement of {what} failed (exit status {done.returncode})")
    return json.loads(found[-1])


def write_report(output_dir: str | Path, stem: str, script: str, argv: list[str], results: list[dict],
                 render: Callable[[dict], str]) -> Path:
    """Write ``<output_dir>/<stem>.json`` (``{"command", "results"}``; the command as typed, with ``OMP_NUM_THREADS``
    when set) and the markdown ``render`` makes of the JSON as written. Returns the JSON path."""
    json_path = Path(output_dir) / f"{stem}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    omp = os.environ.get("OMP_NUM_THREADS")
    command = (f"OMP_NUM_THREADS={omp} " if omp else "") + f"python {script} " + shlex.join(argv)
    write_atomic(json_path, json.dumps({"command": command, "results": results}, indent=1) + "\n")
    write_atomic(json_path.with_suffix(".md"), render(json.loads(json_path.read_text())))
    return json_path


def device_text(first: dict, last: dict) -> str:
    """The device line of a report: the GPU's name, or the CPU with its threads and the load average around the
    runs."""
    return first.get("gpu") or (f"CPU ({first['cpu']}, torch threads {first['threads']}, OMP_NUM_THREADS="
                                f"{first['omp_num_threads']}; load average {first['load_avg_start']} at the start, "
                                f"{last['load_avg_end']} at the end)")


def add_run_arguments(parser, results_dir: Path) -> None:  # noqa: ANN001 - argparse.ArgumentParser
    """The options every sampling benchmark has: ``--device``, ``--dtype``, ``--threads``, ``--tiny``,
    ``--output-dir``, ``--render`` and the hidden ``--worker``."""
    import argparse

    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, or OMP_NUM_THREADS)")
    parser.add_argument("--tiny", action="store_true",
                        help="the family's tiny variant: checks the script, not the model")
    parser.add_argument("--output-dir", default=str(results_dir))
    parser.add_argument("--render", metavar="JSON", help="only write the markdown of this JSON report next to it")
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def environment(load_start: float, *, rss_before_kib: int, peak_kib: int, exact: bool, device) -> dict:  # noqa: ANN001
    """The fields of a result that describe the machine and the memory: RSS before and peak (MiB; ``VmHWM`` when
    ``exact``), torch threads, ``OMP_NUM_THREADS``, load average at the start and now, CPU, Python, torch and
    diffusers versions, and on CUDA the peak allocated memory and the GPU's name."""
    import platform

    import diffusers
    import torch

    fields = {
        "rss_before_mib": int(round(rss_before_kib / 1024)),
        "peak_rss_mib": int(round(peak_kib / 1024)),
        "peak_method": "VmHWM" if exact else "VmRSS at end (no clear_refs)",
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_avg_start": round(load_start, 2),
        "load_avg_end": round(os.getloadavg()[0], 2),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }
    if device.type == "cuda":
        fields["peak_cuda_mib"] = int(round(torch.cuda.max_memory_allocated(device) / 2**20))
        fields["gpu"] = torch.cuda.get_device_name(device)
    return fields


def reset_peaks(device) -> tuple[int, bool]:  # noqa: ANN001 - torch.device
    """Start the peak-memory window (``benchmarks/speed.py``'s method): returns the RSS now (KiB) and whether
    ``VmHWM`` was reset (else the RSS at the end is reported)."""
    import gc

    import torch
    from speed import _malloc_trim, _reset_peak_rss, _status_kib

    gc.collect()
    _malloc_trim()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return _status_kib("VmRSS"), _reset_peak_rss()


def run_measurement(spec: dict, *, root: Path, build: Callable, watch: Callable, wrap: Callable) -> dict:
    """One timed ``vsrzoo upscale`` run of a family's sampler (the body of a benchmark's ``worker``).

    The real clip ``spec['input']`` is area-resized to ``spec['height'] x spec['width']`` (first ``spec['frames']``
    frames); ``build(tmp_dir)`` makes the pipeline (timed), ``watch(timer, pipeline)`` installs the
    :class:`~upscale_a_video_sampling.PhaseTimer` hooks, ``wrap(pipeline)`` returns the upscaler module; then, with the
    peak-memory window reset after the networks are built, :func:`zoo.inference.upscale_video` streams the clip in
    ``spec['chunk_frames']`` / ``spec['overlap']`` chunks (the sampler tiles itself) into an H.264 mp4.

    Returns:
        ``{'pipeline', 'timer', 'build_s', 'summary', 'checked' (frames, width, height of the mp4 written),
        'environment' (:func:`environment`)}``.
    """
    import tempfile
    import time

    import torch
    from speed import _status_kib
    from upscale_a_video_sampling import PhaseTimer, make_lq_clip

    from zoo.data.video_io import open_video
    from zoo.inference import upscale_video

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sampling_benchmark_") as tmp:
        tmp = Path(tmp)
        source = Path(spec["input"])  # recorded as given; relative defaults are relative to the project root
        lq_dir = make_lq_clip(source if source.exists() else root / source, tmp / "lq", frames=spec["frames"],
                              height=spec["height"], width=spec["width"])
        started = time.perf_counter()
        pipeline = build(tmp)
        build_s = time.perf_counter() - started
        timer = PhaseTimer(device.type == "cuda")
        watch(timer, pipeline)
        upscaler = wrap(pipeline)
        pipeline.to(device)
        rss_before, exact = reset_peaks(device)
        summary = upscale_video(upscaler, lq_dir, tmp / "sr.mp4", scale=4, chunk_frames=spec["chunk_frames"],
                                overlap=spec["overlap"], tile=None, device=device, dtype=spec["dtype"],
                                progress=False)
        peak_rss = _status_kib("VmHWM" if exact else "VmRSS")
        written = open_video(tmp / "sr.mp4")
        checked = dict(frames=written.num_frames, width=written.width, height=written.height)
    return {"pipeline": pipeline, "timer": timer, "build_s": build_s, "summary": summary, "checked": checked,
            "environment": environment(load_start, rss_before_kib=rss_before, peak_kib=peak_rss, exact=exact,
                                       device=device)}


def worker_or_render(args, prefix: str, worker: Callable[[dict], dict], render: Callable[[dict], str]) -> bool:  # noqa: ANN001
    """Handle the two modes of a sampling benchmark besides measuring: ``--worker SPEC`` (measure in this process and
    print the result after ``prefix``) and ``--render JSON`` (write the markdown next to a JSON report). Returns
    whether one of them ran."""
    if args.worker:
        print(prefix + json.dumps(worker(json.loads(args.worker))), flush=True)
        return True
    if args.render:
        json_path = Path(args.render)
        write_atomic(json_path.with_suffix(".md"), render(json.loads(json_path.read_text())))
        return True
    return False


def finish(args, name: str, script: str, argv: list[str], results: list[dict], render: Callable[[dict], str]) -> int:  # noqa: ANN001
    """Write ``<output_dir>/<name>_<device>[_tiny].json`` and its markdown (:func:`write_report`), say so, return 0."""
    device_slug = "cpu" if args.device == "cpu" else args.device.replace(":", "")
    json_path = write_report(args.output_dir, f"{name}_{device_slug}{'_tiny' if args.tiny else ''}", script, argv,
                             results, render)
    print(f"wrote {json_path} and {json_path.with_suffix('.md')}")
    return 0
