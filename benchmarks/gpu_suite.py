"""Every GPU measurement of the zoo in one call: speed, memory and precision of each family, against its targets.

One command on a CUDA machine (an H100 / H200 class GPU; about 8 minutes with the default ``--budget-s``)::

    python benchmarks/gpu_suite.py --device cuda

writes ``benchmarks/results/speed_<gpu name>.md`` and ``.json`` (GPU name, driver, torch and CUDA versions, the
commit). ``--dry-run`` runs exactly the same steps on the CPU with the families' ``tiny`` variants, tiny frames and
1-2 denoising steps, in about a minute, so that the script cannot rot (``tests/test_gpu_suite.py`` runs it in CI);
its figures say nothing about any GPU.

Steps, in priority order (each is skipped, and the report says so, when what is left of ``--budget-s`` is less than
its estimate; an error or an out-of-memory in one step is recorded and the next step runs):

1. ``net``: RealBasicVSR's network alone (full size, random weights, :func:`speed.worker`) at 180x320 -> 720x1280
   on 100 frames streamed in chunks of 30 sharing 4 (as ``vsrzoo upscale`` runs it): fp32; bf16 autocast; bf16 +
   ``channels_last``; bf16 + ``channels_last`` + ``torch.compile`` (the compilation is the separately reported
   warm-up). Target: at least 60 output frames/s in bf16.
2. ``upscale``: the whole ``vsrzoo upscale`` path (decode -> network -> H.264 encode, the CLI itself, in this
   process) per family on a real clip (the embedded sample area-resized to 180x320, looped back and forth), at 100
   and 1000 frames in one batch call per family, so one model load serves both. Per input: frames/s, the time split
   of the pipeline (decode / compute / encode busy time and the compute thread's waits, from the run's
   ``--stats`` file), peak GPU memory (``torch.cuda.max_memory_allocated`` during that input), GPU utilisation
   sampled through NVML while the call runs. Target: peak memory at 1000 frames within 5 % of 100 frames, for
   every family. Regression families (Real-ESRGAN, RealBasicVSR, VideoGigaGAN) run at 180x320 with their defaults;
   diffusion families (Upscale-A-Video, SATeCo, DC-VSR) run the length check at a small LQ size with one denoising
   step (memory per window does not depend on the number of steps or on the length; their seconds per frame do not
   fit a length check of 1000 frames in the budget).
3. ``diffusion``: each diffusion family at 180x320 -> 720x1280 with its default steps and tiles on a short clip:
   seconds per output frame and peak GPU memory. Target: at most 24 GB.
4. ``precision``: PSNR of bf16 autocast against fp32 on a real clip per family (``benchmarks/precision.py``), the
   figure behind ``--dtype auto`` (bf16 on CUDA).
5. ``ratio``: our RealBasicVSR propagation against basicsr's ``BasicVSR(num_block=20)``, same input, same run.

Everything is measured with random weights at the released sizes (timing and memory do not depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

SCRIPT_VERSION = 1
#: The issue's targets.
TARGET_FPS = 60.0
TARGET_GROWTH = 0.05
TARGET_DIFFUSION_GIB = 24.0
REGRESSION = ("realesrgan", "realbasicvsr", "videogigagan")
DIFFUSION = ("upscale_a_video", "sateco", "dc_vsr")
#: ``--steps`` that give ONE denoising step: SATeCo denoises the last ``strength`` (default 0.5) of its schedule
ONE_STEP = {"upscale_a_video": 1, "sateco": 2, "dc_vsr": 1}


# ------------------------------------------------------------------------------------------------------------ plan
@dataclass
class Scale:
    """The sizes of a run: the real one, or the dry run's tiny one."""

    device: str
    dry: bool
    lq: tuple[int, int] = (180, 320)
    net_frames: int = 100
    chunk: int = 30
    chunk_overlap: int = 4
    lengths: tuple[int, int] = (100, 1000)
    diffusion_lq: tuple[int, int] = (64, 64)
    #: frames of the 720p diffusion clip: about one temporal window of each family's sampler
    diffusion_frames: dict = field(default_factory=lambda: {"upscale_a_video": 8, "sateco": 8, "dc_vsr": 14})
    variant: str | None = None
    #: the dry run: one denoising step instead of the default steps in the 720p step too
    one_step: bool = False
    precision_frames: int = 3
    precision_size: int = 64
    compile: bool = True
    repeats: int = 2
    #: basicsr's SPyNet needs frames of at least 64 x 64
    ratio_lq: tuple[int, int] = (180, 320)
    ratio_frames: int = 10

    @classmethod
    def for_run(cls, device: str, dry: bool) -> Scale:
        if not dry:
            return cls(device=device, dry=False)
        # the same steps, tiny: tiny variants, 1 denoising step, frames a 2-core CPU runs in seconds
        return cls(device=device, dry=True, lq=(32, 48), net_frames=3, chunk=2, chunk_overlap=1, lengths=(6, 12),
                   diffusion_lq=(32, 32), diffusion_frames={name: 3 for name in DIFFUSION}, variant="tiny",
                   one_step=True, precision_frames=2, precision_size=32, compile=False, repeats=1,
                   ratio_lq=(64, 64), ratio_frames=2)


class Budget:
    """Seconds left of the run's wall-clock budget; steps skip the parts that would not fit."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.started = seconds, time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)

    def allows(self, estimate_s: float) -> bool:
        return self.left() >= estimate_s


@dataclass
class Step:
    """One measurement: ``run()`` returns its rows; ``estimate_s`` is what it needs of the budget to start."""

    name: str
    title: str
    run: Callable[[], list[dict]]
    estimate_s: float
    rows: list[dict] = field(default_factory=list)
    status: str = "not run"
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------------------- helpers
def _cuda(device: str) -> bool:
    return device.startswith("cuda")


def _gib(mib: float | None) -> float | None:
    return None if mib is None else mib / 1024


class UtilisationSampler:
    """GPU utilisation (NVML, ``torch.cuda.utilization``) sampled every ``period`` s in a thread while in use.

    ``mean`` is the mean of the samples in percent (None on a CPU, without NVML, or with no sample).
    """

    def __init__(self, device: str, period: float = 0.1) -> None:
        self.device, self.period = device, period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> UtilisationSampler:
        if _cuda(self.device):
            import torch

            try:
                torch.cuda.utilization(self.device)
            except Exception:  # noqa: BLE001 - no NVML (pynvml) on this machine: no samples
                return self

            def sample() -> None:
                while not self._stop.wait(self.period):
                    try:
                        self.samples.append(float(torch.cuda.utilization(self.device)))
                    except Exception:  # noqa: BLE001
                        return

            self._thread = threading.Thread(target=sample, name="gpu-utilisation", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def make_clip(folder: Path, name: str, *, frames: int, size: tuple[int, int]) -> Path:
    """A real H.264 clip of ``frames`` frames at ``size`` (h, w): the embedded sample area-resized, looped back and
    forth (no jump, so no scene cut), written with :class:`zoo.data.video_io.VideoWriter` to ``folder/name.mp4``."""
    from upscale_a_video_sampling import make_lq_clip

    from zoo.data.video_io import VideoWriter, open_video
    from zoo.testing import sample_clip_dir

    pngs = make_lq_clip(sample_clip_dir(), folder / f".{name}_frames", frames=frames, height=size[0], width=size[1])
    source = open_video(pngs)
    path = folder / f"{name}.mp4"
    with VideoWriter(path, fps=source.fps_fraction) as writer:
        for frame in source.iter_frames():
            writer.write(frame)
    for png in pngs.iterdir():
        png.unlink()
    pngs.rmdir()
    return path


def run_upscale(argv: list[str], device: str) -> tuple[list[dict], float | None, float]:
    """``vsrzoo upscale *argv --stats FILE`` in this process; returns (per-input summaries, mean GPU utilisation in
    percent or None, wall seconds of the call). Raises RuntimeError on a non-zero exit."""
    from zoo.cli import main as cli_main

    with tempfile.TemporaryDirectory(prefix="gpu_suite_stats_") as tmp:
        stats = Path(tmp) / "stats.json"
        started = time.perf_counter()
        with UtilisationSampler(device) as sampler:
            status = cli_main(["upscale", *argv, "--no-progress", "--stats", str(stats)])
        seconds = time.perf_counter() - started
        if status != 0:
            raise RuntimeError(f"vsrzoo upscale {' '.join(argv)} exited with {status}")
        inputs = json.loads(stats.read_text())["inputs"]
    return inputs, sampler.mean, seconds


# ---------------------------------------------------------------------------------------------------- the steps
def step_net(scale: Scale, budget: Budget, estimate_s: float) -> list[dict]:
    """RealBasicVSR's network alone in the options that matter (``speed.worker``, in this process); the compiled
    configuration needs three times ``estimate_s`` of the budget (compilation)."""
    import speed

    h, w = scale.lq
    configs = [("fp32", False, False), ("bf16", False, False), ("bf16", True, False)]
    if scale.compile:
        configs.append(("bf16", True, True))
    rows = []
    for dtype, channels_last, compiled in configs:
        spec = speed._spec("realbasicvsr", (h, w), scale.net_frames, chunk=scale.chunk, overlap=scale.chunk_overlap,
                           dtype=dtype, compile=compiled, channels_last=channels_last, device=scale.device,
                           group="net", repeats=scale.repeats)
        need = estimate_s * (3 if compiled else 1)
        if not budget.allows(need):
            rows.append({**spec, "skipped": f"{budget.left():.0f} s of the budget left, needs about {need:.0f} s"})
            continue
        rows.append(_guarded(lambda spec=spec: speed.worker(spec), spec))
        _release(scale.device)
    return rows


def step_upscale(scale: Scale, work: Path, families: tuple[str, ...], budget: Budget,
                 estimate_s: float) -> list[dict]:
    """The whole ``vsrzoo upscale`` path per family at two lengths, one batch call (one model load) per family;
    a family is skipped (and its row says so) when less than ``estimate_s`` of the budget is left."""
    rows = []
    short, long = scale.lengths
    for name in families:
        diffusion = name in DIFFUSION
        size = scale.diffusion_lq if diffusion else scale.lq
        row = {"family": name, "lq": f"{size[0]}x{size[1]}", "steps": "1 denoising" if diffusion else None}
        if not budget.allows(estimate_s):
            rows.append({**row, "skipped": f"{budget.left():.0f} s of the budget left, needs about {estimate_s:.0f} s"})
            continue
        folder = work / f"inputs_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for frames in (short, long):
            clip = work / f"clip_{size[0]}x{size[1]}_{frames}.mp4"
            if not clip.exists():
                make_clip(work, clip.stem, frames=frames, size=size)
            target = folder / f"{frames:05d}.mp4"
            if not target.exists():
                target.symlink_to(clip)
        argv = [str(folder), "-o", str(work / f"out_{name}"), "--model", name, "--random-weights",
                "--device", scale.device, "--overwrite"]
        if scale.variant:
            argv += ["--variant", scale.variant]
        if diffusion:
            argv += ["--steps", str(ONE_STEP[name])]
        try:
            inputs, utilisation, seconds = run_upscale(argv, scale.device)
        except Exception as err:  # noqa: BLE001 - recorded, the next family runs
            rows.append({**row, "error": _error(err)})
            _release(scale.device)
            continue
        for summary in inputs:
            rows.append({**row, **_summary_row(summary), "utilisation": utilisation, "call_seconds": seconds})
        _release(scale.device)
    return rows


def _summary_row(summary: dict) -> dict:
    """The figures of one ``vsrzoo upscale --stats`` entry."""
    return {"frames": summary["frames"], "seconds": summary["seconds"], "fps": summary["frames"] / summary["seconds"],
            "timing": summary.get("timing"), "peak_gpu_mib": summary.get("peak_gpu_mib"),
            "dtype": summary.get("dtype"), "output": f"{summary['size'][1]}x{summary['size'][0]}"}  # h x w, as the LQ


def step_diffusion(scale: Scale, work: Path, budget: Budget, estimate_s: float) -> list[dict]:
    """Each diffusion family at the standard LQ size with its default steps and tiles on about one temporal window."""
    rows = []
    for name in DIFFUSION:
        frames = scale.diffusion_frames[name]
        row = {"family": name, "lq": f"{scale.lq[0]}x{scale.lq[1]}", "frames": frames,
               "steps": "1 denoising" if scale.one_step else "default"}
        if not budget.allows(estimate_s):
            rows.append({**row, "skipped": f"{budget.left():.0f} s of the budget left, needs about {estimate_s:.0f} s"})
            continue
        clip = work / f"clip_{scale.lq[0]}x{scale.lq[1]}_{frames}.mp4"
        if not clip.exists():
            make_clip(work, clip.stem, frames=frames, size=scale.lq)
        argv = [str(clip), "-o", str(work / f"diffusion_{name}.mp4"), "--model", name, "--random-weights",
                "--device", scale.device]
        if scale.variant:
            argv += ["--variant", scale.variant]
        if scale.one_step:
            argv += ["--steps", str(ONE_STEP[name])]
        try:
            (summary,), utilisation, seconds = run_upscale(argv, scale.device)
        except Exception as err:  # noqa: BLE001
            rows.append({**row, "error": _error(err)})
        else:
            rows.append({**row, **_summary_row(summary), "s_per_frame": summary["seconds"] / frames,
                         "utilisation": utilisation, "call_seconds": seconds})
        _release(scale.device)
    return rows


def step_precision(scale: Scale) -> list[dict]:
    """bf16 autocast against fp32 on a real clip, per family (``benchmarks/precision.py``)."""
    import precision

    return precision.measure(list(REGRESSION + DIFFUSION), scale.device, scale.precision_size,
                             scale.precision_frames, full_size=not scale.dry)


def step_ratio(scale: Scale) -> list[dict]:
    """Our RealBasicVSR propagation against basicsr's BasicVSR(num_block=20), fp32, same input."""
    import speed

    rows = []
    for name in ("realbasicvsr_propagation", "basicvsr_b20"):
        spec = speed._spec(name, scale.ratio_lq, scale.ratio_frames, device=scale.device, group="ratio",
                           repeats=scale.repeats + 1)
        rows.append(_guarded(lambda spec=spec: speed.worker(spec), spec))
        _release(scale.device)
    return rows


def _guarded(fn: Callable[[], dict], spec: dict) -> dict:
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - an OOM or error is a result too
        return {**spec, "error": _error(err)}


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"


def _release(device: str) -> None:
    import gc

    gc.collect()
    if _cuda(device):
        import torch

        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------------ targets
def targets(steps: dict[str, Step]) -> list[dict]:
    """Each target of the issue, computed from the measured rows: ``{'target', 'measured', 'met'}`` (met None when
    the rows needed were not measured)."""
    out = []
    net = [r for r in steps["net"].rows if "error" not in r and "skipped" not in r and r.get("dtype") == "bf16"]
    best = max(net, key=lambda r: r["fps"], default=None)
    out.append({"target": f"RealBasicVSR 180x320 -> 720x1280, bf16: >= {TARGET_FPS:.0f} output frames/s",
                "measured": (f"{best['fps']:.1f} frames/s (network, chunks of {best['chunk']}, channels_last "
                             f"{'on' if best['channels_last'] else 'off'}, "
                             f"compile {'on' if best['compile'] else 'off'})" if best else "not measured"),
                "met": None if best is None else best["fps"] >= TARGET_FPS})
    upscale = [r for r in steps["upscale"].rows if "error" not in r and "skipped" not in r]
    for name in REGRESSION + DIFFUSION:
        runs = sorted((r for r in upscale if r["family"] == name and r.get("peak_gpu_mib") is not None),
                      key=lambda r: r["frames"])
        if len(runs) >= 2:
            growth = runs[-1]["peak_gpu_mib"] / runs[0]["peak_gpu_mib"] - 1.0
            measured = (f"{runs[0]['peak_gpu_mib']:.0f} MiB at {runs[0]['frames']} frames -> "
                        f"{runs[-1]['peak_gpu_mib']:.0f} MiB at {runs[-1]['frames']} ({growth:+.1%})")
            met = growth <= TARGET_GROWTH
        else:
            measured, met = "not measured", None
        out.append({"target": f"{name}: peak GPU memory flat in length (within {TARGET_GROWTH:.0%})",
                    "measured": measured, "met": met})
    for r in steps["diffusion"].rows:
        if "error" in r or "skipped" in r or r.get("peak_gpu_mib") is None:
            measured = r.get("error") or (f"skipped: {r['skipped']}" if "skipped" in r else None)
            if measured is None:
                measured = f"not measured (no GPU); {r['s_per_frame']:.2f} s per output frame here"
            out.append({"target": f"{r['family']}: <= {TARGET_DIFFUSION_GIB:.0f} GB at 720p output",
                        "measured": measured, "met": None})
            continue
        out.append({"target": f"{r['family']}: <= {TARGET_DIFFUSION_GIB:.0f} GB at 720p output",
                    "measured": f"{_gib(r['peak_gpu_mib']):.1f} GiB, {r['s_per_frame']:.2f} s per output frame "
                                f"({r['steps']} steps)",
                    "met": _gib(r["peak_gpu_mib"]) <= TARGET_DIFFUSION_GIB})
    vgg = [r for r in upscale if r["family"] == "videogigagan"]
    out.append({"target": "VideoGigaGAN 180x320 -> 720x1280: frames/s (reported, no target)",
                "measured": ", ".join(f"{r['fps']:.1f} frames/s end to end at {r['frames']} frames" for r in vgg)
                or "not measured", "met": None})
    return out


# ------------------------------------------------------------------------------------------------------ report
def environment(device: str) -> dict:
    """GPU name, driver, torch / CUDA versions, the commit, the machine."""
    import torch

    from zoo.benchmark.report import device_name
    from zoo.benchmark.report import environment as versions
    from zoo.provenance import git_commit

    env = {"device": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
           "commit": os.environ.get("VSRZOO_COMMIT") or git_commit() or "unknown",
           "python": platform.python_version(), "cpus": os.cpu_count(), "versions": versions()}
    if _cuda(device):
        try:
            query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                    "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            env["nvidia_smi"] = query.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["nvidia_smi"] = "unavailable"
    return env


def slug(device: str, dry: bool) -> str:
    """``speed_<slug>``: the GPU's name in lower case (``nvidia_h200``), ``dryrun_cpu`` for a dry run."""
    if dry or not _cuda(device):
        return "dryrun_" + re.sub(r"[^a-z0-9]+", "_", device.lower()) if dry else "cpu"
    import torch

    return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(device).lower()).strip("_")


def _fmt(value: object, spec: str = ".1f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _split(timing: dict | None) -> str:
    if not timing:
        return "-"
    keys = ("decode_s", "compute_s", "encode_s", "wait_decode_s", "wait_encode_s")
    return " / ".join(_fmt(timing.get(k)) for k in keys)


def render(report: dict) -> str:
    """The markdown of a report (every number from the JSON)."""
    env = report["environment"]
    lines = [f"# GPU speed and memory: {env['device']}", "",
             "Written by `benchmarks/gpu_suite.py` from its own measurements; no number was typed.", "",
             f"- **Command:** `{report['command']}`", f"- **Date:** {report['date']}",
             f"- **GPU:** {env.get('nvidia_smi', env['device'])}",
             f"- **torch:** {env['torch']} (CUDA {env['cuda']}), python {env['python']}, {env['cpus']} CPUs",
             f"- **Commit:** {env['commit']}",
             f"- **Budget:** {report['budget_s']:.0f} s; used {report['seconds']:.0f} s",
             "- **Versions:** " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())]
    if report["dry_run"]:
        lines += ["", "**Dry run** (`--dry-run`): tiny variants, tiny frames, 1 denoising step, on "
                  f"{env['device']}. It checks the script; its figures say nothing about a GPU."]
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    steps = {s["name"]: s for s in report["steps"]}
    lines += ["", "## Steps", "", "| step | status | seconds |", "|---|---|---:|"]
    lines += [f"| {s['name']}: {s['title']} | {s['status']} | {s['seconds']:.1f} |" for s in report["steps"]]

    net = steps.get("net", {}).get("rows", [])
    if net:
        lines += ["", "## RealBasicVSR network (180x320 -> 720x1280, chunks streamed)", "",
                  "| dtype | channels_last | compile | frames | warm-up (s) | time (s) | frames/s | peak GPU (MiB) |",
                  "|---|---|---|---:|---:|---:|---:|---:|"]
        for r in net:
            if "error" in r or "skipped" in r:
                what = f"error: {r['error']}" if "error" in r else f"skipped: {r['skipped']}"
                lines.append(f"| {r['dtype']} | {r['channels_last']} | {r['compile']} | {r['frames']} | {what} | | | |")
                continue
            lines.append(f"| {r['dtype']} | {'yes' if r['channels_last'] else 'no'} | "
                         f"{'yes' if r['compile'] else 'no'} | {r['frames']} | {r['warmup_s']:.1f} | "
                         f"{r['seconds']:.2f} | {r['fps']:.1f} | {_fmt(r.get('peak_cuda_total_mib'), '.0f')} |")
    for name, title in (("upscale", "`vsrzoo upscale` end to end, by length: regression families"),
                        ("upscale_diffusion", "`vsrzoo upscale` end to end, by length: diffusion families (1 step)"),
                        ("diffusion", "Diffusion families at 720p output, default steps")):
        rows = steps.get(name, {}).get("rows", [])
        if not rows:
            continue
        lines += ["", f"## {title}", "",
                  "Time split (s): decode / compute / encode busy, then the compute thread's waits for decoded "
                  "frames / for the encoder (the GPU idles while it waits).", "",
                  "| family | LQ -> output | frames | steps | dtype | seconds | frames/s | s/frame | peak GPU (MiB) | "
                  "GPU util. (%) | time split |", "|---|---|---:|---|---|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            if "error" in r or "skipped" in r:
                what = f"error: {r['error']}" if "error" in r else f"skipped: {r['skipped']}"
                lines.append(f"| {r['family']} | {r['lq']} | {r.get('frames', '-')} | {_fmt(r.get('steps'))} | | "
                             f"{what} | | | | | |")
                continue
            lines.append(f"| {r['family']} | {r['lq']} -> {r['output']} | {r['frames']} | {_fmt(r.get('steps'))} | "
                         f"{_fmt(r.get('dtype'))} | {r['seconds']:.1f} | {r['frames'] / r['seconds']:.2f} | "
                         f"{r['seconds'] / r['frames']:.3f} | {_fmt(r.get('peak_gpu_mib'), '.0f')} | "
                         f"{_fmt(r.get('utilisation'), '.0f')} | {_split(r.get('timing'))} |")
    rows = steps.get("precision", {}).get("rows", [])
    if rows:
        keys = [k for k in rows[0] if k not in ("family",)]
        lines += ["", "## bf16 against fp32 (real clip)", "", "| family | " + " | ".join(keys) + " |",
                  "|---|" + "---|" * len(keys)]
        lines += ["| " + " | ".join([str(r.get("family"))] + [_fmt(r.get(k), ".2f") for k in keys]) + " |"
                  for r in rows]
    rows = steps.get("ratio", {}).get("rows", [])
    if rows:
        lines += ["", "## RealBasicVSR propagation vs basicsr BasicVSR(num_block=20), fp32", "",
                  "| network | frames | time (s) | frames/s |", "|---|---:|---:|---:|"]
        lines += [f"| {r['family']} | {r['frames']} | " + (f"error: {r['error']} | |" if "error" in r else
                  f"{r['seconds']:.3f} | {r['fps']:.1f} |") for r in rows]
        ok = [r for r in rows if "error" not in r]
        if len(ok) == 2:
            lines += ["", f"Ratio (ours / basicsr): **{ok[0]['seconds'] / ok[1]['seconds']:.2f}**"]
    lines.append("")
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    """Write ``<out>.json`` and ``<out>.md`` atomically."""
    from zoo.fileio import write_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    write_atomic(json_path, json.dumps(report, indent=1, default=str).encode())
    write_atomic(md_path, render(report).encode())
    return json_path, md_path


# ------------------------------------------------------------------------------------------------------- main
def plan(scale: Scale, work: Path, only: set[str] | None, budget: Budget) -> list[Step]:
    """The steps in priority order. Estimates: the seconds a step (or, for the per-family steps, one family) is
    expected to take on an H200, guessed from FLOP counts before any GPU run (the dry run's are small); a step or
    family starts only when that much of the budget is left."""
    k = 0.02 if scale.dry else 1.0
    steps = [
        Step("net", "RealBasicVSR network: fp32, bf16, channels_last, compile",
             lambda: step_net(scale, budget, 15 * k), 15 * k),
        Step("upscale", "vsrzoo upscale, regression families, 100 and 1000 frames",
             lambda: step_upscale(scale, work, REGRESSION, budget, 45 * k), 45 * k),
        Step("diffusion", "diffusion families at 720p output, default steps",
             lambda: step_diffusion(scale, work, budget, 60 * k), 60 * k),
        Step("upscale_diffusion", "vsrzoo upscale, diffusion families, 100 and 1000 frames, 1 step",
             lambda: step_upscale(scale, work, DIFFUSION, budget, 35 * k), 35 * k),
        Step("precision", "bf16 against fp32 on a real clip", lambda: step_precision(scale), 60 * k),
        Step("ratio", "RealBasicVSR propagation vs basicsr BasicVSR", lambda: step_ratio(scale), 20 * k),
    ]
    return [s for s in steps if only is None or s.name in only]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N (or cpu with --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="the same steps, tiny, on the CPU (checks the script)")
    p.add_argument("--budget-s", type=float, default=470.0,
                   help="wall-clock budget in seconds (default 470: the run fits a 10-minute device call with the "
                   "wheels' install); steps and families that would not fit are skipped and reported")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder of speed_<gpu>.md/.json")
    p.add_argument("--only", default=None, type=lambda s: set(s.split(",")), help="comma-separated step names")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    budget = Budget(args.budget_s)
    started = budget.started
    import torch

    from zoo.benchmark.report import timestamp

    if _cuda(args.device) and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here; use --dry-run --device cpu to check "
                         "the script on a CPU")
    scale = Scale.for_run(args.device, args.dry_run)
    command = " ".join(shlex.quote(x) for x in ["python", "benchmarks/gpu_suite.py", *argv])
    out = Path(args.out) / f"speed_{slug(args.device, args.dry_run)}"
    report = {"script_version": SCRIPT_VERSION, "command": command, "date": timestamp(), "dry_run": args.dry_run,
              "budget_s": args.budget_s, "environment": environment(args.device), "steps": [], "targets": []}
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:
        steps = plan(scale, Path(tmp), args.only, budget)
        for step in steps:
            left = budget.left()
            if left < step.estimate_s:
                step.status = f"skipped: {left:.0f} s of the budget left, the step needs about {step.estimate_s:.0f} s"
            else:
                print(f"[gpu_suite] {step.name}: {step.title} ({left:.0f} s left)", flush=True)
                step_started = time.perf_counter()
                try:
                    step.rows = step.run()
                    errors = sum("error" in r for r in step.rows)
                    skipped = sum("skipped" in r for r in step.rows)
                    step.status = "done" + (f", {errors} error{'s' * (errors > 1)}" if errors else "") + (
                        f", {skipped} skipped (budget)" if skipped else "")
                except Exception as err:  # noqa: BLE001 - recorded; the next step runs
                    step.status = f"failed: {_error(err)}"
                step.seconds = time.perf_counter() - step_started
                print(f"[gpu_suite] {step.name}: {step.status} in {step.seconds:.1f} s", flush=True)
            report["steps"].append({"name": step.name, "title": step.title, "status": step.status,
                                    "seconds": step.seconds, "rows": step.rows})
            by_name = {s.name: s for s in steps}
            merged = {"net": by_name.get("net") or Step("net", "", list, 0),
                      "upscale": Step("upscale", "", list, 0,
                                      rows=[*(by_name["upscale"].rows if "upscale" in by_name else []),
                                            *(by_name["upscale_diffusion"].rows
                                              if "upscale_diffusion" in by_name else [])]),
                      "diffusion": by_name.get("diffusion") or Step("diffusion", "", list, 0)}
            report["targets"] = targets(merged)
            report["seconds"] = time.perf_counter() - started
            json_path, md_path = write_report(report, out)  # after every step: partial results survive a kill
    print(f"[gpu_suite] wrote {md_path} and {json_path} in {report['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
