"""Video compression degradation: encode a clip with PyAV in memory and decode it again.

RealBasicVSR (Chan et al., CVPR 2022, Sec. 4; mmagic ``mmagic/datasets/transforms/random_degradations.py``
``RandomVideoCompression``): codec drawn from libx264 / h264 / mpeg4 (FFmpeg resolves the name ``h264`` to its
default H.264 encoder, libx264, so x264 is drawn twice as often as mpeg4), bitrate drawn from [1e4, 1e5], frames
encoded as one mp4 stream at a frame rate of 1 fps, so the bitrate is the number of bits per frame. The stream
takes the size of the first frame; PyAV rescales frames of any other size to it (swscale, bilinear) before
encoding, as in the official pipeline, whose drifting resize factor gives frames of different sizes.

Reproducibility: with ``deterministic=True`` (default) the same frames, codec and bitrate give bit-identical
output. Two settings make this hold:

* x264's macroblock-tree rate control (``mbtree``) with its SIMD code is not repeatable on small frames
  (measured here: the same input encoded twice in one process gave different bitstreams, mostly at 8x8 and
  16x32 px); it is disabled (``mbtree=0``), and the encoders run single-threaded. ``deterministic=False`` uses the
  encoders' defaults (the official pipeline's setting);
* :func:`video_compress` (the batched operator) pads frames by edge replication to a multiple of 16 px (at
  least 16x16) and crops them back after decoding; :func:`encode_decode` passes frames as they are.
"""
from __future__ import annotations

import io

import av
import numpy as np
import torch
from einops import rearrange

from zoo.errors import ConfigError

__all__ = ["VIDEO_CODECS", "encode_decode", "video_compress"]

VIDEO_CODECS = ("libx264", "h264", "mpeg4")
"""Encoder names accepted by the compression degradation (``h264`` resolves to libx264, as in FFmpeg)."""

_ENCODER_OPTIONS = {
    "libx264": {"threads": "1", "x264-params": "mbtree=0"},
    "h264": {"threads": "1", "x264-params": "mbtree=0"},
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


def encode_decode(frames: list[np.ndarray], *, codec: str, bitrate: int, deterministic: bool = True
                  ) -> list[np.ndarray]:
    """Encode frames as one mp4 stream at 1 fps and decode it again (in memory, no files).

    Args:
        frames: list of t ``(h_i, w_i, 3)`` uint8 RGB arrays with even sizes (yuv420p); the stream has the first
            frame's size and PyAV rescales the others to it (bilinear).
        codec: one of :data:`VIDEO_CODECS`.
        bitrate: bits per second at 1 fps, i.e. bits per frame.
        deterministic: single-threaded encoders without x264's mbtree (bit-identical repeats, see the module
            docstring); False: the encoders' default options.

    Returns:
        list of t ``(h_0, w_0, 3)`` uint8 arrays.

    Raises:
        ConfigError: unknown codec or non-positive bitrate.
        RuntimeError: the decoder returned another number of frames (should not happen).
    """
    if codec not in VIDEO_CODECS:
        raise ConfigError(f"unknown video codec {codec!r}; expected one of {VIDEO_CODECS}")
    if bitrate <= 0:
        raise ConfigError(f"video bitrate must be positive, got {bitrate}")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        options = dict(_ENCODER_OPTIONS[codec]) if deterministic else {}
        stream = container.add_stream(codec, rate=1, options=options)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = int(bitrate)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode="r", format="mp4") as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"video compression ({codec}) returned {len(decoded)} frames for {len(frames)}")
    return decoded


def video_compress(frames: torch.Tensor, *, codec: str, bitrate: int) -> torch.Tensor:
    """Compress a clip with a video codec and decode it (in memory, no files; deterministic encoder options).

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
    _, _, height, width = frames.shape
    array = (frames.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
    array = _pad_to_block(rearrange(array, "t c h w -> t h w c").numpy())
    decoded = [image[:height, :width] for image in encode_decode(list(array), codec=codec, bitrate=bitrate)]
    out = torch.from_numpy(np.stack(decoded)).to(frames.device, torch.float32) / 255.0
    return rearrange(out, "t h w c -> t c h w").contiguous()
