"""Speed and peak memory of FULL DC-VSR sampling through the ``vsrzoo upscale`` path, and peak memory against frame size.

What runs: :func:`zoo.inference.upscale_video` (the code behind ``vsrzoo upscale --model dc_vsr``, with the family's
CLI chunking: 42-frame chunks sharing 7; the sampler tiles itself) on a real clip area-downscaled to each LQ size
(default 180x320 -> 720x1280; the embedded sample ``zoo/assets/sample/demo_000``), writing a real H.264 mp4. The
networks are Stable Video Diffusion img2vid's UNet (1.52 G parameters) and temporal VAE (98 M) at full size with RANDOM
weights (:mod:`zoo.diffusion.bases`; timing and memory do not depend on the weights, and none can be downloaded here;
the output is meaningless), built by :func:`zoo.models.dc_vsr.load.build_pipeline`, wrapped by
:func:`zoo.models.dc_vsr.load.upscaler_from_pipeline` (what ``zoo.hub.load_pretrained`` returns). Sampling options are
the family's defaults (:class:`zoo.models.dc_vsr.sampling.SamplingOptions`: 25 Euler steps, guidance 2 with DSSAG in
the unconditional branch, SAP and TAP on, 14-frame x 128 LQ px tiles sharing 7 frames / 64 px, Gaussian blending,
VAE tiles of 128 LQ px sharing 32 and chunks of 14 frames) unless given.

On a CPU the 25 steps take hours, so ``--steps`` runs fewer (2 is the least that runs both a TAP and a SAP step):
every UNet and VAE call is timed (forward hooks; CUDA synchronised), which gives the cost of one denoising step of the
clip (every tile), and the report projects the default run as ``measured total + (25 - steps) x one step``, labelled
projected. With the defaults (a GPU) the figure is measured end to end. Each measurement runs in a fresh process; peak
memory is the process's peak RSS (``VmHWM``, reset after the networks are built) and on CUDA
``torch.cuda.max_memory_allocated``. ``--sizes`` measures several LQ sizes: the tiles keep the UNet's and VAE's working
memory flat, so the peak grows only with the clip-level CPU tensors (latents, condition, output frames).

Examples::

    # the recorded CPU run (benchmarks/results/dc_vsr_sampling_cpu.md): 2 frames, 2 of 25 steps, three LQ sizes
    OMP_NUM_THREADS=1 python benchmarks/dc_vsr_sampling.py --sizes 64x64 128x128 180x320 --frames 2 --steps 2 \\
        --device cpu
    # on a GPU, end to end with the defaults, fp16 autocast, 14 / 42 / 100 frames
    python benchmarks/dc_vsr_sampling.py --frames 14 42 100 --device cuda --dtype fp16
    # checks the script in seconds (tiny random networks; the figures say nothing of the model)
    python benchmarks/dc_vsr_sampling.py --tiny --sizes 16x24 --frames 4 --steps 2 --tile 8 --tile-overlap 4 \\
        --window 2 --window-overlap 1 --vae-tile 8 --vae-tile-overlap 2 --vae-chunk 2 --threads 1 --output-dir /tmp
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from sampling_report import add_run_arguments, device_text, finish, measure, run_measurement, worker_or_render  # noqa: E402,E501
from sateco_sampling import _seconds  # noqa: E402 - the same rounding of times

_RESULT_PREFIX = "DC_VSR_SAMPLING_RESULT "
#: The command a GPU runs (the defaults end to end; nothing projected).
GPU_COMMAND = "python benchmarks/dc_vsr_sampling.py --frames 14 42 100 --device cuda --dtype fp16"
#: Timed pieces: (key, column title).
PHASES = (("unet", "UNet"), ("vae_encode", "VAE encode"), ("vae_decode", "VAE decode"))
SAMPLING = ("guidance_scale", "sap", "tap", "dssag", "window", "window_overlap", "tile", "tile_overlap", "vae_chunk",
            "vae_tile", "vae_tile_overlap")


def unet_tiles(pipeline, frames: int, height: int, width: int, options: dict) -> dict:
    """The sampler's spatio-temporal UNet tiles of an LQ clip: grid (time, rows, columns) and first tile size."""
    from zoo.diffusion.tiles import plan_windows

    size, overlap = pipeline._latent_tile(options["tile"], options["tile_overlap"])
    plans = [plan_windows(frames, options["window"], options["window_overlap"], exact=True)]
    plans += [plan_windows(-(-n * pipeline.scale // pipeline.vae_factor), size, overlap, exact=True)
              for n in (height, width)]
    return {"grid": [len(p) for p in plans], "size": [p[0][1] - p[0][0] for p in plans]}


def worker(spec: dict) -> dict:
    """One measurement in this process (module docstring); returns the result dict."""
    import torch

    from zoo.models.dc_vsr.load import build_pipeline, upscaler_from_pipeline
    from zoo.models.dc_vsr.sampling import SamplingOptions

    def build(tmp: Path):  # noqa: ANN202 - the pipeline
        torch.manual_seed(0)
        return build_pipeline(None, variant="tiny" if spec["tiny"] else None, warn_random=False)

    def watch(timer, pipeline) -> None:  # noqa: ANN001
        timer.watch_module("unet", pipeline.unet)
        timer.watch_method("vae_encode", pipeline.vae, "encode")
        timer.watch_method("vae_decode", pipeline.vae, "decode")

    options = {k: spec[k] for k in SAMPLING}
    run = run_measurement(spec, root=ROOT, build=build, watch=watch, wrap=lambda pipeline: upscaler_from_pipeline(
        pipeline, num_inference_steps=spec["steps"], progress=False, **options))
    pipeline, timer, summary = run["pipeline"], run["timer"], run["summary"]
    params = {name: round(sum(p.numel() for p in getattr(pipeline, name).parameters()) / 1e6, 2)
              for name in ("unet", "vae")}
    default_steps = asdict(SamplingOptions())["num_inference_steps"]
    phase_s = {name: _seconds(timer.seconds[name]) for name, _ in PHASES if name in timer.calls}
    seconds = _seconds(summary["seconds"])
    step_s = _seconds(timer.seconds["unet"] / spec["steps"])
    projected = _seconds(seconds + (default_steps - spec["steps"]) * step_s)
    result = {
        **spec,
        "default_steps": default_steps,
        "unet_tiles": unet_tiles(pipeline, min(spec["frames"], spec["chunk_frames"]), spec["height"], spec["width"],
                                 options),
        "params_m": params,
        "build_s": _seconds(run["build_s"]),
        "seconds": seconds,
        "s_per_frame": _seconds(seconds / spec["frames"]),
        "step_s": step_s,
        "projected_s": projected,
        "projected_s_per_frame": _seconds(projected / spec["frames"]),
        "projected": spec["steps"] != default_steps,
        "phase_s": phase_s,
        "phase_calls": {name: timer.calls[name] for name in phase_s},
        "rest_s": _seconds(seconds - sum(phase_s.values())),
        "output_checked": run["checked"],
        **run["environment"],
    }
    return result


def _cells(r: dict) -> list[str]:
    """One table row: every figure is ``str`` of the JSON value."""
    ph, calls, out = r["phase_s"], r["phase_calls"], r["output_checked"]
    tiles = r["unet_tiles"]
    projected = f"{r['projected_s']} / {r['projected_s_per_frame']}" + (" (projected)" if r["projected"] else "")
    return [f"{r['width']}x{r['height']}", f"{4 * r['width']}x{4 * r['height']}", str(r["frames"]), str(r["steps"]),
            " x ".join(map(str, tiles["grid"])) + " of " + "x".join(map(str, tiles["size"])),
            str(r["seconds"]), str(r["s_per_frame"]), str(r["step_s"]), projected,
            *(f"{ph[name]} ({calls[name]})" if name in ph else "-" for name, _ in PHASES),
            str(r["rest_s"]), str(r["peak_rss_mib"]), str(r["rss_before_mib"]), str(r.get("peak_cuda_mib", "n/a")),
            f"{out['frames']} frames {out['width']}x{out['height']}"]


def render_markdown(report: dict) -> str:
    """The markdown report of a JSON report (``{"command", "results"}``)."""
    results = report["results"]
    first = results[0]
    source = Path(first["input"])
    source = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    title = ("# DC-VSR sampling with TINY random networks (checks the script; not the model's speed)" if first["tiny"]
             else "# DC-VSR: full sampling through `vsrzoo upscale` (random full-size SVD weights, timing only)")
    device = device_text(first, results[-1])
    header = ["LQ (WxH)", "output", "frames", "steps run", "UNet tiles (t x rows x cols of t x h x w latents)",
              "wall (s)", "s / frame", "one denoising step (s)", f"wall / s per frame at {first['default_steps']} steps",
              *(f"{t} (s, calls)" for _, t in PHASES), "rest (s)", "peak RSS (MiB)", "RSS before (MiB)",
              "peak CUDA (MiB)", "output checked"]
    size = "the family's tiny variant" if first["tiny"] else "Stable Video Diffusion img2vid's UNet and VAE at full size"
    lines = [
        title,
        "",
        f"**Random weights**: the networks are {size} with random weights (none can be downloaded here), so these "
        "are speed and memory figures only; the output is meaningless.",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Device: {device}; dtype {first['dtype']}; Python {first['python']}, torch {first['torch']}, diffusers "
        f"{first['diffusers']}.",
        "",
        "Networks (M parameters): " + ", ".join(f"{k} {v}" for k, v in first["params_m"].items()) + ".",
        "",
        f"Options: Euler (EDM, Karras), guidance {first['guidance_scale']}, SAP {first['sap']}, TAP {first['tap']}, "
        f"DSSAG {first['dssag']}; UNet tiles of {first['window']} frames x {first['tile']} LQ px sharing "
        f"{first['window_overlap']} frames / {first['tile_overlap']} px (Gaussian blending); VAE tiles of "
        f"{first['vae_tile']} LQ px sharing {first['vae_tile_overlap']}, chunks of {first['vae_chunk']} frames; "
        f"`upscale_video` chunks of {first['chunk_frames']} frames sharing {first['overlap']}; input: `{source}` "
        "area-resized.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---|" + "---:|" * (len(header) - 3) + "---|",
        *("| " + " | ".join(_cells(r)) + " |" for r in results),
        "",
        "- *wall* is the time of `upscale_video` (reading, conditioning, sampling, decoding, H.264 writing); *s / "
        "frame* divides it by the output frames. *One denoising step* is the UNet time of the whole clip (every tile, "
        "both guidance branches in one batch) over the steps run.",
        f"- *at {first['default_steps']} steps*: measured when that many ran; otherwise projected as wall + "
        f"({first['default_steps']} - steps run) x one step (the other phases do not depend on the step count).",
        "- Peak RSS is the process high-water mark during the run (reset after the networks were built); RSS before "
        "is what the weights and imports already held. Across frame sizes the tiles keep the networks' working memory "
        "the same; what grows is the clip held on the CPU.",
        "",
        f"On a GPU, end to end with the defaults: `{GPU_COMMAND}`",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    from zoo.models.dc_vsr.sampling import SamplingOptions

    d = SamplingOptions()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", default="zoo/assets/sample/demo_000", help="real clip (folder or video)")
    p.add_argument("--sizes", nargs="+", default=["180x320"], help="LQ HxW, one measurement each (default 180x320)")
    p.add_argument("--frames", type=int, nargs="+", default=[14], help="clip lengths, one measurement each")
    p.add_argument("--steps", type=int, default=d.num_inference_steps, help="Euler steps (default 25)")
    p.add_argument("--guidance-scale", type=float, default=d.guidance_scale)
    for name in ("sap", "tap", "dssag"):
        p.add_argument(f"--no-{name}", action="store_true", help=f"switch {name.upper()} off")
    p.add_argument("--window", type=int, default=d.window)
    p.add_argument("--window-overlap", type=int, default=d.window_overlap)
    p.add_argument("--tile", type=int, default=d.tile, help="UNet tile in LQ px (default 128)")
    p.add_argument("--tile-overlap", type=int, default=d.tile_overlap)
    p.add_argument("--vae-tile", type=int, default=d.vae_tile)
    p.add_argument("--vae-tile-overlap", type=int, default=d.vae_tile_overlap)
    p.add_argument("--vae-chunk", type=int, default=d.vae_chunk)
    p.add_argument("--chunk-frames", type=int, default=42)
    p.add_argument("--overlap", type=int, default=7)
    add_run_arguments(p, ROOT / "benchmarks/results")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if worker_or_render(args, _RESULT_PREFIX, worker, render_markdown):
        return 0
    results = []
    for size in args.sizes:
        height, width = (int(v) for v in size.lower().split("x"))
        for frames in args.frames:
            spec = dict(input=str(args.input), height=height, width=width, frames=frames, steps=args.steps,
                        guidance_scale=args.guidance_scale, sap=not args.no_sap, tap=not args.no_tap,
                        dssag=not args.no_dssag, window=args.window, window_overlap=args.window_overlap,
                        tile=args.tile, tile_overlap=args.tile_overlap, vae_chunk=args.vae_chunk,
                        vae_tile=args.vae_tile, vae_tile_overlap=args.vae_tile_overlap,
                        chunk_frames=args.chunk_frames, overlap=args.overlap, device=args.device, dtype=args.dtype,
                        threads=args.threads, tiny=args.tiny)
            print(f"measuring {frames} frames at {width}x{height}, {args.steps} steps ...", flush=True)
            results.append(measure(__file__, _RESULT_PREFIX, spec, f"{height}x{width} x {frames} frames"))
            print(json.dumps(results[-1], indent=1), flush=True)
    return finish(args, "dc_vsr_sampling", "benchmarks/dc_vsr_sampling.py", argv, results, render_markdown)


if __name__ == "__main__":
    raise SystemExit(main())
