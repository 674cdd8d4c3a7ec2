"""Real-world inputs and outputs of zoo.data.video_io (issue 14): NTSC rates, several audio tracks, subtitles,
phone rotation, corrupt files, messy frame folders, GIF / HEVC, non-ASCII paths, containers, FIFOs, bad outputs.

Every input is generated here from tiny crops of the real frames of zoo/assets/sample/demo_000.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image
from torch import nn

from zoo.data import video_io
from zoo.data.video_io import VideoWriter, list_clips, open_video
from zoo.errors import InputError
from zoo.inference import upscale_video
from zoo.testing import sample_clip_dir

NTSC_FILM, NTSC_VIDEO = Fraction(24000, 1001), Fraction(30000, 1001)
SAMPLE_RATE = 16000
# the display matrix a phone held upright stores (QuickTime tkhd convention, 16.16 / 2.30 fixed point):
# stored pixel (x, y) is shown at (-y, x): the stored frame is shown rotated 90 degrees clockwise
PHONE_PORTRAIT_MATRIX = (0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)


class Nearest2x(nn.Module):
    """Trivial x2 upscaler: (b, t, 3, h, w) -> (b, t, 3, 2h, 2w), nearest neighbour."""

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        frames = rearrange(lq, "b t c h w -> (b t) c h w")
        return rearrange(F.interpolate(frames, scale_factor=2, mode="nearest"), "(b t) c h w -> b t c h w",
                         b=lq.shape[0])


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    """12 real frames (t, 32, 48, 3) uint8 RGB, cropped from the sample clip."""
    paths = sorted(sample_clip_dir().glob("*.png"))[:12]
    return np.stack([cv2.imread(str(p))[150:182, 300:348, ::-1] for p in paths])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def _tone(freq: float, seconds: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE)).astype(np.float32)


def _encode_audio(container, stream, samples: np.ndarray) -> None:
    fmt = stream.codec_context.format.name
    step = stream.codec_context.frame_size or 1024
    for start in range(0, len(samples), step):
        chunk = samples[start:start + step]
        array = (chunk * 32767).astype(np.int16)[None] if fmt == "s16" else chunk[None]
        frame = av.AudioFrame.from_ndarray(array, format=fmt, layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def make_video(path: Path, frames: np.ndarray, *, rate: Fraction = Fraction(25), codec: str = "libx264",
               audio: tuple = (), subtitles: str | None = None, matrix: tuple | None = None,
               options: dict | None = None, container_options: dict | None = None) -> None:
    """Write ``frames`` (t, h, w, 3) to ``path``; audio: ``(codec, freq, language)`` per track; subtitles: the
    text of an .srt file, remuxed (mkv) or converted to mov_text (mp4); matrix: a display matrix (9 ints) or
    ``(counter-clockwise degrees, hflip)`` for PyAV's helper."""
    seconds = len(frames) / float(rate)
    with av.open(str(path), "w", options=container_options or {}) as container:
        video = container.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.options = options or ({"x265-params": "log-level=error"} if codec == "libx265" else {"crf": "12"})
        if matrix is not None and len(matrix) == 2:
            video.set_display_rotation(matrix[0], hflip=matrix[1])
        elif matrix is not None:
            video.set_display_matrix(matrix)
        tracks = []
        for audio_codec, freq, language in audio:
            stream = container.add_stream(audio_codec, rate=SAMPLE_RATE)
            stream.layout = "mono"
            stream.metadata["language"] = language
            tracks.append((stream, freq))
        sub_in = sub_out = None
        if subtitles is not None:
            srt = path.with_suffix(".srt")
            srt.write_text(subtitles)
            sub_in = av.open(str(srt))
            sub_stream = sub_in.streams.subtitles[0]
            if container.format.name == "matroska":
                sub_out = container.add_stream_from_template(sub_stream)
            else:
                sub_stream.codec_context.open()
                sub_out = container.add_stream("mov_text")
                sub_out.codec_context.subtitle_header = sub_stream.codec_context.subtitle_header
                sub_out.time_base = sub_stream.time_base
            sub_out.metadata["language"] = "deu"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for stream, freq in tracks:
            _encode_audio(container, stream, _tone(freq, seconds))
        if sub_in is not None:
            for packet in sub_in.demux(subtitles=0):
                if not packet.size:
                    continue
                if sub_out.codec_context.name != "mov_text":
                    packet.stream = sub_out
                    container.mux(packet)
                    continue
                out = sub_out.codec_context.encode_subtitle(sub_in.streams.subtitles[0].codec_context.decode2(packet))
                out.pts, out.dts, out.duration, out.time_base = packet.pts, packet.pts, packet.duration, packet.time_base
                out.stream = sub_out
                container.mux(out)
            sub_in.close()


def _dominant_frequency(path: Path, index: int) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        samples = np.concatenate([frame.to_ndarray().mean(axis=0) for frame in container.decode(stream)])
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * stream.rate / len(samples))


SRT = "1\n00:00:00,000 --> 00:00:00,200\nHello\n\n2\n00:00:00,200 --> 00:00:00,400\nWorld\n"


# ----------------------------------------------------------------------------------- 1. exact frame rates
@pytest.mark.parametrize(("rate", "source_name", "output_name"), [
    (NTSC_FILM, "film.mp4", "out.mkv"), (NTSC_VIDEO, "video.mkv", "out.mp4"), (NTSC_FILM, "film.mov", "out.mov")])
def test_ntsc_rate_is_kept_exactly_by_upscale_video(tmp_path, real, rate, source_name, output_name):
    source = tmp_path / source_name
    make_video(source, real[:6], rate=rate)
    assert open_video(source).fps_fraction == rate
    out = tmp_path / output_name
    summary = upscale_video(Nearest2x(), source, out, scale=2, chunk_frames=4, overlap=1, progress=False)
    assert summary["frames"] == 6 and summary["size"] == (96, 64)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == rate
        pts = [frame.pts for frame in container.decode(stream)]
    if output_name != "out.mkv":  # mp4/mov: every frame lasts exactly 1/rate in time-base ticks (mkv counts ms
        # and keeps the exact rate in its track header, read back above as average_rate)
        assert (1 / rate / stream.time_base).denominator == 1
        assert all(b - a == 1 / rate / stream.time_base for a, b in zip(pts, pts[1:]))
    assert open_video(out).fps_fraction == rate
    assert video_io._as_fraction(29.97) == NTSC_VIDEO and video_io._as_fraction(23.976) == NTSC_FILM


# ------------------------------------------------------------------------------ 2. audio tracks, subtitles
def test_every_audio_track_and_the_subtitles_are_kept(tmp_path, real):
    source = tmp_path / "two tracks.mkv"
    # track 1: AAC 440 Hz English; track 2: PCM (re-encoded for mp4, copied for mkv/mov) 880 Hz French
    make_video(source, real, audio=(("aac", 440, "eng"), ("pcm_s16le", 880, "fra")), subtitles=SRT)
    assert open_video(source).has_audio and open_video(source).has_subtitles
    expected = {".mkv": ("aac", "pcm_s16le", "subrip"), ".mp4": ("aac", "aac", "mov_text"),
                ".mov": ("aac", "pcm_s16le", "mov_text")}
    for suffix, (first, second, subtitle) in expected.items():
        out = tmp_path / f"out{suffix}"
        with VideoWriter(out, fps=25, audio_from=source) as writer:
            writer.write(open_video(source).read())
        german = "ger" if suffix == ".mov" else "deu"  # QuickTime knows the ISO 639-2/B name only
        with av.open(str(out)) as container:
            kinds = [(s.type, s.codec_context.codec.canonical_name, s.metadata.get("language")) for s in
                     container.streams]
            assert kinds == [("video", "h264", kinds[0][2]), ("audio", first, "eng"), ("audio", second, "fra"),
                             ("subtitle", subtitle, german)], suffix
            cues = b"".join(bytes(p) for p in container.demux(subtitles=0) if p.size)
        assert b"Hello" in cues and b"World" in cues, suffix
        assert abs(_dominant_frequency(out, 0) - 440) < 20 and abs(_dominant_frequency(out, 1) - 880) < 20, suffix
    # mp4 with mov_text -> mkv: converted to SubRip
    mp4_source = tmp_path / "out.mp4"
    with VideoWriter(tmp_path / "back.mkv", fps=25, audio_from=mp4_source) as writer:
        writer.write(open_video(mp4_source).read(0, 5))
    with av.open(str(tmp_path / "back.mkv")) as container:
        assert container.streams.subtitles[0].codec_context.codec.canonical_name == "subrip"
        assert len(container.streams.audio) == 2


def test_subtitles_a_container_cannot_hold_are_dropped_with_one_warning(tmp_path, real, monkeypatch, caplog):
    source = tmp_path / "in.mkv"
    make_video(source, real[:4], audio=(("aac", 440, "eng"),), subtitles=SRT)
    monkeypatch.setattr(video_io, "_TEXT_SUBTITLES", frozenset())  # as for bitmap (DVD, PGS) subtitles
    with caplog.at_level(logging.WARNING, logger="zoo.data.video_io"):
        with VideoWriter(tmp_path / "out.mp4", fps=25, audio_from=source) as writer:
            writer.write(open_video(source).read())
    assert [r.getMessage().count("dropped") for r in caplog.records] == [1]
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]


# ----------------------------------------------------------------------------------------- 3. orientation
@pytest.mark.parametrize(("suffix", "matrix", "upright"), [
    (".mp4", PHONE_PORTRAIT_MATRIX, lambda f: np.rot90(f, -1)),  # shown rotated 90 degrees clockwise
    (".mkv", PHONE_PORTRAIT_MATRIX, lambda f: np.rot90(f, -1)),
    (".mov", (180, False), lambda f: f[::-1, ::-1]),
    (".mp4", (90, True), lambda f: np.rot90(f, 1)[:, ::-1]),  # PyAV: counter-clockwise degrees, then mirror
])
def test_display_rotation_is_applied(tmp_path, real, suffix, matrix, upright):
    path = tmp_path / f"phone{suffix}"
    make_video(path, real[:3], matrix=matrix)
    source = open_video(path)
    expected = np.stack([upright(f) for f in real[:3]])
    assert (source.height, source.width) == expected.shape[1:3]
    decoded = np.stack(list(source.iter_frames()))
    assert decoded.shape == expected.shape and _psnr(decoded, expected) > 35
    assert _psnr(decoded[:, ::-1], expected) < 25  # a mirrored result fails


def test_rotated_phone_video_is_upscaled_upright(tmp_path, real):
    path = tmp_path / "phone.mp4"
    make_video(path, real[:4], matrix=PHONE_PORTRAIT_MATRIX, audio=(("aac", 440, "eng"),))
    out = tmp_path / "up.mp4"
    summary = upscale_video(Nearest2x(), path, out, scale=2, chunk_frames=4, overlap=1, progress=False)
    assert summary["size"] == (64, 96)  # width x height: portrait
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height, frame.rotation) == (64, 96, 0)  # upright pixels, no display matrix
    expected = np.rot90(real[0], -1).repeat(2, axis=0).repeat(2, axis=1)
    assert _psnr(next(open_video(out).iter_frames()), expected) > 30


# ----------------------------------------------------------------------------------------- 4. corruption
def _damage(path: Path, packet_index: int) -> None:
    """Overwrite the bytes of one video packet in the middle of the file (seeded noise)."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[packet_index]
    data = bytearray(path.read_bytes())
    data[pos - 8:pos + size] = np.random.default_rng(0).integers(0, 256, size + 8, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("suffix", "damaged", "cluster_ms"), [
    (".mp4", 5, None),  # an undecodable packet
    (".mkv", 5, "100"),  # a damaged Matroska block: the demuxer skips to the next cluster (a timestamp gap)
    (".mkv", 9, None),  # ... and in the last cluster: the frames up to the end are lost (header duration)
])
def test_corrupt_middle_uses_every_decodable_frame_and_warns_once(tmp_path, real, suffix, damaged, cluster_ms,
                                                                   caplog):
    path = tmp_path / f"damaged{suffix}"
    make_video(path, real, options={"crf": "12", "g": "4", "bf": "0"},  # a keyframe every 4 frames
               container_options={"cluster_time_limit": cluster_ms} if cluster_ms else None)
    _damage(path, damaged)
    with caplog.at_level(logging.WARNING, logger="zoo.data.video_io"):
        source = open_video(path)
        count = source.num_frames
        frames = list(source.iter_frames())
        out = tmp_path / "out.mp4"
        summary = upscale_video(Nearest2x(), path, out, scale=2, chunk_frames=5, overlap=1, progress=False)
    assert 3 <= count < 12 and len(frames) == count and summary["frames"] == count
    assert open_video(out).num_frames == count
    warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warnings) == 2  # one per VideoSource: ours and the one upscale_video opened
    assert f"{12 - count} frame(s) lost" in warnings[0], warnings[0]
    assert _psnr(frames[0], real[0]) > 35  # the frames before the damage are intact
    if damaged < 8:  # the next keyframe (8) and what follows decode cleanly
        assert _psnr(frames[-1], real[-1]) > 35
    with caplog.at_level(logging.WARNING, logger="zoo.data.video_io"):
        caplog.clear()
        intact = tmp_path / f"intact{suffix}"
        make_video(intact, real, options={"crf": "12", "g": "4", "bf": "0"})
        assert open_video(intact).num_frames == 12 and not caplog.records  # no false alarm


# ----------------------------------------------------------------------------------------- 5. frame folders
def test_messy_frame_folders(tmp_path, real):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(real, start=1):  # unpadded: 1.png ... 12.png (lexical order: 1, 10, 11, 12, 2, ...)
        Image.fromarray(image).save(folder / f"{i}.png")
    for junk in (".DS_Store", "Thumbs.db", "desktop.ini", "._1.png", "._frame.png"):
        (folder / junk).write_bytes(b"\x00\x05\x16\x07 not an image")
    source = open_video(folder)
    assert [p.name for p in source.frame_paths] == [f"{i}.png" for i in range(1, 13)]
    assert np.array_equal(np.stack(list(source.iter_frames())), real)
    assert list_clips(tmp_path) == [("frames", folder)]

    jpeg = tmp_path / "jpeg"
    jpeg.mkdir()
    for i, image in enumerate(real[:3]):
        Image.fromarray(image).save(jpeg / f"f{i}.JPG", quality=90)
    decoded = np.stack(list(open_video(jpeg).iter_frames()))
    reference = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in open_video(jpeg).frame_paths])
    assert np.abs(decoded.astype(int) - reference).max() <= 2 and _psnr(decoded, real[:3]) > 30

    palette = tmp_path / "palette"
    palette.mkdir()
    quantized = Image.fromarray(real[0]).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    quantized.save(palette / "0.png")
    quantized.save(palette / "1.png", transparency=3)  # tRNS: OpenCV reads BGRA, the alpha is dropped
    for path, frame in zip(open_video(palette).frame_paths, open_video(palette).iter_frames()):
        assert Image.open(path).mode == "P"
        assert np.array_equal(frame, np.asarray(Image.open(path).convert("RGB")))


# ----------------------------------------------------------------------------------------- 6. GIF, HEVC
def test_animated_gif_with_variable_delays(tmp_path, real):
    path = tmp_path / "anim.gif"
    images = [Image.fromarray(image) for image in real[:5]]
    images[0].save(path, save_all=True, append_images=images[1:], duration=[100, 200, 100, 300, 100], loop=0)
    assert list_clips(path) == [("anim", path)]
    source = open_video(path)
    assert source.num_frames == 5 and source.fps_fraction == Fraction(5, 1) / Fraction(8, 10)  # frames / 0.8 s
    with Image.open(path) as gif:  # PIL's own decoding of the same (palette-quantized) frames
        reference = []
        for i in range(5):
            gif.seek(i)
            reference.append(np.asarray(gif.convert("RGB")))
    assert np.array_equal(np.stack(list(source.iter_frames())), np.stack(reference))
    summary = upscale_video(Nearest2x(), path, tmp_path / "anim.mp4", scale=2, chunk_frames=5, overlap=1,
                            progress=False)
    assert summary["frames"] == 5 and open_video(tmp_path / "anim.mp4").fps_fraction == Fraction(25, 4)


HEVC_WRITER = """
import sys, av, numpy as np
frames = np.load(sys.argv[1])
with av.open(sys.argv[2], "w") as container:
    stream = container.add_stream("libx265", rate=25)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    stream.options = {"x265-params": "log-level=error:crf=10"}
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
"""


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="this PyAV wheel has no HEVC encoder")
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_hevc_input(tmp_path, suffix):
    # 64x64: libx265 corrupts its heap on frames smaller than its 64-pixel CTU (seen with 48x32), so the
    # encoder runs in a child process and on a CTU-sized crop
    paths = sorted(sample_clip_dir().glob("*.png"))[:4]
    frames = np.stack([cv2.imread(str(p))[150:214, 300:364, ::-1] for p in paths])
    np.save(tmp_path / "frames.npy", frames)
    path = tmp_path / f"hevc{suffix}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", HEVC_WRITER, str(tmp_path / "frames.npy"), str(path)], check=True, env=env,
                   timeout=120)
    source = open_video(path)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.codec.canonical_name == "hevc"
    assert source.num_frames == 4 and (source.height, source.width) == (64, 64)
    assert _psnr(np.stack(list(source.iter_frames())), frames) > 30


# ----------------------------------------------------------------------------------------- 7. paths
def test_paths_with_spaces_and_non_ascii_characters(tmp_path, real):
    clips = tmp_path / "my clips"
    clips.mkdir()
    video = clips / "vidéo 東京.mp4"
    make_video(video, real[:4], audio=(("aac", 440, "jpn"),))
    frames = clips / "cadres été 東京"
    frames.mkdir()
    for i, image in enumerate(real[:4]):
        Image.fromarray(image).save(frames / f"image {i}.png")
    assert [key for key, _ in list_clips(clips)] == ["cadres été 東京", "vidéo 東京"]
    outputs = tmp_path / "sorties ü 東京"
    outputs.mkdir()
    summary = upscale_video(Nearest2x(), video, outputs / "résultat 東京.mkv", scale=2, chunk_frames=4, overlap=1,
                            progress=False)
    assert summary["frames"] == 4 and open_video(outputs / "résultat 東京.mkv").has_audio
    upscale_video(Nearest2x(), frames, outputs / "cadres 東京", scale=2, chunk_frames=4, overlap=1, as_frames=True,
                  progress=False)
    written = open_video(outputs / "cadres 東京")
    assert written.num_frames == 4 and np.array_equal(next(written.iter_frames()), real[0].repeat(2, 0).repeat(2, 1))
    assert sorted(p.name for p in outputs.iterdir()) == ["cadres 東京", "résultat 東京.mkv"]


# ----------------------------------------------------------------------------------------- 8. containers
def test_output_container_follows_the_suffix(tmp_path, real):
    source = tmp_path / "in.mp4"
    make_video(source, real[:4], audio=(("aac", 440, "eng"),))
    names = {"out.mkv": "matroska", "out.mov": "mov", "out.M4V": "mp4", "no_suffix": "mp4"}
    for name, format_name in names.items():
        with VideoWriter(tmp_path / name, fps=25, audio_from=source) as writer:
            writer.write(open_video(source).read())
        with av.open(str(tmp_path / name)) as container:
            assert format_name in container.format.name.split(","), name
            assert [s.codec_context.name for s in container.streams] == ["h264", "aac"], name
    for name in ("out.avi", "out.webm", "out.xyz"):
        with pytest.raises(InputError, match=r"unsupported video output suffix .*\.mp4, \.m4v, \.mov, \.mkv"):
            VideoWriter(tmp_path / name, fps=25)
        with pytest.raises(InputError, match="unsupported video output suffix"):
            video_io.output_format(name)  # the same check, for a CLI to run before loading a model
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


# ----------------------------------------------------------------------------------------- 9. special files
def _raises_promptly(function, *args) -> str:
    """Run ``function(*args)`` in a daemon thread; return the InputError message (fails if it blocks 10 s)."""
    result: dict = {}

    def target() -> None:
        try:
            function(*args)
        except InputError as err:
            result["message"] = str(err)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"{function.__name__}{args} blocked"
    return result.get("message", "")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX named pipes")
def test_fifo_device_and_socket_inputs_are_refused(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    specials = [fifo, Path(os.devnull)]
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "sock.mp4"))
        specials.append(tmp_path / "sock.mp4")
    except OSError:  # path too long for a unix socket
        pass
    for special in specials:
        for function in (open_video, list_clips):
            assert "is not a regular file" in _raises_promptly(function, special), (function, special)
    with pytest.raises(InputError, match="not a regular file"):
        VideoWriter(fifo, fps=25)
    server.close()
    # a FIFO inside a frame folder or a folder of clips is skipped, never opened
    (tmp_path / "clip").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "clip" / "0.png")
    os.mkfifo(tmp_path / "clip" / "1.png")
    assert open_video(tmp_path / "clip").num_frames == 1


# ----------------------------------------------------------------------------------------- 10. bad outputs
def test_outputs_linking_to_the_input_or_inside_a_file_are_refused(tmp_path, real):
    source = tmp_path / "in.mp4"
    make_video(source, real[:2])
    (tmp_path / "link.mp4").symlink_to(source)
    os.link(source, tmp_path / "hard.mp4")
    for out in ("link.mp4", "hard.mp4"):
        with pytest.raises(InputError, match="overwrite the input"):
            VideoWriter(tmp_path / out, fps=25, input_path=source)
    (tmp_path / "notes.txt").write_text("a file")
    for out in (tmp_path / "notes.txt" / "out.mp4", tmp_path / "notes.txt" / "deeper" / "out.mp4"):
        with pytest.raises(InputError, match=r"notes.txt is a file, not a folder"):
            VideoWriter(out, fps=25)
        with pytest.raises(InputError, match=r"notes.txt is a file, not a folder"):
            VideoWriter(out.parent / "frames", fps=25, as_frames=True)
    with pytest.raises(InputError, match="overwrite the input"):
        upscale_video(Nearest2x(), source, tmp_path / "link.mp4", scale=2, progress=False)
    assert source.read_bytes() == (tmp_path / "hard.mp4").read_bytes()
