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
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from zoo.diffusion.tiles import accumulate, check_window, run_over_tiles, window_weights
from zoo.errors import ConfigError, InputError
from zoo.scenes import DEFAULT_THRESHOLD, check_threshold, plan_chunks, plan_video_chunks

__all__ = ["DTYPES", "takes_first_frame", "upscale_tensor", "upscale_video"]

#: ``dtype`` names accepted by :func:`upscale_video`.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
        """Blend chunk ``index``'s output ``(b, n, 3, H, W)``; yield ``(frame index, (b, 3, H, W))`` now final."""
        start, end = self.plan[index]
        weights = window_weights(self.plan, index)
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
) -> torch.Tensor:
    """``fn`` over spatial tiles of one chunk ``(b, n, 3, h, w)``; returns ``(b, n, 3, sh, sw)`` CPU float32."""
    kwargs = {"first_frame": first_frame} if takes_first_frame(fn) else {}
    return run_over_tiles(fn, lq, scale=scale, tile=tile, tile_overlap=tile_overlap, device=device, dtype=dtype,
                          out_channels=lq.shape[2], **kwargs)


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

    Returns:
        ``(b, t, 3, scale h, scale w)`` CPU float32, not clamped.

    Raises:
        InputError: ``lq`` is not a 5-D float tensor.
        ConfigError: bad ``scale``/``chunk_frames``/``overlap``/``tile``/``tile_overlap``, or ``fn`` returned a
            shape other than the input's times ``scale``.
    """
    if not isinstance(lq, torch.Tensor) or lq.ndim != 5 or not lq.is_floating_point():
        shape = tuple(lq.shape) if isinstance(lq, torch.Tensor) else type(lq).__name__
        raise InputError(f"lq must be a float video tensor (b, t, c, h, w) in [0, 1], got {shape}")
    _check_options(scale, chunk_frames, overlap, tile, tile_overlap)
    device = torch.device(device)
    b, t, c, h, w = lq.shape
    plan = plan_chunks(t, cuts, chunk_frames, overlap)
    if len(plan) == 1:
        return _run_tiled(fn, lq, scale, tile, tile_overlap, device, dtype, first_frame)
    sr = torch.empty(b, t, c, h * scale, w * scale)
    blender = _TemporalBlender(plan)
    for index, (start, end) in enumerate(plan):
        out = _run_tiled(fn, lq[:, start:end], scale, tile, tile_overlap, device, dtype, first_frame + start)
        for frame_index, frame in blender.add(index, out):
            sr[:, frame_index] = frame
    return sr


def _net_runner(net: nn.Module, device: torch.device, dtype: str) -> Callable[..., torch.Tensor]:
    """Wrap ``net`` (moved to ``device``, eval mode) for ``dtype``: fp32 as is, fp16/bf16 under autocast."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={str(device)!r} asked for but CUDA is not available; use device='cpu'")
    if dtype == "fp16" and device.type != "cuda":
        raise ConfigError("dtype='fp16' needs a CUDA device (half-precision convolutions on CPU are slow or "
                          "unsupported); on CPU use dtype='bf16' or 'fp32'")
    net = net.to(device).eval()
    if dtype == "fp32":
        return net
    amp_dtype = DTYPES[dtype]

    def run(x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=amp_dtype):
            return net(x, **kwargs)

    run.takes_first_frame = takes_first_frame(net)  # type: ignore[attr-defined]
    return run


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
    dtype: str = "fp32",
    as_frames: bool = False,
    progress: bool = True,
    max_frames: int | None = None,
    scene_split: bool = True,
    scene_threshold: float = DEFAULT_THRESHOLD,
) -> dict:
    """Upscale a video file or frame folder with a network, streaming, and write the result.

    Frames are read with :meth:`zoo.data.video_io.VideoSource.iter_frames`, ``chunk_frames`` at a time (the
    ``overlap`` frames shared with the previous chunk are kept, nothing else), run through :func:`upscale_tensor`
    (tiles if ``tile``), cross-faded over chunk borders, clamped to [0, 1], rounded to uint8 and written by
    :class:`zoo.data.video_io.VideoWriter` as soon as no later chunk covers them. Peak memory depends on
    ``chunk_frames`` and ``tile``, not on the video's length.

    Output: an H.264 mp4 at the source's exact frame rate with the source's audio stream copied (when it has
    one), or numbered PNG frames in the folder ``output_path`` with ``as_frames``. Written atomically; an
    output path that resolves to the input is refused before any work.

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
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ...
        dtype: ``'fp32'``; ``'bf16'`` (CUDA or CPU) or ``'fp16'`` (CUDA only) run the net under
            ``torch.autocast`` (precision-sensitive ops stay fp32). ``'fp16'`` on CPU raises instead of silently
            falling back.
        as_frames: write PNG frames instead of an mp4.
        progress: show a tqdm bar over written frames.
        max_frames: upscale only the first ``max_frames`` frames (quick previews; the audio is cut to match).
        scene_split: find the scene cuts first (:func:`zoo.scenes.detect_cuts`, one extra decoding pass) and plan
            the chunks per shot, so that no chunk, recurrence or diffusion window crosses a cut.
        scene_threshold: the cut detector's threshold (mean HSV change, 0-255; PySceneDetect's default 27).

    Returns:
        ``{'frames': int (written), 'fps': float, 'size': (width, height) of the output, 'seconds': float wall time,
        'output': str, 'scenes': {'split': bool, 'cuts': [first frame of each new shot], 'shots': int,
        'seconds': float (the detection pass)}}``.

    Raises:
        InputError: unreadable input, output would overwrite the input, output folder missing.
        ConfigError: bad chunk/tile options, unknown ``dtype``, fp16 on CPU, CUDA unavailable, or a net whose
            output is not ``scale`` times its input.
    """
    started = time.perf_counter()
    _check_options(scale, chunk_frames, overlap, tile, tile_overlap)
    check_threshold(scene_threshold)
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ConfigError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    from zoo.data.video_io import VideoWriter, open_video

    device = torch.device(device)
    run = _net_runner(net, device, dtype)
    source = open_video(input_path)
    check_input = getattr(net, "check_input_size", None)
    if callable(check_input):  # e.g. frames too small for an upscaler's flow network: refuse before any work
        check_input(source.height, source.width)
    audio_from = source.path if source.has_audio and not as_frames else None
    writer = VideoWriter(output_path, fps=source.fps_fraction, audio_from=audio_from, as_frames=as_frames,
                         input_path=source.path)
    with writer:
        # video files: frames are counted by decoding (inside the writer, so a failure removes its temp output);
        # with max_frames only that many are decoded
        if max_frames is None or source.is_folder:
            num_frames = min(source.num_frames, max_frames or source.num_frames)
        else:
            num_frames = sum(1 for _ in source.iter_frames(0, max_frames))
        plan, scenes = plan_video_chunks(source, num_frames, chunk_frames, overlap, scene_split=scene_split,
                                         threshold=scene_threshold, progress=progress)
        blender = _TemporalBlender(plan)
        frames = source.iter_frames(0, num_frames)
        buffer: list[tuple[int, np.ndarray]] = []
        next_index = 0
        bar = tqdm(total=num_frames, unit="frame", desc=f"upscaling {source.path.name}", disable=not progress)
        with contextlib.closing(bar):
            for index, (start, end) in enumerate(plan):
                buffer = [(i, frame) for i, frame in buffer if i >= start]
                while next_index < end:
                    frame = next(frames, None)
                    if frame is None:
                        raise InputError(f"{source.path} ended after {next_index} frames, {num_frames} were counted")
                    buffer.append((next_index, frame))
                    next_index += 1
                lq = torch.from_numpy(np.stack([frame for _, frame in buffer]))
                lq = rearrange(lq, "t h w c -> 1 t c h w").float() / 255.0
                sr = upscale_tensor(run, lq, scale=scale, tile=tile, tile_overlap=tile_overlap, device=device,
                                    first_frame=start)
                del lq
                for _, frame in blender.add(index, sr):
                    writer.write(frame[0])  # clamps to [0, 1] and rounds to uint8
                    bar.update(1)
                del sr
    return {
        "frames": num_frames,
        "fps": source.fps,
        "size": (source.width * scale, source.height * scale),
        "seconds": time.perf_counter() - started,
        "output": str(Path(output_path)),
        "scenes": scenes,
    }
