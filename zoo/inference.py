"""Inference over long videos with bounded memory: temporal chunks and spatial tiles, blended without seams.

Two entry points:

- :func:`upscale_tensor` runs any ``fn: (1, t, 3, h, w) -> (1, t, 3, scale h, scale w)`` over a clip tensor,
  in overlapping temporal chunks and/or overlapping spatial tiles;
- :func:`upscale_video` streams a video file or frame folder through a network chunk by chunk and writes the
  result (mp4 with the source's frame rate and audio, or PNG frames). Only one chunk of input frames, its
  output and the overlap frames waiting to be blended are ever in memory, whatever the video's length.

Blending. A clip is cut into the fewest chunks of at most ``chunk_frames`` frames that share at least ``overlap``
frames with their neighbours, all of the same length and spread evenly (:func:`zoo.diffusion.tiles.plan_windows`, the
planner and weights every chunked or tiled computation of the zoo shares). On the ``L`` frames
two chunks share, their outputs are cross-faded with linear weights that sum to 1, so no chunk border shows as a
jump; the quarter of the overlap next to a chunk's cut edge (the frames it saw with the least temporal context)
gets weight 0 from that chunk, the middle half is a linear ramp ``(j + 1) / (K + 1)``. Tiles are blended the same
way in space ("feathering" over the output pixels a tile shares with each neighbour, weight 1 elsewhere and at
the frame border); so a net whose receptive field is within a quarter of ``tile_overlap`` gives exactly its
whole-frame output. The official RealBasicVSR inference runs fixed chunks without overlap and no tiles
(ckkelvinchan/RealBasicVSR ``inference_realbasicvsr.py``, ``max_seq_len``); overlap blending is this project's.

Blended values are kept as running weighted means (``acc += w / (W + w) * (out - acc)``,
:class:`zoo.diffusion.tiles.TileAccumulator`), so where every chunk or tile produces the same value (a per-frame,
per-pixel ``fn``) the blend returns it bit-exactly.

Scene cuts. :func:`upscale_video` first finds the video's hard cuts (:mod:`zoo.scenes`, PySceneDetect's content
detector, one extra decoding pass) and plans the chunks of each shot on their own, so that no chunk, recurrence,
diffusion window or cross-fade spans a cut (``scene_split=False`` turns this off).

Upscalers that draw random numbers per chunk (the diffusion samplers) declare ``takes_first_frame = True`` and are
called ``fn(chunk, first_frame=i)``, ``i`` the chunk's first frame in the video, so each chunk gets its own noise.

Precision and fast paths (:func:`prepare_network`): ``dtype='auto'`` runs bf16 autocast on CUDA and fp32
elsewhere (:func:`resolve_precision`); ``channels_last`` stores the 2-D convolution weights channels-last
(:func:`to_channels_last`); ``compile_mode`` compiles the net's parts, never its recurrence or sampling loop
(:func:`compile_network`).

Pipeline. :func:`upscale_video` runs three stages at once, so that decoding and H.264 encoding do not leave the
accelerator idle: a decode thread (``VideoSource.iter_frames``) fills a queue of at most one chunk of uint8 frames;
the main thread builds each chunk, runs the network and the cross-fades, and puts the final frames into an encode
queue of at most one chunk of frames (plus one commit); an encode thread writes them (x264 or PNG, the work folder's
PNGs, then the chunk's commit, in that order). Memory stays flat in the video's length (:func:`queue_sizes`). On
CUDA the chunk's uint8 frames are stacked into pinned memory and copied ``non_blocking`` (converted to float on the
device); the network's output stays on the device, where it is blended and rounded to uint8
(:func:`zoo.data.video_io.to_uint8_frames`, the writer's own rounding), and the uint8 frames are copied
``non_blocking`` into pinned memory, completed by one ``torch.cuda.Event`` per chunk. An error in either thread
reaches the caller as the same exception object; on any exception (Ctrl-C included) both threads are stopped and
joined before it leaves :func:`upscale_video`. On the CPU the stages compute exactly what the sequential path
(``pipelined=False``) does, frame for frame.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from zoo.diffusion.tiles import accumulate, check_window, run_over_tiles, window_weights
from zoo.errors import ConfigError, InputError, ZooError, cause_chain
from zoo.fileio import pid_alive, write_atomic
from zoo.scenes import DEFAULT_THRESHOLD, check_threshold, plan_chunks, plan_video_chunks

__all__ = ["COMPILE_MODES", "DECODE_QUEUE_CHUNKS", "DTYPES", "ENCODE_QUEUE_CHUNKS", "check_compile_mode",
           "check_precision", "compile_network", "compile_targets", "prepare_network", "queue_sizes", "resolve_device",
           "resolve_precision", "takes_first_frame", "to_channels_last", "trim_host_heap", "upscale_tensor",
           "upscale_video", "work_folder"]

#: ``dtype`` names accepted by :func:`upscale_video` and :func:`resolve_precision` (``'auto'`` resolves to one).
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

#: ``torch.compile`` modes accepted by :func:`prepare_network` (``vsrzoo upscale --compile MODE``).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _check_options(scale: int, chunk_frames: int | None, overlap: int, tile: int | None, tile_overlap: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"scale must be a positive integer, got {scale!r}")
    check_window(chunk_frames, overlap, name="chunk_frames", overlap_name="overlap")
    check_window(tile, tile_overlap, name="tile")


def takes_first_frame(fn: Callable[..., torch.Tensor]) -> bool:
    """True if ``fn`` wants the index of the first frame of each chunk it is given (``fn(lq, first_frame=i)``).

    Upscalers whose random numbers depend on where a chunk starts (diffusion samplers: one noise draw per chunk,
    seeded by the seed and the chunk's first frame) declare ``takes_first_frame = True``.
    """
    return bool(getattr(fn, "takes_first_frame", False))


class _TemporalBlender:
    """Cross-fades the outputs of overlapping chunks and releases each frame once no later chunk covers it."""

    def __init__(self, plan: list[tuple[int, int]]) -> None:
        self.plan = plan
        self.pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, index: int, out: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Blend chunk ``index``'s output ``(b, n, 3, H, W)`` on its device; yield ``(frame index, (b, 3, H, W))``
        now final."""
        start, end = self.plan[index]
        weights = window_weights(self.plan, index).to(out.device)
        for i in range(end - start):
            frame, weight = out[:, i], weights[i : i + 1]
            if start + i in self.pending:
                acc, weight_sum = self.pending[start + i]
                accumulate(acc, weight_sum, frame, weight)
            else:
                self.pending[start + i] = (frame, weight.clone())
        final_before = self.plan[index + 1][0] if index + 1 < len(self.plan) else end
        for frame_index in sorted(k for k in self.pending if k < final_before):
            yield frame_index, self.pending.pop(frame_index)[0]
        # frames kept for the next chunk must not pin this chunk's whole output tensor in memory
        self.pending = {k: (acc.clone(), w) for k, (acc, w) in self.pending.items()}


def _run_tiled(
    fn: Callable[..., torch.Tensor],
    lq: torch.Tensor,
    scale: int,
    tile: int | None,
    tile_overlap: int,
    device: torch.device,
    dtype: torch.dtype,
    first_frame: int,
    out_device: torch.device,
) -> torch.Tensor:
    """``fn`` over spatial tiles of one chunk ``(b, n, 3, h, w)``; returns ``(b, n, 3, sh, sw)`` float32 on
    ``out_device``."""
    kwargs = {"first_frame": first_frame} if takes_first_frame(fn) else {}
    return run_over_tiles(fn, lq, scale=scale, tile=tile, tile_overlap=tile_overlap, device=device, dtype=dtype,
                          out_channels=lq.shape[2], out_device=out_device, **kwargs)


@torch.no_grad()
def upscale_tensor(
    fn: Callable[..., torch.Tensor],
    lq: torch.Tensor,
    *,
    scale: int,
    chunk_frames: int | None = None,
    overlap: int = 0,
    tile: int | None = None,
    tile_overlap: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    first_frame: int = 0,
    cuts: Sequence[int] = (),
    out_device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Apply a video SR function in overlapping temporal chunks and spatial tiles, blended without seams.

    Args:
        fn: maps ``(b, t', 3, h', w')`` on ``device``/``dtype`` to ``(b, t', 3, scale h', scale w')`` (e.g. a
            network in eval mode). Called under ``torch.no_grad()``. When :func:`takes_first_frame` is true for it,
            it is called ``fn(chunk, first_frame=i)`` with ``i`` the index (in the video) of the chunk's first frame.
        lq: ``(b, t, 3, h, w)`` float in [0, 1] (usually ``b = 1``), on any device.
        scale: integer upscaling factor of ``fn``.
        chunk_frames: frames per temporal chunk; None runs the whole clip at once.
        overlap: frames shared by consecutive chunks, cross-faded (``0 <= overlap < chunk_frames``).
        tile: tile size in input pixels (square); None runs whole frames.
        tile_overlap: input pixels shared by neighbouring tiles, feathered (``0 <= tile_overlap < tile``).
        device: where ``fn`` runs; inputs are moved there one tile at a time.
        dtype: dtype of the tensors given to ``fn``.
        first_frame: index of ``lq``'s first frame in the whole video (for ``fn`` that take it).
        cuts: scene cuts (indices in ``lq`` of the first frame of each new shot, e.g. from
            :func:`zoo.scenes.detect_cuts`): no chunk crosses one (:func:`zoo.scenes.plan_chunks`).
        out_device: where the outputs are blended and returned (default the CPU; :func:`upscale_video` keeps them
            on ``device``).

    Returns:
        ``(b, t, 3, scale h, scale w)`` float32 on ``out_device``, not clamped.

    Raises:
        InputError: ``lq`` is not a 5-D float tensor.
        ConfigError: bad ``scale``/``chunk_frames``/``overlap``/``tile``/``tile_overlap``, or ``fn`` returned a
            shape other than the input's times ``scale``.
    """
    if not isinstance(lq, torch.Tensor) or lq.ndim != 5 or not lq.is_floating_point():
        shape = tuple(lq.shape) if isinstance(lq, torch.Tensor) else type(lq).__name__
        raise InputError(f"lq must be a float video tensor (b, t, c, h, w) in [0, 1], got {shape}")
    _check_options(scale, chunk_frames, overlap, tile, tile_overlap)
    device, out_device = torch.device(device), torch.device(out_device)
    b, t, c, h, w = lq.shape
    plan = plan_chunks(t, cuts, chunk_frames, overlap)
    if len(plan) == 1:
        return _run_tiled(fn, lq, scale, tile, tile_overlap, device, dtype, first_frame, out_device)
    sr = torch.empty(b, t, c, h * scale, w * scale, device=out_device)
    blender = _TemporalBlender(plan)
    for index, (start, end) in enumerate(plan):
        out = _run_tiled(fn, lq[:, start:end], scale, tile, tile_overlap, device, dtype, first_frame + start,
                         out_device)
        for frame_index, frame in blender.add(index, out):
            sr[:, frame_index] = frame
    return sr


def resolve_device(device: str | torch.device) -> torch.device:
    """The device a run asks for, checked before any work: ``'auto'`` is CUDA when available, else the CPU.

    Raises:
        ConfigError: not a device name, or a CUDA (``cuda``, ``cuda:N``) or MPS device this machine lacks.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ConfigError(f"device {str(device)!r} is not a device; use cpu, cuda, cuda:N or auto") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={str(resolved)!r} asked for but CUDA is not available on this machine; "
                              "use device='cpu'")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"device={str(resolved)!r} asked for but this machine has {count} CUDA device(s) "
                              f"(cuda:0 .. cuda:{count - 1})")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device={str(resolved)!r} asked for but MPS is not available; use device='cpu'")
    elif resolved.type != "cpu":
        raise ConfigError(f"device {str(device)!r} is not supported; use cpu, cuda, cuda:N or auto")
    return resolved


def check_precision(device: torch.device, dtype: str) -> None:
    """Refuse a ``dtype`` name that is unknown or (fp16) unusable on ``device``, before any work.

    ``'auto'`` is accepted (:func:`resolve_precision` turns it into a name of :data:`DTYPES`).

    Raises:
        ConfigError: naming the dtype and what to use instead.
    """
    if dtype != "auto" and dtype not in DTYPES:
        raise ConfigError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    if dtype == "fp16" and device.type != "cuda":
        raise ConfigError("dtype='fp16' needs a CUDA device (half-precision convolutions on CPU are slow or "
                          "unsupported); on CPU use dtype='bf16' or 'fp32'")


def resolve_precision(device: str | torch.device, dtype: str) -> str:
    """The precision a run uses: ``dtype``, with ``'auto'`` resolved for ``device``, checked before any work.

    ``'auto'`` is ``'bf16'`` (``torch.autocast`` to bfloat16) on a CUDA device and ``'fp32'`` on the CPU and MPS. The
    bf16 default rests on a measured tolerance: on a crop of the real sample clip every family's bf16 output stays
    within 40 dB PSNR of its fp32 output (uint8 RGB; ``benchmarks/precision.py``, recorded in
    ``benchmarks/results/precision_<device>.md``). ``'fp32'`` opts out.

    Args:
        device: the device the net runs on (a resolved device: ``'auto'`` is not looked up here, see
            :func:`resolve_device`).
        dtype: ``'auto'``, ``'fp32'``, ``'bf16'`` or ``'fp16'`` (CUDA only).

    Returns:
        A key of :data:`DTYPES`.

    Raises:
        ConfigError: unknown ``dtype``, or fp16 on a device other than CUDA (:func:`check_precision`).
    """
    device = torch.device(device)
    check_precision(device, dtype)
    if dtype == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return dtype


def check_compile_mode(compile_mode: str | None) -> None:
    """Refuse a ``torch.compile`` mode other than None and :data:`COMPILE_MODES`, before any work.

    Raises:
        ConfigError: naming the mode and the accepted ones.
    """
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise ConfigError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")


def to_channels_last(net: nn.Module) -> int:
    """Store ``net``'s 4-D parameters and buffers (2-D convolution weights) in channels-last memory format, in place.

    Other tensors are left as they are: ``Module.to(memory_format=torch.channels_last)`` raises on the 5-D weights of
    the diffusion UNets' 3-D convolutions. Values, shapes and ``state_dict`` keys are unchanged; only the strides
    differ. Inputs stay ``(b, t, c, h, w)`` contiguous: a convolution whose weight is channels-last returns
    channels-last output, so the layout spreads through the net from its weights (PyTorch's memory-format
    propagation), and the tensors the net returns are the same values in possibly other strides.

    Returns:
        The number of tensors converted.
    """
    converted = 0

    def convert(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal converted
        if tensor.ndim != 4:
            return tensor
        converted += 1
        return tensor.contiguous(memory_format=torch.channels_last)

    net._apply(convert)  # what Module.to applies, to every parameter and buffer, with the 4-D test of our own
    return converted


_CONTAINERS = (nn.ModuleList, nn.ModuleDict)


def compile_targets(net: nn.Module) -> list[str]:
    """The submodules (dotted names) of ``net`` that :func:`compile_network` compiles.

    A net names them with a ``compile_targets()`` method (e.g. a sampler's UNet). Otherwise: every top-level child
    holding parameters, where a ``ModuleList`` / ``ModuleDict`` (no ``forward`` of its own) or a module that sets
    ``compile_whole = False`` (a recurrence over frames, e.g.
    :class:`zoo.layers.propagation.BidirectionalPropagation`) stands for its own children, by the same rule. The net
    itself is never compiled whole: compiling a recurrent net would unroll its loop over frames into one graph (long
    compilation, one graph per clip length), and a sampler's loop calls its networks many times.

    Raises:
        ConfigError: a declared name that is not a submodule of ``net``.
    """
    declared = getattr(net, "compile_targets", None)
    if callable(declared):
        names = list(declared())
        for name in names:
            try:
                net.get_submodule(name)
            except AttributeError as err:
                raise ConfigError(f"{type(net).__name__}.compile_targets() names {name!r}, which is not one of its "
                                  "submodules") from err
        return names
    return _parts(net, "")


def _parts(module: nn.Module, prefix: str) -> list[str]:
    """The children of ``module`` holding parameters (dotted, after ``prefix``), containers and modules with
    ``compile_whole = False`` replaced by their own parts."""
    names = []
    for name, child in module.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if isinstance(child, _CONTAINERS) or getattr(child, "compile_whole", True) is False:
            names += _parts(child, f"{prefix}{name}.")
        else:
            names.append(prefix + name)
    return names


def compile_network(net: nn.Module, mode: str = "default") -> list[str]:
    """``torch.compile`` the ``forward`` of each of :func:`compile_targets` ``(net)``, in place.

    Each target's ``forward`` becomes ``torch.compile(forward, mode=mode, dynamic=None)`` (an instance attribute):
    ``state_dict`` keys and the module tree are unchanged, and dynamo keeps the compiled code per module class
    (``torch.compile(module)`` or ``module.compile()`` of many modules all compile ``Module.__call__``, one code
    object, and reach dynamo's recompile limit of 8 after as many different modules, falling back to eager).
    Compilation is lazy: the first call of each shape pays it (the warm-up: tens of seconds on a CPU, more with
    ``max-autotune``); later calls with the same shapes reuse it, and with
    ``dynamic=None`` a second shape makes dynamo compile a shape-generic graph. Compiling again with the same mode
    does nothing; with another mode it recompiles from the eager ``forward``.

    Args:
        net: the network (its targets are changed in place).
        mode: one of :data:`COMPILE_MODES` (``torch.compile``'s ``mode``). ``'reduce-overhead'`` records CUDA
            graphs, whose outputs are overwritten by the next call: a recurrent net that keeps them may fail there;
            ``'max-autotune-no-cudagraphs'`` avoids that.

    Returns:
        The compiled targets' names.

    Raises:
        ConfigError: an unknown mode, or a bad declared target.
    """
    check_compile_mode(mode)
    names = compile_targets(net)
    for name in names:
        module = net.get_submodule(name)
        if module.__dict__.get("_zoo_compile_mode") == mode:
            continue
        eager = module.__dict__.get("_zoo_eager_forward", module.forward)
        module.__dict__["_zoo_eager_forward"] = eager
        module.__dict__["forward"] = torch.compile(eager, mode=mode, dynamic=None)
        module.__dict__["_zoo_compile_mode"] = mode
    return names


def prepare_network(net: nn.Module, device: str | torch.device, *, dtype: str = "fp32", channels_last: bool = False,
                    compile_mode: str | None = None) -> Callable[..., torch.Tensor]:
    """Get ``net`` ready to upscale on ``device``: moved there, eval mode, and the fast paths asked for.

    In order: ``net.to(device).eval()``; with ``channels_last`` its 4-D weights in channels-last format
    (:func:`to_channels_last`); with ``compile_mode`` its parts compiled (:func:`compile_network`: the first chunk
    pays the compilation, later chunks of the same shape reuse it); and the returned callable runs it under
    ``torch.autocast(dtype)`` for bf16/fp16 (precision-sensitive ops stay fp32; the diffusion samplers decode their
    VAE outside autocast). ``net`` itself is changed in place (device, layout, compiled forwards; ``compile_mode``
    None leaves parts compiled by an earlier call as they are).

    Args:
        net: maps ``(b, t, 3, h, w)`` float [0, 1] to ``(b, t, 3, scale h, scale w)``.
        device: where it runs (``'auto'`` allowed: :func:`resolve_device`).
        dtype: ``'auto'`` (bf16 on CUDA, fp32 elsewhere: :func:`resolve_precision`), ``'fp32'``, ``'bf16'``,
            ``'fp16'`` (CUDA only).
        channels_last: store 2-D convolution weights channels-last (inputs stay ``(b, t, c, h, w)``).
        compile_mode: None (eager) or one of :data:`COMPILE_MODES`.

    Returns:
        ``run(lq, **kwargs) -> sr``: ``net`` itself for fp32, else a wrapper under autocast; it keeps
        :func:`takes_first_frame` of ``net``.

    Raises:
        ConfigError: a device this machine lacks, an unknown dtype or compile mode, fp16 off CUDA.
    """
    device = resolve_device(device)
    dtype = resolve_precision(device, dtype)
    check_compile_mode(compile_mode)
    net = net.to(device).eval()
    if channels_last:
        to_channels_last(net)
    if compile_mode is not None:
        compile_network(net, compile_mode)
    if dtype == "fp32":
        return net
    amp_dtype = DTYPES[dtype]

    def run(x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=amp_dtype):
            return net(x, **kwargs)

    run.takes_first_frame = takes_first_frame(net)  # type: ignore[attr-defined]
    return run


# ------------------------------------------------------------------------------------------ resumable runs
def work_folder(output_path: str | Path) -> Path:
    """Where :func:`upscale_video` keeps the finished chunks of a run on ``output_path``: ``.<name>.work`` beside it."""
    out = Path(output_path).expanduser().resolve()
    return out.parent / f".{out.name}.work"


def _input_stamp(source) -> dict:  # noqa: ANN001 - VideoSource
    """What identifies the input's content cheaply: path, and size + mtime of the file or of every frame file."""
    if source.is_folder:
        digest = hashlib.sha1()
        for path in source.frame_paths:
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return {"path": str(source.path.resolve()), "frames": len(source.frame_paths), "stamp": digest.hexdigest()}
    stat = source.path.stat()
    return {"path": str(source.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _net_fingerprint(net: nn.Module) -> str:
    """A digest of the network's parameters and buffers (names, shapes, sums and 1024 sampled values of each)."""
    digest = hashlib.sha1(type(net).__qualname__.encode())
    state = net.state_dict() if hasattr(net, "state_dict") else {}
    for name, tensor in state.items():
        tensor = tensor.detach()
        flat = tensor.reshape(-1)
        sample = flat[:: max(1, flat.numel() // 1024)].cpu().to(torch.float64)
        total = float(tensor.sum(dtype=torch.float64)) if tensor.numel() else 0.0
        digest.update(f"{name}\0{tuple(tensor.shape)}\0{tensor.dtype}\0{total!r}\n".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


def _jsonable(value: object) -> object:
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


class _WorkFolder:
    """The finished chunks of one :func:`upscale_video` run, kept so that a killed run can continue (``resume``).

    Layout of ``.<output name>.work/``, every file written atomically (temporary name, fsync, rename):

    * ``manifest.json``: ``format``, ``key`` (everything the frames depend on: input stamp, scale, chunk and tile
      options, the resolved dtype (so ``'auto'`` on CUDA and ``'bf16'`` continue each other), channels_last, compile
      mode, device, the net's fingerprint and the caller's ``run_info``), ``num_frames``, the chunk ``plan``,
      ``done`` (chunks finished), ``final_frames`` (frames no later chunk changes) and ``pending``;
    * ``frames/%08d.png``: the final uint8 frames, exactly as given to the writer (lossless);
    * ``pending-%06d.pt``: the blend accumulators ``{frame: (acc (b, 3, H, W) float32, weight_sum (1,))}`` of the
      frames the next chunk still cross-fades into (``torch.save``), so that a continuation blends bit-exactly;
    * ``owner.pid``: the process that writes the folder (a live owner's folder is never taken over).

    The manifest is written last for each chunk, so it only ever names frames and accumulators already on disk.
    """

    FORMAT = "vsrzoo-upscale-work/1"

    def __init__(self, folder: Path, key: dict) -> None:
        self.folder = folder
        self.key = _jsonable(key)
        self.num_frames = 0
        self.plan: list[tuple[int, int]] = []
        self.scenes: dict = {}
        self.done = 0
        self.final_frames = 0
        self.pending_name: str | None = None

    def check_owner(self) -> None:
        """Raise InputError when another live process is writing this folder."""

        try:
            pid = int((self.folder / "owner.pid").read_text().strip())
        except (OSError, ValueError):
            return
        if pid != os.getpid() and pid_alive(pid):  # own pid: left by an earlier call of this process
            raise InputError(f"another run (process {pid}) is writing this output (its work folder {self.folder} "
                             "is in use); wait for it or stop it first")

    def start(self, num_frames: int, plan: list[tuple[int, int]], scenes: dict | None = None) -> None:
        """Begin a fresh folder (any earlier one is removed); ``scenes`` is the cut detection's summary."""
        self.remove()
        (self.folder / "frames").mkdir(parents=True)
        write_atomic(self.folder / "owner.pid", str(os.getpid()).encode())
        self.num_frames, self.plan = num_frames, [tuple(span) for span in plan]
        self.scenes = dict(scenes or {})
        self._write_manifest()

    def load(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Read an earlier run's folder and take it over; return its pending blend accumulators.

        Raises:
            ConfigError: the folder was written with other settings (named) than this run's.
            InputError: the folder is damaged.
        """
        try:
            manifest = json.loads((self.folder / "manifest.json").read_text())
            if manifest.get("format") != self.FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}")
            key = manifest["key"]
            self.num_frames = int(manifest["num_frames"])
            self.plan = [tuple(span) for span in manifest["plan"]]
            self.scenes = dict(manifest.get("scenes") or {})
            self.done, self.final_frames = int(manifest["done"]), int(manifest["final_frames"])
            self.pending_name = manifest["pending"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"cannot resume from {self.folder}: it is damaged ({err}); run without --resume "
                             "to start again") from err
        if key != self.key:
            differ = []
            for name in sorted(set(key) | set(self.key)):
                before, now = key.get(name), self.key.get(name)
                if before == now:
                    continue
                if isinstance(before, dict) and isinstance(now, dict):
                    inner = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
                    differ.append(f"{name} ({', '.join(inner)})")
                else:
                    differ.append(f"{name}: {before!r} then, {now!r} now")
            raise ConfigError(f"cannot resume: the unfinished run in {self.folder} used other settings "
                              f"({'; '.join(differ)}); resume with the same settings, or run without --resume to "
                              "start again")
        missing = [i for i in range(self.final_frames) if not (self.folder / "frames" / f"{i:08d}.png").is_file()]
        pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        try:
            if missing:
                raise OSError(f"frame {missing[0]} is missing")
            if self.pending_name is not None:
                pending = torch.load(self.folder / self.pending_name, weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable state is a damaged folder
            raise InputError(f"cannot resume from {self.folder}: it is damaged ({err}); run without --resume "
                             "to start again") from err
        write_atomic(self.folder / "owner.pid", str(os.getpid()).encode())
        return pending

    def add_frame(self, index: int, frame: np.ndarray) -> None:
        """Keep final frame ``index`` (``(h, w, 3)`` uint8 RGB) as a lossless PNG."""
        ok, data = cv2.imencode(".png", np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise InputError(f"PNG encoding of frame {index} failed in {self.folder}")
        write_atomic(self.folder / "frames" / f"{index:08d}.png", data.tobytes())

    def read_frame(self, index: int) -> np.ndarray:
        """Final frame ``index`` as ``(h, w, 3)`` uint8 RGB."""
        array = cv2.imread(str(self.folder / "frames" / f"{index:08d}.png"), cv2.IMREAD_COLOR)
        if array is None:
            raise InputError(f"cannot resume from {self.folder}: frame {index} is unreadable; run without "
                             "--resume to start again")
        return np.ascontiguousarray(array[:, :, ::-1])

    def commit(self, done: int, final_frames: int, pending: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Record that chunks ``< done`` are finished: frames ``< final_frames`` are final, ``pending`` waits."""
        previous = self.pending_name
        self.pending_name = None
        if pending:
            self.pending_name = f"pending-{done:06d}.pt"
            buffer = io.BytesIO()
            torch.save({index: (acc.contiguous(), weight) for index, (acc, weight) in pending.items()}, buffer)
            write_atomic(self.folder / self.pending_name, buffer.getvalue())
        self.done, self.final_frames = done, final_frames
        self._write_manifest()
        if previous is not None and previous != self.pending_name:
            (self.folder / previous).unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        manifest = {"format": self.FORMAT, "key": self.key, "num_frames": self.num_frames,
                    "plan": [list(span) for span in self.plan], "scenes": self.scenes, "done": self.done,
                    "final_frames": self.final_frames, "pending": self.pending_name}
        write_atomic(self.folder / "manifest.json", json.dumps(manifest, indent=1).encode())

    def remove(self) -> None:
        if self.folder.is_dir() and not self.folder.is_symlink():
            shutil.rmtree(self.folder)
        elif self.folder.exists() or self.folder.is_symlink():
            self.folder.unlink()


def _has_os_error(err: BaseException) -> bool:
    return any(isinstance(e, OSError) for e in cause_chain(err))


def upscale_video(
    net: nn.Module,
    input_path: str | Path,
    output_path: str | Path,
    *,
    scale: int = 4,
    chunk_frames: int | None = 30,
    overlap: int = 4,
    tile: int | None = None,
    tile_overlap: int = 32,
    device: str | torch.device = "cpu",
    dtype: str = "auto",
    channels_last: bool = False,
    compile_mode: str | None = None,
    as_frames: bool = False,
    progress: bool = True,
    max_frames: int | None = None,
    scene_split: bool = True,
    scene_threshold: float = DEFAULT_THRESHOLD,
    checkpoint: bool = False,
    resume: bool = False,
    run_info: dict | None = None,
    notify: Callable[[str], None] | None = None,
    pipelined: bool = True,
) -> dict:
    """Upscale a video file or frame folder with a network, streaming, and write the result.

    Frames are read with :meth:`zoo.data.video_io.VideoSource.iter_frames`, ``chunk_frames`` at a time (the
    ``overlap`` frames shared with the previous chunk are kept, nothing else), run through :func:`upscale_tensor`
    (tiles if ``tile``), cross-faded over chunk borders, clamped to [0, 1], rounded to uint8 and written by
    :class:`zoo.data.video_io.VideoWriter` as soon as no later chunk covers them. Peak memory depends on
    ``chunk_frames`` and ``tile``, not on the video's length. The chunks are planned shot by shot
    (:func:`zoo.scenes.plan_video_chunks`: no chunk crosses a scene cut).

    Pipelined (the default): decoding runs in a background thread up to one chunk ahead, encoding in another up to
    one chunk behind (bounded queues, :func:`queue_sizes`), the network in the calling thread; on CUDA the uint8
    frames go to and from the device through pinned memory with ``non_blocking`` copies, and blending and rounding
    run on the device (module docstring). The output is the same frame for frame as with ``pipelined=False``
    (everything in the calling thread, one step after another). On any exception (an interruption included) both
    threads are stopped and joined before it propagates; the frames and commits already queued for the work folder
    are still written there (not into the output), so every chunk computed before an interruption can be resumed.

    Output: H.264 video in the container the suffix names (``.mp4``/``.m4v``, ``.mov``, ``.mkv``;
    :func:`zoo.data.video_io.output_format`) at the source's exact frame rate, with every audio track and the
    subtitles the container can hold (:class:`zoo.data.video_io.VideoWriter`), or numbered PNG frames in the folder
    ``output_path`` with ``as_frames``. Written atomically; an
    output path that resolves to the input is refused before any work.

    Resumable runs (``checkpoint``): each finished chunk is kept in :func:`work_folder` ``(output_path)`` (its final
    frames as lossless PNGs, the blend accumulators the next chunk continues, and a manifest of the settings and
    chunk plan; see ``_WorkFolder``). The folder is removed when the output is complete, and kept when the run
    stops on an interruption or an OS error (full disk) after a chunk finished. ``resume=True`` continues from it:
    the kept frames are written again, the next chunk starts from the kept accumulators, and the output equals an
    uninterrupted run's frame for frame. Without ``resume`` an earlier folder is removed (with a notice).

    Args:
        net: ``nn.Module`` mapping ``(b, t, 3, h, w)`` in [0, 1] to ``(b, t, 3, scale h, scale w)`` (e.g.
            ``zoo.hub.load_pretrained('realbasicvsr', path)``); moved to ``device`` and set to eval mode. If it has
            ``check_input_size(height, width)``, that is called with the LQ size before any work; with
            ``takes_first_frame`` it is given each chunk's first frame index.
        input_path: video file (mp4/mov/mkv/webm/avi) or folder of frames.
        output_path: output mp4 file, or output folder with ``as_frames``.
        scale: upscaling factor of ``net``.
        chunk_frames: frames per chunk (None: the whole video at once, memory grows with its length).
        overlap: frames shared by consecutive chunks (cross-faded).
        tile: spatial tile size in input pixels, or None.
        tile_overlap: input pixels shared by neighbouring tiles (used only with ``tile``).
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ``'auto'``, ...
        dtype: ``'auto'`` (default): bf16 on CUDA, fp32 on the CPU and MPS (:func:`resolve_precision`, whose
            docstring gives the measured bf16 tolerance); ``'fp32'``; ``'bf16'`` (CUDA or CPU) or ``'fp16'`` (CUDA
            only) run the net under ``torch.autocast`` (precision-sensitive ops stay fp32). ``'fp16'`` on CPU raises
            instead of silently falling back.
        channels_last: store the net's 2-D convolution weights channels-last (:func:`to_channels_last`; often
            faster on GPUs with tensor cores). Frames stay ``(b, t, c, h, w)``.
        compile_mode: ``torch.compile`` the net's parts with this mode (:data:`COMPILE_MODES`,
            :func:`compile_network`); None: eager. The first chunk (and the first tile of each size) pays the
            compilation, later chunks of the same shape reuse it.
        as_frames: write PNG frames instead of an mp4.
        progress: show a tqdm bar over written frames.
        max_frames: upscale only the first ``max_frames`` frames (quick previews; the audio is cut to match).
        scene_split: find the scene cuts first (:func:`zoo.scenes.detect_cuts`, one extra decoding pass) and plan
            the chunks per shot, so that no chunk, recurrence or diffusion window crosses a cut.
        scene_threshold: the cut detector's threshold (mean HSV change, 0-255; PySceneDetect's default 27).
        checkpoint: keep finished chunks in the work folder (disk: about a PNG copy of the output frames).
        resume: continue the run kept in the work folder (needs ``checkpoint``); starts normally when there is none.
        run_info: JSON-able settings that identify the network beyond its parameters (e.g. family, variant,
            loader options), stored in the manifest and compared on ``resume``.
        notify: called with one-line notices (an earlier work folder removed or continued); default: ignored.
        pipelined: overlap decoding, network and encoding in three threads (False: one after another in this one).

    Returns:
        ``{'frames': int (written), 'fps': float, 'size': (width, height) of the output, 'seconds': float wall time,
        'output': str, 'resumed_chunks': int (chunks taken from the work folder), 'chunks': int, 'scenes':
        {'split': bool, 'cuts': [first frame of each new shot], 'shots': int, 'seconds': float (the detection
        pass)}, 'dtype': str (the precision used, ``'auto'`` resolved), 'peak_gpu_mib': float (CUDA:
        ``torch.cuda.max_memory_allocated`` during this call, MiB) or None, 'pipelined': bool, 'timing': {...}}``.
        ``timing``, seconds, says which stage bounds the run:

        * ``decode_s``: decoding the frames (the decode thread's busy time; pipelined: alongside the network);
        * ``encode_s``: writing them: H.264 or PNG encoding, the work folder's PNGs and commits (the encode thread's
          busy time), plus the final flush of the output (``VideoWriter.close``, after the last chunk);
        * ``compute_s``: the calling thread's time per chunk from its frames being there to its output frames being
          ready for the writer: uint8 to float, the network, tiles and cross-fades, rounding, copies to the host. On
          CUDA it includes waiting for the GPU (one ``event.synchronize()`` per chunk);
        * ``wait_decode_s``: the calling thread blocked waiting for decoded frames (decoding too slow; 0 when not
          pipelined);
        * ``wait_encode_s``: the calling thread blocked on a full encode queue (encoding too slow; 0 when not
          pipelined);
        * ``scene_s``: the scene cut detection pass (0 when resumed or without ``scene_split``, about 0);
        * ``wall_s``: the whole call (``seconds``).

        The calling thread's parts (``compute_s + wait_decode_s + wait_encode_s + scene_s``, and without pipelining
        also ``decode_s + encode_s``) add up to at most ``wall_s``; the rest is setup, counting the frames of a video
        with ``max_frames``, and re-reading the kept frames of a resumed run.

    Raises:
        InputError: unreadable input, output would overwrite the input, output folder missing, a work folder in
            use by a live process or damaged.
        ConfigError: bad chunk/tile options, unknown ``dtype`` or ``compile_mode``, fp16 on CPU, CUDA unavailable,
            a net whose output is not ``scale`` times its input, ``resume`` without ``checkpoint``, or a work folder
            written with other settings (named).
    """
    started = time.perf_counter()
    _check_options(scale, chunk_frames, overlap, tile, tile_overlap)
    check_threshold(scene_threshold)
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ConfigError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    if resume and not checkpoint:
        raise ConfigError("resume=True continues a checkpointed run: give checkpoint=True as well")
    from zoo.data.video_io import VideoWriter, open_video

    notify = notify or (lambda message: None)
    device = resolve_device(device)
    if device.type == "cuda":  # the peak of this run alone (summary's peak_gpu_mib)
        torch.cuda.reset_peak_memory_stats(device)
    dtype = resolve_precision(device, dtype)
    run = prepare_network(net, device, dtype=dtype, channels_last=channels_last, compile_mode=compile_mode)
    source = open_video(input_path)
    check_input = getattr(net, "check_input_size", None)
    if callable(check_input):  # e.g. frames too small for an upscaler's flow network: refuse before any work
        check_input(source.height, source.width)
    work: _WorkFolder | None = None
    pending: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
    if checkpoint:
        key = {"input": _input_stamp(source), "scale": scale, "chunk_frames": chunk_frames, "overlap": overlap,
               "tile": tile, "tile_overlap": tile_overlap if tile is not None else 0, "dtype": dtype,
               "channels_last": bool(channels_last), "compile_mode": compile_mode, "device": str(device),
               "max_frames": max_frames, "net": _net_fingerprint(net),
               "scene_split": bool(scene_split), "scene_threshold": float(scene_threshold),
               "run": run_info or {}}
        work = _WorkFolder(work_folder(output_path), key)
        if work.folder.exists() or work.folder.is_symlink():
            work.check_owner()
            if resume:
                pending = work.load()  # ConfigError when the settings differ: the folder is left as it is
                notify(f"resuming from {work.folder}: {work.done} of {len(work.plan)} chunks done")
            else:
                notify(f"note: removing the unfinished run kept in {work.folder} (give --resume to continue it)")
                work.remove()
        elif resume:
            notify(f"note: nothing to resume for {output_path} (no {work.folder.name}); starting from the beginning")
    # every audio and subtitle track of the source goes along (VideoWriter copies what the container can hold)
    audio_from = source.path if (source.has_audio or source.has_subtitles) and not as_frames else None
    writer = VideoWriter(output_path, fps=source.fps_fraction, audio_from=audio_from, as_frames=as_frames,
                         input_path=source.path)
    resumed = work.done if pending is not None else 0
    scene_s = 0.0
    try:
        with writer:
            if pending is not None:
                num_frames, plan, scenes = work.num_frames, work.plan, work.scenes
            else:
                # video files: frames are counted by decoding (inside the writer, so a failure removes its temp
                # output); with max_frames only that many are decoded
                if max_frames is None or source.is_folder:
                    num_frames = min(source.num_frames, max_frames or source.num_frames)
                else:
                    num_frames = sum(1 for _ in source.iter_frames(0, max_frames))
                scene_started = time.perf_counter()
                plan, scenes = plan_video_chunks(source, num_frames, chunk_frames, overlap, scene_split=scene_split,
                                                 threshold=scene_threshold, progress=progress)
                scene_s = time.perf_counter() - scene_started
                if work is not None:
                    work.start(num_frames, plan, scenes)
            timing = _stream_chunks(run, source, writer, work, plan, num_frames, pending, scale=scale, tile=tile,
                                    tile_overlap=tile_overlap, device=device, progress=progress, pipelined=pipelined)
    except ZooError as err:
        if work is not None and not _has_os_error(err):
            work.remove()  # bad input or options: nothing to resume
        raise
    except BaseException:
        if work is not None and work.done == 0:
            work.remove()
        raise
    if work is not None:
        work.remove()
    seconds = time.perf_counter() - started
    return {
        "frames": num_frames,
        "fps": source.fps,
        "size": (source.width * scale, source.height * scale),
        "seconds": seconds,
        "output": str(Path(output_path)),
        "resumed_chunks": resumed,
        "chunks": len(plan),
        "scenes": scenes,
        "dtype": dtype,
        "peak_gpu_mib": (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None),
        "pipelined": bool(pipelined),
        "timing": {**timing, "scene_s": scene_s, "wall_s": seconds},
    }


# ------------------------------------------------------------------------------------------ the pipeline
#: The decode queue holds at most this many chunks' worth (the plan's longest chunk) of decoded input frames.
DECODE_QUEUE_CHUNKS = 1
#: The encode queue holds at most this many chunks' worth of output frames, plus one commit item per chunk.
ENCODE_QUEUE_CHUNKS = 1
_POLL_S = 0.1  # seconds between checks of a stop request while a thread or the main thread waits on a queue
_END = object()  # the last item of a queue


def queue_sizes(plan: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bounds (items) of the decode and encode queues of :func:`upscale_video` for a chunk ``plan``:
    ``DECODE_QUEUE_CHUNKS * n`` frames and ``ENCODE_QUEUE_CHUNKS * (n + 1)`` frames and commits, ``n`` the longest
    chunk's length (so pipelining keeps memory flat in the video's length)."""
    longest = max(end - start for start, end in plan)
    return DECODE_QUEUE_CHUNKS * longest, ENCODE_QUEUE_CHUNKS * (longest + 1)


class _Failed:
    """An exception raised in a pipeline thread, carried to the main thread (re-raised there as the same object)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _join(thread: threading.Thread | None, stop: threading.Event) -> None:
    """Wait (interruptibly) until ``thread`` has ended; an interruption while waiting only sets ``stop``."""
    while thread is not None and thread.is_alive():
        try:
            thread.join(_POLL_S)
        except BaseException:  # noqa: BLE001 - a second Ctrl-C during clean-up: stop sooner, still wait
            stop.set()


class _Decoder:
    """Frames ``start <= i < stop`` of ``source`` in order, decoded in the calling (main) thread.

    ``busy_s``: seconds spent decoding; ``main_s``: seconds the main thread spent in :meth:`get`.
    """

    def __init__(self, source, start: int, stop: int, maxsize: int) -> None:  # noqa: ANN001 - VideoSource
        self.source, self.start, self.stop = source, start, stop
        self.busy_s = self.main_s = 0.0
        self.frames: Iterator[np.ndarray] | None = None

    def begin(self) -> None:
        self.frames = self.source.iter_frames(self.start, self.stop)

    def get(self) -> np.ndarray | None:
        """The next frame ``(h, w, 3)`` uint8 RGB, or None after the last; raises what the decoder raised."""
        started = time.perf_counter()
        try:
            return next(self.frames, None)
        finally:
            self.busy_s += time.perf_counter() - started
            self.main_s += time.perf_counter() - started

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()


class _PrefetchDecoder(_Decoder):
    """:class:`_Decoder` in a background thread that runs ahead through a queue of at most ``maxsize`` frames.

    The thread iterates (and at the end closes) the ``iter_frames`` generator; an exception there reaches the main
    thread's :meth:`get` as the same object. :meth:`close` stops the thread early and waits for it. ``busy_s``: the
    thread's decoding time; ``main_s``: the main thread's time blocked in :meth:`get` (waiting for frames).
    """

    def __init__(self, source, start: int, stop: int, maxsize: int) -> None:  # noqa: ANN001 - VideoSource
        super().__init__(source, start, stop, maxsize)
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def begin(self) -> None:
        self.thread = threading.Thread(target=self._run, name="vsrzoo-decode", daemon=True)
        self.thread.start()

    def _put(self, item: object) -> bool:
        while not self.stop_event.is_set():
            try:
                self.queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            frames = self.source.iter_frames(self.start, self.stop)
            try:
                while True:
                    started = time.perf_counter()
                    frame = next(frames, _END)
                    self.busy_s += time.perf_counter() - started
                    if not self._put(frame) or frame is _END:
                        return
            finally:
                frames.close()  # by the thread that ran it (a video's container is closed here)
        except BaseException as err:  # noqa: BLE001 - forwarded to the main thread
            self._put(_Failed(err))

    def get(self) -> np.ndarray | None:
        started = time.perf_counter()
        try:
            while True:
                try:
                    item = self.queue.get(timeout=_POLL_S)
                    break
                except queue.Empty:
                    if not self.thread.is_alive() and self.queue.empty():
                        raise RuntimeError("the decode thread ended without a result") from None
        finally:
            self.main_s += time.perf_counter() - started
        if isinstance(item, _Failed):
            raise item.error
        return None if item is _END else item

    def close(self) -> None:
        self.stop_event.set()
        _join(self.thread, self.stop_event)


class _Encoder:
    """Writes what the chunk loop produces, in order, in the calling (main) thread.

    Items: ``('frame', index, frame, event, keep)``: ``frame`` ``(h, w, 3)`` uint8 RGB (an ndarray, or a pinned CPU
    tensor filled by a ``non_blocking`` copy that ``event``, a ``torch.cuda.Event``, completes) goes to the writer
    and, with ``keep``, into the work folder; ``('commit', done, final_frames, pending, event)``: the work folder's
    :meth:`_WorkFolder.commit` (``pending`` a snapshot no later chunk changes). A commit comes after the frames it
    covers, so the manifest only names frames already on disk. ``busy_s``: seconds spent writing (H.264 or PNG,
    work folder, commits, the final flush); ``main_s``: seconds the main thread spent in :meth:`put`.
    """

    def __init__(self, writer, work: _WorkFolder | None, maxsize: int) -> None:  # noqa: ANN001 - VideoWriter
        self.writer, self.work = writer, work
        self.busy_s = self.main_s = 0.0
        self.salvage = threading.Event()  # after a failure: only what the work folder keeps (the output is dropped)

    def begin(self) -> None:
        pass

    def _handle(self, item: tuple) -> None:
        started = time.perf_counter()
        try:
            kind, *rest = item
            event = rest[-1] if kind == "commit" else rest[2]
            if event is not None:
                event.synchronize()
            if kind == "frame":
                index, frame, _, keep = rest
                frame = frame.numpy() if isinstance(frame, torch.Tensor) else frame
                if not self.salvage.is_set():
                    self.writer.write(frame)
                if keep and self.work is not None:
                    self.work.add_frame(index, frame)
            else:
                done, final_frames, pending, _ = rest
                self.work.commit(done, final_frames, pending)
        finally:
            self.busy_s += time.perf_counter() - started

    def put(self, item: tuple) -> None:
        """Write ``item`` (see the class docstring); raises what writing it raised."""
        started = time.perf_counter()
        try:
            self._handle(item)
        finally:
            self.main_s += time.perf_counter() - started

    def finish(self) -> None:
        """After the last item: finish the output (:meth:`VideoWriter.close`); raises what writing raised."""
        started = time.perf_counter()
        try:
            self.writer.close()
        finally:
            self.busy_s += time.perf_counter() - started

    def abandon(self) -> None:
        """After a failure in the main thread: stop (the output is discarded by the caller)."""


class _ThreadedEncoder(_Encoder):
    """:class:`_Encoder` in a background thread fed through a queue of at most ``maxsize`` items.

    An exception of the thread (e.g. :class:`zoo.errors.InputError` from a full disk) is kept and raised in the main
    thread, as the same object, by its next :meth:`put` or by :meth:`finish`. :meth:`abandon` (a failure in the main
    thread) waits for the thread to end: without a work folder it drops the queued items; with one it still keeps
    the queued frames and commits there (not in the output), so that every chunk finished before the failure can be
    resumed, as in the sequential path. ``busy_s``: the thread's writing time plus the final flush (main thread);
    ``main_s``: the main thread's time blocked in :meth:`put` (the queue full).
    """

    def __init__(self, writer, work: _WorkFolder | None, maxsize: int) -> None:  # noqa: ANN001 - VideoWriter
        super().__init__(writer, work, maxsize)
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def begin(self) -> None:
        self.thread = threading.Thread(target=self._run, name="vsrzoo-encode", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                item = self.queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _END:
                return
            try:
                self._handle(item)
            except BaseException as err:  # noqa: BLE001 - raised again in the main thread
                self.error = err
                return

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error
        if not self.thread.is_alive():
            raise RuntimeError("the encode thread ended early")

    def put(self, item: object) -> None:
        started = time.perf_counter()
        try:
            while True:
                if self.error is not None or not self.thread.is_alive():
                    self._raise_error()
                try:
                    self.queue.put(item, timeout=_POLL_S)
                    return
                except queue.Full:
                    continue
        finally:
            self.main_s += time.perf_counter() - started

    def finish(self) -> None:
        self.put(_END)
        _join(self.thread, self.stop_event)
        if self.error is not None:
            raise self.error
        super().finish()

    def abandon(self) -> None:
        if self.work is None:
            self.stop_event.set()
        else:
            self.salvage.set()
            while self.thread.is_alive() and not self.stop_event.is_set():
                try:
                    self.queue.put(_END, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
                except BaseException:  # noqa: BLE001 - a second Ctrl-C: drop the rest
                    self.stop_event.set()
        _join(self.thread, self.stop_event)


def _chunk_to_device(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """``t`` uint8 ``(h, w, 3)`` RGB frames as ``(1, t, 3, h, w)`` float32 in [0, 1] on ``device``.

    The uint8 frames cross to the device (a quarter of the float bytes): on CUDA stacked into pinned memory and
    copied ``non_blocking``; the conversion to float runs there.
    """
    if device.type == "cuda":
        first = frames[0]
        stacked = torch.empty((len(frames), *first.shape), dtype=torch.uint8, pin_memory=True)
        np.stack(frames, out=stacked.numpy())
        stacked = stacked.to(device, non_blocking=True)
    else:
        stacked = torch.from_numpy(np.stack(frames)).to(device)
    return rearrange(stacked, "t h w c -> 1 t c h w").float() / 255.0


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy of ``tensor`` that later work on its device cannot change; from CUDA into pinned memory with a
    ``non_blocking`` copy (valid once an event recorded after it has completed)."""
    if tensor.device.type == "cuda":
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        return host
    return tensor.detach().to("cpu", copy=True)


def _frame_to_host(frame: torch.Tensor) -> np.ndarray | torch.Tensor:
    """A blended ``(3, H, W)`` float frame as the writer's ``(H, W, 3)`` uint8, rounded on the frame's device
    (:func:`zoo.data.video_io.to_uint8_frames`): an ndarray, or from CUDA a pinned tensor filled ``non_blocking``."""
    from zoo.data.video_io import to_uint8_frame, to_uint8_frames

    if frame.device.type == "cuda":
        return _to_host(to_uint8_frames(frame).contiguous())
    return to_uint8_frame(frame)


def trim_host_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``; elsewhere nothing).

    :func:`upscale_video` calls it once per chunk when pipelined (the benchmarks call it before measuring a peak).
    Frames are allocated by the decode thread and freed by the main thread, outputs allocated by the main thread and
    freed by the encode thread; glibc keeps one heap per thread and, without trimming, their free pages raised the
    process's RSS by 5-7 % from 100 to 1000 frames before levelling off (``benchmarks/upscale_memory.py``, tiny
    Real-ESRGAN at 32x32: 1011 -> 1082 MiB; the same 1068 MiB at 3000 frames).
    """
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def _stream_chunks(run: Callable[..., torch.Tensor], source, writer, work: _WorkFolder | None,  # noqa: ANN001
                   plan: list[tuple[int, int]], num_frames: int,
                   pending: dict[int, tuple[torch.Tensor, torch.Tensor]] | None, *, scale: int, tile: int | None,
                   tile_overlap: int, device: torch.device, progress: bool, pipelined: bool) -> dict[str, float]:
    """The chunk loop of :func:`upscale_video`: from the start, or (``pending`` given) after ``work.done`` chunks.

    Finishes the output (``writer.close()``). Returns the time split (``decode_s``, ``encode_s``, ``compute_s``,
    ``wait_decode_s``, ``wait_encode_s``; :func:`upscale_video`).
    """
    blender = _TemporalBlender(plan)
    first_chunk, written = 0, 0
    if pending is not None:
        first_chunk, written = work.done, work.final_frames
    decode_max, encode_max = queue_sizes(plan)
    start = plan[first_chunk][0] if first_chunk < len(plan) else num_frames
    decoder = (_PrefetchDecoder if pipelined else _Decoder)(source, start, num_frames, decode_max)
    encoder = (_ThreadedEncoder if pipelined else _Encoder)(writer, work, encode_max)
    compute_s = 0.0
    bar = tqdm(total=num_frames, unit="frame", desc=f"upscaling {source.path.name}", disable=not progress)
    with contextlib.closing(bar):
        try:
            if first_chunk < len(plan):
                decoder.begin()
            encoder.begin()
            if pending is not None:  # resume: the kept final frames, then the kept accumulators
                for index in range(work.final_frames):
                    encoder.put(("frame", index, work.read_frame(index), None, False))
                    bar.update(1)
                blender.pending = {k: (acc.to(device), w.to(device)) for k, (acc, w) in pending.items()}
            next_index = start
            buffer: list[tuple[int, np.ndarray]] = []
            for index in range(first_chunk, len(plan)):
                chunk_start, end = plan[index]
                buffer = [(i, frame) for i, frame in buffer if i >= chunk_start]
                while next_index < end:
                    frame = decoder.get()
                    if frame is None:
                        raise InputError(f"{source.path} ended after {next_index} frames, {num_frames} were counted")
                    buffer.append((next_index, frame))
                    next_index += 1
                started = time.perf_counter()
                lq = _chunk_to_device([frame for _, frame in buffer], device)
                sr = upscale_tensor(run, lq, scale=scale, tile=tile, tile_overlap=tile_overlap, device=device,
                                    first_frame=chunk_start, out_device=device)
                del lq
                items = []
                for frame_index, frame in blender.add(index, sr):
                    items.append(["frame", frame_index, _frame_to_host(frame[0]), None, True])
                    written = frame_index + 1
                del sr
                if work is not None:
                    snapshot = {k: (_to_host(acc), _to_host(w)) for k, (acc, w) in blender.pending.items()}
                    items.append(["commit", index + 1, written, snapshot, None])
                if device.type == "cuda":  # one wait per chunk, so that compute_s holds the GPU's time
                    event = torch.cuda.Event()
                    event.record(torch.cuda.current_stream(device))
                    event.synchronize()
                    for item in items:
                        item[-2 if item[0] == "frame" else -1] = event
                compute_s += time.perf_counter() - started
                for item in items:
                    encoder.put(tuple(item))
                    bar.update(item[0] == "frame")
                if pipelined:
                    trim_host_heap()
            decoder.close()
            encoder.finish()
        except BaseException:
            decoder.close()
            encoder.abandon()
            raise
    pipelined_waits = (decoder.main_s, encoder.main_s) if pipelined else (0.0, 0.0)
    return {"decode_s": decoder.busy_s, "encode_s": encoder.busy_s, "compute_s": compute_s,
            "wait_decode_s": pipelined_waits[0], "wait_encode_s": pipelined_waits[1]}
