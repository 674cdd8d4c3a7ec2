"""Speed and peak memory of FULL SATeCo sampling, 180p -> 720p, through the ``vsrzoo upscale`` path.

What runs: :func:`zoo.inference.upscale_video` (the code behind ``vsrzoo upscale --model sateco``, with the family's
CLI chunking: 24-frame chunks sharing 4; the sampler windows and tiles itself) on a real clip area-downscaled to the
LQ size (default 180x320, the embedded sample ``zoo/assets/sample/demo_000``; longer clips are looped back and forth),
writing a real H.264 mp4. The networks have RANDOM weights (timing and memory do not depend on the weights, and none
can be downloaded here; the output is meaningless):

- the frozen base: Stable Diffusion 2.1-base's UNet (865 M parameters) and VAE (84 M) at full size
  (:mod:`zoo.diffusion.bases`), built by :func:`zoo.models.sateco.load.build_pipeline` with ``pretrained=None``;
- SATeCo's trained modules at the sizes of ``zoo/sateco.yaml`` (video upscaler, latent encoder, SFA/TFA adapters in
  the UNet and the VAE decoder, refiner), read from that file;
- text: a CLIP text encoder of SD 2.1-base's size (``SD21_BASE_TEXT_ENCODER``, 340 M) with a small local tokenizer
  (77 tokens padded: the real tensor shapes), as a pretrained folder gives (``--no-text-encoder``: zero tokens, as
  random networks have).

The upscaler module is :func:`zoo.models.sateco.load.upscaler_from_pipeline` (what ``zoo.hub.load_pretrained``
returns). Sampling options are the family's defaults (:class:`zoo.models.sateco.sampling.SamplingOptions`: 50 DDIM
steps, strength 0.5, so 25 steps run; guidance 1, i.e. no classifier-free guidance; empty prompt; 6-frame windows
sharing 2; tiles of 128 LQ px sharing 32, i.e. 64 latent px sharing 16; VAE chunks of 6 frames) unless given.

On a CPU the 25 denoising steps of the defaults take hours, so ``--steps`` / ``--strength`` can run fewer: every
network call is timed (forward hooks, CUDA synchronised at both ends), which gives the cost of one denoising step of
the clip (UNet + the latent encoder's guides, every window and tile), and the report projects the default run as
``measured total + (25 - steps run) x measured step time``, labelled projected. With the defaults (a GPU) the
figure is measured end to end.

Reported (JSON, and markdown rendered from the JSON: every figure the same string): wall time and seconds per output
frame (measured, and projected to the default steps), the time split into UNet / latent encoder / VAE encode (the
latents) / VAE encode (the decoder adapters' guides) / VAE decode / upscaler / refiner / text / rest, UNet calls,
peak memory: the process's peak RSS (``VmHWM``, reset after the networks are built; the RSS before the run is given)
and on CUDA ``torch.cuda.max_memory_allocated``. Each measurement runs in a fresh process.

Examples::

    # the recorded CPU run (benchmarks/results/sateco_sampling_cpu.md, about half an hour on one thread): 6 frames,
    # one denoising step (2-step schedule at strength 0.5) projected to 25 steps, a 120x160 LQ (2 latent tiles;
    # the 6 tiles of 180x320 would take about 1.5 hours)
    OMP_NUM_THREADS=1 python benchmarks/sateco_sampling.py --frames 6 --steps 2 --strength 0.5 --size 120x160 \\
        --device cpu
    # on a GPU, end to end with the defaults (50 steps, strength 0.5), fp16 autocast, 6 / 24 / 100 frames
    python benchmarks/sateco_sampling.py --frames 6 24 100 --steps 50 --device cuda --dtype fp16
    # checks the script in seconds (tiny random networks, 2 windows x 4 tiles; the figures say nothing of the model)
    python benchmarks/sateco_sampling.py --tiny --frames 4 --steps 4 --size 32x40 --tile 24 --tile-overlap 8 \\
        --window 3 --window-overlap 1 --vae-chunk 2 --threads 1 --output-dir /tmp
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from sampling_report import add_run_arguments, device_text, finish, measure, run_measurement, worker_or_render  # noqa: E402,E501
from upscale_a_video_sampling import PhaseTimer  # noqa: E402 - the same timers as UAV's

_RESULT_PREFIX = "SATECO_SAMPLING_RESULT "
#: The command a GPU runs (the defaults end to end; nothing projected).
GPU_COMMAND = "python benchmarks/sateco_sampling.py --frames 6 24 100 --steps 50 --device cuda --dtype fp16"
#: The LQ size the report is about (180x320 -> 720x1280).
DEFAULT_SIZE = (180, 320)
#: Timed pieces, in the order of the report: (key, column title).
PHASES = (("unet", "UNet"), ("latent_encoder", "latent encoder"), ("vae_encode", "VAE encode (latents)"),
          ("vae_encode_guides", "VAE encode (decoder guides)"), ("vae_decode", "VAE decode"),
          ("upscaler", "upscaler"), ("refiner", "refiner"), ("text_encoder", "text"))
#: Sub-modules whose parameters are counted.
NETWORKS = ("unet", "vae", "text_encoder", "upscaler", "latent_encoder", "unet_adapters", "vae_adapters", "refiner")


def _seconds(value: float) -> float:
    """Times in the report: 0.01 s (the markdown prints these very numbers)."""
    return round(float(value), 2)


def sampling_defaults(pipeline) -> dict:
    """The family's sampling defaults (``SamplingOptions``) and the denoising steps they run on ``pipeline``."""
    from dataclasses import asdict

    from zoo.models.sateco.sampling import SamplingOptions

    options = asdict(SamplingOptions())
    options["steps_run"] = steps_run(pipeline, options["num_inference_steps"], options["strength"])
    return options


def steps_run(pipeline, num_inference_steps: int, strength: float) -> int:
    """Denoising steps a schedule of ``num_inference_steps`` runs at ``strength`` (the sampler's own rule, as
    :func:`zoo.models.sateco.load.upscaler_from_pipeline` checks it)."""
    return num_inference_steps - pipeline._first_step(num_inference_steps, strength)


def latent_tiles(pipeline, height: int, width: int, tile: int | None, tile_overlap: int) -> dict:
    """The sampler's latent tiles of an LQ clip of ``height`` x ``width``: grid (rows, columns) and first tile size."""
    from zoo.diffusion.tiles import plan_windows

    size, overlap = pipeline._latent_tile(tile, tile_overlap)
    rows, cols = (plan_windows(-(-n * pipeline.scale // pipeline.vae_factor), size, overlap) for n in (height, width))
    return {"grid": [len(rows), len(cols)], "size": [rows[0][1] - rows[0][0], cols[0][1] - cols[0][0]]}


def module_options() -> dict:
    """SATeCo's module sizes as ``zoo/sateco.yaml`` gives them (``model.init_args``)."""
    import yaml

    from zoo.models.sateco.load import MODULE_OPTIONS

    init_args = yaml.safe_load((ROOT / "zoo/sateco.yaml").read_text())["model"]["init_args"]
    return {k: init_args[k] for k in MODULE_OPTIONS if init_args.get(k) is not None}


# ------------------------------------------------------------------------------------------------------ the networks
def build_pipeline(tokenizer_dir: Path, *, tiny: bool = False, text_encoder: bool = True):
    """The SATeCo pipeline with random weights: full size (``zoo/sateco.yaml`` modules on SD 2.1-base), or the
    family's ``tiny`` variant; with a CLIP text encoder of SD 2.1-base's size (the variant's when tiny)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from zoo.diffusion.bases import SD21_BASE_TEXT_ENCODER
    from zoo.hub import family
    from zoo.models.sateco.load import build_pipeline as build_sateco
    from zoo.testing import write_clip_tokenizer

    torch.manual_seed(0)
    variant = family("sateco").variant("tiny")
    pipeline = build_sateco(None, variant="tiny") if tiny else build_sateco(None, **module_options())
    if text_encoder:
        config = dict(SD21_BASE_TEXT_ENCODER, **(variant["text_encoder"] if tiny else {}))
        pipeline.text_encoder = CLIPTextModel(CLIPTextConfig(**config)).eval().requires_grad_(False)
        # a small local vocabulary gives the real tokenizer's 77 padded tokens (the same tensor shapes); timing only
        pipeline.tokenizer = write_clip_tokenizer(tokenizer_dir, words="abcdefghijklmnopqrstuvwxyz,")
    return pipeline


def watch(timer: PhaseTimer, pipeline) -> None:
    """Time every piece of :data:`PHASES` (none nested in another, so they add up)."""
    for name in ("unet", "latent_encoder", "upscaler", "refiner", "text_encoder"):
        if getattr(pipeline, name, None) is not None:
            timer.watch_module(name, getattr(pipeline, name))
    timer.watch_method("vae_encode", pipeline.vae, "encode")  # Z = E(X_u), the latents that are noised
    timer.watch_method("vae_encode_guides", pipeline, "vae_guides")  # the encoder run that guides the decoder
    timer.watch_method("vae_decode", pipeline.vae, "decode")


# ------------------------------------------------------------------------------------------------------ one run
def worker(spec: dict) -> dict:
    """One measurement in this process (see the module docstring); returns the result dict."""
    import transformers

    from zoo.models.sateco.load import upscaler_from_pipeline

    measured = run_measurement(
        spec, root=ROOT, build=lambda tmp: build_pipeline(tmp / "tokenizer", tiny=spec["tiny"],
                                                          text_encoder=spec["text_encoder"]),
        watch=watch, wrap=lambda pipeline: upscaler_from_pipeline(
            pipeline, num_inference_steps=spec["steps"], strength=spec["strength"],
            guidance_scale=spec["guidance_scale"], window=spec["window"], window_overlap=spec["window_overlap"],
            tile=spec["tile"], tile_overlap=spec["tile_overlap"], vae_chunk=spec["vae_chunk"], progress=False))
    pipeline, timer, summary = measured["pipeline"], measured["timer"], measured["summary"]
    params = {name: round(sum(p.numel() for p in getattr(pipeline, name).parameters()) / 1e6, 2)
              for name in NETWORKS if getattr(pipeline, name, None) is not None}
    defaults = sampling_defaults(pipeline)
    run = steps_run(pipeline, spec["steps"], spec["strength"])
    phase_s = {name: _seconds(timer.seconds[name]) for name, _ in PHASES if name in timer.calls}
    seconds = _seconds(summary["seconds"])
    # one denoising step of the clip: every UNet call of a step and the latent encoder's guides for it
    step_s = _seconds((timer.seconds["unet"] + timer.seconds["latent_encoder"]) / run)
    projected = _seconds(seconds + (defaults["steps_run"] - run) * step_s)
    result = {
        **spec,
        "steps_run": run,
        "default_steps": defaults["num_inference_steps"],
        "default_strength": defaults["strength"],
        "default_steps_run": defaults["steps_run"],
        "latent_tiles": latent_tiles(pipeline, spec["height"], spec["width"], spec["tile"], spec["tile_overlap"]),
        "latent_tiles_at_default_size": latent_tiles(pipeline, *DEFAULT_SIZE, spec["tile"], spec["tile_overlap"]),
        "params_m": params,
        "build_s": _seconds(measured["build_s"]),
        "seconds": seconds,
        "s_per_frame": _seconds(seconds / spec["frames"]),
        "step_s": step_s,
        "projected_s": projected,
        "projected_s_per_frame": _seconds(projected / spec["frames"]),
        "projected": run != defaults["steps_run"],
        "phase_s": phase_s,
        "phase_calls": {name: timer.calls[name] for name in phase_s},
        "rest_s": _seconds(seconds - sum(phase_s.values())),
        "output_checked": measured["checked"],
        **measured["environment"],
        "transformers": transformers.__version__,
    }
    return result


# ------------------------------------------------------------------------------------------------------ report
def _cells(r: dict) -> list[str]:
    """One table row: every figure is ``str`` of the JSON value."""
    ph, calls = r["phase_s"], r["phase_calls"]
    projected = f"{r['projected_s']} / {r['projected_s_per_frame']}" + (" (projected)" if r["projected"] else "")
    out = r["output_checked"]
    return [f"{r['width']}x{r['height']}", str(r["frames"]), f"{r['steps']} x {r['strength']} = {r['steps_run']}",
            str(r["seconds"]), str(r["s_per_frame"]), str(r["step_s"]), projected,
            f"{ph['unet']} ({calls['unet']})",
            *(f"{ph[name]} ({calls[name]})" if name in ph else "-" for name, _ in PHASES[1:]),
            str(r["rest_s"]), str(r["peak_rss_mib"]), str(r["rss_before_mib"]), str(r.get("peak_cuda_mib", "n/a")),
            f"{out['frames']} frames {out['width']}x{out['height']}"]


def _tiles(plan: dict) -> str:
    (rows, cols), (th, tw) = plan["grid"], plan["size"]
    return f"{rows} x {cols} tiles of {th}x{tw} latent px"


def render_markdown(report: dict) -> str:
    """The markdown report of a JSON report (``{"command", "results"}``)."""
    results = report["results"]
    first = results[0]
    source = Path(first["input"])
    source = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    h, w = first["height"], first["width"]
    title = ("# SATeCo sampling with TINY random networks (checks the script; not the model's speed)"
             if first["tiny"] else f"# SATeCo: full sampling, {w}x{h} -> {4 * w}x{4 * h} (random full-size weights, "
             "timing only)")
    device = device_text(first, first)
    text = ("no text encoder (zero tokens)" if not first["text_encoder"] else
            "CLIP text encoder of the variant's size" if first["tiny"] else "CLIP text encoder of SD 2.1-base's size")
    header = ["LQ (WxH)", "frames", "steps x strength = run", "wall (s)", "s / frame", "one denoising step (s)",
              f"wall / s per frame at {first['default_steps_run']} steps",
              *(f"{title_} (s, calls)" for _, title_ in PHASES), "rest (s)", "peak RSS (MiB)", "RSS before (MiB)",
              "peak CUDA (MiB)", "output checked"]
    size = "the family's tiny variant" if first["tiny"] else "SATeCo's architecture at full size"
    lines = [
        title,
        "",
        f"**Random weights**: the networks are {size} with random weights (none can be downloaded here), so these "
        "are speed and memory figures only; the output is meaningless.",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Device: {device}; dtype {first['dtype']}; Python {first['python']}, torch {first['torch']}, diffusers "
        f"{first['diffusers']}, transformers {first['transformers']}.",
        "",
        "Networks (M parameters): " + ", ".join(f"{k} {v}" for k, v in first["params_m"].items())
        + f"; {text}.",
        "",
        f"Options: DDIM, guidance {first['guidance_scale']}, {first['window']}-frame windows sharing "
        f"{first['window_overlap']}, tiles of {first['tile']} LQ px sharing {first['tile_overlap']}, VAE chunks of "
        f"{first['vae_chunk']} frames, `upscale_video` chunks of {first['chunk_frames']} frames sharing "
        f"{first['overlap']} (the family's defaults: 6/2, 128/32, 6, 24/4; {first['default_steps']} steps at "
        f"strength {first['default_strength']} = {first['default_steps_run']} steps run); input: `{source}` "
        "area-resized.",
        "",
        f"Latent tiles of the sampler (UNet, VAE): {_tiles(first['latent_tiles'])} per frame; at the default "
        f"{DEFAULT_SIZE[1]}x{DEFAULT_SIZE[0]} LQ: {_tiles(first['latent_tiles_at_default_size'])}.",
        *([] if first["tiny"] or (h, w) == DEFAULT_SIZE else [
            "",
            f"**Smaller clip**: this LQ is {w}x{h}, not the default {DEFAULT_SIZE[1]}x{DEFAULT_SIZE[0]}, to keep the "
            "CPU run short; the UNet and VAE run per latent tile, so the time at the default size is about the "
            "per-tile time (calls in the table) times its tiles."]),
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 2) + "---|",
        *("| " + " | ".join(_cells(r)) + " |" for r in results),
        "",
        "- *wall* is the time of `upscale_video` (reading, sampling, decoding, refining, H.264 writing); *s / frame* "
        "divides it by the output frames. *One denoising step* is the UNet and latent-encoder time of the whole clip "
        "(every window and tile) over the steps run.",
        f"- *at {first['default_steps_run']} steps*: measured when that many steps ran; otherwise projected as wall + "
        f"({first['default_steps_run']} - steps run) x one step (the other phases do not depend on the step count).",
        "- *VAE encode (latents)* is Z = E(X_u); *(decoder guides)* the encoder run on X_u whose features guide the "
        "decoder adapters, once per decoded chunk and tile. *Rest*: reading, blending, scheduler, video writing.",
        "- Peak RSS is the process high-water mark during the run (reset after the networks were built); RSS before "
        "is what the weights and imports already held.",
        "",
        f"On a GPU, end to end with the defaults: `{GPU_COMMAND}`",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", default="zoo/assets/sample/demo_000", help="real clip (folder or video)")
    p.add_argument("--size", default="x".join(map(str, DEFAULT_SIZE)), help="LQ HxW (default 180x320 -> 720x1280)")
    p.add_argument("--frames", type=int, nargs="+", default=[6], help="clip lengths, one measurement each")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps of the schedule (default 50)")
    p.add_argument("--strength", type=float, default=0.5, help="fraction of the steps that run (default 0.5)")
    p.add_argument("--guidance-scale", type=float, default=1.0, help="> 1: classifier-free guidance (batch of 2)")
    p.add_argument("--no-text-encoder", action="store_true", help="zero text tokens, as random networks have")
    p.add_argument("--window", type=int, default=6, help="temporal UNet window (default 6)")
    p.add_argument("--window-overlap", type=int, default=2)
    p.add_argument("--tile", type=int, default=128, help="spatial tile in LQ px (default 128)")
    p.add_argument("--tile-overlap", type=int, default=32)
    p.add_argument("--vae-chunk", type=int, default=6)
    p.add_argument("--chunk-frames", type=int, default=24)
    p.add_argument("--overlap", type=int, default=4)
    add_run_arguments(p, ROOT / "benchmarks/results")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if worker_or_render(args, _RESULT_PREFIX, worker, render_markdown):
        return 0
    height, width = (int(v) for v in args.size.lower().split("x"))
    results = []
    for frames in args.frames:
        spec = dict(input=str(args.input), height=height, width=width, frames=frames, steps=args.steps,
                    strength=args.strength, guidance_scale=args.guidance_scale,
                    text_encoder=not args.no_text_encoder, window=args.window, window_overlap=args.window_overlap,
                    tile=args.tile, tile_overlap=args.tile_overlap, vae_chunk=args.vae_chunk,
                    chunk_frames=args.chunk_frames, overlap=args.overlap, device=args.device, dtype=args.dtype,
                    threads=args.threads, tiny=args.tiny)
        print(f"measuring {frames} frames at {width}x{height}, {args.steps} steps x strength {args.strength} ...",
              flush=True)
        results.append(measure(__file__, _RESULT_PREFIX, spec, f"{spec['frames']} frames"))
        print(json.dumps(results[-1], indent=1), flush=True)
    return finish(args, "sateco_sampling", "benchmarks/sateco_sampling.py", argv, results, render_markdown)


if __name__ == "__main__":
    raise SystemExit(main())
