"""Command-line entry points: ``lightning`` and ``vsrzoo`` (``python -m zoo`` is ``vsrzoo``).

``lightning {fit,validate,test,predict} --config zoo/<family>.yaml`` is a LightningCLI over the zoo's systems
(subclass mode: the YAML's ``model.class_path`` picks the family) and :class:`zoo.data.VSRDataModule`; ``data.scale``
is linked to the model's ``scale``. ``vsrzoo`` offers the same four subcommands plus user commands:

* ``vsrzoo upscale INPUT -o OUTPUT --model realbasicvsr --weights PATH``: upscale a video file or a frame folder
  to an H.264 mp4 (or PNG frames) at ``scale`` x the size, keeping every frame, the source fps and the audio.
  Everything family-specific comes from the family table (:mod:`zoo.hub`): the ``--model`` choices, the weight forms
  in ``--help``, the chunking and tiling defaults, and the sampling flags of the diffusion families (built from each
  spec's ``sampling_options``; a flag another family owns is refused). ``--random-weights`` (optionally with
  ``--variant tiny``) instead of ``--weights`` runs random networks end to end.
* ``vsrzoo compare INPUT -o compare.mp4 --model bicubic --model realesrgan:x4plus ...``: several models on the same
  frames, as one labelled side-by-side video and a table (:mod:`zoo.benchmark.compare`).
* ``vsrzoo models``: the family table. ``vsrzoo benchmark``: leaderboard runs (:mod:`zoo.benchmark`).
* ``vsrzoo weights list | download NAME | verify [NAME]``: the weight files the zoo can use (:mod:`zoo.weights_command`).

Recipes are parsed with jsonargparse's ``omegaconf`` mode, so a YAML file can interpolate its own values
(``every_n_train_steps: ${trainer.val_check_interval}``) instead of repeating them.

Errors caused by the user's input (:class:`zoo.errors.ZooError`) are printed as one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from importlib import import_module
from pathlib import Path
from typing import Sequence

from zoo.benchmark.command import benchmark_main, compare_main
from zoo.errors import ZooError
from zoo.weights_command import weights_main

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

        def parse_arguments(self, parser, args) -> None:  # noqa: ANN001 - LightningCLI
            super().parse_arguments(parser, args)
            # before LightningCLI re-parses the model from a --ckpt_path's hyper-parameters (which fails with pages of
            # parser errors for another family's checkpoint): one line naming both families
            _check_ckpt_family(self.config)

        def before_fit(self) -> None:
            _check_manual_clipping(self.model, self.trainer)

    return ZooCLI(
        VSRSystem,
        VSRDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": False, "parser_mode": "omegaconf"},
    )


def _import_class(class_path: str) -> object:
    """The object a config's ``class_path`` names (None when it cannot be imported: the parser reports that)."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _check_ckpt_family(config) -> None:  # noqa: ANN001 - jsonargparse Namespace
    """Refuse a ``--ckpt_path`` checkpoint of another family than the config's model (:class:`WeightsError`)."""
    from zoo.systems.base import VSRSystem

    subcommand = config.get("subcommand")
    ckpt_path = config[subcommand].get("ckpt_path") if subcommand else None
    class_path = config[subcommand].get("model", {}).get("class_path") if ckpt_path else None
    if not class_path or not Path(ckpt_path).is_file():
        return
    system = _import_class(str(class_path))
    if not (isinstance(system, type) and issubclass(system, VSRSystem)):
        return
    import torch

    try:  # memory-mapped: the tensors are not read
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable here: Lightning reports it as before
        return
    system.check_checkpoint_family(ckpt, source=str(ckpt_path))


def _check_manual_clipping(model, trainer) -> None:  # noqa: ANN001 - LightningModule, Trainer
    """Lightning refuses ``trainer.gradient_clip_val`` with manual optimisation (the GAN systems) with a traceback;
    say in one line (:class:`ConfigError`) which option replaces it."""
    clip = trainer.gradient_clip_val
    if not model.automatic_optimization and clip:
        from zoo.errors import ConfigError

        raise ConfigError(f"trainer.gradient_clip_val={clip}: {type(model).__name__} optimises manually (G and D), "
                          f"which Lightning cannot clip; set model.init_args.grad_clip_norm: {clip} instead and "
                          "trainer.gradient_clip_val: null")


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


def _sampling_flags() -> dict[str, list[tuple[str, object]]]:
    """Every diffusion family's sampling options by flag destination: ``{dest: [(family, SamplingOption), ...]}``."""
    from zoo.hub import FAMILIES

    flags: dict[str, list[tuple[str, object]]] = {}
    for spec in FAMILIES.values():
        for option in spec.sampling_options:
            flags.setdefault(option.dest, []).append((spec.name, option))
    return flags


def _upscale_parser() -> argparse.ArgumentParser:
    from zoo.hub import FAMILIES, available_families

    p = argparse.ArgumentParser(
        prog="vsrzoo upscale",
        description="Upscale a video file (mp4/mov/mkv/webm/avi) or a folder of frames with a zoo model. "
        "Writes an H.264 mp4 with every input frame, the source fps and the source audio (or PNG frames with --frames).",
        epilog="weights each family loads:\n" + "\n".join(
            f"  {spec.name}: {'; '.join(spec.weight_forms)}" for spec in FAMILIES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("-o", "--output", required=True, help="output .mp4 file (or folder with --frames); never the input")
    default = next(iter(FAMILIES))
    p.add_argument("--model", default=default, help=f"model family: {', '.join(available_families())} "
                   f"(default {default}; `vsrzoo models` lists them)")
    p.add_argument("--weights", default=None, help="the family's weights file or folder (see below)")
    p.add_argument("--random-weights", action="store_true",
                   help="instead of --weights: randomly initialised networks, to try the whole path without weights; "
                   "the output is MEANINGLESS")
    p.add_argument("--variant", default=None,
                   help="with --random-weights: a named size of the family (e.g. tiny, for CPU smoke runs)")
    p.add_argument("--frames", action="store_true", help="write PNG frames %%08d.png into the output folder")
    p.add_argument("--chunk-frames", type=int, default=None,
                   help="frames per temporal chunk read from the video (memory bound); default: the family's")
    p.add_argument("--overlap", type=int, default=None,
                   help="frames shared by consecutive chunks, cross-faded; default: the family's")
    p.add_argument("--tile", type=int, default=None,
                   help="LQ tile size in pixels; 0: whole frames. Default: the family's (diffusion: the sampler's "
                   "own latent tiles)")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="LQ pixels shared by neighbouring tiles; default: the family's")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="inference precision")
    p.add_argument("--max-frames", type=int, default=None, help="only upscale the first N frames (quick previews)")
    p.add_argument("--no-scene-split", dest="scene_split", action="store_false",
                   help="do not look for scene cuts (by default the video is split at its hard cuts, found in one extra "
                   "decoding pass, and no chunk crosses one)")
    p.add_argument("--scene-threshold", type=float, default=27.0,
                   help="scene cut threshold: mean HSV change between frames, 0-255 (default 27, PySceneDetect's; "
                   "lower finds more cuts)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the family's loader or network (see its README), e.g. --option some_option=5; values are "
        "YAML (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    flags = _sampling_flags()
    if flags:
        g = p.add_argument_group("diffusion sampling (defaults: each family's own)")
        for dest, owners in flags.items():
            _, first = owners[0]
            defaults = ", ".join(f"{name} {option.default!r}" for name, option in owners)
            kwargs: dict[str, object] = dict(dest=dest, default=None, help=f"{first.help} ({defaults})")
            if first.parse is None and first.type in (int, float, str):
                kwargs["type"] = first.type
            if first.choices:
                kwargs["choices"] = list(first.choices)
            g.add_argument(first.cli_flag, **kwargs)
    return p


def _parse_value(text: str):  # noqa: ANN202
    import yaml

    return yaml.safe_load(text)


def _upscale_options(args: argparse.Namespace, spec) -> dict[str, object]:  # noqa: ANN001 - FamilySpec
    """``load_pretrained`` overrides from ``--option`` and the sampling flags (ConfigError on misuse)."""
    from zoo.errors import ConfigError

    overrides: dict[str, object] = {}
    for item in args.option:
        if "=" not in item:
            raise ConfigError(f"--option expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value)
    own = {option.dest: option for option in spec.sampling_options}
    given = {dest: getattr(args, dest) for dest in _sampling_flags() if getattr(args, dest, None) is not None}
    foreign = sorted(dest for dest in given if dest not in own)
    if foreign:
        names = ", ".join("--" + dest.replace("_", "-") for dest in foreign)
        accepted = ", ".join(option.cli_flag for option in spec.sampling_options) or "none"
        raise ConfigError(f"{names}: not a sampling option of --model {spec.name} (its sampling flags: {accepted})")
    flags = {}
    for dest, value in given.items():
        option = own[dest]
        flags[option.name] = option.parse(value) if option.parse is not None else value  # checked before loading
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
        from zoo.hub import family, load_pretrained
        from zoo.inference import upscale_video
        from zoo.scenes import describe

        spec = family(args.model)
        if args.random_weights and args.weights is not None:
            raise ConfigError("give either --weights or --random-weights, not both")
        if args.weights is None and not args.random_weights:
            raise ConfigError(f"--weights is required for --model {args.model} (accepted: {spec.accepted_weights()}; "
                              "or --random-weights to try the path without weights)")
        if args.variant is not None:
            if not args.random_weights:
                raise ConfigError("--variant sizes random networks: use it with --random-weights")
            spec.variant(args.variant)  # unknown variant: one line before any work
        overrides = _upscale_options(args, spec)
        chunking = spec.chunking
        chunk_frames = args.chunk_frames if args.chunk_frames is not None else chunking.chunk_frames
        overlap = args.overlap if args.overlap is not None else chunking.overlap
        tile = args.tile if args.tile is not None else chunking.tile
        tile = None if tile == 0 else tile
        tile_overlap = args.tile_overlap if args.tile_overlap is not None else chunking.tile_overlap
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"

        output = Path(args.output)
        parent = output if args.frames else output.parent
        if not Path(args.input).exists():
            raise InputError(f"input not found: {args.input}")
        if chunking.tiles_in_sampler:
            # the sampler tiles its latents itself (tile options in LQ px); upscale_video only streams the chunks
            for key, flag, value in (("tile", args.tile, tile), ("tile_overlap", args.tile_overlap, tile_overlap)):
                if key in overrides and flag is not None:
                    raise ConfigError(f"{key} given both as --{key.replace('_', '-')} and as --option; give it once")
                overrides.setdefault(key, value)
            if spec.kind == "diffusion":
                overrides.setdefault("progress", not args.no_progress)
            tile = None
        parent.mkdir(parents=True, exist_ok=True)
        net = load_pretrained(args.model, None if args.random_weights else args.weights, variant=args.variant,
                              **overrides)
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
            scene_split=args.scene_split,
            scene_threshold=args.scene_threshold,
        )
        w, h = summary["size"]
        print(f"wrote {summary['output']}: {summary['frames']} frames, {w}x{h}, {summary['fps']:.3f} fps "
              f"in {summary['seconds']:.1f} s")
        print(describe(summary["scenes"]))

    return _run_guarded(run)


def models_main(argv: Sequence[str]) -> int:
    """``vsrzoo models``: print the family table (family, kind, variants, weights, paper)."""
    argparse.ArgumentParser(prog="vsrzoo models", description="List the model families of the zoo.").parse_args(argv)
    from zoo.hub import families_table

    print(families_table())
    return 0


USER_COMMANDS = {"upscale": upscale_main, "compare": compare_main, "benchmark": benchmark_main,
                 "models": models_main, "weights": weights_main}


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
            "       vsrzoo upscale INPUT -o OUTPUT --model realbasicvsr --weights PATH [...]\n"
            "       vsrzoo compare INPUT -o compare.mp4 --model bicubic --model realesrgan:x4plus [...]\n"
            "       vsrzoo benchmark --suite configs/benchmarks/<suite>.yaml\n"
            "       vsrzoo models\n"
            "       vsrzoo weights {list,download NAME,verify [NAME]}\n\n"
            "fit/validate/test/predict: the LightningCLI subcommands (also available as the `lightning` command).\n"
            "upscale: upscale a real video or frame folder; see `vsrzoo upscale --help`.\n"
            "compare: several models on the same frames, one labelled video and a table; see `vsrzoo compare --help`.\n"
            "benchmark: leaderboard runs; models: the family table; weights: the weight files (list, fetch, check)."
        )
        return 0
    return lightning_main(None if argv == sys.argv[1:] else argv)
