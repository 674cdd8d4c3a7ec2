"""The pipelined streaming path of `upscale_video` (decode thread, network, encode thread): the same frames as the
sequential path, errors of either thread surfacing unchanged with nothing left behind and both threads ended, an
interruption keeping the finished chunks, bounded queues, and the time split.

Inputs are made at test time from the embedded real clip (zoo/assets/sample/demo_000): two far-apart regions of it
area-resized to 32 x 32 and joined, so that the video has one hard scene cut (as in tests/test_scene_cuts.py), and a
200-frame clip of 32 x 32 crops for the queue bounds. The networks are tiny deterministic stand-ins.
"""
from __future__ import annotations

import errno
import json
import os
import queue
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tiny import one_torch_thread  # noqa: F401 - a fixture
from torch import nn

import zoo.inference
from zoo.cli import main
from zoo.data.video_io import VideoSource, VideoWriter, open_video, to_uint8_frame, to_uint8_frames
from zoo.errors import InputError
from zoo.inference import queue_sizes, upscale_video, work_folder
from zoo.scenes import plan_chunks
from zoo.testing import sample_clip_dir

CUT = 16  # the joined clip: shot A frames 0-15, shot B frames 16-23
CHUNKS = {"chunk_frames": 6, "overlap": 2}  # with the cut: [0, 6) [3, 9) [6, 12) [10, 16) | [16, 21) [19, 24)


class ChunkMean(nn.Module):
    """A temporal stand-in: each frame plus the mean of its chunk, halved, nearest-upsampled x2 (chunks disagree, so
    cross-fades and chunk borders show in the output)."""

    scale = 2

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(lq.shape))
        mixed = (lq + lq.mean(dim=1, keepdim=True)) / 2
        out = F.interpolate(mixed.flatten(0, 1), scale_factor=self.scale, mode="nearest")
        return out.unflatten(0, lq.shape[:2])


def _region(clip: torch.Tensor, y: int, x: int, side: int) -> torch.Tensor:
    return F.interpolate(clip[:, :, y:y + side, x:x + side], size=(32, 32), mode="area")


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test of this file on one torch thread (the bit-exact comparisons)."""


@pytest.fixture(scope="module")
def joined(tmp_path_factory) -> dict:
    """Two real shots joined at frame 16, 32 x 32: as a PNG folder and as an H.264 mp4."""
    clip = open_video(sample_clip_dir()).read()
    frames = torch.cat([_region(clip[:CUT], 120, 0, 240), _region(clip[12:20], 0, 200, 180)])
    root = tmp_path_factory.mktemp("joined")
    with VideoWriter(root / "frames", fps=25, as_frames=True) as writer:
        writer.write(frames)
    with VideoWriter(root / "joined.mp4", fps=25) as writer:
        writer.write(frames)
    return {"frames": root / "frames", "mp4": root / "joined.mp4"}


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> tuple:
    """200 frames of 32 x 32 real crops (the 20 sample frames over again, shifted each round)."""
    folder = tmp_path_factory.mktemp("long") / "clip"
    source = open_video(sample_clip_dir()).read()
    frames = torch.stack([source[i % 20, :, 100 + i // 20:132 + i // 20, 200:232] for i in range(200)])
    with VideoWriter(folder, fps=25, as_frames=True) as writer:
        writer.write(frames)
    return folder


def _frames(path) -> list[np.ndarray]:  # noqa: ANN001
    return list(open_video(path).iter_frames())


def _threads() -> set[threading.Thread]:
    """Live Python threads, without tqdm's monitor (tqdm starts it with its first bar, even a disabled one)."""
    return {t for t in threading.enumerate() if t.name != "tqdm_monitor"}


# --------------------------------------------------------------------------------------------- same frames
@pytest.mark.parametrize("source, as_frames, tile", [("frames", True, None), ("mp4", True, 16),
                                                     ("frames", False, None)])
def test_pipelined_frames_equal_the_sequential_path(joined, tmp_path, monkeypatch, source, as_frames, tile):
    """Bit for bit, with chunk overlaps cross-faded, a scene cut, tiles, a video or PNG input. For mp4 output the
    frames handed to the writer are compared: x264's bitstream itself varies with the timing between the frames
    it is given, even between two sequential runs (seen with libx264 through PyAV 18.1 on this 2-core machine)."""
    original, given = VideoWriter.write, {}

    def write(self, frame):  # noqa: ANN001, ANN202
        given.setdefault(self.path.name, []).append(np.array(frame))
        return original(self, frame)

    monkeypatch.setattr(VideoWriter, "write", write)
    outputs = {}
    for pipelined in (True, False):
        net = ChunkMean()
        out = tmp_path / (f"{pipelined}" + ("" if as_frames else ".mp4"))
        summary = upscale_video(net, joined[source], out, scale=2, **CHUNKS, tile=tile, tile_overlap=4,
                                as_frames=as_frames, progress=False, pipelined=pipelined)
        assert summary["pipelined"] is pipelined and summary["scenes"]["cuts"] == [CUT]
        assert summary["chunks"] == len(plan_chunks(24, [CUT], **CHUNKS)) == 6
        assert open_video(out).num_frames == 24
        outputs[pipelined] = _frames(out) if as_frames else given[out.name]
    assert len(outputs[True]) == len(outputs[False]) == 24
    assert all(np.array_equal(a, b) for a, b in zip(outputs[True], outputs[False], strict=True))
    # the outputs are not trivially equal: consecutive chunks (and the two shots) really differ
    assert any(not np.array_equal(a, b) for a, b in zip(outputs[True][:-1], outputs[True][1:]))


def test_cli_no_pipeline_flag_gives_the_same_frames(joined, tmp_path, capsys):
    base = ["upscale", str(joined["frames"]), "--model", "realesrgan", "--random-weights", "--variant", "tiny",
            "--frames", "--chunk-frames", "6", "--overlap", "2", "--device", "cpu", "--no-progress"]
    torch.manual_seed(0)
    assert main([*base, "-o", str(tmp_path / "piped")]) == 0
    assert "overlapped)" in capsys.readouterr().out
    torch.manual_seed(0)  # the same random network
    assert main([*base, "-o", str(tmp_path / "plain"), "--no-pipeline"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"wrote {tmp_path / 'plain'}: 24 frames, 128x128") and "one after another)" in line
    assert all(np.array_equal(a, b) for a, b in zip(_frames(tmp_path / "piped"), _frames(tmp_path / "plain"),
                                                    strict=True))


def test_to_uint8_frames_is_the_writers_rounding():
    """One conversion for the writer and the device path: round(255 clamp(v, 0, 1)) in float32 (halves to even, as
    NumPy's round), channels last; to_uint8_frame is the same per frame."""
    frames = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2
    frames[0, 0, 0, :4] = torch.tensor([0.5, 1.5, 2.5, 3.5]) / 255  # about half-way between two levels
    got = to_uint8_frames(frames)
    assert got.dtype == torch.uint8 and got.shape == (2, 5, 7, 3)
    levels = np.round(np.clip(frames.numpy(), 0, 1) * np.float32(255)).astype(np.uint8)
    assert np.array_equal(got.numpy(), levels.transpose(0, 2, 3, 1))
    assert got.min() == 0 and got.max() == 255  # clamped
    for i in range(2):
        assert np.array_equal(to_uint8_frame(frames[i]), got[i].numpy())


# ------------------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("pipelined", [True, False])
def test_decoder_error_mid_video_surfaces_unchanged(joined, tmp_path, monkeypatch, pipelined):
    original, raised, closed_by = VideoSource.iter_frames, [], []

    def failing(self, start=0, stop=None):  # noqa: ANN001, ANN202
        try:
            for count, frame in enumerate(original(self, start, stop)):
                if count == 9:
                    raised.append(InputError(f"frame {count} of {self.path} is unreadable"))
                    raise raised[0]
                yield frame
        finally:
            closed_by.append(threading.current_thread().name)

    monkeypatch.setattr(VideoSource, "iter_frames", failing)
    before = _threads()
    with pytest.raises(InputError) as info:
        upscale_video(ChunkMean(), joined["frames"], tmp_path / "out.mp4", scale=2, **CHUNKS, scene_split=False,
                      progress=False, pipelined=pipelined)
    assert info.value is raised[0]
    assert closed_by == ["vsrzoo-decode" if pipelined else "MainThread"]
    assert _threads() == before
    assert list(tmp_path.iterdir()) == []  # no output, no partial output


def _full_disk_at(monkeypatch, at: int) -> list[InputError]:
    """VideoWriter.write fails as on a full disk (InputError from OSError ENOSPC) at its call number ``at``."""
    original, calls, raised = VideoWriter.write, [0], []

    def write(self, frame):  # noqa: ANN001, ANN202
        if calls[0] == at:
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as err:
                raised.append(InputError(f"writing {self.path} failed: {err}"))
                raise raised[0] from err
        calls[0] += 1
        return original(self, frame)

    monkeypatch.setattr(VideoWriter, "write", write)
    return raised


@pytest.mark.parametrize("pipelined", [True, False])
def test_encoder_error_surfaces_unchanged_and_the_work_folder_names_only_written_frames(
        joined, tmp_path, monkeypatch, pipelined):
    """A full disk on output frame 8: that exception, no output, threads ended, the work folder (an OS error keeps
    it) names chunks 0 and 1 (final frames 0-6, on disk), and a resumed run equals an uninterrupted one."""
    plan = plan_chunks(24, [], **CHUNKS)
    assert plan[:3] == [(0, 6), (3, 9), (7, 13)]  # frames 0-2 final after chunk 0, 3-6 after chunk 1, 7-9 after 2
    out = tmp_path / "out"
    options = dict(scale=2, **CHUNKS, scene_split=False, progress=False, checkpoint=True, as_frames=True)
    raised = _full_disk_at(monkeypatch, 8)
    abort, aborted_while_encoding = VideoWriter.abort, []

    def checked_abort(self):  # noqa: ANN001, ANN202
        aborted_while_encoding.append(any(t.name == "vsrzoo-encode" and t is not threading.current_thread()
                                          for t in threading.enumerate()))
        return abort(self)

    monkeypatch.setattr(VideoWriter, "abort", checked_abort)
    before = _threads()
    with pytest.raises(InputError) as info:
        upscale_video(ChunkMean(), joined["frames"], out, pipelined=pipelined, **options)
    assert info.value is raised[0] and isinstance(info.value.__cause__, OSError)
    assert _threads() == before and aborted_while_encoding and not any(aborted_while_encoding)
    folder = work_folder(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # only the work folder, no (partial) output
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["done"] == 2 and manifest["final_frames"] == 7
    assert all((folder / "frames" / f"{i:08d}.png").is_file() for i in range(manifest["final_frames"]))
    monkeypatch.undo()
    resumed = upscale_video(ChunkMean(), joined["frames"], out, pipelined=pipelined, resume=True, **options)
    assert resumed["resumed_chunks"] == 2
    upscale_video(ChunkMean(), joined["frames"], tmp_path / "whole", **options)
    assert all(np.array_equal(a, b) for a, b in zip(_frames(out), _frames(tmp_path / "whole"), strict=True))


class InterruptedAt(ChunkMean):
    """:class:`ChunkMean` raising KeyboardInterrupt (Ctrl-C) on its call number ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        if len(self.calls) == self.at:
            raise KeyboardInterrupt
        return super().forward(lq)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_ctrl_c_in_the_network_ends_both_threads_and_keeps_finished_chunks(joined, tmp_path, checkpoint):
    before = _threads()
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        upscale_video(InterruptedAt(2), joined["frames"], out, scale=2, **CHUNKS, as_frames=True, progress=False,
                      checkpoint=checkpoint)
    assert _threads() == before
    kept = [work_folder(out).name] if checkpoint else []
    assert sorted(p.name for p in tmp_path.iterdir()) == kept  # no output, no partial output
    if checkpoint:  # the chunks finished before the interruption are committed, as in the sequential path
        manifest = json.loads((work_folder(out) / "manifest.json").read_text())
        assert manifest["done"] == 2
        assert all((work_folder(out) / "frames" / f"{i:08d}.png").is_file() for i in range(manifest["final_frames"]))


# ------------------------------------------------------------------------------------------------ memory
def test_queues_stay_within_their_bounds_on_a_long_input(long_clip, tmp_path, monkeypatch):
    """200 frames in chunks of 8: each queue is created with the bound of `queue_sizes` and never holds more, and
    the decoder never runs more than its queue (plus the frame in hand) ahead of the network."""
    created: list[Recording] = []

    class Recording(queue.Queue):
        def __init__(self, maxsize: int = 0) -> None:
            super().__init__(maxsize)
            self.most = 0
            created.append(self)

        def _put(self, item: object) -> None:
            super()._put(item)
            self.most = max(self.most, self._qsize())

    monkeypatch.setattr(zoo.inference.queue, "Queue", Recording)
    original, decoded, ahead = VideoSource.iter_frames, [0], []

    def counted(self, start=0, stop=None):  # noqa: ANN001, ANN202
        for frame in original(self, start, stop):
            decoded[0] += 1
            yield frame

    class Net(ChunkMean):
        def forward(self, lq: torch.Tensor) -> torch.Tensor:
            consumed = plan[len(self.calls)][1]  # the main thread has taken the frames up to this chunk's end
            ahead.append(decoded[0] - consumed)
            threading.Event().wait(0.005)  # a slow network: the decoder runs ahead to its bound
            return super().forward(lq)

    monkeypatch.setattr(VideoSource, "iter_frames", counted)
    plan = plan_chunks(200, [], 8, 2)
    decode_max, encode_max = queue_sizes(plan)
    assert (decode_max, encode_max) == (8, 9)
    summary = upscale_video(Net(), long_clip, tmp_path / "out", scale=2, chunk_frames=8, overlap=2, as_frames=True,
                            scene_split=False, progress=False)
    assert summary["frames"] == 200 and summary["chunks"] == len(plan) > 30
    decode_queue, encode_queue = created
    assert (decode_queue.maxsize, encode_queue.maxsize) == (decode_max, encode_max)
    assert 0 < decode_queue.most <= decode_max and 0 < encode_queue.most <= encode_max
    assert max(ahead) <= decode_max + 1, ahead


# ------------------------------------------------------------------------------------------------ timing
@pytest.mark.parametrize("pipelined", [True, False])
def test_time_split(joined, tmp_path, pipelined):
    summary = upscale_video(ChunkMean(), joined["mp4"], tmp_path / "out.mp4", scale=2, **CHUNKS, progress=False,
                            pipelined=pipelined)
    timing = summary["timing"]
    assert set(timing) == {"decode_s", "encode_s", "compute_s", "wait_decode_s", "wait_encode_s", "scene_s",
                           "wall_s"}
    assert all(isinstance(v, float) and v >= 0 for v in timing.values()), timing
    assert timing["wall_s"] == summary["seconds"] and timing["compute_s"] > 0 and timing["encode_s"] > 0
    assert timing["decode_s"] > 0 and timing["scene_s"] > 0
    main_thread = timing["compute_s"] + timing["wait_decode_s"] + timing["wait_encode_s"] + timing["scene_s"]
    if not pipelined:
        assert timing["wait_decode_s"] == timing["wait_encode_s"] == 0
        main_thread += timing["decode_s"] + timing["encode_s"]
    assert main_thread <= timing["wall_s"] + 1e-3, timing
    assert max(timing["decode_s"], timing["encode_s"]) <= timing["wall_s"] + 1e-3, timing
    assert open_video(tmp_path / "out.mp4").num_frames == 24
