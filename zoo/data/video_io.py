"""Reading and writing video clips: folders of frames and video files (PyAV).

A *clip* is either a folder of frames (the REDS / Vid4 layout: one folder per clip, frames sorted naturally,
e.g. ``00000000.png`` ... or ``1.png``, ``2.png``, ..., ``12.png``) or a video file (mp4, m4v, mov, mkv, webm,
avi, animated gif) decoded with PyAV. :func:`open_video` opens one clip, :func:`list_clips` expands a user path
(a clip folder, a folder of clip folders and/or video files, or a single video file) into clips.

Frame folders: files whose extension is in :data:`IMAGE_EXTENSIONS` (any case); hidden files (``.DS_Store``,
AppleDouble ``._frame.png``) and other files (``Thumbs.db``, ``desktop.ini``, ``meta.txt``) are ignored.
Frames are decoded from bytes (``np.fromfile`` + ``cv2.imdecode``), so paths with spaces and non-ASCII
characters work on every platform; palette (mode ``P``) PNGs and JPEGs come out as their RGB colours.

Pixel conventions (documented conversions, applied to every frame read):

* output is RGB; colour frames read from disk are converted from OpenCV's BGR order;
* grayscale frames (``(h, w)`` or ``(h, w, 1)``) become RGB by repeating the single channel three times;
* RGBA / BGRA frames (and transparent GIF / palette PNG pixels) become RGB by **dropping the alpha channel**
  (no compositing onto a background: the colour values stored under transparent pixels are used as they are);
* 16-bit frames are scaled to [0, 1] by ``/ 65535`` in :meth:`VideoSource.read` and rounded to 8 bit
  (``round(v * 255 / 65535)``) in :meth:`VideoSource.iter_frames`;
* video files are decoded to ``rgb24`` (8 bit) by FFmpeg's colour conversion;
* **orientation**: a video's display matrix (the rotation phones store instead of rotating the pixels: the
  mp4/mov ``tkhd`` matrix, the old ``rotate`` tag, Matroska projection) is applied to the pixels, so frames
  come out upright as a player shows them: 90 / 270 degrees swap height and width (also in
  :attr:`VideoSource.height` / ``width``), mirror flags are applied too; an angle that is not a multiple of 90
  degrees is ignored with a warning. Outputs are written upright, without a display matrix. EXIF orientation
  of JPEG frames in folders is not applied.

Frame rate: the stream's average rate as an exact fraction (``24000/1001`` stays ``24000/1001``; a rate within
0.01 % of an NTSC rate ``n * 1000/1001`` is snapped to it). Variable-rate inputs (phone videos, animated GIFs
with per-frame delays) are read one frame per decoded frame and written at this constant average rate
(frames / duration): the total duration is kept, the individual frame delays are not.

The number of frames of a video file is counted by decoding it: container metadata is not trusted (e.g.
``old_video_1.mp4`` of the shared data claims 134 frames in its header and decodes 28).

**Corrupt video files**: every decodable frame is used. Packets that fail to decode are skipped, frames that
the decoder conceals are kept, and frames missing from the stream (a damaged Matroska cluster: a gap of two
or more frame intervals in the timestamps, or frames missing before the end that the header gives) are not
replaced; one warning per clip gives the number of lost frames (not for GIFs, whose delays vary by design). :attr:`VideoSource.num_frames` counts exactly the frames :meth:`VideoSource.iter_frames` yields, so
the output has that many frames (fewer than the input; the audio, copied by time, runs ahead of the frames
after a loss). A file without any decodable frame raises :class:`~zoo.errors.InputError`.

Inputs that are not regular files or folders (a named pipe / FIFO, a device, a socket) are refused before
they are opened (opening a FIFO would block).

:class:`VideoWriter` writes H.264 (libx264, yuv420p) in the container its suffix names (:data:`OUTPUT_FORMATS`:
``.mp4`` / ``.m4v``, ``.mov``, ``.mkv``; a path without suffix is written as mp4; any other suffix such as
``.avi`` or ``.webm`` is refused with one line listing these), or numbered PNG frames. From a source video it
keeps **every audio track** (in order, with language, title and disposition), copied without re-encoding when
the container can hold the codec, else re-encoded to AAC; and **every subtitle track** that the container can
hold: mkv takes SubRip, ASS/SSA, WebVTT, DVD, PGS and DVB subtitles as they are and converts mov_text to
SubRip; mp4/mov take mov_text as is and convert text subtitles (SubRip, ASS/SSA, WebVTT) to mov_text (styling
is lost); subtitles a container cannot hold (bitmap subtitles in mp4/mov) are dropped with one warning each.
Data and attachment streams (timecodes, GPS tracks, fonts) are not copied. Writing is atomic: everything goes
to a temporary name in the destination folder, renamed on success, removed on error.
"""
from __future__ import annotations

import logging
import math
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from av.sidedata.sidedata import Type as SideDataType
from einops import rearrange
from PIL import Image

from zoo.errors import InputError
from zoo.fileio import pid_alive

__all__ = [
    "IMAGE_EXTENSIONS",
    "OUTPUT_FORMATS",
    "VIDEO_EXTENSIONS",
    "VideoSource",
    "VideoWriter",
    "check_output_folder",
    "check_output_path",
    "clean_stale_partials",
    "list_clips",
    "list_frame_files",
    "natural_sort_key",
    "open_video",
    "to_uint8_frame",
    "to_uint8_frames",
    "output_format",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File extensions (lower case) read as frames of a frame folder."""
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
"""File extensions (lower case) read as video files with PyAV (``.gif``: animated GIFs)."""
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
"""Video output suffixes (lower case) of :class:`VideoWriter` and the FFmpeg muxer each one uses."""

DEFAULT_FOLDER_FPS = 25.0
"""Frame rate assumed for folders of frames when none is given (REDS and Vid4 carry no frame rate)."""

# Audio codecs (FFmpeg codec names) that each muxer stores as they are; any other codec is re-encoded to AAC.
_MP4_AUDIO = frozenset({"aac", "mp3", "alac", "ac3", "eac3"})
_AUDIO_AS_IS = {
    "mp4": _MP4_AUDIO,
    "mov": _MP4_AUDIO | {"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_f32le", "pcm_f32be"},
    "matroska": _MP4_AUDIO | {"opus", "vorbis", "flac", "mp2", "dts", "truehd", "pcm_s16le", "pcm_s24le",
                              "pcm_s32le", "pcm_f32le"},
}
# Subtitle codecs each muxer stores as they are; text subtitles of other codecs are converted to the second
# entry; any other subtitle stream is dropped with a warning.
_TEXT_SUBTITLES = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})
_SUBTITLES = {
    "mp4": (frozenset({"mov_text"}), "mov_text"),
    "mov": (frozenset({"mov_text"}), "mov_text"),
    "matroska": (frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "dvd_subtitle", "hdmv_pgs_subtitle",
                            "dvb_subtitle"}), "subrip"),
}

# QuickTime (mov) stores languages as Macintosh language codes; FFmpeg's table of them names some languages by
# their ISO 639-2/B code only: these 639-2/T codes are translated (else the muxer writes "undetermined").
_MOV_LANGUAGES = {"deu": "ger", "zho": "chi", "nld": "dut", "ell": "gre", "fas": "per", "hye": "arm", "kat": "geo",
                  "isl": "ice", "mkd": "mac", "msa": "may", "mya": "bur", "sqi": "alb", "bod": "tib", "cym": "wel",
                  "eus": "baq", "swe": "sve"}

# Named channel layouts for AAC re-encoding, by channel count (FFmpeg's default layouts).
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}

# Frame rates n * 1000/1001 (NTSC): a measured rate within 1e-4 of one is snapped to it.
_NTSC_RATES = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120, 240))

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
    return path.name.startswith(".")  # also AppleDouble "._frame.png" files


def _check_not_special(path: Path) -> None:
    """Refuse FIFOs, devices and sockets before anything opens them (opening a FIFO blocks)."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise InputError(f"cannot access {path}: {err.strerror or err}") from err
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
    raise InputError(f"{path} is not a regular file ({kind}); give a video file or a folder of frames")


def list_frame_files(folder: str | Path) -> list[Path]:
    """Return the frame files of a clip folder, sorted naturally.

    Only regular files whose extension is in :data:`IMAGE_EXTENSIONS` (any case) are kept; hidden files
    (``.DS_Store``, ``._frame.png``) and other files (``Thumbs.db``, ``desktop.ini``, a ``meta.txt``) are
    ignored. Sub-folders are ignored.

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
        InputError: the path does not exist, is not a regular file or folder (a FIFO, a device), is a file
            of an unsupported kind, or a folder in which no clip was found.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"input path does not exist: {path}")
    _check_not_special(path)
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


@dataclass(frozen=True)
class _Orientation:
    """How to turn stored pixels upright: transpose first, then flip rows and/or columns."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def apply(self, image: np.ndarray) -> np.ndarray:
        if self.transpose:
            image = image.transpose(1, 0, 2)
        if self.flip_rows:
            image = image[::-1]
        if self.flip_cols:
            image = image[:, ::-1]
        return np.ascontiguousarray(image) if self != _UPRIGHT else image


_UPRIGHT = _Orientation()


def _orientation(frame: av.VideoFrame, path: Path, warned: set) -> _Orientation:
    """The pixel operation that applies a frame's display matrix (FFmpeg ``AV_FRAME_DATA_DISPLAYMATRIX``).

    The matrix maps a stored pixel ``(x, y)`` (column, row) to its displayed position
    ``(a x + c y + tx, b x + d y + ty)`` with ``a, b, c, d = m[0], m[1], m[3], m[4]`` (16.16 fixed point;
    the QuickTime ``tkhd`` convention that FFmpeg keeps). A phone video held upright stores ``a = d = 0,
    b = 1, c = -1``: shown rotated 90 degrees clockwise.
    """
    side_data = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if side_data is None:
        return _UPRIGHT
    matrix = np.frombuffer(bytes(side_data), dtype=np.int32).astype(np.float64) / 65536.0
    a, b, c, d = matrix[0], matrix[1], matrix[3], matrix[4]
    first, second = max(math.hypot(a, b), 1e-9), max(math.hypot(c, d), 1e-9)  # scales: anamorphic, zoom
    a, b, c, d = (round(v) if abs(v - round(v)) < 1e-3 else None
                  for v in (a / first, b / first, c / second, d / second))
    if None in (a, b, c, d) or abs(a * d - b * c) != 1:
        if "rotation" not in warned:
            warned.add("rotation")
            log.warning("%s: display rotation of %s degrees is not a multiple of 90; frames are read as stored",
                        path, frame.rotation)
        return _UPRIGHT
    if a != 0:  # no axis swap: x' = a x, y' = d y
        return _Orientation(False, d < 0, a < 0)
    return _Orientation(True, b < 0, c < 0)  # x' = c y, y' = b x


def _snap_rate(rate: Fraction) -> Fraction:
    for ntsc in _NTSC_RATES:
        if rate != ntsc and abs(rate - ntsc) <= ntsc * Fraction(1, 10000):
            return ntsc
    return rate


def _stream_end(stream) -> float | None:
    """End time (seconds) of a video stream's frames by its header: mp4 track duration, Matroska DURATION tag."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if stream.duration:
        return start + float(stream.duration * stream.time_base)
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", stream.metadata.get("DURATION", ""))
    if match:
        return start + int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    return None


class _DecodeReport:
    """What one decoding pass of a video file lost: undecodable packets, concealed frames, timestamp gaps."""

    def __init__(self, rate: Fraction | None, count_gaps: bool, end: float | None = None) -> None:
        self.rate = rate
        self.count_gaps = count_gaps and rate is not None
        self.end = end  # where the stream's frames should end (seconds, header), to find a lost tail
        self.errors = 0
        self.missing = 0
        self.concealed = 0
        self.demux_error: str | None = None
        self._last_time: float | None = None

    def frame(self, frame: av.VideoFrame) -> None:
        if frame.is_corrupt:
            self.concealed += 1
        if frame.time is None or not self.count_gaps:
            return
        if self._last_time is not None:
            intervals = (frame.time - self._last_time) * float(self.rate)
            if intervals >= 1.75:  # one frame missing: 2 intervals; timestamp jitter stays well below
                self.missing += round(intervals) - 1
        self._last_time = frame.time

    def finish(self) -> None:
        """After the last frame: count the frames missing between it and the stream's end in the header."""
        if self.count_gaps and self.end is not None and self._last_time is not None:
            intervals = (self.end - self._last_time) * float(self.rate) - 1  # the last frame lasts one interval
            if intervals >= 0.75:
                self.missing += round(intervals)

    @property
    def lost(self) -> int:
        # an undecodable packet usually leaves a timestamp gap too: count each lost frame once
        return max(self.errors, self.missing)


class VideoSource:
    """One clip: a folder of frames or a video file. Create it with :func:`open_video`.

    Attributes:
        path: the folder or file.
        is_folder: True for a folder of frames.
        fps: frames per second (float). Folders: the ``fps`` given to :func:`open_video`, else 25.0.
        fps_fraction: the same as an exact :class:`fractions.Fraction` (e.g. 30000/1001), to pass to
            :class:`VideoWriter` so that rational rates survive.
        height, width: frame size in pixels, upright (after the display rotation of a video file).
        has_audio: whether the file has an audio stream (always False for folders).
        has_subtitles: whether the file has a subtitle stream (always False for folders); pass the file as
            ``audio_from`` to :class:`VideoWriter` when ``has_audio or has_subtitles`` to keep them.
        frame_paths: the frame files of a folder (empty for video files).
        num_frames: number of frames; for video files counted by decoding the whole file once, on first
            access (the container header is not trusted); equal to the number :meth:`iter_frames` yields.
    """

    def __init__(self, path: Path, *, fps: float | Fraction | None = None, check_sizes: bool = True) -> None:
        self.path = path
        _check_not_special(path)
        self.is_folder = path.is_dir()
        self._num_frames: int | None = None
        self.frame_paths: list[Path] = []
        self.has_audio = False
        self.has_subtitles = False
        self._warned: set[str] = set()
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
        self._file_rate: Fraction | None = None
        self._stream_end: float | None = None
        self._is_gif = False
        first = None
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise InputError(f"no video stream in {self.path}")
                stream = container.streams.video[0]
                self.has_audio = bool(container.streams.audio)
                self.has_subtitles = bool(container.streams.subtitles)
                self._is_gif = stream.codec_context.name == "gif"
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self._stream_end = _stream_end(stream)
                if rate:
                    self._file_rate = _snap_rate(Fraction(rate.numerator, rate.denominator))
                for frame in self._decode(container, stream, _DecodeReport(None, False)):
                    first = frame
                    break
        except InputError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise InputError(f"cannot open video {self.path}: the file is corrupt or truncated, or not a video "
                             f"({err})") from err
        if first is None:
            raise InputError(f"no decodable frame in {self.path}: the file is corrupt or truncated")
        self._rotate = _orientation(first, self.path, self._warned)
        self.height, self.width = first.height, first.width
        if self._rotate.transpose:
            self.height, self.width = self.width, self.height
        if fps is not None:
            self.fps_fraction = _as_fraction(fps)
        elif self._file_rate:
            self.fps_fraction = self._file_rate
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
        """Number of frames (video files: counted by decoding, once; the frames :meth:`iter_frames` yields)."""
        if self._num_frames is None:
            self._num_frames = sum(1 for _ in self._iter_video(0, None, convert=False))
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

    def _decode(self, container, stream, report: _DecodeReport) -> Iterator[av.VideoFrame]:
        """Every decodable frame of ``stream``: undecodable packets are skipped and counted in ``report``."""
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as err:  # the container itself is damaged from here on
                report.demux_error = str(err)
                packet = None
            try:
                frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
            except av.error.FFmpegError:
                report.errors += 1
                frames = []
            for frame in frames:
                report.frame(frame)
                yield frame
            if packet is None:
                break

    def _iter_video(self, start: int, stop: int | None, *, convert: bool = True) -> Iterator[np.ndarray | None]:
        index = 0
        report = _DecodeReport(self._file_rate, count_gaps=not self._is_gif, end=self._stream_end)
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise InputError(f"cannot open video {self.path}: {err}") from err
        finished = True
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in self._decode(container, stream, report):
                if stop is not None and index >= stop:
                    finished = False
                    break
                if index >= start:
                    rotate = _orientation(frame, self.path, self._warned)
                    height, width = (frame.width, frame.height) if rotate.transpose else (frame.height, frame.width)
                    if (height, width) != (self.height, self.width):
                        raise InputError(f"frame {index} of {self.path} is {width}x{height}, "
                                         f"the first frame is {self.width}x{self.height}")
                    yield rotate.apply(frame.to_ndarray(format="rgb24")) if convert else None
                index += 1
            if finished:
                report.finish()
        finally:
            container.close()
        if index == 0 and finished:
            raise InputError(f"no decodable frame in {self.path}: the file is corrupt or truncated")
        self._report_loss(report, index, finished)

    def _report_loss(self, report: _DecodeReport, decoded: int, finished: bool) -> None:
        if "loss" in self._warned or not (report.lost or report.concealed or report.demux_error):
            return
        self._warned.add("loss")
        where = "" if finished else f" among the first {decoded} frames"
        parts = []
        if report.lost:
            parts.append(f"{report.lost} frame(s) lost{where} (undecodable, or missing from the stream)")
        if report.concealed:
            parts.append(f"{report.concealed} frame(s) decoded with concealed errors (kept)")
        if report.demux_error:
            parts.append(f"the file is unreadable after frame {decoded} ({report.demux_error})")
        log.warning("%s is damaged: %s; the %d decodable frames are used in order (the output is shorter and its "
                    "audio runs ahead after the damage)", self.path, "; ".join(parts), decoded)

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Stream frames ``start <= i < stop`` one at a time (bounded memory).

        Video files are decoded from the beginning (frames before ``start`` are decoded and dropped); frames
        come out upright (display rotation applied); undecodable frames of a damaged file are skipped with one
        warning (see the module docstring).

        Args:
            start: first frame index (0-based).
            stop: end index (exclusive); None for the end of the clip. Indices past the end are ignored.

        Yields:
            ``np.ndarray`` uint8 ``(h, w, 3)``, RGB (conversions: see the module docstring).

        Raises:
            InputError: an unreadable frame, a frame of another size, a video without decodable frames, a bad
                range.
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
    """An exact frame rate: Fractions unchanged, floats to the nearest fraction with denominator <= 1001 (a float
    within 0.01 % of an NTSC rate ``n * 1000/1001`` becomes that rate: 29.97 -> 30000/1001)."""
    if isinstance(fps, Fraction):
        value = fps
    else:
        try:
            value = _snap_rate(Fraction(fps).limit_denominator(1001))
        except (TypeError, ValueError, OverflowError) as err:
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
        InputError: missing path, not a regular file or folder (a FIFO, a device, a socket), empty folder,
            unsupported extension, corrupt or truncated video (no decodable frame), frames of different sizes,
            unsupported pixel format.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"input path does not exist: {path}")
    _check_not_special(path)
    if path.is_dir() and not list_frame_files(path):
        subclips = [p for p in path.iterdir() if p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS]
        if subclips:
            raise InputError(f"{path} contains clip folders or videos, not frames; open one clip at a time "
                             "(zoo.data.video_io.list_clips lists them)")
    return VideoSource(path, fps=fps, check_sizes=check_sizes)


def output_format(path: str | Path) -> str:
    """The FFmpeg muxer :class:`VideoWriter` uses for a video output path (check a path before any work).

    Args:
        path: output file; its suffix (any case) picks the container (:data:`OUTPUT_FORMATS`), no suffix: mp4.

    Returns:
        ``'mp4'``, ``'mov'`` or ``'matroska'``.

    Raises:
        InputError: any other suffix (``.avi``, ``.webm``, ...), with the list of accepted ones.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == "":
        return "mp4"
    if suffix not in OUTPUT_FORMATS:
        raise InputError(f"cannot write {path}: unsupported video output suffix {path.suffix!r}; accepted: "
                         f"{', '.join(OUTPUT_FORMATS)} (H.264), or a folder of PNG frames")
    return OUTPUT_FORMATS[suffix]


def to_uint8_frames(frames: torch.Tensor) -> torch.Tensor:
    """Float RGB frames ``(..., 3, h, w)`` in [0, 1] as what :class:`VideoWriter` stores, on their own device:
    ``(..., h, w, 3)`` uint8, ``round(255 clamp(v, 0, 1))`` in float32 (``torch.round``: halves to even).

    The one float-to-uint8 conversion of the zoo's output frames (:func:`to_uint8_frame`, and
    :func:`zoo.inference.upscale_video` on the accelerator before the copy to the host, which so moves a quarter of
    the bytes of the float frames). Returns a view with channels last (not contiguous).
    """
    array = (frames.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return rearrange(array, "... c h w -> ... h w c")


def to_uint8_frame(frame: torch.Tensor) -> np.ndarray:
    """A float ``(3, h, w)`` RGB frame in [0, 1] as what :class:`VideoWriter` stores: ``(h, w, 3)`` uint8, clamped to
    [0, 1] and rounded (``round(255 v)``, :func:`to_uint8_frames`), on the CPU."""
    return to_uint8_frames(frame).cpu().numpy()


def check_output_folder(folder: str | Path, *, create: bool = False) -> None:
    """Refuse an output folder that cannot be written: a file (or a broken link) on its path, a folder that does
    not exist (unless ``create``: the caller creates it), or one without write permission.

    Raises:
        InputError: one line naming the folder and the problem.
    """
    folder = Path(folder).expanduser().absolute()
    if not folder.is_dir():
        existing = next((p for p in folder.parents if p.exists() or p.is_symlink()), None)
        if existing is not None and existing.is_symlink() and not existing.exists():
            raise InputError(f"cannot create the output folder {folder}: {existing} is a broken link")
        if folder.exists() or (existing is not None and not existing.is_dir()):
            blocker = folder if folder.exists() else existing
            raise InputError(f"cannot write into {folder}: {blocker} is a file, not a folder")
        if not create:
            raise InputError(f"output folder does not exist: {folder}")
        folder = existing if existing is not None else folder
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {folder} (permission denied); choose another output path")


def check_output_path(path: str | Path, *, as_frames: bool = False, protected: tuple = (),
                      create_folder: bool = False) -> Path:
    """Refuse an output path that cannot be written or would destroy something, before any work.

    Refused: an output that is, or links to (symbolic or hard link), one of ``protected`` (or, with ``as_frames``,
    a folder above one); a video output that is an existing folder; a frames output that is an existing file or a
    folder holding anything but numbered PNG frames (``00000000.png``: an earlier output); a FIFO, device or
    socket; an output folder that does not exist (with ``create_folder``: that cannot be created, because a file
    or a broken link is on its path, or is not writable: :func:`check_output_folder`).

    Args:
        path: the output file (video) or folder (``as_frames``).
        as_frames: the output is a folder of PNG frames.
        protected: paths that must not be overwritten (the input, an audio source); None entries are skipped.
        create_folder: the output's folder may still be missing (the caller creates it).

    Returns:
        ``path`` resolved.

    Raises:
        InputError: one line naming the path and the problem.
    """
    path = Path(path).expanduser()
    out = path.resolve()
    for source in protected:
        if source is None:
            continue
        source = Path(source).expanduser().resolve()
        if out == source or (as_frames and out in source.parents) or _same_file(out, source):
            link = f" ({path} is a link to {out})" if path.is_symlink() else ""
            raise InputError(f"output path {path} would overwrite the input {source}{link}; "
                             "choose another output path")
    check_output_folder(out.parent, create=create_folder)
    if as_frames and out.exists() and not out.is_dir():
        raise InputError(f"output path {path} is a file; PNG frames are written into a folder")
    if as_frames and out.is_dir() and not all(re.fullmatch(r"\d{8}\.png", p.name) for p in out.iterdir()):
        raise InputError(f"output folder {out} exists and holds other files than numbered PNG frames; "
                         "choose another output path or empty it")
    if not as_frames and out.is_dir():
        raise InputError(f"output path {path} is a folder; give a file name such as {path / 'out.mp4'} "
                         "(or write PNG frames into it)")
    if out.exists() and not (out.is_file() or out.is_dir()):
        raise InputError(f"output path {out} is not a regular file (a FIFO, a device or a socket); "
                         "choose another output path")
    return out


class VideoWriter:
    """Write frames to an H.264 mp4 / mov / mkv (with the audio and subtitles of a source video) or PNG frames.

    Use as a context manager::

        with VideoWriter("out.mp4", fps=source.fps_fraction, audio_from=source.path) as writer:
            for frame in frames:
                writer.write(frame)

    Video: libx264, yuv420p, ``crf`` quality, in the container of the suffix (:data:`OUTPUT_FORMATS`:
    ``.mp4``/``.m4v`` mp4, ``.mov`` QuickTime, ``.mkv`` Matroska; no suffix: mp4). Frame rate ``fps`` kept
    exact when given as a Fraction (or an int, or a float close to a fraction with denominator <= 1001, e.g.
    29.97 -> 30000/1001 (NTSC rates are snapped), 12.5 -> 25/2). Odd frame sizes are padded by one replicated
    row/column (yuv420p needs even sizes) with a warning.

    From ``audio_from`` every audio stream is kept, in order, with its language / title metadata and
    disposition: copied packet by packet without re-encoding when the container can store the codec, else
    re-encoded to AAC; shifted so that it keeps its offset to the first video frame, and cut at the end of the
    written video. Subtitle streams are copied when the container can hold them, text subtitles converted
    (to mov_text for mp4/mov, mov_text to SubRip for mkv), others dropped with a warning (module docstring).

    ``as_frames=True``: ``path`` is a folder that receives ``00000000.png``, ``00000001.png``, ...
    An existing folder is replaced only when it holds nothing but such numbered PNGs (an earlier output).

    Atomic: output goes to a hidden temporary name in the destination folder and is renamed to ``path`` when
    :meth:`close` succeeds; on an exception inside the ``with`` block (or in :meth:`abort`) the temporary
    output is removed and ``path`` is left untouched. The temporary name ``.<name>.partial-<pid>-<tag>`` holds the
    writer's process id, so that one left by a killed run is removed by the next writer of ``path``
    (:func:`clean_stale_partials`).

    Args:
        path: output file (``.mp4``, ``.m4v``, ``.mov``, ``.mkv`` or no suffix) or output folder with
            ``as_frames``. Spaces and non-ASCII characters are fine.
        fps: frames per second (float, int or Fraction).
        audio_from: a video file whose audio and subtitle streams are kept; ignored when it has none, when it
            is a folder of frames, or with ``as_frames``.
        as_frames: write PNG frames into the folder ``path`` instead of a video.
        crf: x264 constant rate factor (0 lossless .. 51 worst; 18 is visually lossless).
        input_path: the input clip of the run, protected against being overwritten (``audio_from`` is
            protected too).

    Raises:
        InputError: the output path is (or contains, or links to) the input, its folder does not exist or is a
            file, it is a FIFO / device, an unsupported suffix, frames of another size, no frame written, an
            unreadable audio source, a folder that cannot be written.
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
        self._format = None if as_frames else output_format(self.path)
        out = check_output_path(self.path, as_frames=as_frames, protected=(input_path, audio_from))
        clean_stale_partials(out)
        self._tmp = out.parent / (_partial_name(out.name, os.getpid(), uuid.uuid4().hex[:8])
                                  + ("" if as_frames else out.suffix))
        self._out = out
        self._count = 0
        self._size: tuple[int, int] | None = None
        self._closed = False
        self._container = None
        self._video_stream = None
        self._audio: _StreamCopier | None = None
        if as_frames:
            try:
                self._tmp.mkdir()
            except OSError as err:
                raise InputError(f"cannot write to the output folder {out.parent}: {err.strerror or err}") from err

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
            InputError: wrong shape/dtype, a size different from the first frame, writer closed, a write
                that fails (disk full, permissions).
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
            frame = to_uint8_frame(frame)
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError("expected an np.uint8 (h, w, 3) RGB frame or a float tensor (3, h, w); got "
                             f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}")
        height, width = frame.shape[:2]
        try:
            if self._size is None:
                self._size = (height, width)
                if not self.as_frames:
                    self._open_video()
            elif self._size != (height, width):
                raise InputError(f"frame {self._count} is {width}x{height}, the first frame was "
                                 f"{self._size[1]}x{self._size[0]}; all frames of {self.path} must have one size")
            if self.as_frames:
                self._write_png(frame)
            else:
                self._write_video_frame(frame)
        except (av.error.FFmpegError, OSError) as err:
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
        self._container = av.open(str(self._tmp), mode="w", format=self._format)
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
            self._audio = _StreamCopier.create(self.audio_from, self._container, self._format)

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
            InputError: no frame was written, or finishing the file failed (the temporary output is removed).
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
        except (av.error.FFmpegError, OSError) as err:
            self.abort()
            raise InputError(f"writing {self.path} failed: {err}") from err
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


def _same_file(a: Path, b: Path) -> bool:
    """Whether two existing paths are one file (hard links, bind mounts); False when either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _partial_name(name: str, pid: int, tag: str) -> str:
    """The temporary name :class:`VideoWriter` writes ``name`` under: hidden, with the writing process's id."""
    return f".{name}.partial-{pid}-{tag}"


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
        if match is None or pid_alive(int(match.group(1))):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        log.info("removed %s, left by a killed run (process %s)", candidate, match.group(1))
        removed.append(candidate)
    return removed


def _codec_name(stream) -> str:
    """FFmpeg's name of a stream's codec (``mp3``, not the decoder's ``mp3float``); ``unknown`` if none."""
    try:
        return stream.codec_context.codec.canonical_name
    except AttributeError:  # no codec context / no decoder for it
        return "unknown"


class _Track:
    """One audio or subtitle stream of the source and how it goes into the output (remux or re-encode)."""

    def __init__(self, in_stream, out_stream, mode: str) -> None:
        self.in_stream = in_stream
        self.out_stream = out_stream
        self.mode = mode  # "copy", "audio" (re-encode to AAC) or "subtitle" (convert text subtitles)
        self.failed = False


class _StreamCopier:
    """Copies every audio and subtitle stream of a source into an output container (see :class:`VideoWriter`)."""

    def __init__(self, source: av.container.InputContainer, output, container_format: str, path: Path) -> None:
        self.source = source
        self.output = output
        self.path = path
        video = source.streams.video[0] if source.streams.video else None
        # Offset of the first video frame: audio and subtitles keep their position relative to it.
        if video is not None and video.start_time is not None:
            self.offset = float(video.start_time * video.time_base)
        else:
            self.offset = 0.0
        self.tracks: dict[int, _Track] = {}
        for stream in source.streams:
            track = None
            if stream.type == "audio":
                track = self._audio_track(stream, container_format)
            elif stream.type == "subtitle":
                track = self._subtitle_track(stream, container_format)
            if track is None:
                continue
            for key in ("language", "title"):
                if stream.metadata.get(key):
                    track.out_stream.metadata[key] = stream.metadata[key]
            language = stream.metadata.get("language", "")
            if container_format == "mov" and language.lower() in _MOV_LANGUAGES:
                track.out_stream.metadata["language"] = _MOV_LANGUAGES[language.lower()]
            try:
                track.out_stream.disposition = stream.disposition
            except (AttributeError, TypeError, ValueError):
                pass
            self.tracks[stream.index] = track
        inputs = [source.streams[index] for index in self.tracks]
        self.packets = source.demux(*inputs) if inputs else iter(())
        self.pending: av.Packet | None = None
        self.done = not inputs

    def _audio_track(self, stream, container_format: str) -> _Track | None:
        codec = _codec_name(stream)
        if codec in _AUDIO_AS_IS[container_format]:
            return _Track(stream, self.output.add_stream_from_template(stream), "copy")
        if stream.codec_context is None or stream.codec_context.codec is None or not stream.rate:
            log.warning("%s: audio stream %d (%s) dropped: FFmpeg cannot decode it to re-encode it for %s",
                        self.path, stream.index, codec, container_format)
            return None
        log.info("audio codec %s of %s (stream %d) cannot be stored in %s as is; re-encoding to AAC", codec,
                 self.path, stream.index, container_format)
        out = self.output.add_stream("aac", rate=stream.rate)
        # AAC needs a named layout; PCM in mkv/avi often carries an unspecified one ("1 channels").
        out.layout = _DEFAULT_LAYOUTS.get(stream.codec_context.channels, "stereo")
        out.format = "fltp"  # the sample format of FFmpeg's native AAC encoder
        return _Track(stream, out, "audio")

    def _subtitle_track(self, stream, container_format: str) -> _Track | None:
        codec = _codec_name(stream)
        as_is, text_codec = _SUBTITLES[container_format]
        if codec in as_is:
            return _Track(stream, self.output.add_stream_from_template(stream), "copy")
        if codec in _TEXT_SUBTITLES:
            try:
                stream.codec_context.open()  # fills its subtitle_header (ASS styles), which the encoder needs
                out = self.output.add_stream(text_codec)
                out.codec_context.subtitle_header = stream.codec_context.subtitle_header
                out.time_base = stream.time_base
            except (av.error.FFmpegError, ValueError) as err:
                log.warning("%s: subtitle stream %d (%s) dropped: cannot convert it to %s (%s)", self.path,
                            stream.index, codec, text_codec, err)
                return None
            return _Track(stream, out, "subtitle")
        log.warning("%s: subtitle stream %d (%s) dropped: %s cannot hold %s subtitles (mkv can)", self.path,
                    stream.index, codec, container_format, codec)
        return None

    @classmethod
    def create(cls, path: Path, output, container_format: str) -> _StreamCopier | None:
        try:
            source = av.open(str(path))
        except (av.error.FFmpegError, OSError) as err:
            raise InputError(f"cannot open the audio source {path}: {err}") from err
        copier = cls(source, output, container_format, path)
        if not copier.tracks:
            source.close()
            return None
        return copier

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
        """Write packets that start before ``seconds`` (video time); with ``final`` drop the rest, flush encoders.

        Packets come in file order (streams interleaved); with ``final`` the packets after the end are read
        up to 2 s past it, so that a stream interleaved late is not cut early.
        """
        while not self.done:
            packet = self.pending if self.pending is not None else self._next()
            self.pending = None
            if packet is None:
                self.done = True
                break
            start = float(packet.pts * packet.time_base) - self.offset
            if start >= seconds:
                if not final:
                    self.pending = packet
                    break
                if start >= seconds + 2.0:
                    self.done = True  # cut at the end of the video
                continue
            duration = float((packet.duration or 0) * packet.time_base)
            if (start + duration <= 0) if duration else (start < 0):
                continue  # entirely before the first video frame
            self._write(packet)
        if final:
            for track in self.tracks.values():
                if track.mode == "audio":
                    for out_packet in track.out_stream.encode(None):
                        self.output.mux(out_packet)

    def _write(self, packet: av.Packet) -> None:
        track = self.tracks[packet.stream.index]
        shift = round(self.offset / packet.time_base)
        if track.mode == "copy":
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = track.out_stream
            self.output.mux(packet)
        elif track.mode == "audio":
            for frame in packet.decode():
                frame.pts = None
                for out_packet in track.out_stream.encode(frame):
                    self.output.mux(out_packet)
        elif not track.failed:
            self._write_subtitle(track, packet, shift)

    def _write_subtitle(self, track: _Track, packet: av.Packet, shift: int) -> None:
        try:
            subtitles = track.in_stream.codec_context.decode2(packet)
            if subtitles is None:
                return
            out_packet = track.out_stream.codec_context.encode_subtitle(subtitles)
        except av.error.FFmpegError as err:
            track.failed = True
            log.warning("%s: converting subtitle stream %d failed (%s); its remaining cues are dropped",
                        self.path, track.in_stream.index, err)
            return
        out_packet.pts = out_packet.dts = packet.pts - shift
        out_packet.duration = packet.duration
        out_packet.time_base = packet.time_base
        out_packet.stream = track.out_stream
        self.output.mux(out_packet)

    def close(self) -> None:
        self.source.close()
