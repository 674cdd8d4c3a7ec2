"""Scene cuts: where a video's shots change, and temporal chunks that never cross a cut.

Real videos are edited. A recurrent network (RealBasicVSR's bidirectional propagation) or a diffusion window run
over frames on both sides of a cut carries one shot's content into the other: ghosts of the previous shot in the
first frames after the cut, and the other way round. :func:`zoo.inference.upscale_video` therefore finds the cuts
first (:func:`detect_cuts`, one extra decoding pass) and plans its chunks per shot (:func:`plan_chunks`): each shot
is planned on its own with :func:`zoo.diffusion.tiles.plan_windows` and the shots' plans are concatenated, so no
chunk (and so no diffusion window inside a chunk, no propagation, no cross-fade) spans a cut.

**Detector.** PySceneDetect's :class:`scenedetect.ContentDetector` (Breakthrough/PySceneDetect, BSD-3-Clause; the
``scenedetect-headless`` package, which uses the opencv-python-headless the zoo already has), fed our own decoded
frames one at a time: each frame is converted to HSV and its mean absolute difference from the previous frame,
averaged over hue, saturation and value (0-255 scale), is its score; a score of at least ``threshold`` starts a new
shot. The defaults are PySceneDetect's own: ``threshold=27`` (its ``detect-content`` default) and
``min_scene_len=15`` frames (a cut less than 15 frames after the previous one is merged with it, so a photo flash or
a few frames of fast motion do not split a shot into slivers). Lower ``threshold`` finds more (and softer) cuts.
This detects hard cuts, not slow dissolves or fades (PySceneDetect's ``AdaptiveDetector`` / ``ThresholdDetector``
exist for those; a dissolve is smeared by the network anyway, as it is in the source).

**Memory.** Like PySceneDetect's ``SceneManager`` (``auto_downscale``), frames are first downscaled by
``max(w, h) / 256`` (bilinear; frames of at most 256 pixels are used as they are), and the detector keeps only the
previous frame's HSV planes: memory does not depend on the video's length.

**Cost.** One extra decoding pass over the video plus a colour conversion of a small copy of each frame: measured
on a busy 2-core CPU, three real clips joined into one 640 x 360 H.264 file (86 frames) took 0.83 s to scan against
0.73 s to decode alone, little next to super-resolving them. ``upscale_video(scene_split=False)``
(``vsrzoo upscale --no-scene-split``) skips it.

**Margin** (measured on 256-pixel-wide copies). Real footage without cuts stays below the threshold, but not
always far below: RealBasicVSR's night street demo clip (filmed from a moving tram, heavy compression noise; the
embedded sample is its first 20 frames) scores 20-26 from frame to frame (noise in the hue of grey and white areas
counts fully), a leopard clip 3-8, an old film 0-2; the joins between those three clips score 56 and 70. So a
noisy, fast-moving shot can be split where it should not be: that costs some temporal context and a chunk border
without cross-fade at the false cut; raise ``threshold`` (``--scene-threshold``) if it happens.
(PySceneDetect's ``AdaptiveDetector``, which divides the score by that of the neighbouring frames, also finds
exactly these cuts and is less sensitive to such shots; it is not used here.)

**Where it is not used.** The validation and test loops of the Lightning systems (:mod:`zoo.systems.base`) run
:func:`zoo.inference.upscale_tensor` over benchmark clips, which have no cuts, without it; ``upscale_tensor`` takes
``cuts=`` (e.g. from :func:`detect_cuts` on the clip tensor) for callers that need it.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from zoo.diffusion.tiles import check_window, plan_windows
from zoo.errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch

    from zoo.data.video_io import VideoSource

__all__ = ["DEFAULT_MIN_SCENE_LEN", "DEFAULT_THRESHOLD", "DETECTOR_WIDTH", "check_threshold", "describe",
           "detect_cuts", "plan_chunks", "plan_video_chunks", "split_shots"]

#: PySceneDetect's ``ContentDetector`` default: mean HSV change (0-255 scale) from one frame to the next that
#: starts a new shot.
DEFAULT_THRESHOLD = 27.0
#: PySceneDetect's default shortest shot, in frames (closer cuts are merged).
DEFAULT_MIN_SCENE_LEN = 15
#: Frames are downscaled to about this many pixels on their longer side before detection (PySceneDetect's
#: ``SceneManager`` default).
DETECTOR_WIDTH = 256

Span = tuple[int, int]


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float; ConfigError unless it is a positive number."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ConfigError(f"scene_threshold must be a positive number (PySceneDetect's default is "
                          f"{DEFAULT_THRESHOLD:g}), got {threshold!r}")
    return float(threshold)


def _iter_rgb(frames: object, num_frames: int | None) -> tuple[Iterable[np.ndarray], float]:
    """``frames`` as an iterator of RGB uint8 ``(h, w, 3)`` arrays (at most ``num_frames``) and a frame rate."""
    import torch

    from zoo.data.video_io import VideoSource, open_video

    if isinstance(frames, (str, Path)):
        frames = open_video(frames)
    if isinstance(frames, VideoSource):
        return frames.iter_frames(0, num_frames), frames.fps
    if isinstance(frames, torch.Tensor):
        if frames.ndim == 5 and frames.shape[0] == 1:
            frames = frames[0]
        if frames.ndim != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise InputError(f"detect_cuts: a tensor must be (t, 3, h, w) or (1, t, 3, h, w) float in [0, 1], got "
                             f"{tuple(frames.shape)} {frames.dtype}")
        clip = frames[:num_frames]
        return ((f.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()) for f in clip), 25.0
    if isinstance(frames, Iterable):
        it = iter(frames)
        if num_frames is not None:
            it = (frame for _, frame in zip(range(num_frames), it))
        return it, 25.0
    raise InputError(f"detect_cuts: expected a video path, a VideoSource, a frame tensor or an iterable of frames, "
                     f"got {type(frames).__name__}")


def detect_cuts(
    frames: str | Path | VideoSource | torch.Tensor | Iterable[np.ndarray],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_scene_len: int = DEFAULT_MIN_SCENE_LEN,
    num_frames: int | None = None,
    progress: bool = False,
) -> list[int]:
    """Find the hard cuts of a video with PySceneDetect's ``ContentDetector``, streaming (module docstring).

    Args:
        frames: a video file or frame folder (path), a :class:`~zoo.data.video_io.VideoSource`, a ``(t, 3, h, w)``
            (or ``(1, t, 3, h, w)``) float tensor in [0, 1], or an iterable of ``(h, w, 3)`` uint8 RGB arrays.
            Read one frame at a time.
        threshold: smallest mean HSV change (0-255 scale) between consecutive frames that is a cut (default 27).
        min_scene_len: shortest shot in frames; closer cuts are merged (default 15; 1 keeps every cut).
        num_frames: look at the first ``num_frames`` frames only (None: all).
        progress: show a tqdm bar.

    Returns:
        Sorted indices of the first frame of each new shot (never 0): ``[]`` for a single shot; ``[k]`` when
        frames ``k, k + 1, ...`` are a different shot from frames ``..., k - 1``.

    Raises:
        ConfigError: a ``threshold`` that is not positive, a ``min_scene_len`` that is not a positive integer.
        InputError: unreadable video or frames (from :mod:`zoo.data.video_io`), frames that are not ``(h, w, 3)``
            uint8 or change size.
    """
    import cv2
    from scenedetect import ContentDetector, FrameTimecode
    from scenedetect.scene_manager import compute_downscale_factor
    from tqdm.auto import tqdm

    threshold = check_threshold(threshold)
    if isinstance(min_scene_len, bool) or not isinstance(min_scene_len, int) or min_scene_len < 1:
        raise ConfigError(f"min_scene_len must be a positive integer (frames), got {min_scene_len!r}")
    iterator, fps = _iter_rgb(frames, num_frames)
    detector = ContentDetector(threshold=threshold, min_scene_len=min_scene_len)
    cuts: set[int] = set()
    size: tuple[int, int] | None = None
    small: tuple[int, int] | None = None  # (width, height) the detector sees, None: the frame's own
    index = -1
    for index, frame in enumerate(tqdm(iterator, total=num_frames, unit="frame", desc="finding scene cuts",
                                       disable=not progress)):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"detect_cuts: frame {index} is not an (h, w, 3) uint8 RGB array")
        if size is None:
            size = frame.shape[:2]
            factor = compute_downscale_factor(max(size[1], size[0]), DETECTOR_WIDTH)
            small = (max(1, round(size[1] / factor)), max(1, round(size[0] / factor))) if factor > 1 else None
        elif frame.shape[:2] != size:
            raise InputError(f"detect_cuts: frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first frame is "
                             f"{size[1]}x{size[0]}")
        if small is not None:
            frame = cv2.resize(frame, small, interpolation=cv2.INTER_LINEAR)
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)  # the detector takes OpenCV's BGR order
        cuts.update(tc.frame_num for tc in detector.process_frame(FrameTimecode(index, fps=fps), bgr))
    if index >= 0:
        cuts.update(tc.frame_num for tc in detector.post_process(FrameTimecode(index, fps=fps)))
    return sorted(c for c in cuts if 0 < c <= index)


def split_shots(num_frames: int, cuts: Sequence[int]) -> list[Span]:
    """The shots ``[(start, end), ...]`` of ``range(num_frames)`` between ``cuts`` (first frames of new shots).

    Cuts at 0 or at/after ``num_frames`` are ignored and repeated cuts count once.

    Raises:
        ConfigError: ``num_frames`` not a positive integer, or a cut that is not an integer >= 0.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ConfigError(f"num_frames must be a positive integer, got {num_frames!r}")
    for cut in cuts:
        if isinstance(cut, bool) or not isinstance(cut, (int, np.integer)) or cut < 0:
            raise ConfigError(f"scene cuts must be frame indices (integers >= 0), got {cut!r}")
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < num_frames}), num_frames]
    return list(zip(bounds[:-1], bounds[1:]))


def plan_chunks(num_frames: int, cuts: Sequence[int], chunk_frames: int | None, overlap: int) -> list[Span]:
    """Temporal chunks ``[(start, end), ...]`` of ``range(num_frames)`` that never cross a cut.

    Each shot of :func:`split_shots` is planned on its own with :func:`zoo.diffusion.tiles.plan_windows` (the fewest
    equal chunks of at most ``chunk_frames`` sharing at least ``overlap`` frames, or the whole shot when
    ``chunk_frames`` is None) and the plans are concatenated, shifted to the shot's start. Consecutive chunks of
    different shots share no frame (the first chunk of a shot starts where the last one of the previous shot ends),
    so :func:`zoo.diffusion.tiles.window_weights` on the whole plan gives each chunk exactly the weights it has in
    its own shot's plan: full weight on the cut side, cross-fades only with chunks of the same shot. With no cuts
    this is ``plan_windows(num_frames, chunk_frames, overlap)``.

    Raises:
        ConfigError: bad ``num_frames``, cuts, ``chunk_frames`` or ``overlap``.
    """
    check_window(chunk_frames, overlap, name="chunk_frames", overlap_name="overlap")
    return [(shot_start + start, shot_start + end)
            for shot_start, shot_end in split_shots(num_frames, cuts)
            for start, end in plan_windows(shot_end - shot_start, chunk_frames, overlap)]


def plan_video_chunks(
    source: VideoSource,
    num_frames: int,
    chunk_frames: int | None,
    overlap: int,
    *,
    scene_split: bool = True,
    threshold: float = DEFAULT_THRESHOLD,
    progress: bool = False,
) -> tuple[list[Span], dict]:
    """The chunk plan of :func:`zoo.inference.upscale_video`: :func:`plan_chunks` over the cuts of the first
    ``num_frames`` frames of ``source`` (:func:`detect_cuts`, one decoding pass), or no cuts without ``scene_split``.

    Returns:
        ``(plan, scenes)`` with ``scenes = {'split': bool (scene_split), 'cuts': [first frame of each new shot],
        'shots': int, 'seconds': float (wall time of the detection pass, 0 without it)}``.

    Raises:
        ConfigError: bad ``threshold`` (checked even when ``scene_split`` is off), chunk options.
        InputError: unreadable frames.
    """
    threshold = check_threshold(threshold)
    started = time.perf_counter()
    cuts = detect_cuts(source, threshold=threshold, num_frames=num_frames, progress=progress) if scene_split else []
    plan = plan_chunks(num_frames, cuts, chunk_frames, overlap)
    return plan, {"split": bool(scene_split), "cuts": cuts, "shots": len(cuts) + 1,
                  "seconds": time.perf_counter() - started}


def describe(scenes: dict, *, most: int = 10) -> str:
    """One line for the user about the ``scenes`` of :func:`plan_video_chunks` (at most ``most`` cuts listed)."""
    if not scenes["split"]:
        return "scene cuts: not looked for (--no-scene-split)"
    cuts = scenes["cuts"]
    where = ("no cut found" if not cuts else "cuts at frames " + ", ".join(map(str, cuts[:most]))
             + (f", ... ({len(cuts)} cuts)" if len(cuts) > most else ""))
    return (f"scene cuts: {scenes['shots']} shot{'s' if scenes['shots'] > 1 else ''}, {where} (an extra decoding "
            f"pass of {scenes['seconds']:.1f} s; --no-scene-split skips it)")
