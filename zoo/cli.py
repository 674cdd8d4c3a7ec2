"""Command-line entry points: ``lightning`` and ``vsrzoo`` (``python -m zoo`` is ``vsrzoo``).

``lightning {fit,validate,test,predict} --config zoo/<family>.yaml`` is a LightningCLI over the zoo's systems
(subclass mode: the YAML's ``model.class_path`` picks the family) and :class:`zoo.data.VSRDataModule`; ``data.scale``
is linked to the model's ``scale``. ``vsrzoo`` offers the same four subcommands plus user commands:

* ``vsrzoo upscale INPUT -o OUTPUT --model realbasicvsr --weights PATH``: upscale a video file or a frame folder
  to an H.264 mp4 (or PNG frames) at ``scale`` x the size, keeping every frame, the source fps and the audio.
  Everything family-specific comes from the family table (:mod:`zoo.hub`): the ``--model`` choices, the weight forms
  in ``--help``, the chunking and tiling defaults, and the sampling flags of the diffusion families (built from each
  spec's ``sampling_options``; a flag another family owns is refused). ``--random-weights`` (optionally with
  ``--variant tiny``) instead of ``--weights`` runs random networks end to end. Every cheap check (options in
  range, device, output path) comes before the model is loaded. Ctrl-C / SIGTERM remove the temporary output and
  print one line (exit 130 / 143); a full disk prints one line (exit 1); finished chunks are kept next to the output
  so that ``--resume`` continues an interrupted run (:func:`zoo.inference.upscale_video`). Decoding and encoding run
  in background threads alongside the network (``--no-pipeline``: one after another). INPUT may also be a batch:
  a folder of videos and/or clip folders, or a ``.txt`` list; OUTPUT is then a folder, existing outputs are skipped
  (``--overwrite`` redoes them) and a failing input does not stop the others (exit 1 if one failed).
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
import contextlib
import errno
import signal
import sys
import threading
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from typing import Sequence

from zoo.benchmark.command import benchmark_main, compare_main
from zoo.errors import ZooError, cause_chain
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
    found = next((e for e in cause_chain(err) if isinstance(e, ZooError)), None)
    if found is not None:
        return found
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
    p.add_argument("input", help="video file or folder of frames; or, for a batch, a folder of videos and/or clip "
                   "folders, or a .txt file listing videos and clip folders (one path a line, relative to the .txt's "
                   "folder; blank lines and lines starting with # are ignored)")
    p.add_argument("-o", "--output", required=True,
                   help="output video file, .mp4, .mov or .mkv (or folder with --frames); never the input. For a batch: the output folder, "
                   "receiving <name>.mp4 (or <name>/ with --frames) per input")
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
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="inference precision: auto (default) = bf16 autocast on CUDA (within the tolerance of fp32 "
                   "the README states), fp32 on CPU; fp32 to opt out; fp16 on CUDA only")
    p.add_argument("--channels-last", action="store_true",
                   help="store the network's 2-D convolution weights channels-last (often faster on GPUs)")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile the network's parts (never its recurrence or sampling loop); MODE: default "
                   "(when given without one), reduce-overhead, max-autotune, max-autotune-no-cudagraphs. The first "
                   "chunk pays the compilation")
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
    p.add_argument("--no-pipeline", dest="pipelined", action="store_false",
                   help="decode, upscale and encode one after another in one thread (by default decoding and "
                   "encoding run in background threads alongside the network; for comparison and debugging)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run (Ctrl-C, kill, crash, full disk) on the same output from its last "
                   "finished chunk; needs the same input and settings. While a run goes on, its finished chunks are "
                   "kept in .<output name>.work next to the output (removed when the output is complete; a run "
                   "without --resume starts again and removes it)")
    p.add_argument("--overwrite", action="store_true",
                   help="batch: upscale inputs whose output already exists again (default: skip them)")
    p.add_argument("--stats", default=None, metavar="FILE.json",
                   help="also write what each input took, as JSON: frames, seconds, the time split of decoding / "
                   "the network / encoding, the precision used and, on CUDA, the peak GPU memory (rewritten "
                   "atomically after every finished input, so a batch that stops keeps what was done)")
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


class _Interrupted(BaseException):
    """A termination signal (SIGINT, SIGTERM, SIGHUP) raised as an exception, so that clean-up code runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _FullDisk(BaseException):
    """A write failed for lack of space (ENOSPC, EDQUOT) or over the file size limit (EFBIG)."""


#: errno values reported as a full disk: no space, over quota, over the file size limit (``ulimit -f``).
_FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

_SIGNAL_NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}
if hasattr(signal, "SIGHUP"):
    _SIGNAL_NAMES[signal.SIGHUP] = "SIGHUP"


def _full_disk_error(err: BaseException) -> OSError | None:
    """The OSError with a full-disk errno in ``err``'s cause/context chain (PyAV's errors are OSErrors too)."""
    return next((e for e in cause_chain(err) if isinstance(e, OSError) and e.errno in _FULL_DISK_ERRNOS), None)


@contextlib.contextmanager
def _termination_signals_raise() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM/SIGHUP raise :class:`_Interrupted` (once: later ones are ignored while the
    clean-up runs). Signals the process was started ignoring (``nohup``) stay ignored; outside the main thread
    nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in _SIGNAL_NAMES}
    caught = [signum for signum, handler in previous.items() if handler is not signal.SIG_IGN]

    def handler(signum: int, frame: object) -> None:
        for other in caught:
            signal.signal(other, signal.SIG_IGN)
        raise _Interrupted(signum)

    for signum in caught:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


class _UpscaleRun:
    """What `vsrzoo upscale` is doing, for the one line it prints when it stops early."""

    def __init__(self) -> None:
        self.current: Path | None = None  # the output being written
        self.batch: tuple[int, int] | None = None  # (index, count) of the current batch input
        self.written = 0
        self.code = 0

    def _kept(self) -> Path | None:
        """The work folder of the current output, when a finished chunk is kept there for --resume."""
        from zoo.inference import work_folder

        if self.current is None or not work_folder(self.current).is_dir():
            return None
        return work_folder(self.current)

    def interrupted(self, signum: int) -> str:
        name = _SIGNAL_NAMES.get(signum, f"signal {signum}")
        kept = self._kept()
        tail = f"; its finished chunks are kept in {kept}: run the same command with --resume to continue" \
            if kept else ""
        if self.batch is None:
            return f"interrupted by {name}: no output written{tail}"
        index, count = self.batch
        return (f"interrupted by {name} at input {index} of {count} ({self.written} written before): "
                f"{self.current} not written{tail}")

    def full_disk(self, err: OSError) -> str:
        where = f" while writing {self.current}" if self.current is not None else ""
        kept = self._kept()
        tail = (f"; its finished chunks are kept in {kept}: free some space, then run the same command with --resume"
                if kept else ": free some space and run again")
        return (f"error: no space left on device (or disk quota / file size limit reached){where} "
                f"({err.strerror or err}); no partial output is left{tail}")


def _check_upscale_numbers(args: argparse.Namespace, spec, chunk_frames: int | None, overlap: int,  # noqa: ANN001
                           tile: int | None, tile_overlap: int | None) -> None:
    """Refuse option values out of range (one line naming the flag), before anything is loaded."""
    from zoo.errors import ConfigError

    def origin(value: object) -> str:
        return "" if value is not None else f" (the {spec.name} default)"

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be a positive number of frames, got {args.max_frames}")
    if chunk_frames is not None:
        if chunk_frames < 1:
            raise ConfigError(f"--chunk-frames must be a positive number of frames, got {chunk_frames}")
        if overlap < 0:
            raise ConfigError(f"--overlap must be 0 or more frames, got {overlap}")
        if overlap >= chunk_frames:
            raise ConfigError(f"--overlap {overlap}{origin(args.overlap)} must be smaller than --chunk-frames "
                              f"{chunk_frames}{origin(args.chunk_frames)}")
    if tile is not None and tile < 0:
        raise ConfigError(f"--tile must be 0 (whole frames) or a positive tile size in pixels, got {tile}")
    if tile_overlap is not None and tile_overlap < 0:
        raise ConfigError(f"--tile-overlap must be 0 or more pixels, got {tile_overlap}")
    # families that tile inside their sampler check their own tile options (Real-ESRGAN's overlap is twice the
    # context around non-overlapping tiles, so it may exceed the tile; the diffusion families tile latents)
    if tile and tile_overlap is not None and tile_overlap >= tile and not spec.chunking.tiles_in_sampler:
        raise ConfigError(f"--tile-overlap {tile_overlap}{origin(args.tile_overlap)} must be smaller than --tile "
                          f"{tile}{origin(args.tile)}")


def _check_output(source: Path, output: Path, as_frames: bool) -> None:
    """Refuse an output that would overwrite its input or cannot be written, before anything is loaded."""
    from zoo.data.video_io import check_output_path, output_format

    if not as_frames:
        output_format(output)  # .mp4 / .m4v / .mov / .mkv; another suffix is refused before any work
    check_output_path(output, as_frames=as_frames, protected=(source,), create_folder=True)


def _batch_inputs(args: argparse.Namespace) -> list[tuple[Path, Path]] | None:
    """``[(input, output), ...]`` when INPUT is a batch (a library folder or a .txt list), None for one clip.

    Raises:
        InputError: an empty list, a folder without clips, ``-o`` a file, two inputs for one output, an output
            that would overwrite an input.
        ConfigError: two inputs whose outputs would have the same name.
    """
    from zoo.data.video_io import VIDEO_EXTENSIONS, check_output_folder, list_clips
    from zoo.errors import ConfigError, InputError

    source = Path(args.input).expanduser()
    if source.is_file() and source.suffix.lower() == ".txt":
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"cannot read the list of inputs {source}: {err}") from err
        inputs = []
        for line in lines:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                path = Path(entry).expanduser()
                inputs.append(path if path.is_absolute() else source.parent / path)
        if not inputs:
            raise InputError(f"no inputs listed in {source} (one video file or clip folder a line)")
        if not any(path.exists() for path in inputs):
            raise InputError(f"unsupported input {source}: a .txt input is a list of videos or clip folders (one "
                             f"path a line), but none of its {len(inputs)} entries exists (the first: {inputs[0]})")
    elif source.is_dir():
        clips = list_clips(source)
        if len(clips) == 1 and clips[0][1] == source:
            return None  # a folder of frames: one clip
        inputs = [path for _, path in clips]
    else:
        return None
    out_dir = Path(args.output).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{source} is a batch of inputs, so -o is an output folder; {out_dir} is a file")
    if not out_dir.exists() and out_dir.suffix.lower() in VIDEO_EXTENSIONS:
        raise InputError(f"{source} is a batch of {len(inputs)} inputs, so -o is an output folder (one output per "
                         f"input), not a video file name like {out_dir.name}")
    check_output_folder(out_dir, create=True)
    items: list[tuple[Path, Path]] = []
    by_output: dict[Path, Path] = {}
    for path in inputs:
        if out_dir.resolve() in path.resolve().parents:
            continue  # an earlier batch's output inside the library folder
        name = path.stem if path.suffix.lower() in VIDEO_EXTENSIONS else path.name
        output = out_dir / (name if args.frames else f"{name}.mp4")
        if output in by_output:
            raise ConfigError(f"two inputs would write {output}: {by_output[output]} and {path}; rename one")
        resolved = output.resolve()
        for protected in (path.resolve(),):
            if resolved == protected or (args.frames and resolved in protected.parents):
                raise InputError(f"output {output} would overwrite the input {path}; choose another output folder")
        by_output[output] = path
        items.append((path, output))
    return items


def _upscale(args: argparse.Namespace, state: _UpscaleRun) -> int:
    """The work of `vsrzoo upscale`: every cheap check, then the model, then each input. Returns the exit status."""
    from zoo.errors import ConfigError, InputError
    from zoo.hub import family, load_pretrained
    from zoo.inference import check_compile_mode, resolve_device, resolve_precision, upscale_video
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
    if args.resume and args.random_weights:
        raise ConfigError("--resume continues a run with --weights: random networks differ from run to run, so a "
                          "--random-weights run keeps nothing to continue")
    overrides = _upscale_options(args, spec)
    chunking = spec.chunking
    chunk_frames = args.chunk_frames if args.chunk_frames is not None else chunking.chunk_frames
    overlap = args.overlap if args.overlap is not None else chunking.overlap
    tile = args.tile if args.tile is not None else chunking.tile
    tile_overlap = args.tile_overlap if args.tile_overlap is not None else chunking.tile_overlap
    _check_upscale_numbers(args, spec, chunk_frames, overlap, tile, tile_overlap)
    tile = None if tile == 0 else tile
    device = resolve_device(args.device)
    dtype = resolve_precision(device, args.dtype)
    check_compile_mode(args.compile)
    if args.stats is not None:
        stats = Path(args.stats).expanduser()
        if stats.is_dir():
            raise ConfigError(f"--stats {args.stats}: is a folder; give a file name such as run.json")
        if not stats.parent.is_dir():
            raise ConfigError(f"--stats {args.stats}: the folder {stats.parent} does not exist")

    batch = _batch_inputs(args)
    if batch is None:
        if not Path(args.input).expanduser().exists():
            raise InputError(f"input not found: {args.input}")
        _check_output(Path(args.input).expanduser(), Path(args.output).expanduser(), args.frames)
    if chunking.tiles_in_sampler:
        # the sampler tiles its latents itself (tile options in LQ px); upscale_video only streams the chunks
        for key, flag, value in (("tile", args.tile, tile), ("tile_overlap", args.tile_overlap, tile_overlap)):
            if key in overrides and flag is not None:
                raise ConfigError(f"{key} given both as --{key.replace('_', '-')} and as --option; give it once")
            overrides.setdefault(key, value)
        if spec.kind == "diffusion":
            overrides.setdefault("progress", not args.no_progress)
        tile = None
    run_info = {"model": spec.name, "variant": args.variant,
                "options": {k: v for k, v in overrides.items() if k != "progress"}}
    net = load_pretrained(args.model, None if args.random_weights else args.weights, variant=args.variant,
                          **overrides)

    def notify(message: str) -> None:
        print(message, file=sys.stderr)

    summaries: list[dict] = []

    def one(source: Path, output: Path) -> str:
        state.current = output
        output.parent.mkdir(parents=True, exist_ok=True)
        summary = upscale_video(
            net, source, output, scale=getattr(net, "scale", 4), chunk_frames=chunk_frames, overlap=overlap,
            tile=tile, tile_overlap=tile_overlap if tile is not None else 0, device=device, dtype=dtype,
            channels_last=args.channels_last, compile_mode=args.compile, as_frames=args.frames,
            progress=not args.no_progress, max_frames=args.max_frames,
            checkpoint=not args.random_weights, resume=args.resume, run_info=run_info, notify=notify,
            scene_split=args.scene_split, scene_threshold=args.scene_threshold, pipelined=args.pipelined)
        summaries.append({"input": str(source), **summary})
        if args.stats is not None:
            _write_stats(Path(args.stats).expanduser(), summaries)
        w, h = summary["size"]
        resumed = summary["resumed_chunks"]
        note = f" (resumed after {resumed} of {summary['chunks']} chunks)" if resumed else ""
        timing = summary["timing"]
        split = (f" (compute {timing['compute_s']:.1f} s, decode {timing['decode_s']:.1f} s, encode "
                 f"{timing['encode_s']:.1f} s, {'overlapped' if summary['pipelined'] else 'one after another'})")
        return (f"wrote {summary['output']}: {summary['frames']} frames, {w}x{h}, {summary['fps']:.3f} fps "
                f"in {summary['seconds']:.1f} s, {summary['dtype']}{split}{note}\n{describe(summary['scenes'])}")

    if batch is None:
        print(one(Path(args.input).expanduser(), Path(args.output).expanduser()))
        return 0
    skipped = failed = 0
    for index, (source, output) in enumerate(batch, 1):
        state.batch = (index, len(batch))
        tag = f"[{index}/{len(batch)}] {source.name}"
        if (output.exists() or output.is_symlink()) and not args.overwrite:
            print(f"{tag}: skipped (exists): {output}")
            skipped += 1
            continue
        try:
            print(f"{tag}: {one(source, output)}")
        except Exception as err:  # noqa: BLE001 - one failing input does not stop the batch (a full disk does)
            if _full_disk_error(err) is not None:
                raise
            user_error = _user_error(err)
            message = str(user_error) if user_error is not None else f"{type(err).__name__}: {err}"
            print(f"{tag}: failed: {message}", file=sys.stderr)
            failed += 1
            continue
        state.written += 1
    print(f"batch: {state.written} written, {skipped} skipped (exist), {failed} failed, of {len(batch)} inputs "
          f"-> {Path(args.output).expanduser()}")
    return 1 if failed else 0


def _write_stats(path: Path, summaries: list[dict]) -> None:
    """``vsrzoo upscale --stats``: ``{"inputs": [upscale_video's summary + "input", ...]}``, written atomically."""
    import json

    from zoo.fileio import write_atomic

    write_atomic(path, json.dumps({"inputs": summaries}, indent=1, default=str).encode())


def upscale_main(argv: Sequence[str]) -> int:
    """``vsrzoo upscale``: see ``vsrzoo upscale --help``.

    Exit status: 0 done; 1 a batch input failed, or the disk is full; 2 refused (a user error, one line, nothing
    written); 128 + the signal's number when interrupted (130 Ctrl-C, 143 SIGTERM), after removing the partial
    output (the finished chunks stay for ``--resume``).
    """
    args = _upscale_parser().parse_args(argv)
    state = _UpscaleRun()

    def run() -> None:
        try:
            state.code = _upscale(args, state)
        except Exception as err:
            full = _full_disk_error(err)
            if full is not None:
                raise _FullDisk(state.full_disk(full)) from err
            raise

    with _termination_signals_raise():
        try:
            return _run_guarded(run) or state.code
        except _Interrupted as stop:
            print(state.interrupted(stop.signum), file=sys.stderr)
            return 128 + stop.signum
        except KeyboardInterrupt:
            print(state.interrupted(signal.SIGINT), file=sys.stderr)
            return 128 + signal.SIGINT
        except _FullDisk as full:
            print(full, file=sys.stderr)
            return 1


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
