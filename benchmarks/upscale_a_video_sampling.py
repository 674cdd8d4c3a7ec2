"""Speed and peak memory of FULL Upscale-A-Video sampling, 180p -> 720p, through the ``vsrzoo upscale`` path.

What runs: :func:`zoo.inference.upscale_video` (the code behind ``vsrzoo upscale --model upscale_a_video``, with the
CLI's diffusion chunking: 24-frame chunks sharing 4) on a real clip area-downscaled to the LQ size (default 180x320,
the embedded sample ``zoo/assets/sample/demo_000``; longer clips are looped back and forth), writing a real H.264
mp4. The networks are the released architecture at full size with random weights (timing does not depend on the
weights, and none can be downloaded here):

- UNet: :class:`zoo.models.upscale_a_video.net.UpscaleAVideoUNet` defaults (691 M parameters, the released
  ``unet_video_config.json``);
- VAE: :class:`zoo.models.upscale_a_video.net.UpscaleAVideoVAE` with the LQ-conditioned temporal decoder
  (``vae_video``: SFT + 3D convs), full size: the costlier of the two released decoders (``vsrzoo upscale`` uses the
  plain ``vae_3d`` unless ``--option use_video_vae=true``, as the official script);
- text encoder: a CLIP text transformer of the SD x4 upscaler's size (OpenCLIP ViT-H text tower cut to 23 layers,
  1024 wide, 77 positions) with a small local tokenizer (77 tokens padded, the same tensor shapes as the real one),
  so classifier-free guidance runs as with real weights (batch of 2 per UNet call);
- flow: torchvision ``raft_large`` for the flow-guided latent propagation.

Sampling options are the official defaults (30 DDIM steps, guidance 6, noise level 120, 8-frame windows sharing 2,
256 px tiles sharing 64, VAE decoding 3 frames at a time, wavelet colour fix) unless given. On a CPU a full 30-step
run at 180p takes many hours, so ``--steps`` can be lowered: the UNet calls are timed one by one (hooks with CUDA
synchronisation), which gives the cost of one denoising step of the clip, and the report projects the 30-step time
as ``measured total + (30 - steps) x measured step time`` and labels it as projected. With ``--steps 30`` (a GPU) the
figure is measured end to end.

Reported (JSON + markdown): wall time and seconds per output frame (measured, and projected to 30 steps when fewer
were run), time split into UNet / VAE decode / text / flow / rest, UNet calls, peak memory: the process's peak RSS
(``VmHWM``; the high-water mark is reset after the networks are built, and the RSS before the run is given) and on
CUDA ``torch.cuda.max_memory_allocated``.

Examples::

    # the recorded CPU run: 8 frames, 1 denoising step with propagation at that step (about 40 min on 2 cores)
    python benchmarks/upscale_a_video_sampling.py --frames 8 --steps 1 --propagation-steps 0 --device cpu
    # on a GPU, end to end: 30 steps, propagation at (24, 26, 28), fp16 autocast, 8 / 24 / 100 frames
    python benchmarks/upscale_a_video_sampling.py --frames 8 24 100 --steps 30 --propagation-steps 24 26 28 \\
        --device cuda --dtype fp16
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from speed import _malloc_trim, _reset_peak_rss, _status_kib  # noqa: E402 - the same peak-RSS method as speed.py

_RESULT_PREFIX = "UAV_SAMPLING_RESULT "
#: ``--tiny``: the family's ``tiny`` variant (UNet, VAE and a 32-d text encoder given the real vocabulary size, for
#: the real tokenizer's ids) to check the script itself in seconds; its figures say nothing about the real model.
OFFICIAL_STEPS = 30


# ------------------------------------------------------------------------------------------------------ input clip
def make_lq_clip(source: Path, folder: Path, *, frames: int, height: int, width: int) -> Path:
    """Write ``frames`` LQ frames (PNG) of the real clip ``source``, area-resized to ``height`` x ``width``.

    Frames are taken in order and, when the clip is shorter, looped back and forth (0..n-1, n-2..1, 0..): the
    content stays real video with real motion. Returns ``folder``.
    """
    import torch.nn.functional as F
    from einops import rearrange
    from PIL import Image

    from zoo.data.video_io import open_video

    clip = open_video(source).read()  # (t, 3, h, w) float in [0, 1]
    n = clip.shape[0]
    order = list(range(n)) + list(range(n - 2, 0, -1)) if n > 1 else [0]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        frame = F.interpolate(clip[order[i % len(order)]][None], size=(height, width), mode="area")[0]
        array = rearrange(frame.mul(255).round().clamp(0, 255).byte(), "c h w -> h w c").numpy()
        Image.fromarray(array).save(folder / f"{i:08d}.png")
    return folder


# ------------------------------------------------------------------------------------------------------ the networks
def build_pipeline(tokenizer_dir: Path, *, tiny: bool = False):
    """The Upscale-A-Video sampler with random weights (UNet, vae_video, text encoder, RAFT): full size, or the
    ``--tiny`` networks (RAFT stays full size)."""
    import torch
    from torchvision.models.optical_flow import raft_large
    from transformers import CLIPTextConfig, CLIPTextModel

    from zoo.hub import family
    from zoo.models.upscale_a_video.load import load_upscale_a_video_pipeline
    from zoo.testing import SD_X4_TEXT_ENCODER, write_clip_tokenizer

    torch.manual_seed(0)
    variant = family("upscale_a_video").variant("tiny")
    sizes = dict(unet=variant["unet"], vae=variant["vae"]) if tiny else {}
    pipeline = load_upscale_a_video_pipeline(None, use_video_vae=True, **sizes)
    tiny_text = dict(variant["text_encoder"], vocab_size=SD_X4_TEXT_ENCODER["vocab_size"]) if tiny else {}
    text_config = dict(SD_X4_TEXT_ENCODER, **tiny_text)
    pipeline.text_encoder = CLIPTextModel(CLIPTextConfig(**text_config)).eval()
    # a small local vocabulary gives the real tokenizer's 77 padded tokens (the same tensor shapes); timing only
    pipeline.tokenizer = write_clip_tokenizer(tokenizer_dir, words="abcdefghijklmnopqrstuvwxyz,")
    pipeline.flow_net = raft_large(weights=None, progress=False).eval()
    return pipeline


class PhaseTimer:
    """Wall time per network (forward hooks; CUDA synchronised at both ends of each call)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._started: dict[str, float] = {}

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def start(self, name: str) -> None:
        self._sync()
        self._started[name] = time.perf_counter()

    def stop(self, name: str) -> None:
        self._sync()
        self.seconds[name] += time.perf_counter() - self._started.pop(name)
        self.calls[name] += 1

    def watch_module(self, name: str, module) -> None:
        module.register_forward_pre_hook(lambda *_: self.start(name))
        module.register_forward_hook(lambda *_: self.stop(name))

    def watch_method(self, name: str, owner, attribute: str) -> None:
        method = getattr(owner, attribute)

        def timed(*args, **kwargs):
            self.start(name)
            try:
                return method(*args, **kwargs)
            finally:
                self.stop(name)

        setattr(owner, attribute, timed)


# ------------------------------------------------------------------------------------------------------ one run
def worker(spec: dict) -> dict:
    """One measurement in this process (see the module docstring); returns the result dict."""
    import gc

    import torch

    from zoo.data.video_io import open_video
    from zoo.inference import upscale_video

    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="uav_sampling_") as tmp:
        tmp = Path(tmp)
        source = Path(spec["input"])  # recorded as given; relative defaults are relative to the project root
        lq_dir = make_lq_clip(source if source.exists() else ROOT / source, tmp / "lq", frames=spec["frames"], height=spec["height"],
                              width=spec["width"])
        started = time.perf_counter()
        pipeline = build_pipeline(tmp / "tokenizer", tiny=spec.get("tiny", False))
        build_s = time.perf_counter() - started
        params = {name: sum(p.numel() for p in getattr(pipeline, name).parameters()) / 1e6
                  for name in ("unet", "vae", "text_encoder", "flow_net")}
        timer = PhaseTimer(cuda)
        timer.watch_module("unet", pipeline.unet)
        timer.watch_module("text_encoder", pipeline.text_encoder)
        timer.watch_module("flow", pipeline.flow_net)
        timer.watch_method("vae_decode", pipeline.vae, "decode")
        upscaler = pipeline.as_upscaler(num_inference_steps=spec["steps"],
                                        propagation_steps=tuple(spec["propagation_steps"]),
                                        guidance_scale=spec["guidance_scale"], noise_level=spec["noise_level"],
                                        color_fix=spec["color_fix"], window=spec.get("window", 8),
                                        window_overlap=spec.get("window_overlap", 2), tile=spec.get("tile", 256),
                                        tile_overlap=spec.get("tile_overlap", 64), progress=False)
        pipeline.to(device)
        gc.collect()
        _malloc_trim()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        rss_before = _status_kib("VmRSS")
        exact = _reset_peak_rss()
        output = tmp / "sr.mp4"
        summary = upscale_video(upscaler, lq_dir, output, scale=4, chunk_frames=spec["chunk_frames"],
                                overlap=spec["overlap"], device=device, dtype=spec["dtype"], progress=False)
        peak_rss = _status_kib("VmHWM") if exact else _status_kib("VmRSS")
        written = open_video(output)
        checked = dict(frames=written.num_frames, width=written.width, height=written.height)
    seconds = summary["seconds"]
    unet_s = timer.seconds["unet"]
    step_s = unet_s / spec["steps"]
    projected = seconds + (OFFICIAL_STEPS - spec["steps"]) * step_s
    result = {
        **spec,
        "params_m": params,
        "build_s": build_s,
        "seconds": seconds,
        "s_per_frame": seconds / spec["frames"],
        "step_s": step_s,
        "projected_30_steps_s": projected,
        "projected_30_steps_s_per_frame": projected / spec["frames"],
        "phase_s": dict(timer.seconds),
        "phase_calls": dict(timer.calls),
        "rest_s": seconds - sum(timer.seconds.values()),
        "output_checked": checked,
        "rss_before_mib": rss_before / 1024,
        "peak_rss_mib": peak_rss / 1024,
        "peak_method": "VmHWM" if exact else "VmRSS at end (no clear_refs)",
        "threads": torch.get_num_threads(),
        "load_avg_end": os.getloadavg()[0],
        "torch": torch.__version__,
    }
    if cuda:
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["gpu"] = torch.cuda.get_device_name(device)
    return result


# ------------------------------------------------------------------------------------------------------ report
def write_markdown(path: Path, results: list[dict], *, command: str) -> None:
    """The results as a markdown table (every figure from the JSON next to it)."""
    first = results[0]
    source = Path(first["input"])
    source = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    title = ("# Upscale-A-Video sampling with TINY random networks (checks the script; not the model's speed)"
             if first.get("tiny") else
             "# Upscale-A-Video: full sampling, 180p -> 720p (random full-size weights, timing only)")
    device = first.get("gpu") or f"CPU ({platform.processor() or platform.machine()}, {first['threads']} threads)"
    lines = [
        title,
        "",
        f"Command: `{command}`",
        "",
        f"Device: {device}; torch {first['torch']}; dtype {first['dtype']}. Networks (M parameters): "
        + ", ".join(f"{k} {v:.1f}" for k, v in first["params_m"].items()) + ".",
        "",
        f"Options: guidance {first['guidance_scale']}, noise level {first['noise_level']}, "
        f"{first.get('window', 8)}-frame windows sharing {first.get('window_overlap', 2)}, {first.get('tile', 256)} px "
        f"tiles sharing {first.get('tile_overlap', 64)}, VAE chunk 3, colour fix {first['color_fix']}, chunks of "
        f"{first['chunk_frames']} frames sharing {first['overlap']} (`vsrzoo upscale` defaults: 8/2, 256/64, 24/4); "
        f"input: `{source}` area-resized.",
        "",
        "| LQ | frames | steps run | propagation | wall (s) | s / frame | one denoising step (s) | "
        "s / frame at 30 steps | UNet (s, calls) | VAE decode (s) | text (s) | flow (s) | rest (s) | "
        "peak RSS (MiB) | RSS before (MiB) | peak CUDA (MiB) | output checked |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ph, calls = r["phase_s"], r["phase_calls"]
        projected = f"{r['projected_30_steps_s_per_frame']:.1f}"
        if r["steps"] != OFFICIAL_STEPS:
            projected += " (projected)"
        out = r["output_checked"]
        cuda = f"{r['peak_cuda_mib']:.0f}" if "peak_cuda_mib" in r else "n/a"
        lines.append(
            f"| {r['width']}x{r['height']} | {r['frames']} | {r['steps']} | {list(r['propagation_steps'])} | "
            f"{r['seconds']:.1f} | {r['s_per_frame']:.1f} | {r['step_s']:.1f} | {projected} | "
            f"{ph.get('unet', 0):.1f} ({calls.get('unet', 0)}) | {ph.get('vae_decode', 0):.1f} | "
            f"{ph.get('text_encoder', 0):.2f} | {ph.get('flow', 0):.1f} | {r['rest_s']:.1f} | "
            f"{r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} | {cuda} | "
            f"{out['frames']} frames {out['width']}x{out['height']} |")
    lines += [
        "",
        "- *s / frame* is wall time of `upscale_video` (reading, sampling, decoding, colour fix, H.264 writing) over "
        "output frames; *one denoising step* is the UNet time of the whole clip divided by the steps run (every "
        "window and tile, guided batch of 2).",
        "- *at 30 steps*: measured when 30 steps ran; otherwise projected as wall + (30 - steps) x one step (the "
        "other phases do not depend on the step count).",
        "- Peak RSS is the process high-water mark during the run (reset after the networks were built); RSS "
        "before is what the weights and imports already held. Random weights: speed and memory only, no quality.",
    ]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", default="zoo/assets/sample/demo_000", help="real clip (folder or video)")
    p.add_argument("--size", default="180x320", help="LQ HxW (default 180x320 -> 720x1280)")
    p.add_argument("--frames", type=int, nargs="+", default=[8], help="clip lengths, one measurement each")
    p.add_argument("--steps", type=int, default=OFFICIAL_STEPS, help="DDIM steps run (official 30)")
    p.add_argument("--propagation-steps", type=int, nargs="*", default=[24, 26, 28])
    p.add_argument("--guidance-scale", type=float, default=6.0)
    p.add_argument("--noise-level", type=int, default=120)
    p.add_argument("--color-fix", default="wavelet")
    p.add_argument("--window", type=int, default=8, help="temporal UNet window (official 8)")
    p.add_argument("--window-overlap", type=int, default=2)
    p.add_argument("--tile", type=int, default=256, help="spatial tile in LQ px (default 256)")
    p.add_argument("--tile-overlap", type=int, default=64)
    p.add_argument("--chunk-frames", type=int, default=24)
    p.add_argument("--overlap", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--tiny", action="store_true", help="tiny random networks: checks the script, not the model")
    p.add_argument("--output-dir", default=str(ROOT / "benchmarks/results"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        print(_RESULT_PREFIX + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    height, width = (int(v) for v in args.size.lower().split("x"))
    results = []
    for frames in args.frames:
        spec = dict(input=str(args.input), height=height, width=width, frames=frames, steps=args.steps,
                    propagation_steps=args.propagation_steps, guidance_scale=args.guidance_scale,
                    noise_level=args.noise_level, color_fix=args.color_fix, window=args.window,
                    window_overlap=args.window_overlap, tile=args.tile, tile_overlap=args.tile_overlap,
                    chunk_frames=args.chunk_frames,
                    overlap=args.overlap, device=args.device, dtype=args.dtype, tiny=args.tiny)
        print(f"measuring {frames} frames at {width}x{height}, {args.steps} steps ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                              text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"measurement of {frames} frames failed (exit {proc.returncode})")
        result = json.loads(lines[-1][len(_RESULT_PREFIX):])
        print(json.dumps(result, indent=1), flush=True)
        results.append(result)
    slug = ("cpu" if args.device == "cpu" else args.device.replace(":", "")) + ("_tiny" if args.tiny else "")
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/upscale_a_video_sampling.py " + shlex.join(argv)
    json_path = out_dir / f"upscale_a_video_sampling_{slug}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"command": command, "results": results}, indent=1))
    tmp.replace(json_path)
    write_markdown(out_dir / f"upscale_a_video_sampling_{slug}.md", results, command=command)
    print(f"wrote {json_path} and {json_path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
