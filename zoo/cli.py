"""Command-line entry points: ``lightning`` and ``vsrzoo`` (``python -m zoo`` is ``vsrzoo``).

``lightning {fit,validate,test,predict} --config zoo/<family>.yaml`` is a LightningCLI over the zoo's systems
(subclass mode: the YAML's ``model.class_path`` picks the family) and :class:`zoo.data.VSRDataModule`; ``data.scale``
is linked to the model's ``scale``. ``vsrzoo`` offers the same four subcommands plus user commands:

* ``vsrzoo upscale INPUT -o OUTPUT --model realbasicvsr --weights PATH``: upscale a video file or a frame folder
  to an H.264 mp4 (or PNG frames) at ``scale`` x the size, keeping every frame, the source fps and the audio.

Errors caused by the user's input (:class:`zoo.errors.ZooError`) are printed as one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from zoo.benchmark.command import benchmark_main
from zoo.errors import ZooError

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def _make_lightning_cli(args: Sequence[str] | None) -> None:
    from lightning.pytorch.cli import LightningCLI

    from zoo.data.datamodule import VSRDataModule
    from zoo.systems.base import VSRSystem

    class ZooCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - jsonargparse parser
            parser.link_arguments("data.init_args.scale", "model.init_args.scale")

    ZooCLI(
        VSRSystem,
        VSRDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": False},
    )


def _run_guarded(fn, *args) -> int:  # noqa: ANN001
    try:
        fn(*args)
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def lightning_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightning`` console script (LightningCLI subcommands fit/validate/test/predict)."""
    return _run_guarded(_make_lightning_cli, None if argv is None else list(argv))


def _upscale_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vsrzoo upscale",
        description="Upscale a video file (mp4/mov/mkv/webm/avi) or a folder of frames with a zoo model. "
        "Writes an H.264 mp4 with every input frame, the source fps and the source audio (or PNG frames with --frames).",
    )
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("-o", "--output", required=True, help="output .mp4 file (or folder with --frames); never the input")
    p.add_argument("--model", default="realbasicvsr", help="model family (see zoo.hub.available_families())")
    p.add_argument("--weights", required=True, help="checkpoint: the project's .ckpt or the family's released weights")
    p.add_argument("--frames", action="store_true", help="write PNG frames %%08d.png into the output folder")
    p.add_argument("--chunk-frames", type=int, default=30, help="frames per temporal chunk (memory bound); default 30")
    p.add_argument("--overlap", type=int, default=4, help="frames shared by consecutive chunks, cross-faded; default 4")
    p.add_argument("--tile", type=int, default=None, help="LQ tile size in pixels for large frames (default: no tiling)")
    p.add_argument("--tile-overlap", type=int, default=32, help="LQ pixels shared by neighbouring tiles; default 32")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="inference precision")
    p.add_argument("--max-frames", type=int, default=None, help="only upscale the first N frames (quick previews)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="network option override, e.g. --option dynamic_refine_thres=5 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def _parse_value(text: str):  # noqa: ANN202
    import yaml

    return yaml.safe_load(text)


def upscale_main(argv: Sequence[str]) -> int:
    """``vsrzoo upscale``: see ``vsrzoo upscale --help``."""
    args = _upscale_parser().parse_args(argv)

    def run() -> None:
        import torch

        from zoo.errors import ConfigError
        from zoo.hub import load_pretrained
        from zoo.inference import upscale_video

        overrides = {}
        for item in args.option:
            if "=" not in item:
                raise ConfigError(f"--option expects KEY=VALUE, got {item!r}")
            key, value = item.split("=", 1)
            overrides[key.strip()] = _parse_value(value)
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        net = load_pretrained(args.model, args.weights, **overrides)
        summary = upscale_video(
            net,
            args.input,
            args.output,
            scale=getattr(net, "scale", 4),
            chunk_frames=args.chunk_frames,
            overlap=args.overlap,
            tile=args.tile,
            tile_overlap=args.tile_overlap,
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
