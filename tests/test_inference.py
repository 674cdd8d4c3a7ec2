"""Chunked / tiled inference: exactness for per-frame functions, seamless blending for temporal ones, option
checks, and streaming video upscaling on the real sample clips (frame count, size, fps, audio)."""
from __future__ import annotations

import shutil

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.data.video_io import VideoSource, VideoWriter, open_video
from zoo.errors import ConfigError, InputError
from zoo.hub import family
from zoo.inference import upscale_tensor, upscale_video
from zoo.testing import sample_clip_dir, shared_data_dir


class Upsample(nn.Module):
    """A per-frame stand-in for an SR net: (b, t, 3, h, w) -> (b, t, 3, scale h, scale w) by interpolation."""

    def __init__(self, scale: int, mode: str = "nearest") -> None:
        super().__init__()
        self.scale, self.mode = scale, mode
        self.calls: list[tuple[int, ...]] = []

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(lq.shape))
        batch = lq.shape[0]
        frames = rearrange(lq, "b t c h w -> (b t) c h w")
        out = F.interpolate(frames, scale_factor=self.scale, mode=self.mode)
        return rearrange(out, "(b t) c h w -> b t c h w", b=batch)


def add_chunk_mean(lq: torch.Tensor) -> torch.Tensor:
    """A temporal stand-in: each frame plus the temporal mean of the chunk it was given (so chunks disagree)."""
    return lq + lq.mean(dim=1, keepdim=True)


@pytest.fixture()
def lq() -> torch.Tensor:
    return torch.rand(1, 11, 3, 37, 45, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------------------------- upscale_tensor
@pytest.mark.parametrize("chunk_frames, overlap, tile, tile_overlap", [
    (None, 0, None, 0), (4, 0, None, 0), (4, 2, None, 0), (5, 3, 16, 0), (4, 1, 16, 5), (11, 0, 16, 9), (3, 2, 40, 8),
])
def test_per_pixel_fn_is_exact(lq, chunk_frames, overlap, tile, tile_overlap):
    net = Upsample(2, "nearest")
    out = upscale_tensor(net, lq, scale=2, chunk_frames=chunk_frames, overlap=overlap, tile=tile,
                         tile_overlap=tile_overlap)
    assert all(shape[1] <= (chunk_frames or 11) and shape[3] <= (tile or 37) for shape in net.calls)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert torch.equal(out, net(lq))


def test_bicubic_tiles_match_whole_frames(lq):
    # bicubic needs 2 input px of context; the quarter of an 8 px overlap (2 px) nearest each cut gets weight 0
    net = Upsample(2, "bicubic")
    out = upscale_tensor(net, lq, scale=2, chunk_frames=4, overlap=1, tile=16, tile_overlap=8)
    torch.testing.assert_close(out, net(lq), atol=1e-5, rtol=0)
    seamy = upscale_tensor(net, lq, scale=2, tile=16, tile_overlap=0)
    assert (seamy - net(lq)).abs().max() > 1e-2  # without overlap the tile borders show


def test_temporal_blending_hides_chunk_borders():
    frames = 40
    ramp = torch.linspace(0, 1, frames).view(1, frames, 1, 1, 1).expand(1, frames, 3, 4, 4).contiguous()

    def max_step(out: torch.Tensor) -> float:
        return (out[0, 1:] - out[0, :-1]).abs().amax().item()

    hard = upscale_tensor(add_chunk_mean, ramp, scale=1, chunk_frames=12, overlap=0)
    soft = upscale_tensor(add_chunk_mean, ramp, scale=1, chunk_frames=12, overlap=8)
    nominal = 1 / (frames - 1)  # step of the input ramp
    assert max_step(hard) > 8 * nominal  # a visible jump at each chunk border
    assert max_step(soft) < 0.3 * max_step(hard)
    assert ((soft[0, 1:] - soft[0, :-1]) >= 0).all()  # the cross-fade stays monotone: no flicker back
    # outside the overlaps each frame is its own chunk's output, untouched
    torch.testing.assert_close(soft[:, :6], add_chunk_mean(ramp[:, :12])[:, :6], atol=0, rtol=0)


def test_bad_options_raise(lq):
    net = Upsample(2)
    for kwargs, match in [
        ({"chunk_frames": 4, "overlap": 4}, "overlap=4 must be smaller than chunk_frames=4"),
        ({"chunk_frames": 0}, "chunk_frames"),
        ({"chunk_frames": 4, "overlap": -1}, "overlap"),
        ({"tile": 16, "tile_overlap": 16}, "tile_overlap=16 must be smaller than tile=16"),
        ({"tile": 8.5}, "tile"),
    ]:
        with pytest.raises(ConfigError, match=match):
            upscale_tensor(net, lq, scale=2, **kwargs)
    with pytest.raises(ConfigError, match="scale"):
        upscale_tensor(net, lq, scale=0)
    with pytest.raises(ConfigError, match="is scale=4 right"):
        upscale_tensor(net, lq, scale=4)
    with pytest.raises(InputError, match=r"\(b, t, c, h, w\)"):
        upscale_tensor(net, lq[0], scale=2)


# ------------------------------------------------------------------------------------------------ upscale_video
def _write_frames(folder, frames: torch.Tensor) -> None:
    """Save (t, 3, h, w) [0, 1] frames as PNGs."""
    with VideoWriter(folder, fps=25, as_frames=True) as writer:
        writer.write(frames)


def test_upscale_video_mp4_keeps_frames_fps_and_audio(tmp_path):
    data = shared_data_dir()
    source = data / "uav_old_video_1" / "old_video_1.mp4" if data else None
    if source is None or not source.is_file():
        pytest.skip("../shared/data/uav_old_video_1/old_video_1.mp4 is absent")
    net = Upsample(4)
    out = tmp_path / "out.mp4"
    summary = upscale_video(net, source, out, chunk_frames=10, overlap=2, progress=False)
    assert summary["frames"] == 28 and summary["fps"] == 25.0 and summary["size"] == (2560, 1440)
    assert summary["output"] == str(out) and summary["seconds"] > 0
    assert all(shape[1] == 9 for shape in net.calls)  # 4 equal chunks of at most 10 frames, one at a time
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (2560, 1440)
        assert video.average_rate == 25
        assert len(container.streams.audio) == 1
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
        count = 1 + sum(1 for _ in container.decode(video=0))
    assert count == 28
    expected = next(open_video(source).iter_frames()).repeat(4, axis=0).repeat(4, axis=1)
    assert np.abs(first.astype(float) - expected).mean() < 3  # H.264 at crf 18 of the nearest-upsampled frame


def test_upscale_video_frames_folder_streams(tmp_path, monkeypatch):
    def no_read(self, *args, **kwargs):
        raise AssertionError("upscale_video must stream with iter_frames, not read the whole clip")

    monkeypatch.setattr(VideoSource, "read", no_read)
    net = Upsample(2)
    out = tmp_path / "frames"
    summary = upscale_video(net, sample_clip_dir(), out, scale=2, chunk_frames=6, overlap=2, as_frames=True,
                            progress=False)
    written = sorted(out.glob("*.png"))
    assert summary["frames"] == 20 and len(written) == 20 and written[0].name == "00000000.png"
    assert summary["size"] == (1280, 720) and summary["fps"] == 25.0
    assert all(shape[1] == 6 for shape in net.calls)  # 5 equal chunks of 6 frames
    monkeypatch.undo()
    first = open_video(out).read(19, 20)
    expected = net(open_video(sample_clip_dir()).read(19, 20)[None])[0]
    torch.testing.assert_close(first, expected, atol=0.5 / 255 + 1e-6, rtol=0)  # lossless PNG, 8-bit rounding


def test_upscale_video_matches_upscale_tensor(tmp_path):
    """The streaming path blends chunk borders exactly like the in-memory one."""
    clip = torch.rand(13, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    _write_frames(tmp_path / "in", clip)
    lq = open_video(tmp_path / "in").read()[None]

    def net(x: torch.Tensor) -> torch.Tensor:
        return Upsample(2)(add_chunk_mean(x) / 2)

    class Net(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return net(x)

    upscale_video(Net(), tmp_path / "in", tmp_path / "out", scale=2, chunk_frames=5, overlap=3, tile=10,
                  tile_overlap=4, as_frames=True, progress=False)
    expected = upscale_tensor(net, lq, scale=2, chunk_frames=5, overlap=3, tile=10, tile_overlap=4)
    got = open_video(tmp_path / "out").read()[None]
    torch.testing.assert_close(got, expected.clamp(0, 1), atol=0.5 / 255 + 1e-6, rtol=0)


def test_upscale_video_max_frames(tmp_path):
    net = Upsample(1)
    summary = upscale_video(net, sample_clip_dir(), tmp_path / "out", scale=1, chunk_frames=4, overlap=1,
                            max_frames=7, as_frames=True, progress=False)
    assert summary["frames"] == 7 and len(list((tmp_path / "out").glob("*.png"))) == 7
    with pytest.raises(ConfigError, match="max_frames"):
        upscale_video(net, sample_clip_dir(), tmp_path / "o", scale=1, max_frames=0, progress=False)


def test_upscale_video_refuses_bad_requests(tmp_path):
    _write_frames(tmp_path / "in", torch.rand(3, 3, 8, 8))
    net = Upsample(2)
    with pytest.raises(InputError, match="overwrite"):
        upscale_video(net, tmp_path / "in", tmp_path / "in", scale=2, as_frames=True, progress=False)
    with pytest.raises(ConfigError, match="fp16"):
        upscale_video(net, tmp_path / "in", tmp_path / "o", scale=2, dtype="fp16", as_frames=True, progress=False)
    with pytest.raises(ConfigError, match="dtype"):
        upscale_video(net, tmp_path / "in", tmp_path / "o", scale=2, dtype="int8", as_frames=True, progress=False)
    with pytest.raises(ConfigError, match="overlap"):
        upscale_video(net, tmp_path / "in", tmp_path / "o", scale=2, chunk_frames=2, overlap=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing half-written left behind
    data = shared_data_dir()
    if data and (data / "uav_old_video_1" / "old_video_1.mp4").is_file():
        copy = tmp_path / "clip.mp4"
        shutil.copy(data / "uav_old_video_1" / "old_video_1.mp4", copy)
        with pytest.raises(InputError, match="overwrite"):
            upscale_video(net, copy, copy, scale=2, progress=False)


def test_upscale_video_bf16_on_cpu(tmp_path):
    _write_frames(tmp_path / "in", torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(3)))
    conv = nn.Conv2d(3, 3, 3, padding=1)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.dtypes = conv, []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(rearrange(x, "b t c h w -> (b t) c h w"))
            self.dtypes.append(y.dtype)
            return rearrange(F.interpolate(y.float(), scale_factor=2), "(b t) c h w -> b t c h w", b=x.shape[0])

    net = Net()
    summary = upscale_video(net, tmp_path / "in", tmp_path / "out", scale=2, dtype="bf16", as_frames=True,
                            progress=False)
    assert summary["frames"] == 4 and net.dtypes == [torch.bfloat16]


def test_upscale_video_with_tiny_realbasicvsr(tmp_path):
    net_module = pytest.importorskip("zoo.models.realbasicvsr.net")
    torch.manual_seed(0)
    net = net_module.RealBasicVSRNet(**family("realbasicvsr").variant("tiny")["net"])
    _write_frames(tmp_path / "in", open_video(sample_clip_dir()).read(0, 4)[:, :, 100:132, 200:240])
    summary = upscale_video(net, tmp_path / "in", tmp_path / "out", chunk_frames=3, overlap=1, as_frames=True,
                            progress=False)
    assert summary["frames"] == 4 and summary["size"] == (160, 128)
    assert open_video(tmp_path / "out").read().shape == (4, 3, 128, 160)
