"""Video I/O: folders of frames and video files (PyAV), writing with audio, atomic output, bad inputs."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from zoo.data.video_io import VideoWriter, list_clips, natural_sort_key, open_video
from zoo.errors import InputError
from zoo.testing import sample_clip_dir, shared_data_dir


def make_video(path: Path, *, num_frames: int = 10, size: tuple[int, int] = (48, 64),
               fps: Fraction = Fraction(30000, 1001), audio_codec: str | None = "aac") -> np.ndarray:
    """Write a small test video (moving gradient) with an optional 440 Hz sine audio track; return its frames."""
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.stack([np.stack([(xx * 4 + i * 8) % 256, (yy * 4) % 256, np.full_like(xx, 128)], -1)
                       for i in range(num_frames)]).astype(np.uint8)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "10"}
        audio = None
        if audio_codec is not None:
            audio = container.add_stream(audio_codec, rate=16000)
            audio.layout = "mono"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        if audio is not None:
            sample_rate = 16000
            total = int(sample_rate * num_frames / float(fps))
            samples = 0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / sample_rate)
            sample_format = audio.codec_context.format.name
            step = audio.codec_context.frame_size or 1024
            for start in range(0, total, step):
                chunk = samples[start:start + step]
                if sample_format == "s16":
                    array = (chunk * 32767).astype(np.int16)[None]
                else:
                    array = chunk.astype(np.float32)[None]
                audio_frame = av.AudioFrame.from_ndarray(array, format=sample_format, layout="mono")
                audio_frame.sample_rate = sample_rate
                audio_frame.pts = start
                for packet in audio.encode(audio_frame):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    return frames


def _streams(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {stream.type: stream.codec_context.name for stream in container.streams}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def test_mp4_round_trip_keeps_frames_fps_and_audio(tmp_path):
    source_path = tmp_path / "source.mp4"
    frames = make_video(source_path)
    source = open_video(source_path)
    assert (source.num_frames, source.height, source.width) == (10, 48, 64)
    assert source.fps_fraction == Fraction(30000, 1001) and source.has_audio and not source.is_folder

    out_path = tmp_path / "out.mp4"
    with VideoWriter(out_path, fps=source.fps_fraction, audio_from=source_path) as writer:
        for frame in source.iter_frames():
            writer.write(frame)
    out = open_video(out_path)
    assert (out.num_frames, out.height, out.width) == (10, 48, 64)
    assert out.fps_fraction == Fraction(30000, 1001)
    assert out.has_audio and _streams(out_path) == {"video": "h264", "audio": "aac"}
    decoded = np.stack(list(out.iter_frames()))
    assert decoded.dtype == np.uint8 and decoded.shape == (10, 48, 64, 3)
    assert _psnr(decoded, frames) > 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "source.mp4"]  # no temporary left


def test_audio_that_mp4_cannot_hold_is_reencoded_to_aac(tmp_path):
    source_path = tmp_path / "pcm.mkv"
    make_video(source_path, audio_codec="pcm_s16le", num_frames=5)
    out_path = tmp_path / "out.mp4"
    with VideoWriter(out_path, fps=25, audio_from=source_path) as writer:
        writer.write(open_video(source_path).read())
    assert _streams(out_path) == {"video": "h264", "audio": "aac"}
    assert open_video(out_path).num_frames == 5


def test_read_tensor_and_write_png_frames(tmp_path):
    clip = torch.rand(3, 3, 10, 12)
    out_dir = tmp_path / "frames"
    with VideoWriter(out_dir, fps=25, as_frames=True) as writer:
        writer.write(clip)
    assert sorted(p.name for p in out_dir.iterdir()) == ["00000000.png", "00000001.png", "00000002.png"]
    source = open_video(out_dir)
    assert source.is_folder and source.fps == 25.0 and not source.has_audio
    read = source.read()
    assert read.shape == (3, 3, 10, 12) and read.dtype == torch.float32
    assert torch.equal(read, (clip * 255).round() / 255)  # PNG is lossless
    # an earlier frames output is replaced
    with VideoWriter(out_dir, fps=25, as_frames=True) as writer:
        writer.write(clip[:1])
    assert len(list(out_dir.iterdir())) == 1


def test_writer_is_atomic_and_refuses_to_overwrite_input(tmp_path):
    out_path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out_path, fps=24) as writer:
            writer.write(torch.rand(2, 3, 16, 16))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    source_path = tmp_path / "in.mp4"
    make_video(source_path, num_frames=2, audio_codec=None)
    with pytest.raises(InputError, match="overwrite the input"):
        VideoWriter(source_path, fps=24, audio_from=source_path)
    with pytest.raises(InputError, match="overwrite the input"):
        VideoWriter(tmp_path, fps=24, as_frames=True, input_path=source_path)
    with pytest.raises(InputError, match="no frames"):
        with VideoWriter(out_path, fps=24):
            pass
    with pytest.raises(InputError, match="size"):
        with VideoWriter(out_path, fps=24) as writer:
            writer.write(torch.rand(3, 16, 16))
            writer.write(torch.rand(3, 16, 18))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_embedded_sample_folder():
    source = open_video(sample_clip_dir())
    assert (source.num_frames, source.height, source.width, source.fps) == (20, 360, 640, 25.0)
    clip = source.read(18)
    assert clip.shape == (2, 3, 360, 640) and clip.dtype == torch.float32
    assert 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0
    frame = next(source.iter_frames(5, 6))
    assert frame.dtype == np.uint8 and frame.shape == (360, 640, 3)


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent")
def test_shared_video_counts_decoded_frames():
    source = open_video(shared_data_dir() / "uav_old_video_1" / "old_video_1.mp4")
    assert (source.num_frames, source.width, source.height) == (28, 640, 360)  # header claims 134
    assert source.fps == 25.0 and source.has_audio


def test_frame_conversions(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)  # stored BGRA by OpenCV
    deep = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    for name, image in (("gray", gray), ("rgba", rgba), ("deep", deep)):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "0.png"), image)
    frame = open_video(tmp_path / "gray").read()[0]
    assert torch.equal(frame, torch.from_numpy(gray / 255.0).float().expand(3, 6, 5))
    frame = open_video(tmp_path / "rgba").read()[0]
    assert torch.equal(frame, torch.from_numpy(rgba[:, :, 2::-1] / 255.0).float().permute(2, 0, 1))
    frame = open_video(tmp_path / "deep").read()[0]
    assert torch.allclose(frame, torch.from_numpy(deep[:, :, ::-1] / 65535.0).float().permute(2, 0, 1))
    eight_bit = next(open_video(tmp_path / "deep").iter_frames())
    assert eight_bit.dtype == np.uint8 and abs(int(eight_bit[0, 0, 0]) - round(deep[0, 0, 2] / 257)) <= 1


def test_natural_sort_and_clip_listing(tmp_path):
    assert sorted(["f10.png", "f2.png", "f1.png"], key=natural_sort_key) == ["f1.png", "f2.png", "f10.png"]
    for clip in ("b", "a"):
        (tmp_path / clip).mkdir()
        for i in (10, 2, 1):
            cv2.imwrite(str(tmp_path / clip / f"Frame {i}.png"), np.zeros((4, 4, 3), np.uint8))
    make_video(tmp_path / "c.mp4", num_frames=2, audio_codec=None)
    (tmp_path / "notes.txt").write_text("ignored")
    assert [key for key, _ in list_clips(tmp_path)] == ["a", "b", "c"]
    assert [p.name for p in open_video(tmp_path / "a").frame_paths] == ["Frame 1.png", "Frame 2.png", "Frame 10.png"]
    assert list_clips(tmp_path / "a") == [("a", tmp_path / "a")]


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_video(tmp_path / "missing.mp4")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unsupported input file"):
        open_video(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="no frames or videos"):
        list_clips(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no frames in folder"):
        open_video(tmp_path / "empty")

    good = tmp_path / "good.mp4"
    make_video(good, num_frames=4, audio_codec=None)
    data = good.read_bytes()
    for name, content in (("truncated.mp4", data[: len(data) // 2]), ("garbage.mp4", b"\x00" * 1000)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match="corrupt or truncated"):
            open_video(tmp_path / name)

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "0.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(mixed / "1.png"), np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(InputError, match="different sizes"):
        open_video(mixed)
    with pytest.raises(InputError, match="different sizes"):  # also caught while reading without the check
        open_video(mixed, check_sizes=False).read()

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot decode image"):
        open_video(broken)

    with pytest.raises(InputError, match="clip folders"):
        open_video(tmp_path)
