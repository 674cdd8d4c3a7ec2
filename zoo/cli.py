"""Command-line entry points: ``lightning`` and ``vsrzoo`` (``python -m zoo`` is ``vsrzoo``).

``lightning {fit,validate,test,predict} --config zoo/<family>.yaml`` is a LightningCLI over the zoo's systems
(subclass mode: the YAML's ``model.class_path`` picks the family) and :class:`zoo.data.VSRDataModule`; ``data.scale``
is linked to the model's ``scale``. ``vsrzoo`` offers the same four subcommands plus user commands:

* ``vsrzoo upscale INPUT -o OUTPUT --model realbasicvsr --weights PATH``: upscale a video file or a frame folder
  to an H.264 mp4 (or PNG frames) at ``scale`` x the size, keeping every frame, the source fps and the audio.
  ``--model upscale_a_video --weights FOLDER`` runs the diffusion sampler, with its flags (``--noise-level``,
  ``--guidance-scale``, ``--steps``, ``--prompt``, ``--negative-prompt``, ``--propagation-steps``, ``--color-fix``,
  ``--seed``; refused for other families); ``--random-weights`` instead of ``--weights`` tries it on random networks.

Errors caused by the user's input (:class:`zoo.errors.ZooError`) are printed as one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from zoo.benchmark.command import benchmark_main
from zoo.errors import ZooError

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def make_cli(args: Sequence[str] | None = None, *, run: bool = True):  # noqa: ANN201 - LightningCLI
    """Build (and by default run) the zoo's LightningCLI; ``run=False`` parses and instantiates only (for tests).

    ``args`` follows LightningCLI: with ``run=True`` it starts with the subcommand (``['fit', '--config', ...]``);
    with ``run=False`` there is no subcommand.
    """
    from lightning.pytorch.cli import LightningCLI

    from zoo.data.datamodule import VSRDataModule
    from zoo.systems.base import VSRSystem

    class ZooCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - jsonargparse parser
            parser.link_arguments("data.init_args.scale", "model.init_args.scale")

    return ZooCLI(
        VSRSystem,
        VSRDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": False},
    )


def _user_error(err: BaseException) -> ZooError | None:
    """The ZooError behind ``err``: itself, one in its cause/context chain, or one whose message a library
    (jsonargparse instantiating a config) folded into its own error text."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, ZooError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    last = ZooError.last
    if last is not None and str(last) and str(last) in str(err):
        return last
    return None


def _run_guarded(fn, *args) -> int:  # noqa: ANN001
    ZooError.last = None
    try:
        fn(*args)
    except Exception as err:  # noqa: BLE001 - re-raised unless it is a user error
        user_error = _user_error(err)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        return 2
    return 0


def lightning_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightning`` console script (LightningCLI subcommands fit/validate/test/predict)."""
    return _run_guarded(make_cli, None if argv is None else list(argv))


#: ``vsrzoo upscale`` chunking defaults per kind of family: (chunk_frames, overlap, tile, tile_overlap). Regression
#: nets: no tiling (``--tile`` is :func:`zoo.inference.upscale_video`'s). Diffusion: the sampler windows (8 frames,
#: 2 shared) and tiles (256 LQ px, 64 shared) itself, so ``--tile`` sets its tiles; the video is streamed in chunks of
#: 24 frames (4 cross-faded) so that memory does not grow with the video's length.
_CHUNKING = {"regression": (30, 4, None, 32), "diffusion": (24, 4, 256, 64)}

#: Diffusion flags of ``vsrzoo upscale`` -> sampling option names (:data:`zoo.hub.UPSCALE_A_VIDEO_SAMPLING_OPTIONS`).
_SAMPLING_FLAGS = {
    "noise_level": "noise_level",
    "guidance_scale": "guidance_scale",
    "steps": "num_inference_steps",
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "propagation_steps": "propagation_steps",
    "color_fix": "color_fix",
    "seed": "seed",
}


def _upscale_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vsrzoo upscale",
        description="Upscale a video file (mp4/mov/mkv/webm/avi) or a folder of frames with a zoo model. "
        "Writes an H.264 mp4 with every input frame, the source fps and the source audio (or PNG frames with --frames).",
    )
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("-o", "--output", required=True, help="output .mp4 file (or folder with --frames); never the input")
    p.add_argument("--model", default="realbasicvsr",
                   help="model family: realbasicvsr (default), upscale_a_video, videogigagan")
    p.add_argument("--weights", default=None,
                   help="realbasicvsr: the project's .ckpt or RealBasicVSR_x4.pth; upscale_a_video: the released "
                   "Upscale-A-Video folder, a local SD x4 upscaler folder or the project's .ckpt")
    p.add_argument("--random-weights", action="store_true",
                   help="upscale_a_video only, instead of --weights: randomly initialised networks, to try the "
                   "sampling path without weights; the output is MEANINGLESS noise")
    p.add_argument("--frames", action="store_true", help="write PNG frames %%08d.png into the output folder")
    p.add_argument("--chunk-frames", type=int, default=None,
                   help="frames per temporal chunk read from the video (memory bound); default 30, diffusion 24")
    p.add_argument("--overlap", type=int, default=None,
                   help="frames shared by consecutive chunks, cross-faded; default 4")
    p.add_argument("--tile", type=int, default=None,
                   help="LQ tile size in pixels; 0: whole frames. Default: whole frames; diffusion: 256 (its "
                   "sampler's own tiles)")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="LQ pixels shared by neighbouring tiles; default 32, diffusion 64")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="inference precision")
    p.add_argument("--max-frames", type=int, default=None, help="only upscale the first N frames (quick previews)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader/network option, e.g. --option dynamic_refine_thres=5 (realbasicvsr) or --option "
        "use_video_vae=true, --option window=8 (upscale_a_video); values are YAML (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    g = p.add_argument_group("diffusion sampling (upscale_a_video only; official defaults)")
    g.add_argument("--noise-level", type=int, default=None,
                   help="noise added to the LQ input, 0..350; higher = more generated detail, less fidelity "
                   "(default 120)")
    g.add_argument("--guidance-scale", type=float, default=None,
                   help="classifier-free guidance weight, used when > 1 (default 6)")
    g.add_argument("--steps", type=int, default=None, help="DDIM denoising steps (default 30)")
    g.add_argument("--prompt", default=None, help="text prompt (default 'best quality, extremely detailed')")
    g.add_argument("--negative-prompt", default=None, help="negative prompt (default 'blur, worst quality')")
    g.add_argument("--propagation-steps", default=None, metavar="I,J,...",
                   help="0-based denoising steps after which latents are propagated along RAFT flows, e.g. "
                   "24,26,28 (default: none; needs the RAFT weights and LQ frames of at least 128 px)")
    g.add_argument("--color-fix", default=None, choices=["none", "wavelet", "adain"],
                   help="colour correction against the LQ input (default wavelet)")
    g.add_argument("--seed", type=int, default=None, help="seed of the sampler's noise (default 0)")
    return p


def _parse_value(text: str):  # noqa: ANN202
    import yaml

    return yaml.safe_load(text)


def _upscale_options(args: argparse.Namespace, diffusion: bool) -> dict[str, object]:
    """``load_pretrained`` overrides from ``--option`` and the diffusion flags (ConfigError on misuse)."""
    from zoo.errors import ConfigError

    overrides: dict[str, object] = {}
    for item in args.option:
        if "=" not in item:
            raise ConfigError(f"--option expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value)
    flags = {name: getattr(args, flag) for flag, name in _SAMPLING_FLAGS.items() if getattr(args, flag) is not None}
    if flags and not diffusion:
        given = ", ".join("--" + flag.replace("_", "-") for flag in _SAMPLING_FLAGS if getattr(args, flag) is not None)
        raise ConfigError(f"{given}: diffusion sampling option(s), not accepted for --model {args.model} (they apply "
                          "to upscale_a_video)")
    if "propagation_steps" in flags:  # checked before any weights are loaded
        from zoo.hub_diffusion import parse_propagation_steps

        flags["propagation_steps"] = parse_propagation_steps(flags["propagation_steps"])
    both = sorted(set(flags) & set(overrides))
    if both:
        raise ConfigError(f"{both} given both as a flag and as --option; give each once")
    return {**overrides, **flags}


def upscale_main(argv: Sequence[str]) -> int:
    """``vsrzoo upscale``: see ``vsrzoo upscale --help``."""
    args = _upscale_parser().parse_args(argv)

    def run() -> None:
        from pathlib import Path

        import torch

        from zoo.errors import ConfigError, InputError
        from zoo.hub import DIFFUSION_FAMILIES, available_families, load_pretrained
        from zoo.inference import upscale_video

        if args.model not in available_families():
            raise ConfigError(f"unknown model family {args.model!r}; available: {available_families()}")
        diffusion = args.model in DIFFUSION_FAMILIES
        if args.random_weights and not diffusion:
            raise ConfigError(f"--random-weights is offered for diffusion families only ({sorted(DIFFUSION_FAMILIES)})"
                              f", not --model {args.model}")
        if args.random_weights and args.weights is not None:
            raise ConfigError("give either --weights or --random-weights, not both")
        if args.weights is None and not args.random_weights:
            hint = " (or --random-weights to try the pipeline without weights)" if diffusion else ""
            raise ConfigError(f"--weights is required for --model {args.model}{hint}")
        overrides = _upscale_options(args, diffusion)
        chunk_frames, overlap, tile, tile_overlap = _CHUNKING["diffusion" if diffusion else "regression"]
        chunk_frames = args.chunk_frames if args.chunk_frames is not None else chunk_frames
        overlap = args.overlap if args.overlap is not None else overlap
        tile = args.tile if args.tile is not None else tile
        tile = None if tile == 0 else tile
        tile_overlap = args.tile_overlap if args.tile_overlap is not None else tile_overlap
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"

        output = Path(args.output)
        parent = output if args.frames else output.parent
        if not Path(args.input).exists():
            raise InputError(f"input not found: {args.input}")
        if diffusion:
            # the sampler tiles itself (tile options in LQ px); upscale_video only streams the chunks
            for key, flag, value in (("tile", args.tile, tile), ("tile_overlap", args.tile_overlap, tile_overlap)):
                if key in overrides and flag is not None:
                    raise ConfigError(f"{key} given both as --{key.replace('_', '-')} and as --option; give it once")
                overrides.setdefault(key, value)
            overrides.setdefault("progress", not args.no_progress)
            tile = None
        parent.mkdir(parents=True, exist_ok=True)
        net = load_pretrained(args.model, None if args.random_weights else args.weights, **overrides)
        if diffusion:
            from zoo.data.video_io import open_video
            from zoo.hub_diffusion import check_propagation_input_size

            source = open_video(args.input)
            check_propagation_input_size(net, source.height, source.width)
        summary = upscale_video(
            net,
            args.input,
            args.output,
            scale=getattr(net, "scale", 4),
            chunk_frames=chunk_frames,
            overlap=overlap,
            tile=tile,
            tile_overlap=tile_overlap if tile is not None else 0,
            device=device,
            dtype=args.dtype,
            as_frames=args.frames,
            progress=not args.no_progress,
            max_frames=args.max_frames,
        )
        w, h = summary["size"]
        print(f"wrote {summary['output']}: {summary['frames']} frames, {w}x{h}, {summary['fps']:.3f} fps "
              f"in {summary['seconds']:.1f} s")

    return _run_guarded(run)


USER_COMMANDS = {"upscale": upscale_main, "benchmark": benchmark_main}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vsrzoo`` and ``python -m zoo``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in USER_COMMANDS:
        return USER_COMMANDS[argv[0]](argv[1:])
    if argv and argv[0] not in LIGHTNING_SUBCOMMANDS and not argv[0].startswith("-"):
        print(
            f"error: unknown command {argv[0]!r}; expected one of "
            f"{', '.join(LIGHTNING_SUBCOMMANDS + tuple(USER_COMMANDS))}",
            file=sys.stderr,
        )
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: vsrzoo {fit,validate,test,predict} --config zoo/<family>.yaml [...]\n"
            "       vsrzoo upscale INPUT -o OUTPUT --model realbasicvsr --weights PATH [...]\n\n"
            "fit/validate/test/predict: the LightningCLI subcommands (also available as the `lightning` command).\n"
            "upscale: upscale a real video or frame folder; see `vsrzoo upscale --help`."
        )
        return 0
    return lightning_main(None if argv == sys.argv[1:] else argv)
