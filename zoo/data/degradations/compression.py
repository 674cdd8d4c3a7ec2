"""Video compression degradation: encode a clip with PyAV in memory and decode it again.

RealBasicVSR (Chan et al., CVPR 2022, Sec. 4; mmagic ``mmagic/datasets/transforms/random_degradations.py``
``RandomVideoCompression``): codec drawn from libx264 / mpeg4 (mmagic also lists ``h264``, which FFmpeg maps to
the same libx264 encoder), bitrate drawn from [1e4, 1e5], frames encoded as one mp4 stream at a frame rate of
1 fps, so the bitrate is the number of bits per frame.

Reproducibility: the same frames, codec and bitrate give bit-identical output. Two settings make this hold:

* x264's macroblock-tree rate control (``mbtree``) with its SIMD code is not repeatable on small frames
  (measured here: the same input encoded twice in one process gave different bitstreams, mostly at 8x8 and
  16x32 px); it is disabled (``mbtree=0``), and x264 runs single-threaded;
* frames are padded by edge replication to a multiple of 16 px (at least 16x16: yuv420p needs even sizes and
  tiny frames are not accepted by every encoder) and cropped back after decoding.
"""
from __future__ import annotations

import io

import av
import numpy as np
import torch
from einops import rearrange

from zoo.errors import ConfigError

__all__ = ["VIDEO_CODECS", "video_compress"]

VIDEO_CODECS = ("libx264", "mpeg4")
"""Encoders available for the compression degradation."""

_ENCODER_OPTIONS = {
    "libx264": {"threads": "1", "x264-params": "mbtree=0"},
    "mpeg4": {"threads": "1"},
}
_BLOCK = 16


def _pad_to_block(frames: np.ndarray) -> np.ndarray:
    _, height, width, _ = frames.shape
    pad_h = max(_BLOCK, -(-height // _BLOCK) * _BLOCK) - height
    pad_w = max(_BLOCK, -(-width // _BLOCK) * _BLOCK) - width
    if pad_h == 0 and pad_w == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def video_compress(frames: torch.Tensor, *, codec: str, bitrate: int) -> torch.Tensor:
    """Compress a clip with a video codec and decode it (in memory, no files).

    Args:
        frames: ``(t, 3, h, w)`` float32 in [0, 1] (clamped and rounded to 8 bit before encoding).
        codec: one of :data:`VIDEO_CODECS`.
        bitrate: bits per second at 1 fps, i.e. bits per frame (RealBasicVSR: 1e4..1e5).

    Returns:
        ``(t, 3, h, w)`` float32 in [0, 1] on the input's device, 8-bit levels.

    Raises:
        ConfigError: unknown codec or non-positive bitrate.
        RuntimeError: the decoder returned another number of frames (should not happen).
    """
    if codec not in VIDEO_CODECS:
        raise ConfigError(f"unknown video codec {codec!r}; expected one of {VIDEO_CODECS}")
    if bitrate <= 0:
        raise ConfigError(f"video bitrate must be positive, got {bitrate}")
    num_frames, _, height, width = frames.shape
    array = (frames.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
    array = _pad_to_block(rearrange(array, "t c h w -> t h w c").numpy())
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=1, options=dict(_ENCODER_OPTIONS[codec]))
        stream.height, stream.width = array.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = int(bitrate)
        for index, image in enumerate(array):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buffer.seek(0)
    decoded = []
    with av.open(buffer, mode="r", format="mp4") as container:
        for frame in container.decode(video=0):
            decoded.append(frame.to_ndarray(format="rgb24")[:height, :width])
    if len(decoded) != num_frames:
        raise RuntimeError(f"video compression ({codec}) returned {len(decoded)} frames for {num_frames}")
    out = torch.from_numpy(np.stack(decoded)).to(frames.device, torch.float32) / 255.0
    return rearrange(out, "t h w c -> t c h w").contiguous()
