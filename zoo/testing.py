"""Helpers for tests, benchmarks and notebooks: where the real sample clips are.

The embedded sample (``zoo/assets/sample/demo_000``) is the first 20 frames of RealBasicVSR's real-world demo
clip ``data/demo_000`` (ckkelvinchan/RealBasicVSR, Apache-2.0): 640x360 RGB PNG, real low-quality street footage
with no ground truth. The larger shared clips (Vid4 ground truth, Upscale-A-Video's example videos) live outside
the project in ``../shared/data`` and are used only when present.
"""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def sample_clip_dir() -> Path:
    """Return the folder of the embedded real sample clip (20 PNG frames, 640x360, always present)."""
    return _PACKAGE_DIR / "assets" / "sample" / "demo_000"


def shared_data_dir() -> Path | None:
    """Return the shared data folder (``$VSRZOO_SHARED_DATA`` or ``<project>/../shared/data``), or None if absent."""
    env = os.environ.get("VSRZOO_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(_PACKAGE_DIR.parent.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


#: Tiny Upscale-A-Video networks (random init options of ``UpscaleAVideoUNet`` / ``UpscaleAVideoVAE``), as in
#: ``configs/upscale_a_video/tiny_cpu.yaml``: UNet levels of 32/32/64 channels, one block each, one attention head,
#: 32-d text tokens; VAE of three 32-channel levels (x4, like the real one).
TINY_UAV_UNET = dict(
    block_out_channels=(32, 32, 64), layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    only_cross_attention=(True, True, False), attention_head_dim=1, cross_attention_dim=32)
TINY_UAV_VAE = dict(block_out_channels=(32, 32, 32), layers_per_block=1, norm_num_groups=32)

#: A tiny CLIP text encoder: 32-d tokens (the tiny Upscale-A-Video UNets' cross-attention width), 77 positions.
TINY_CLIP_TEXT = dict(vocab_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                      max_position_embeddings=77)


def write_clip_tokenizer(folder: str | Path, *, words: str = "ab"):  # noqa: ANN201 - transformers.CLIPTokenizer
    """Write a small CLIP BPE tokenizer to ``folder`` and return it loaded (``transformers.CLIPTokenizer``).

    The vocabulary is the two special tokens (ids 0, 1) plus each character of ``words`` as a word end and as a
    word start; there are no merges, so each word of a prompt made of those characters becomes one token per
    character. Prompts are padded to the usual 77 tokens. This is for tests and timing runs that need real
    tokenizer calls but no downloaded vocabulary.

    Raises:
        ValueError: ``words`` has repeated characters.
    """
    import json

    from transformers import CLIPTokenizer

    if len(set(words)) != len(words):
        raise ValueError(f"repeated characters in words={words!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({f"{char}</w>": 2 + i for i, char in enumerate(words)})
    vocab.update({char: 2 + len(words) + i for i, char in enumerate(words)})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(folder)
    return tokenizer


def write_small_real_mp4(output: str | Path, *, height: int, width: int, num_frames: int | None = None,
                         square: bool = False) -> Path:
    """Write a small H.264 copy of a real clip, for tests of the video path (frames, size, fps, audio).

    Source: ``../shared/data/uav_old_video_1/old_video_1.mp4`` (real, 28 frames, 25 fps, AAC audio) when the shared
    data is present, and then its whole audio stream is copied; otherwise the embedded sample frames at 25 fps,
    without audio. Each frame is centre-cropped to a square first when ``square``, then area-resized to
    ``height`` x ``width``; only the first ``num_frames`` (None: all) are written.

    Returns:
        ``output`` as a Path.
    """
    import av
    import numpy as np
    import torch
    import torch.nn.functional as F
    from einops import rearrange

    from zoo.data.video_io import open_video

    def small(img: np.ndarray) -> av.VideoFrame:
        h, w = img.shape[:2]
        if square:
            s = min(h, w)
            img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        frame = rearrange(torch.from_numpy(np.ascontiguousarray(img)).float(), "h w c -> 1 c h w")
        frame = F.interpolate(frame, size=(height, width), mode="area")
        array = rearrange(frame[0].round().clamp(0, 255).byte(), "c h w -> h w c").numpy()
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")

    output = Path(output)
    data = shared_data_dir()
    source = data / "uav_old_video_1" / "old_video_1.mp4" if data else None
    with av.open(str(output), "w") as outp:
        if source is not None and source.is_file():
            with av.open(str(source)) as inp:
                vin, ain = inp.streams.video[0], inp.streams.audio[0]
                vout = outp.add_stream("libx264", rate=vin.average_rate)
                vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
                aout = outp.add_stream_from_template(ain)
                written = 0
                for packet in inp.demux(vin, ain):
                    if packet.stream is ain:
                        if packet.dts is not None:
                            packet.stream = aout
                            outp.mux(packet)
                        continue
                    for frame in packet.decode():
                        if num_frames is None or written < num_frames:
                            outp.mux(vout.encode(small(frame.to_ndarray(format="rgb24"))))
                            written += 1
        else:
            vout = outp.add_stream("libx264", rate=25)
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            for img in open_video(sample_clip_dir()).iter_frames(stop=num_frames):
                outp.mux(vout.encode(small(img)))
        outp.mux(vout.encode())
    return output


def assert_upscaled_copy(source: str | Path, output: str | Path, *, scale: int = 4) -> None:
    """Assert the video I/O contract of ``vsrzoo upscale``: ``output`` has every frame of ``source``, ``scale``
    times its size, the same fps (to 1e-3) and an audio stream exactly when the source has one.

    Raises:
        AssertionError: naming the property that differs.
    """
    from zoo.data.video_io import open_video

    src, out = open_video(source), open_video(output)
    assert out.num_frames == src.num_frames, f"{out.num_frames} frames written, {src.num_frames} read"
    assert (out.width, out.height) == (scale * src.width, scale * src.height), (
        f"output {out.width}x{out.height} is not x{scale} of {src.width}x{src.height}")
    assert abs(out.fps - src.fps) < 1e-3, f"fps {out.fps} != source {src.fps}"
    assert out.has_audio == src.has_audio, f"audio: output {out.has_audio}, source {src.has_audio}"
