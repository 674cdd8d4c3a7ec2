"""Speed and memory of every family's full-size network (random weights), each measurement in a fresh process.

Timing needs no pretrained weights: the networks are built at their full (paper / released) size with random
weights (``torch.manual_seed(0)``), fed random LQ clips, and timed. Each measurement runs in a new Python process
(``--worker``) so that its peak resident set size is its own. Per measurement:

- **time / FPS**: wall time of the run after an untimed warm-up (2 frames at the same size; with ``compile`` the
  warm-up uses the run's exact shapes so that compilation is not timed, and the warm-up time is reported);
- **peak RSS** (CPU): the process's high-water mark ``VmHWM`` (reset through ``/proc/self/clear_refs`` after the
  warm-up), and its increase over the RSS just before the run (network and, in whole-clip mode, the input already
  allocated); on CUDA ``torch.cuda.max_memory_allocated``;
- **modes**: ``whole`` = the whole clip in one forward call (official RealBasicVSR inference: memory grows with the
  clip); ``chunk N/k`` = streaming chunks of N frames sharing k frames (``zoo.diffusion.tiles.plan_windows``), each chunk's
  LQ generated when needed and its output dropped, so memory should stay flat with video length (the goal).

Families (``--families``):

- ``realbasicvsr``: :class:`zoo.models.realbasicvsr.net.RealBasicVSRNet` (64 channels, 20 + 20 blocks, 6.3 M);
- ``realbasicvsr_propagation``: the same net without its cleaning module (the BasicVSR part only), like-for-like
  with ``basicvsr_b20``;
- ``basicvsr_b30`` / ``basicvsr_b20``: basicsr's ``BasicVSR(num_feat=64, num_block=30 | 20)`` (basicsr's
  closest relative; 30 blocks per branch is basicsr's REDS/Vid4 config, 20 matches RealBasicVSR's propagation);
- ``videogigagan``: :class:`zoo.models.videogigagan.net.VideoGigaGANNet` with its defaults (25.3 M);
- ``upscale_a_video_unet``: ONE denoising step of the full Upscale-A-Video UNet
  (:class:`zoo.models.upscale_a_video.net.UpscaleAVideoUNet`, 691 M) on one temporal window at LQ resolution, with
  classifier-free guidance (batch 2, text tokens 77 x 1024 of zeros); a full sampling run costs about
  ``num_inference_steps (30) x windows x tiles`` such steps plus the VAE; the whole sampler (text encoder, RAFT
  propagation, tiled and windowed guided DDIM, temporal VAE decoding, colour fix, video writing) at 180p -> 720p is
  measured by ``benchmarks/upscale_a_video_sampling.py``.

The like-for-like ratio (``--plan ratio``) is measured differently: ``realbasicvsr_propagation`` and
``basicvsr_b20`` are built in ONE process and fed the same random clip; after one untimed warm-up call each, the
forward calls alternate in the order ours, theirs, theirs, ours, ... (``--repeats`` calls each, default 6), so
that other jobs on a shared CPU slow both nets alike; the report gives the min and median of each and the ratios of
the mins and of the medians, with the 1-minute load average sampled before every call.

Options that matter for speed are measured, not guessed: ``--dtypes fp32,bf16,fp16`` (autocast), ``--compile``
(``torch.compile`` of each top-level submodule, or the parts a net declares, never the recurrence:
:func:`zoo.inference.compile_network`, as ``vsrzoo upscale --compile``), ``--channels-last`` (2-D convolution
weights in channels-last memory format: :func:`zoo.inference.to_channels_last`) and ``--chunks`` (frames per chunk).

Examples::

    # the recorded CPU plan (about 15 minutes on 2 CPU cores); writes benchmarks/results/speed_cpu.md
    python benchmarks/speed.py --plan cpu
    # our RealBasicVSR propagation vs basicsr's BasicVSR(num_block=20), both in one process, calls interleaved;
    # writes benchmarks/results/speed_cpu_ratio.md (about 4 minutes on 2 CPU cores)
    python benchmarks/speed.py --plan ratio
    # the standard grid on a GPU: 180x320 -> 720x1280, 10 / 100 / 1000 frames, fp32 / bf16 / fp16, compile, ...
    python benchmarks/speed.py --plan gpu --device cuda
    # a custom grid
    python benchmarks/speed.py --families realbasicvsr --sizes 180x320 --frames 10,100 --chunks 0,10 --dtypes fp32,bf16
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FAMILIES = ("realbasicvsr", "realbasicvsr_propagation", "basicvsr_b30", "basicvsr_b20", "videogigagan",
            "upscale_a_video_unet")
_RESULT_PREFIX = "SPEED_RESULT "


# ------------------------------------------------------------------------------------------------------- the worker
def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _malloc_trim() -> None:
    """Return the C heap's free pages to the OS (glibc), so later allocations raise the RSS again."""
    from zoo.inference import trim_host_heap

    trim_host_heap()


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _build(family: str):  # noqa: ANN202 - returns (module, forward callable, params counted)
    import torch
    from torch import nn

    torch.manual_seed(0)
    if family in ("realbasicvsr", "realbasicvsr_propagation"):
        from zoo.models.realbasicvsr.net import RealBasicVSRNet

        net = RealBasicVSRNet()
        if family == "realbasicvsr":
            return net, net, net

        class PropagationOnly(nn.Module):
            """RealBasicVSR without the cleaning module: SPyNet + propagation + upsampling (BasicVSR)."""

            def __init__(self, inner: RealBasicVSRNet) -> None:
                super().__init__()
                self.inner = inner
                del inner.cleaning
                inner.compile_whole = False  # compile_network: its parts, never its recurrence


            def forward(self, lq: torch.Tensor) -> torch.Tensor:
                return self.inner._propagate(lq)

        module = PropagationOnly(net)
        return module, module, module
    if family in ("basicvsr_b30", "basicvsr_b20"):
        from basicsr.archs.basicvsr_arch import BasicVSR

        net = BasicVSR(num_feat=64, num_block=30 if family == "basicvsr_b30" else 20, spynet_path=None)
        return net, net, net
    if family == "videogigagan":
        from zoo.models.videogigagan.net import VideoGigaGANNet

        net = VideoGigaGANNet()
        return net, net, net
    if family == "upscale_a_video_unet":
        from einops import repeat

        from zoo.models.upscale_a_video.net import UpscaleAVideoUNet

        unet = UpscaleAVideoUNet()

        class OneStep(nn.Module):
            """One v-prediction of the UNet for a window, conditional + unconditional (CFG) in one batch of 2."""

            def __init__(self, inner: UpscaleAVideoUNet) -> None:
                super().__init__()
                self.unet = inner

            def forward(self, lq: torch.Tensor) -> torch.Tensor:
                b, t, _, h, w = lq.shape
                latents = torch.randn(2 * b, t, 4, h, w, device=lq.device, dtype=lq.dtype)
                cond = repeat(lq * 2 - 1, "b t c h w -> (2 b) t c h w")  # the same LQ for both CFG halves
                text = torch.zeros(2 * b, 77, 1024, device=lq.device, dtype=lq.dtype)
                return self.unet(latents, 500, cond, 120, text)

        module = OneStep(unet)
        return module, module, module
    raise SystemExit(f"unknown family {family!r}; known: {FAMILIES}")


def worker(spec: dict) -> dict:
    """Run one measurement (see the module docstring) and return its result dict."""
    import torch

    from zoo.diffusion.tiles import plan_windows
    from zoo.inference import compile_network, to_channels_last

    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    module, forward, counted = _build(spec["family"])
    params_m = sum(p.numel() for p in counted.parameters()) / 1e6
    module = module.to(device).eval()
    if spec["channels_last"]:  # the same preparation as vsrzoo upscale --channels-last / --compile
        to_channels_last(module)
    if spec["compile"]:
        compile_network(module, "default")
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec["dtype"])

    def run(lq: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=amp or torch.float32,
                                             enabled=amp is not None):
            return forward(lq)

    h, w, frames, chunk, overlap = spec["height"], spec["width"], spec["frames"], spec["chunk"], spec["overlap"]
    plan = plan_windows(frames, chunk or None, overlap if chunk else 0)
    generator = torch.Generator().manual_seed(0)

    def clip(length: int) -> torch.Tensor:
        return torch.rand(1, length, 3, h, w, generator=generator).to(device)

    # warm-up (untimed): 2 frames, or with compile the exact shapes of the run
    started = time.perf_counter()
    warm_lengths = sorted({end - start for start, end in plan}) if spec["compile"] else [min(2, frames)]
    for length in warm_lengths:
        out = run(clip(length))
        del out
    if cuda:
        torch.cuda.synchronize(device)
    warmup_s = time.perf_counter() - started

    lq = clip(frames) if not chunk else None
    gc.collect()
    _malloc_trim()  # memory the warm-up freed goes back to the OS, so the run's own peak is seen
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    rss_before = _status_kib("VmRSS")
    exact = _reset_peak_rss()
    out_shape = None
    times = []
    for _ in range(spec.get("repeats", 1)):
        started = time.perf_counter()
        if lq is not None:
            out = run(lq)
            out_shape = list(out.shape)
            del out
        else:
            for start, end in plan:
                out = run(clip(end - start))
                out_shape = [out.shape[0], frames, *out.shape[2:]]
                del out
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    seconds = min(times)
    result = {**spec, "params_m": params_m, "warmup_s": warmup_s, "seconds": seconds, "fps": frames / seconds,
              "times": times, "out_shape": out_shape, "rss_before_mib": rss_before / 1024,
              "peak_rss_mib": (_status_kib("VmHWM") if exact else _status_kib("VmRSS")) / 1024,
              "peak_method": "VmHWM" if exact else "VmRSS at end (no clear_refs)", "threads": torch.get_num_threads()}
    result["peak_increase_mib"] = result["peak_rss_mib"] - result["rss_before_mib"]
    result["load_avg"] = os.getloadavg()[0]
    if cuda:
        result["peak_cuda_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        result["peak_cuda_total_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


#: The two nets of the like-for-like ratio: (ours, theirs).
RATIO_PAIR = ("realbasicvsr_propagation", "basicvsr_b20")


def ratio_worker(spec: dict) -> dict:
    """Time both nets of :data:`RATIO_PAIR` in this one process, forward calls interleaved.

    ``spec`` holds ``height``, ``width``, ``frames``, ``repeats`` (timed calls per net) and ``device``. Both nets
    get the same random clip (1, frames, 3, height, width) in [0, 1]; each gets one untimed warm-up call; then
    round ``k`` calls (ours, theirs) for even ``k`` and (theirs, ours) for odd ``k``, so neither net always runs
    first after the other. Returns ``spec`` plus ``times`` ({family: [seconds per call]}), ``order`` (the
    families in call order), ``load_avg`` (the 1-minute load average before each timed call, then once at the
    end), ``params_m``, ``out_shape``, ``warmup_s`` and ``threads``.
    """
    import torch

    device = torch.device(spec["device"])
    nets = {}
    params_m = {}
    for family in RATIO_PAIR:
        module, forward, counted = _build(family)
        params_m[family] = sum(p.numel() for p in counted.parameters()) / 1e6
        module.to(device).eval()
        nets[family] = forward
    lq = torch.rand(1, spec["frames"], 3, spec["height"], spec["width"],
                    generator=torch.Generator().manual_seed(0)).to(device)

    def call(family: str) -> tuple[float, list[int]]:
        started = time.perf_counter()
        with torch.no_grad():
            out = nets[family](lq)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started, list(out.shape)

    warmup_s = {family: call(family)[0] for family in RATIO_PAIR}
    times: dict[str, list[float]] = {family: [] for family in RATIO_PAIR}
    order, load_avg = [], []
    out_shape = None
    for k in range(spec["repeats"]):
        for family in (RATIO_PAIR if k % 2 == 0 else RATIO_PAIR[::-1]):
            load_avg.append(os.getloadavg()[0])
            seconds, out_shape = call(family)
            times[family].append(seconds)
            order.append(family)
    load_avg.append(os.getloadavg()[0])
    return {**spec, "times": times, "order": order, "load_avg": load_avg, "params_m": params_m,
            "out_shape": out_shape, "warmup_s": warmup_s, "threads": torch.get_num_threads()}


def ratio_summary(result: dict) -> dict:
    """Min, median and their ratios (ours / theirs) computed from a :func:`ratio_worker` result's ``times``."""
    from statistics import median

    ours, theirs = (result["times"][family] for family in RATIO_PAIR)
    summary = {"ours_min": min(ours), "ours_median": median(ours), "theirs_min": min(theirs),
               "theirs_median": median(theirs)}
    summary["ratio_min"] = summary["ours_min"] / summary["theirs_min"]
    summary["ratio_median"] = summary["ours_median"] / summary["theirs_median"]
    return summary


# ------------------------------------------------------------------------------------------------------------ plans
def _spec(family: str, size: tuple[int, int], frames: int, *, chunk: int = 0, overlap: int = 0, dtype: str = "fp32",
          compile: bool = False, channels_last: bool = False, device: str = "cpu", group: str = "",
          repeats: int = 1) -> dict:
    return {"family": family, "height": size[0], "width": size[1], "frames": frames, "chunk": chunk,
            "overlap": overlap if chunk else 0, "dtype": dtype, "compile": compile, "channels_last": channels_last,
            "device": device, "group": group, "repeats": repeats}


def cpu_plan(device: str = "cpu") -> list[dict]:
    """The recorded CPU plan (about 15 minutes on 2 idle cores): see the groups in the output file."""
    std, small = (180, 320), (64, 64)
    specs = []
    # 1. our net vs basicsr's BasicVSR at the standard LQ size, one run
    for family in ("realbasicvsr", "realbasicvsr_propagation", "basicvsr_b30", "basicvsr_b20"):
        specs.append(_spec(family, std, 3, device=device, group="ratio"))
    # 2. options at a small LQ size (full-size nets), best of 3 timed runs: dtype, channels_last, compile, chunk size
    options = dict(device=device, group="options", repeats=3)
    specs.append(_spec("realbasicvsr", small, 4, **options))
    specs.append(_spec("realbasicvsr", small, 4, dtype="bf16", **options))
    specs.append(_spec("realbasicvsr", small, 4, channels_last=True, **options))
    specs.append(_spec("realbasicvsr", small, 4, dtype="bf16", channels_last=True, **options))
    specs.append(_spec("realbasicvsr", small, 4, compile=True, **options))
    specs.append(_spec("realbasicvsr", small, 4, chunk=2, overlap=0, **options))
    specs.append(_spec("realbasicvsr", std, 3, dtype="bf16", device=device, group="options"))
    specs.append(_spec("realbasicvsr", std, 3, channels_last=True, device=device, group="options"))
    # 3. memory against video length: whole clip vs streamed chunks (100 -> 1000 frames does not fit a CPU budget;
    #    10 frames in chunks of 10 is a single chunk, the reference of the streamed run)
    specs.append(_spec("realbasicvsr", small, 10, device=device, group="length"))
    specs.append(_spec("realbasicvsr", small, 30, device=device, group="length"))
    specs.append(_spec("realbasicvsr", small, 10, chunk=10, overlap=2, device=device, group="length"))
    specs.append(_spec("realbasicvsr", small, 100, chunk=10, overlap=2, device=device, group="length"))
    # 4. the other families (few frames: seconds per frame on a CPU)
    specs.append(_spec("videogigagan", std, 2, device=device, group="families"))
    specs.append(_spec("upscale_a_video_unet", small, 2, device=device, group="families"))
    return specs


def gpu_plan(device: str = "cuda") -> list[dict]:
    """The standard grid for an accelerator: 180x320 -> 720x1280, 10/100/1000 frames, options."""
    std = (180, 320)
    specs = []
    for family in ("realbasicvsr", "realbasicvsr_propagation", "basicvsr_b30", "basicvsr_b20", "videogigagan"):
        specs.append(_spec(family, std, 10, device=device, group="ratio" if "vsr" in family else "families"))
        specs.append(_spec(family, std, 100, device=device, group="length"))
        specs.append(_spec(family, std, 100, chunk=30, overlap=4, device=device, group="length"))
        specs.append(_spec(family, std, 1000, chunk=30, overlap=4, device=device, group="length"))
    for dtype, cl, comp in itertools.product(("fp32", "bf16", "fp16"), (False, True), (False, True)):
        specs.append(_spec("realbasicvsr", std, 100, chunk=30, overlap=4, dtype=dtype, channels_last=cl,
                           compile=comp, device=device, group="options"))
    for chunk in (10, 50, 100):
        specs.append(_spec("realbasicvsr", std, 100, chunk=chunk, overlap=min(4, chunk - 1), device=device,
                           group="options"))
    specs.append(_spec("upscale_a_video_unet", (64, 64), 8, device=device, group="families"))
    specs.append(_spec("upscale_a_video_unet", (64, 64), 8, dtype="fp16", device=device, group="families"))
    return specs


def ratio_plan(device: str = "cpu", repeats: int = 6) -> list[dict]:
    """The like-for-like ratio runs: 180x320 with 3 frames and 64x64 with 8 frames, ``repeats`` calls per net."""
    return [{"kind": "ratio", "height": h, "width": w, "frames": frames, "repeats": repeats, "device": device}
            for (h, w), frames in (((180, 320), 3), ((64, 64), 8))]


def grid_plan(args: argparse.Namespace) -> list[dict]:
    """The grid of the command-line lists."""
    specs = []
    for family, size, frames, chunk, dtype in itertools.product(
            args.families, args.sizes, args.frames, args.chunks, args.dtypes):
        specs.append(_spec(family, size, frames, chunk=chunk, overlap=min(args.overlap, max(chunk - 1, 0)),
                           dtype=dtype, compile=args.compile, channels_last=args.channels_last, device=args.device,
                           group="grid", repeats=args.repeats or 1))
    return specs


# ----------------------------------------------------------------------------------------------------------- report
_GROUPS = {
    "ratio": "Our RealBasicVSR network vs basicsr's BasicVSR (same size, same run)",
    "options": "Options that matter for speed",
    "length": "Memory against video length (whole clip vs streamed chunks)",
    "families": "Other families",
    "grid": "Measurements",
}


_GROUP_NOTES = {
    "ratio": "`realbasicvsr_propagation` is our net without its image-cleaning module (SPyNet + bidirectional "
             "propagation with 20 blocks per branch + upsampling), the like-for-like counterpart of basicsr's "
             "`BasicVSR(num_feat=64, num_block=20)`; `num_block=30` is basicsr's own BasicVSR setting.",
    "options": "Rows with several timed runs report the best (others in brackets): the CPU is shared, so the best "
               "run is the least disturbed one. bf16 runs under `torch.autocast` (this CPU has AVX512-BF16).",
    "length": "Chunked rows stream the clip: each chunk's LQ is made when needed and its output dropped, as "
              "`zoo.inference.upscale_video` does; 10 frames in chunks of 10 is a single chunk.",
    "families": "`upscale_a_video_unet` is ONE denoising step of the full Upscale-A-Video UNet on a window at LQ "
                "(= latent) resolution with classifier-free guidance (batch 2); its output is the v-prediction at "
                "latent size. A full sampling run costs about 30 steps x temporal windows x spatial tiles of these, "
                "plus the VAE decoder; `benchmarks/upscale_a_video_sampling.py` measures the whole sampler at "
                "180p -> 720p.",
}


def _mode(r: dict) -> str:
    return f"chunk {r['chunk']}/{r['overlap']}" if r["chunk"] else "whole clip"


def _row(r: dict, cuda: bool) -> str:
    if "error" in r:
        cells = [r["family"], f"{r['height']}x{r['width']}", str(r["frames"]), _mode(r), r["dtype"],
                 "yes" if r["compile"] else "no", "yes" if r["channels_last"] else "no", f"error: {r['error']}"]
        return "| " + " | ".join(cells + [""] * 7) + " |"
    out = r["out_shape"]
    mem = (f"{r['peak_cuda_mib']:.0f} | {r['peak_cuda_total_mib']:.0f}" if cuda
           else f"{r['peak_increase_mib']:.0f} | {r['peak_rss_mib']:.0f}")
    return (f"| {r['family']} | {r['height']}x{r['width']} -> {out[-2]}x{out[-1]} | {r['frames']} | {_mode(r)} | "
            f"{r['dtype']} | {'yes' if r['compile'] else 'no'} | {'yes' if r['channels_last'] else 'no'} | "
            f"{r['params_m']:.2f} | {r['warmup_s']:.1f} | {_time_cell(r)} | {r['fps']:.3f} | "
            f"{1000 * r['seconds'] / r['frames']:.0f} | {mem} | {r.get('load_avg', float('nan')):.1f} |")


def _time_cell(r: dict) -> str:
    times = r.get("times") or [r["seconds"]]
    if len(times) == 1:
        return f"{r['seconds']:.1f}"
    return f"{min(times):.1f} (min of {', '.join(f'{t:.1f}' for t in times)})"


def _find(results: list[dict], **match) -> dict | None:
    for r in results:
        if "error" not in r and all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _derived(results: list[dict]) -> list[str]:
    """Ratios and growths computed from the measured rows (never typed)."""
    lines = []
    sizes = {(r["height"], r["width"], r["frames"]) for r in results if r["family"] == "realbasicvsr"}
    for h, w, frames in sorted(sizes):
        base = dict(height=h, width=w, frames=frames, chunk=0, dtype="fp32", compile=False, channels_last=False)
        ours = _find(results, family="realbasicvsr", **base)
        prop = _find(results, family="realbasicvsr_propagation", **base)
        for name in ("basicvsr_b30", "basicvsr_b20"):
            other = _find(results, family=name, **base)
            if ours and other:
                line = (f"- {h}x{w}, {frames} frames: RealBasicVSRNet forward time / basicsr "
                        f"{name.replace('basicvsr_b', 'BasicVSR(num_block=')}) = {ours['seconds']:.1f} s / "
                        f"{other['seconds']:.1f} s = **{ours['seconds'] / other['seconds']:.2f}**")
                if prop and name == "basicvsr_b20":
                    line += (f"; without the cleaning module (like-for-like BasicVSR part): {prop['seconds']:.1f} s"
                             f" / {other['seconds']:.1f} s = **{prop['seconds'] / other['seconds']:.2f}**")
                lines.append(line)
                if prop and name == "basicvsr_b20":
                    lines.append("- the rows above ran in separate processes, one after another, on a shared CPU, "
                                 "with the code of the commit named above; the like-for-like ratio measured with both "
                                 "nets in one process and their calls interleaved is in `speed_cpu_ratio.md` "
                                 "(`python benchmarks/speed.py --plan ratio`)")
    config_keys = ("group", "family", "height", "width", "chunk", "overlap", "dtype", "compile", "channels_last")
    configs: dict[tuple, list[dict]] = {}
    for r in results:
        if "error" not in r:
            configs.setdefault(tuple(r[k] for k in config_keys), []).append(r)
    for runs in configs.values():
        if len({r["frames"] for r in runs}) < 2:
            continue
        runs = sorted(runs, key=lambda r: r["frames"])
        short, long = runs[0], runs[-1]
        key = "peak_cuda_mib" if "peak_cuda_mib" in long else "peak_increase_mib"
        lines.append(f"- {long['family']} {long['height']}x{long['width']}, {_mode(long)}: peak memory increase "
                     f"{short[key]:.0f} MiB at {short['frames']} frames -> {long[key]:.0f} MiB at {long['frames']} "
                     f"frames ({long[key] - short[key]:+.0f} MiB for {long['frames'] / short['frames']:.0f}x the "
                     f"frames)")
    return lines


def _versions_line(versions: str | None) -> str:
    """The versions of the measuring run (``versions`` as saved), else those of this process."""
    from zoo.benchmark.report import environment

    return versions or ", ".join(f"{k} {v}" for k, v in environment().items())


def _saved_versions(saved: dict, markdown: Path) -> str | None:
    """The versions a re-render must show: those saved in the JSON, else the line of the markdown being replaced
    (older results files did not save them), else None (then the re-rendering process's own)."""
    if saved.get("versions"):
        return saved["versions"]
    if markdown.is_file():
        for line in markdown.read_text().splitlines():
            if line.startswith("- **Versions:** "):
                return line.removeprefix("- **Versions:** ")
    return None


def write_markdown(path: Path, results: list[dict], *, command: str, device: str, note: str,
                   date: str | None = None, rendered_by: str = "", versions: str | None = None) -> None:
    """Write the speed report (all numbers from ``results``) and the results as JSON next to it."""
    from zoo.benchmark.report import device_name, timestamp

    date = date or timestamp()
    versions = _versions_line(versions)
    cuda = device.startswith("cuda")
    mem_headers = ("peak CUDA alloc. increase (MiB) | peak CUDA alloc. (MiB)" if cuda
                   else "peak RSS increase (MiB) | peak RSS (MiB)")
    lines = [f"# Speed and memory: {device_name(device)}", "",
             "Every number below was measured by the command named here (random full-size weights, one fresh "
             "process per row) and written by the program; none was typed.", "",
             f"- **Command:** `{command}`", f"- **Date:** {date}", f"- **Device:** {device_name(device)}",
             f"- **Versions:** {versions}"]
    if rendered_by:
        lines.append(f"- **Markdown re-rendered** (same measurements, new layout) by `{rendered_by}` on {timestamp()}")
    if note:
        lines += ["", note]
    lines += ["", "Columns: LQ size -> output size; frames of the clip; mode (whole clip in one call, or streamed "
              "chunks N/k of N frames sharing k); autocast dtype; torch.compile (per top-level submodule); "
              "channels_last weights; parameters; warm-up time (untimed; includes compilation); timed run (the best of "
              "the repeats where several were run); "
              "frames per second; ms per frame; peak memory increase over the level just before the run "
              "(network built, whole-clip input allocated) and the process's absolute peak; the machine's "
              "1-minute load average at the end of the run (other jobs share the CPU: a load above the core "
              "count means the timings are slowed down by them)."]
    header = ("| family | LQ -> output | frames | mode | dtype | compile | channels_last | params (M) | warm-up (s) | "
              f"time (s) | FPS | ms/frame | {mem_headers} | load |")
    sep = "|---|---|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for group, title in _GROUPS.items():
        rows = [r for r in results if r.get("group") == group]
        if rows:
            lines += ["", f"## {title}", ""]
            if group in _GROUP_NOTES:
                lines += [_GROUP_NOTES[group], ""]
            lines += [header, sep] + [_row(r, cuda) for r in rows]
    derived = _derived(results)
    if derived:
        lines += ["", "## Derived (computed from the rows above)", ""] + derived
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps({"command": command, "date": date, "device": device,
                                                     "note": note, "versions": versions, "results": results},
                                                    indent=1))


def write_ratio_markdown(path: Path, results: list[dict], *, command: str, device: str,
                         date: str | None = None, rendered_by: str = "", versions: str | None = None) -> None:
    """Write the like-for-like ratio report (every number computed from ``results``) and the JSON next to it."""
    from zoo.benchmark.report import device_name, timestamp

    date = date or timestamp()
    versions = _versions_line(versions)
    ours, theirs = RATIO_PAIR
    lines = [f"# Like-for-like speed ratio: {device_name(device)}", "",
             "Every number below was measured by the command named here and written by the program; none was typed.",
             "", f"- **Command:** `{command}`", f"- **Date:** {date}", f"- **Device:** {device_name(device)}",
             f"- **Versions:** {versions}"]
    if rendered_by:
        lines.append(f"- **Markdown re-rendered** (same measurements, new layout) by `{rendered_by}` on {timestamp()}")
    lines += ["", f"`{ours}` is our RealBasicVSR network without its image-cleaning module (SPyNet + bidirectional "
              "propagation with 20 residual blocks per branch + x4 pixel-shuffle head); `basicvsr_b20` is basicsr's "
              "`BasicVSR(num_feat=64, num_block=20)`, the same architecture. Both have random weights "
              "(`torch.manual_seed(0)`), are built in ONE process and get the same random clip; after one untimed "
              "warm-up call each, their forward calls alternate (ours, theirs, theirs, ours, ...), so that other jobs "
              "on the shared CPU slow both alike. Times are seconds per forward call of the whole clip (fp32, "
              "`torch.no_grad`); ratio = ours / theirs (below 1: ours is faster). Load: the machine's 1-minute load "
              "average sampled before each call (min - max); above the thread count, other jobs were running.", "",
              "| LQ -> output | frames | calls each | threads | ours: min / median (s) | basicsr: min / median (s) "
              "| ratio of mins | ratio of medians | load | ours, all calls (s) | basicsr, all calls (s) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        size = f"{r['height']}x{r['width']}"
        if "error" in r:
            lines.append(f"| {size} | {r['frames']} | {r['repeats']} | | error: {r['error']} | | | | | | |")
            continue
        m = ratio_summary(r)
        out = r["out_shape"]
        lines.append(
            f"| {size} -> {out[-2]}x{out[-1]} | {r['frames']} | {r['repeats']} | {r['threads']} | "
            f"{m['ours_min']:.2f} / {m['ours_median']:.2f} | {m['theirs_min']:.2f} / {m['theirs_median']:.2f} | "
            f"**{m['ratio_min']:.3f}** | {m['ratio_median']:.3f} | "
            f"{min(r['load_avg']):.1f} - {max(r['load_avg']):.1f} | "
            f"{', '.join(f'{t:.2f}' for t in r['times'][ours])} | "
            f"{', '.join(f'{t:.2f}' for t in r['times'][theirs])} |")
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps({"command": command, "date": date, "device": device,
                                                     "plan": "ratio", "versions": versions, "results": results},
                                                    indent=1))


# -------------------------------------------------------------------------------------------------------------- CLI
def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must be HxW (e.g. 180x320), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", choices=("cpu", "gpu", "ratio"), default=None,
                   help="a predefined plan (cpu: the recorded CPU run; gpu: the standard grid; ratio: our "
                        "RealBasicVSR propagation vs basicsr's BasicVSR in one process, calls interleaved); else the "
                        "grid below")
    p.add_argument("--families", default="realbasicvsr", type=lambda s: s.split(","),
                   help=f"comma-separated, from {', '.join(FAMILIES)}")
    p.add_argument("--sizes", default=[(180, 320)], type=lambda s: [_size(x) for x in s.split(",")],
                   help="LQ sizes HxW, comma-separated (default 180x320)")
    p.add_argument("--frames", default=[10], type=_ints, help="clip lengths, comma-separated (default 10)")
    p.add_argument("--chunks", default=[0], type=_ints, help="frames per chunk, 0 = whole clip (default 0)")
    p.add_argument("--overlap", type=int, default=2, help="frames shared by chunks (default 2)")
    p.add_argument("--dtypes", default=["fp32"], type=lambda s: s.split(","), help="fp32,bf16,fp16")
    p.add_argument("--compile", action="store_true", help="torch.compile each top-level submodule")
    p.add_argument("--channels-last", action="store_true", help="channels_last weights")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per measurement; the best is reported (default 1; --plan ratio: 6 calls per net)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--output", default=None,
                   help="markdown file (default benchmarks/results/speed_cpu.md, on CUDA speed_grid_<gpu>.md)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per measurement")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="only rewrite the markdown from the results saved next to an earlier output (speed_*.json)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _cpu_note(device: str) -> str:
    """The paragraph explaining a CPU-only report (empty for CUDA)."""
    return ("**No GPU in this session: CPU numbers only.** Full-size networks on a 2-core CPU take seconds per "
            "frame, so the CPU plan uses 3-frame clips at the standard 180x320 LQ size, a 64x64 LQ (the smallest "
            "size RealBasicVSR processes without padding) for the options and for the memory-growth check, which "
            "runs 10 -> 100 frames instead of 100 -> 1000 (1000 frames would take about an hour here), and 2 frames "
            "for the other families. The machine's 2 cores were shared with other jobs (see the load column). "
            "The standard grid (180x320 -> 720x1280, 10/100/1000 frames, fp16, compile, ...) is "
            "`python benchmarks/speed.py --plan gpu --device cuda`."
            if not device.startswith("cuda") else "")


def _mtime(path: Path) -> str:
    """A file's modification time (UTC, ISO 8601): when an older results file lacks its date."""
    from datetime import datetime, timezone

    stamp = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return f"{stamp} (end of the measurements: time the results file was last written)"


def _device_slug(device: str) -> str:
    if not device.startswith("cuda"):
        return "cpu"
    import torch

    return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(device).lower()).strip("_")


def _run_worker(spec: dict, timeout: int, env: dict) -> dict:
    """Run one measurement in a fresh process (``--worker``); on failure the spec with an ``error``."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timeout after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_RESULT_PREFIX)]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {**spec, "error": f"exit {proc.returncode}: {tail[0][:200]}"}
    return json.loads(lines[-1][len(_RESULT_PREFIX):])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        result = ratio_worker(spec) if spec.get("kind") == "ratio" else worker(spec)
        print(_RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        output = Path(args.output or Path(args.render).with_suffix(".md"))
        rendered_by = " ".join(shlex.quote(x) for x in ["python", "benchmarks/speed.py", *argv])
        if saved.get("plan") == "ratio":
            write_ratio_markdown(output, saved["results"], command=saved["command"],
                                 device=saved.get("device", args.device), date=saved.get("date"),
                                 rendered_by=rendered_by, versions=_saved_versions(saved, output))
            print(f"wrote {output}")
            return 0
        write_markdown(output, saved["results"], command=saved["command"], device=saved.get("device", args.device),
                       note=saved.get("note") or _cpu_note(saved.get("device", args.device)),
                       date=saved.get("date") or _mtime(Path(args.render)), rendered_by=rendered_by,
                       versions=_saved_versions(saved, output))
        print(f"wrote {output}")
        return 0
    from zoo.benchmark.report import timestamp

    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {FAMILIES}")
    command = " ".join(shlex.quote(x) for x in ["python", "benchmarks/speed.py", *argv])
    started_at = timestamp()
    versions = _versions_line(None)  # the code and packages as the run starts (later writes would see its outputs)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if args.plan == "ratio":
        output = Path(args.output or ROOT / "benchmarks" / "results" / f"speed_{_device_slug(args.device)}_ratio.md")
        results = []
        for spec in ratio_plan(args.device, args.repeats or 6):
            print(f"{' vs '.join(RATIO_PAIR)} {spec['height']}x{spec['width']} x{spec['frames']}, "
                  f"{spec['repeats']} calls each", flush=True)
            result = _run_worker(spec, args.timeout, env)
            if "error" not in result:
                m = ratio_summary(result)
                print(f"    ratio of mins {m['ratio_min']:.3f}, of medians {m['ratio_median']:.3f}", flush=True)
            results.append(result)
            write_ratio_markdown(output, results, command=command, device=args.device, date=started_at,
                                 versions=versions)
        print(f"wrote {output}")
        return 0
    specs = (cpu_plan(args.device) if args.plan == "cpu" else gpu_plan(args.device) if args.plan == "gpu"
             else grid_plan(args))
    # on a GPU, speed_<gpu>.md is benchmarks/gpu_suite.py's report; this grid goes beside it
    stem = "speed_grid" if args.device.startswith("cuda") else "speed"
    output = Path(args.output or ROOT / "benchmarks" / "results" / f"{stem}_{_device_slug(args.device)}.md")
    note = _cpu_note(args.device)
    results: list[dict] = []
    for index, spec in enumerate(specs, 1):
        label = (f"[{index}/{len(specs)}] {spec['family']} {spec['height']}x{spec['width']} x{spec['frames']} "
                 f"{_mode(spec)} {spec['dtype']}{' compile' if spec['compile'] else ''}"
                 f"{' channels_last' if spec['channels_last'] else ''}")
        print(label, flush=True)
        result = _run_worker(spec, args.timeout, env)
        results.append(result)
        if "error" in result:
            print(f"    {result['error']}", flush=True)
        else:
            print(f"    {result['seconds']:.1f} s, {result['fps']:.3f} fps, "
                  f"peak +{result['peak_increase_mib']:.0f} MiB (RSS {result['peak_rss_mib']:.0f} MiB), "
                  f"warm-up {result['warmup_s']:.1f} s", flush=True)
        write_markdown(output, results, command=command, device=args.device, note=note,  # partial results survive
                       date=started_at, versions=versions)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
