"""Reading and writing video clips: folders of frames and video files (PyAV).

A *clip* is either a folder of frames (the REDS / Vid4 layout: one folder per clip, frames sorted naturally,
e.g. ``00000000.png`` ... or ``Frame 1.png``, ``Frame 2.png``, ...) or a video file (mp4, mov, mkv, webm, avi)
decoded with PyAV. :func:`open_video` opens one clip, :func:`list_clips` expands a user path (a clip folder, a
folder of clip folders and/or video files, or a single video file) into clips.

Pixel conventions (documented conversions, applied to every frame read):

* output is RGB; colour frames read from disk are converted from OpenCV's BGR order;
* grayscale frames (``(h, w)`` or ``(h, w, 1)``) become RGB by repeating the single channel three times;
* RGBA / BGRA frames become RGB by **dropping the alpha channel** (no compositing onto a background: the
  colour values stored under transparent pixels are used as they are);
* 16-bit frames are scaled to [0, 1] by ``/ 65535`` in :meth:`VideoSource.read` and rounded to 8 bit
  (``round(v * 255 / 65535)``) in :meth:`VideoSource.iter_frames`;
* video files are decoded to ``rgb24`` (8 bit) by FFmpeg's colour conversion.

The number of frames of a video file is counted by decoding it: container metadata is not trusted (e.g.
``old_video_1.mp4`` of the shared data claims 134 frames in its header and decodes 28).

:class:`VideoWriter` writes H.264 mp4 (libx264, yuv420p) with the audio of a source video copied without
re-encoding (re-encoded to AAC when the codec cannot be stored in mp4), or numbered PNG frames. Writing is
atomic: everything goes to a temporary name in the destination folder, renamed on success, removed on error.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from einops import rearrange
from PIL import Image

from zoo.errors import InputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoSource",
    "VideoWriter",
    "clean_stale_partials",
    "list_clips",
    "list_frame_files",
    "natural_sort_key",
    "open_video",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File extensions (lower case) read as frames of a frame folder."""
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
"""File extensions (lower case) read as video files with PyAV."""

DEFAULT_FOLDER_FPS = 25.0
"""Frame rate assumed for folders of frames when none is given (REDS and Vid4 carry no frame rate)."""

# Audio codecs that the mp4 muxer stores as they are; any other codec is re-encoded to AAC.
_MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "alac", "ac3", "eac3"})

# Named channel layouts for AAC re-encoding, by channel count (FFmpeg's default layouts).
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}

_DIGITS = re.compile(r"(\d+)")


def natural_sort_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``frame2.png`` < ``frame10.png``.

    Args:
        name: a file name.

    Returns:
        A tuple usable as ``sorted(..., key=natural_sort_key)``; case-insensitive.
    """
    parts = _DIGITS.split(name.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != "")


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def list_frame_files(folder: str | Path) -> list[Path]:
    """Return the frame files of a clip folder, sorted naturally.

    Only files whose extension is in :data:`IMAGE_EXTENSIONS` (any case) are kept; hidden files and other
    files (e.g. a ``meta.txt``) are ignored. Sub-folders are ignored.

    Args:
        folder: a folder of frames.

    Returns:
        The frame paths (possibly empty).
    """
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and not _is_hidden(p)
             and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def list_clips(path: str | Path) -> list[tuple[str, Path]]:
    """Expand a user path into clips.

    Accepted layouts:

    * a video file (:data:`VIDEO_EXTENSIONS`): one clip, key = file stem;
    * a folder that directly contains frames: one clip, key = folder name;
    * a folder of clip folders and/or video files (REDS ``train_sharp/000/...``, Vid4 ``GT/calendar/...``):
      one clip per sub-folder that contains frames and per video file, key = sub-folder name / file stem,
      sorted naturally by key.

    Args:
        path: the path given by the user.

    Returns:
        ``[(key, clip_path), ...]``, at least one entry.

    Raises:
        InputError: the path does not exist, is a file of an unsupported kind, or a folder in which no clip
            was found.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"input path does not exist: {path}")
    if path.is_file():
        _check_video_extension(path)
        return [(path.stem, path)]
    if list_frame_files(path):
        return [(path.name, path)]
    clips: list[tuple[str, Path]] = []
    for child in sorted(path.iterdir(), key=lambda p: natural_sort_key(p.name)):
        if _is_hidden(child):
            continue
        if child.is_dir() and list_frame_files(child):
            clips.append((child.name, child))
        elif child.is_file() and child.suffix.lower() in VIDEO_EXTENSIONS:
            clips.append((child.stem, child))
    if not clips:
        raise InputError(
            f"no frames or videos found in {path}: expected image files ({', '.join(IMAGE_EXTENSIONS)}), "
            f"clip sub-folders of frames, or video files ({', '.join(VIDEO_EXTENSIONS)})")
    return clips


def _check_video_extension(path: Path) -> None:
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise InputError(f"{path} is a single image; give the folder that contains the frames of the clip")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise InputError(
            f"unsupported input file {path} (extension {path.suffix!r}); expected a video file "
            f"({', '.join(VIDEO_EXTENSIONS)}) or a folder of frames ({', '.join(IMAGE_EXTENSIONS)})")


def _to_rgb(array: np.ndarray | None, path: Path) -> np.ndarray:
    """Convert an OpenCV ``IMREAD_UNCHANGED`` image to RGB ``(h, w, 3)`` uint8 or uint16 (see module doc)."""
    if array is None:
        raise InputError(f"cannot decode image {path} (corrupt or not an image)")
    if array.dtype not in (np.uint8, np.uint16):
        raise InputError(f"unsupported pixel type {array.dtype} in {path}; expected 8-bit or 16-bit frames")
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if channels == 3:
        return np.ascontiguousarray(array[:, :, ::-1])
    if channels == 4:
        return np.ascontiguousarray(array[:, :, 2::-1])  # BGRA -> RGB, alpha dropped
    raise InputError(f"unsupported number of channels ({channels}) in {path}")


def _read_image(path: Path) -> np.ndarray:
    """Read one frame file as RGB ``(h, w, 3)`` uint8 or uint16."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise InputError(f"cannot read image {path}: {err}") from err
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    return _to_rgb(array, path)


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    return np.round(frame.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)


def _to_float_tensor(frame: np.ndarray) -> torch.Tensor:
    """RGB ``(h, w, 3)`` uint8/uint16 -> ``(3, h, w)`` float32 in [0, 1]."""
    scale = 255.0 if frame.dtype == np.uint8 else 65535.0
    tensor = torch.from_numpy(frame.astype(np.float32) / scale)
    return rearrange(tensor, "h w c -> c h w")


class VideoSource:
    """One clip: a folder of frames or a video file. Create it with :func:`open_video`.

    Attributes:
        path: the folder or file.
        is_folder: True for a folder of frames.
        fps: frames per second (float). Folders: the ``fps`` given to :func:`open_video`, else 25.0.
        fps_fraction: the same as an exact :class:`fractions.Fraction` (e.g. 30000/1001), to pass to
            :class:`VideoWriter` so that rational rates survive.
        height, width: frame size in pixels.
        has_audio: whether the file has an audio stream (always False for folders).
        frame_paths: the frame files of a folder (empty for video files).
        num_frames: number of frames; for video files counted by decoding the whole file once, on first
            access (the container header is not trusted).
    """

    def __init__(self, path: Path, *, fps: float | Fraction | None = None, check_sizes: bool = True) -> None:
        self.path = path
        self.is_folder = path.is_dir()
        self._num_frames: int | None = None
        self.frame_paths: list[Path] = []
        self.has_audio = False
        if self.is_folder:
            self._init_folder(fps, check_sizes)
        else:
            self._init_file(fps)

    # ----------------------------------------------------------------------------------------- opening
    def _init_folder(self, fps: float | Fraction | None, check_sizes: bool) -> None:
        self.frame_paths = list_frame_files(self.path)
        if not self.frame_paths:
            raise InputError(f"no frames in folder {self.path}: expected image files ({', '.join(IMAGE_EXTENSIONS)})")
        self._num_frames = len(self.frame_paths)
        first = _read_image(self.frame_paths[0])
        self.height, self.width = first.shape[:2]
        if check_sizes:
            for frame_path in self.frame_paths[1:]:
                try:
                    with Image.open(frame_path) as image:  # reads the header only
                        width, height = image.size
                except Exception as err:  # noqa: BLE001 - PIL raises many kinds
                    raise InputError(f"cannot read image {frame_path}: {err}") from err
                self._check_size(frame_path, height, width)
        self.fps_fraction = _as_fraction(fps if fps is not None else DEFAULT_FOLDER_FPS)
        self.fps = float(self.fps_fraction)

    def _init_file(self, fps: float | Fraction | None) -> None:
        _check_video_extension(self.path)
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise InputError(f"no video stream in {self.path}")
                stream = container.streams.video[0]
                self.has_audio = bool(container.streams.audio)
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                first = None
                for frame in container.decode(stream):
                    first = frame
                    break
        except InputError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise InputError(f"cannot open video {self.path}: the file is corrupt or truncated, or not a video "
                             f"({err})") from err
        if first is None:
            raise InputError(f"no decodable frame in {self.path}: the file is corrupt or truncated")
        self.height, self.width = first.height, first.width
        if fps is not None:
            self.fps_fraction = _as_fraction(fps)
        elif rate:
            self.fps_fraction = Fraction(rate.numerator, rate.denominator)
        else:
            self.fps_fraction = Fraction(int(DEFAULT_FOLDER_FPS))
        self.fps = float(self.fps_fraction)

    def _check_size(self, frame_path: Path, height: int, width: int) -> None:
        if (height, width) != (self.height, self.width):
            raise InputError(
                f"frames of different sizes in {self.path}: {frame_path.name} is {width}x{height}, "
                f"{self.frame_paths[0].name} is {self.width}x{self.height}")

    # ----------------------------------------------------------------------------------------- reading
    @property
    def num_frames(self) -> int:
        """Number of frames (video files: counted by decoding, once)."""
        if self._num_frames is None:
            self._num_frames = sum(1 for _ in self._iter_video(0, None))
        return self._num_frames

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        kind = "folder" if self.is_folder else "video"
        return (f"VideoSource({kind} {str(self.path)!r}, {self.width}x{self.height}, fps={self.fps:g}, "
                f"audio={self.has_audio})")

    def _check_range(self, start: int, stop: int | None) -> tuple[int, int | None]:
        if start < 0 or (stop is not None and stop < start):
            raise InputError(f"invalid frame range [{start}, {stop}) for {self.path}")
        return start, stop

    def _iter_raw(self, start: int, stop: int | None) -> Iterator[np.ndarray]:
        """Yield RGB ``(h, w, 3)`` uint8 or uint16 frames ``start <= i < stop``."""
        start, stop = self._check_range(start, stop)
        if not self.is_folder:
            yield from self._iter_video(start, stop)
            return
        for frame_path in self.frame_paths[start:stop]:
            frame = _read_image(frame_path)
            self._check_size(frame_path, frame.shape[0], frame.shape[1])
            yield frame

    def _iter_video(self, start: int, stop: int | None) -> Iterator[np.ndarray]:
        index = 0
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as err:
            raise InputError(f"cannot open video {self.path}: {err}") from err
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = container.decode(stream)
            while stop is None or index < stop:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.error.FFmpegError as err:
                    if index == 0:
                        raise InputError(f"no decodable frame in {self.path}: {err}") from err
                    log.warning("decoding %s stopped after %d frames: %s", self.path, index, err)
                    break
                if index >= start:
                    if (frame.height, frame.width) != (self.height, self.width):
                        raise InputError(f"frame {index} of {self.path} is {frame.width}x{frame.height}, "
                                         f"the first frame is {self.width}x{self.height}")
                    yield frame.to_ndarray(format="rgb24")
                index += 1
        finally:
            container.close()

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Stream frames ``start <= i < stop`` one at a time (bounded memory).

        Video files are decoded from the beginning (frames before ``start`` are decoded and dropped).

        Args:
            start: first frame index (0-based).
            stop: end index (exclusive); None for the end of the clip. Indices past the end are ignored.

        Yields:
            ``np.ndarray`` uint8 ``(h, w, 3)``, RGB (conversions: see the module docstring).

        Raises:
            InputError: an unreadable frame, a frame of another size, a corrupt video, a bad range.
        """
        for frame in self._iter_raw(start, stop):
            yield _to_uint8(frame)

    def read(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Read frames ``start <= i < stop`` into memory.

        Args:
            start: first frame index (0-based).
            stop: end index (exclusive); None for the end of the clip.

        Returns:
            ``torch.Tensor`` ``(t, 3, h, w)`` float32 in [0, 1], RGB (16-bit frames scaled by 1/65535).

        Raises:
            InputError: as :meth:`iter_frames`, or when the range contains no frame.
        """
        frames = [_to_float_tensor(frame) for frame in self._iter_raw(start, stop)]
        if not frames:
            raise InputError(f"no frames in range [{start}, {stop}) of {self.path} "
                             f"({self.num_frames} frames)")
        return torch.stack(frames)


def _as_fraction(fps: float | int | Fraction) -> Fraction:
    """An exact frame rate: Fractions unchanged, floats to the nearest fraction with denominator <= 1001."""
    if isinstance(fps, Fraction):
        value = fps
    else:
        try:
            value = Fraction(fps).limit_denominator(1001)
        except (TypeError, ValueError) as err:
            raise InputError(f"invalid frame rate {fps!r}") from err
    if value <= 0:
        raise InputError(f"frame rate must be positive, got {fps!r}")
    return value


def open_video(path: str | Path, *, fps: float | Fraction | None = None, check_sizes: bool = True) -> VideoSource:
    """Open one clip: a folder of frames or a video file.

    Args:
        path: a folder that directly contains frames (:data:`IMAGE_EXTENSIONS`) or a video file
            (:data:`VIDEO_EXTENSIONS`). A folder of clip folders is not one clip: use :func:`list_clips`.
        fps: override the frame rate (folders have none; default 25).
        check_sizes: for folders, read every frame header once and raise if sizes differ (cheap: headers only).

    Returns:
        A :class:`VideoSource`.

    Raises:
        InputError: missing path, empty folder, unsupported extension, corrupt or truncated video (no
            decodable frame), frames of different sizes, unsupported pixel format.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"input path does not exist: {path}")
    if path.is_dir() and not list_frame_files(path):
        subclips = [p for p in path.iterdir() if p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS]
        if subclips:
            raise InputError(f"{path} contains clip folders or videos, not frames; open one clip at a time "
                             "(zoo.data.video_io.list_clips lists them)")
    return VideoSource(path, fps=fps, check_sizes=check_sizes)


class VideoWriter:
    """Write frames to an H.264 mp4 (optionally with the audio of a source video) or to PNG frames.

    Use as a context manager::

        with VideoWriter("out.mp4", fps=source.fps_fraction, audio_from=source.path) as writer:
            for frame in frames:
                writer.write(frame)

    mp4: libx264, yuv420p, ``crf`` quality, frame rate ``fps`` kept exact when given as a Fraction (or an int,
    or a float close to a fraction with denominator <= 1001, e.g. 29.97 -> 2997/100). Odd frame sizes are
    padded by one replicated row/column (yuv420p needs even sizes) with a warning. The audio stream of
    ``audio_from`` (when it has one) is copied packet by packet, without re-encoding, shifted so that it
    keeps its offset to the first video frame, and cut at the end of the written video; codecs that mp4
    cannot store are re-encoded to AAC.

    ``as_frames=True``: ``path`` is a folder that receives ``00000000.png``, ``00000001.png``, ...
    An existing folder is replaced only when it holds nothing but such numbered PNGs (an earlier output).

    Atomic: output goes to a hidden temporary name in the destination folder and is renamed to ``path`` when
    :meth:`close` succeeds; on an exception inside the ``with`` block (or in :meth:`abort`) the temporary
    output is removed and ``path`` is left untouched. The temporary name ``.<name>.partial-<pid>-<tag>`` holds the
    writer's process id, so that one left by a killed run is removed by the next writer of ``path``
    (:func:`clean_stale_partials`).

    Args:
        path: output file (``.mp4``; the extension is not forced) or output folder with ``as_frames``.
        fps: frames per second (float, int or Fraction).
        audio_from: a video file whose first audio stream is copied; ignored when it has no audio, when it is a
            folder of frames, or with ``as_frames``.
        as_frames: write PNG frames into the folder ``path`` instead of a video.
        crf: x264 constant rate factor (0 lossless .. 51 worst; 18 is visually lossless).
        input_path: the input clip of the run, protected against being overwritten (``audio_from`` is
            protected too).

    Raises:
        InputError: the output path is (or contains) the input, the destination folder does not exist,
            frames of another size, no frame written, an unreadable audio source.
    """

    def __init__(self, path: str | Path, *, fps: float | Fraction, audio_from: str | Path | None = None,
                 as_frames: bool = False, crf: int = 18, input_path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser()
        self.fps = _as_fraction(fps)
        self.audio_from = Path(audio_from).expanduser() if audio_from is not None else None
        self.as_frames = as_frames
        self.crf = int(crf)
        if not 0 <= self.crf <= 51:
            raise InputError(f"crf must be in [0, 51], got {crf}")
        out = self.path.resolve()
        for protected in (input_path, audio_from):
            if protected is None:
                continue
            protected = Path(protected).expanduser().resolve()
            if out == protected or (as_frames and out in protected.parents):
                raise InputError(f"output path {self.path} would overwrite the input {protected}; "
                                 "choose another output path")
        if not out.parent.is_dir():
            raise InputError(f"output folder does not exist: {out.parent}")
        if as_frames and out.exists() and not self._is_replaceable_frames_dir(out):
            raise InputError(f"output folder {out} exists and holds other files than numbered PNG frames; "
                             "choose another output path or empty it")
        if not as_frames and out.is_dir():
            raise InputError(f"output path {out} is a folder; give a file name such as out.mp4 "
                             "(or use as_frames=True)")
        clean_stale_partials(out)
        self._tmp = out.parent / (_partial_name(out.name, os.getpid(), uuid.uuid4().hex[:8])
                                  + ("" if as_frames else out.suffix))
        self._out = out
        self._count = 0
        self._size: tuple[int, int] | None = None
        self._closed = False
        self._container = None
        self._video_stream = None
        self._audio: _AudioCopier | None = None
        if as_frames:
            self._tmp.mkdir()

    @staticmethod
    def _is_replaceable_frames_dir(folder: Path) -> bool:
        if not folder.is_dir():
            return False
        return all(re.fullmatch(r"\d{8}\.png", p.name) for p in folder.iterdir())

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    @property
    def num_written(self) -> int:
        """Number of frames written so far."""
        return self._count

    # ------------------------------------------------------------------------------------------ writing
    def write(self, frame: np.ndarray | torch.Tensor) -> None:
        """Append frames.

        Args:
            frame: ``np.ndarray`` uint8 ``(h, w, 3)`` RGB; or ``torch.Tensor`` float ``(3, h, w)`` or
                ``(t, 3, h, w)`` in [0, 1] (clamped, rounded to 8 bit).

        Raises:
            InputError: wrong shape/dtype, a size different from the first frame, writer closed.
        """
        if self._closed:
            raise InputError(f"VideoWriter for {self.path} is closed")
        if isinstance(frame, torch.Tensor):
            if frame.ndim == 4:
                for single in frame:
                    self.write(single)
                return
            if frame.ndim != 3 or frame.shape[0] != 3:
                raise InputError(f"expected a (3, h, w) or (t, 3, h, w) tensor, got shape {tuple(frame.shape)}")
            array = (frame.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
            frame = rearrange(array, "c h w -> h w c").numpy()
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError("expected an np.uint8 (h, w, 3) RGB frame or a float tensor (3, h, w); got "
                             f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}")
        height, width = frame.shape[:2]
        if self._size is None:
            self._size = (height, width)
            if not self.as_frames:
                self._open_video()
        elif self._size != (height, width):
            raise InputError(f"frame {self._count} is {width}x{height}, the first frame was "
                             f"{self._size[1]}x{self._size[0]}; all frames of {self.path} must have one size")
        try:
            if self.as_frames:
                self._write_png(frame)
            else:
                self._write_video_frame(frame)
        except av.error.FFmpegError as err:
            self.abort()
            raise InputError(f"writing {self.path} failed: {err}") from err
        self._count += 1

    def _write_png(self, frame: np.ndarray) -> None:
        ok, data = cv2.imencode(".png", np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise InputError(f"PNG encoding failed for frame {self._count} of {self.path}")
        data.tofile(self._tmp / f"{self._count:08d}.png")

    def _open_video(self) -> None:
        height, width = self._size
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width = width + width % 2
        stream.height = height + height % 2
        if (height % 2) or (width % 2):
            log.warning("frame size %dx%d is odd; padding to %dx%d for yuv420p H.264 (%s)",
                        width, height, stream.width, stream.height, self.path)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": "medium"}
        self._video_stream = stream
        if self.audio_from is not None and not self.audio_from.is_dir():  # a folder of frames has no audio
            self._audio = _AudioCopier.create(self.audio_from, self._container)

    def _write_video_frame(self, frame: np.ndarray) -> None:
        stream = self._video_stream
        if frame.shape[0] != stream.height or frame.shape[1] != stream.width:
            frame = np.pad(frame, ((0, stream.height - frame.shape[0]), (0, stream.width - frame.shape[1]), (0, 0)),
                           mode="edge")
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = self._count
        video_frame.time_base = Fraction(1) / self.fps
        for packet in stream.encode(video_frame):
            self._container.mux(packet)
        if self._audio is not None:
            self._audio.copy_until((self._count + 1) / self.fps)

    # ------------------------------------------------------------------------------------------ closing
    def close(self) -> None:
        """Finish the output and move it to ``path`` (idempotent).

        Raises:
            InputError: no frame was written (the temporary output is removed).
        """
        if self._closed:
            return
        if self._count == 0:
            self.abort()
            raise InputError(f"no frames were written to {self.path}")
        try:
            if not self.as_frames:
                for packet in self._video_stream.encode(None):
                    self._container.mux(packet)
                if self._audio is not None:
                    self._audio.copy_until(self._count / self.fps, final=True)
                    self._audio.close()
                self._container.close()
                os.replace(self._tmp, self._out)
            else:
                if self._out.exists():
                    shutil.rmtree(self._out)
                os.replace(self._tmp, self._out)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Discard the output: close everything and remove the temporary file or folder."""
        if self._closed:
            return
        self._closed = True
        for closer in (self._audio, self._container):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # noqa: BLE001 - best effort clean-up
                    pass
        if self._tmp.is_dir():
            shutil.rmtree(self._tmp, ignore_errors=True)
        elif self._tmp.exists():
            self._tmp.unlink()


def _partial_name(name: str, pid: int, tag: str) -> str:
    """The temporary name :class:`VideoWriter` writes ``name`` under: hidden, with the writing process's id."""
    return f".{name}.partial-{pid}-{tag}"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie, killed but not yet reaped, counts as dead)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def clean_stale_partials(path: str | Path) -> list[Path]:
    """Remove the temporary outputs that killed :class:`VideoWriter` runs left next to ``path``.

    A writer that is killed (SIGKILL, power loss) cannot remove its hidden temporary file or folder
    ``.<name>.partial-<pid>-<tag>[<suffix>]``. This removes exactly those of the output ``path`` (the same
    ``name``, the writer's naming, 8 hex digits of tag) whose process ``pid`` is no longer running; partial
    outputs of other names, of live processes and files of any other form are left alone. POSIX only (elsewhere
    nothing is removed). :class:`VideoWriter` calls it before it starts writing.

    Args:
        path: the output file or frames folder (it need not exist).

    Returns:
        The removed paths.
    """
    out = Path(path).expanduser().resolve()
    if os.name != "posix" or not out.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{out.name}.partial-") + r"(\d+)-[0-9a-f]{8}" + f"({re.escape(out.suffix)})?")
    removed = []
    for candidate in out.parent.iterdir():
        match = pattern.fullmatch(candidate.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        log.info("removed %s, left by a killed run (process %s)", candidate, match.group(1))
        removed.append(candidate)
    return removed


class _AudioCopier:
    """Copies (or re-encodes to AAC) the first audio stream of a source into an output container."""

    def __init__(self, source: av.container.InputContainer, output, remux: bool) -> None:
        self.source = source
        self.in_stream = source.streams.audio[0]
        self.remux = remux
        video = source.streams.video[0] if source.streams.video else None
        # Offset of the first video frame: audio keeps its position relative to it.
        if video is not None and video.start_time is not None:
            self.offset = float(video.start_time * video.time_base)
        else:
            self.offset = 0.0
        if remux:
            self.out_stream = output.add_stream_from_template(self.in_stream)
        else:
            self.out_stream = output.add_stream("aac", rate=self.in_stream.rate)
            channels = self.in_stream.codec_context.channels
            # AAC needs a named layout; PCM in mkv/avi often carries an unspecified one ("1 channels").
            self.out_stream.layout = _DEFAULT_LAYOUTS.get(channels, "stereo")
            self.out_stream.format = "fltp"  # the sample format of FFmpeg's native AAC encoder
        self.output = output
        self.packets = source.demux(self.in_stream)
        self.pending: av.Packet | None = None
        self.done = False

    @classmethod
    def create(cls, path: Path, output) -> _AudioCopier | None:
        try:
            source = av.open(str(path))
        except (av.error.FFmpegError, OSError) as err:
            raise InputError(f"cannot open the audio source {path}: {err}") from err
        if not source.streams.audio:
            source.close()
            return None
        codec = source.streams.audio[0].codec_context.name
        remux = codec in _MP4_AUDIO_CODECS
        if not remux:
            log.info("audio codec %s of %s cannot be stored in mp4 as is; re-encoding to AAC", codec, path)
        return cls(source, output, remux)

    def _next(self) -> av.Packet | None:
        while True:
            try:
                packet = next(self.packets)
            except (StopIteration, av.error.FFmpegError):
                return None
            if packet.pts is None:
                packet.pts = packet.dts
            if packet.pts is not None and packet.dts is not None and packet.size > 0:
                return packet

    def copy_until(self, seconds: float, final: bool = False) -> None:
        """Write audio packets that start before ``seconds`` (video time); with ``final`` flush the encoder."""
        while not self.done:
            packet = self.pending if self.pending is not None else self._next()
            self.pending = None
            if packet is None:
                self.done = True
                break
            start = float(packet.pts * packet.time_base) - self.offset
            if start >= seconds:
                if final:
                    self.done = True  # cut the audio at the end of the video
                else:
                    self.pending = packet
                break
            if start + float((packet.duration or 0) * packet.time_base) <= 0:
                continue  # entirely before the first video frame
            self._write(packet)
        if final and not self.remux:
            for out_packet in self.out_stream.encode(None):
                self.output.mux(out_packet)

    def _write(self, packet: av.Packet) -> None:
        shift = round(self.offset / packet.time_base)
        if self.remux:
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = self.out_stream
            self.output.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None
            for out_packet in self.out_stream.encode(frame):
                self.output.mux(out_packet)

    def close(self) -> None:
        self.source.close()

