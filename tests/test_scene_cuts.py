"""Scene cuts (zoo.scenes): the detector finds the join of two real shots and nothing inside them, the planner never
crosses a cut, and `upscale_video` / `vsrzoo upscale` keep a recurrent network from carrying one shot into the next.

The two shots are two far-apart regions of the embedded real clip (zoo/assets/sample/demo_000, a night street filmed
from a moving tram): shot A the bottom-left street (frames 0-15), shot B the top middle (tram roof, lit buildings;
frames 12-19), each area-resized to 32 x 32. ContentDetector's scores (mean HSV change, 0-255) on this clip: at most
about 14 inside A and 17 inside B, about 61 at the join; the threshold is 27.
"""
from __future__ import annotations

import av
import cv2
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.cli import main
from zoo.data.video_io import VideoWriter, open_video
from zoo.diffusion.tiles import plan_windows, window_weights
from zoo.errors import ConfigError
from zoo.inference import upscale_tensor, upscale_video
from zoo.scenes import describe, detect_cuts, plan_chunks, split_shots
from zoo.testing import assert_usage_error, sample_clip_dir, shared_data_dir

CUT = 16  # shot A is 16 frames: PySceneDetect's default shortest shot is 15 frames


def _region(clip: torch.Tensor, y: int, x: int, side: int) -> torch.Tensor:
    return F.interpolate(clip[:, :, y:y + side, x:x + side], size=(32, 32), mode="area")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> dict:
    """Shot A, shot B and A + B as (t, 3, 32, 32) tensors (uint8 levels) and PNG folders; A + B also as an mp4."""
    clip = open_video(sample_clip_dir()).read()
    a = _region(clip[:CUT], 120, 0, 240)
    b = _region(clip[12:20], 0, 200, 180)
    root = tmp_path_factory.mktemp("shots")
    out = {}
    for name, frames in {"a": a, "b": b, "joined": torch.cat([a, b])}.items():
        frames = frames.mul(255).round().div(255)  # exactly what the PNGs hold
        with VideoWriter(root / name, fps=25, as_frames=True) as writer:
            writer.write(frames)
        out[name], out[f"{name}_dir"] = frames, root / name
    mp4 = root / "joined.mp4"
    with av.open(str(mp4), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for frame in out["joined"]:
            array = frame.mul(255).round().byte().permute(1, 2, 0).contiguous().numpy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    out["mp4"] = mp4
    return out


# ------------------------------------------------------------------------------------------------------ detector
def test_detect_cuts_finds_the_join_and_nothing_inside_the_shots(shots):
    assert detect_cuts(shots["joined_dir"]) == [CUT]  # frame folder, streamed
    assert detect_cuts(shots["mp4"]) == [CUT]  # video file (H.264-compressed)
    assert detect_cuts(shots["joined"]) == [CUT]  # tensor
    # one real shot alone (its moving tram and camera), and every cut PySceneDetect would merge kept: none
    assert detect_cuts(shots["a_dir"], min_scene_len=1) == [] and detect_cuts(shots["b_dir"], min_scene_len=1) == []
    assert detect_cuts(shots["joined"], threshold=80) == []  # the join scores about 61
    assert detect_cuts(shots["joined"], min_scene_len=CUT + 4) == []  # a shot shorter than that is not a shot
    assert detect_cuts(shots["joined"], num_frames=CUT) == []  # only the first shot looked at
    with pytest.raises(ConfigError, match="scene_threshold"):
        detect_cuts(shots["joined"], threshold=0)


def test_detect_cuts_on_full_size_real_videos():
    """640 x 360 frames (the detector works on a 256-pixel-wide copy): the embedded clip is one shot; with the shared
    data, three real videos one after the other (a leopard, the street clip, an old film) are three shots."""
    assert detect_cuts(sample_clip_dir(), min_scene_len=1) == []
    data = shared_data_dir()
    if data is None or not (data / "uav_old_video_1" / "old_video_1.mp4").is_file():
        pytest.skip("../shared/data is absent")
    leopard = open_video(data / "uav_old_video_1" / "old_video_1.mp4")  # 28 frames, 640 x 360
    street = open_video(sample_clip_dir())  # 20 frames
    film = open_video(data / "uav_old_movie_1" / "old_movie_1.mp4")  # 27 frames, 480 x 352

    def frames():
        yield from leopard.iter_frames()
        yield from street.iter_frames()
        for frame in film.iter_frames():
            yield cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA)

    assert detect_cuts(frames()) == [28, 48]


# ------------------------------------------------------------------------------------------------------- planner
@pytest.mark.parametrize("num_frames, cuts, chunk_frames, overlap", [
    (24, [16], 6, 2), (24, [16], None, 0), (40, [3, 4, 17, 30], 7, 3), (40, [1, 39], 8, 4), (10, [], 4, 1),
    (50, [10, 20, 21, 35], 5, 0),
])
def test_plan_chunks_never_crosses_a_cut(num_frames, cuts, chunk_frames, overlap):
    plan = plan_chunks(num_frames, cuts, chunk_frames, overlap)
    shots = split_shots(num_frames, cuts)
    assert [s for s, _ in shots][1:] == sorted(set(cuts))
    # every chunk inside one shot, and each shot's chunks are exactly its own plan_windows, shifted
    for start, end in shots:
        mine = [(s - start, e - start) for s, e in plan if start <= s < end]
        assert all(s + start >= start and e + start <= end for s, e in mine)
        assert mine == plan_windows(end - start, chunk_frames, overlap)
    assert not any(s < cut < e for s, e in plan for cut in cuts)
    # the blend weights _TemporalBlender takes from the whole plan: every frame gets total weight 1, and each chunk
    # the weights it has in its shot alone (full weight on the cut side)
    total = torch.zeros(num_frames)
    for index, (s, e) in enumerate(plan):
        weights = window_weights(plan, index)
        total[s:e] += weights
        shot_start, shot_end = next(shot for shot in shots if shot[0] <= s < shot[1])
        shot_plan = plan_windows(shot_end - shot_start, chunk_frames, overlap)
        alone = window_weights(shot_plan, shot_plan.index((s - shot_start, e - shot_start)))
        assert torch.equal(weights, alone)
    assert torch.allclose(total, torch.ones(num_frames), atol=1e-6)
    assert plan_chunks(num_frames, [], chunk_frames, overlap) == plan_windows(num_frames, chunk_frames, overlap)


def test_planner_refuses_bad_cuts():
    assert split_shots(10, [0, 5, 5, 10, 12]) == [(0, 5), (5, 10)]  # 0 and past-the-end cuts are not cuts
    with pytest.raises(ConfigError, match="frame indices"):
        plan_chunks(10, [-1], 4, 1)
    with pytest.raises(ConfigError, match="overlap"):
        plan_chunks(10, [5], 4, 4)


def test_upscale_tensor_with_cuts():
    """A temporal stand-in (each frame plus the mean of its chunk): with cuts, what follows a cut is the second shot
    upscaled alone, exactly."""
    def add_chunk_mean(lq):
        return lq + lq.mean(dim=1, keepdim=True)

    clip = torch.rand(1, 20, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    cut = upscale_tensor(add_chunk_mean, clip, scale=1, chunk_frames=6, overlap=2, cuts=[9])
    assert torch.equal(cut[:, 9:], upscale_tensor(add_chunk_mean, clip[:, 9:], scale=1, chunk_frames=6, overlap=2))
    assert torch.equal(cut[:, :9], upscale_tensor(add_chunk_mean, clip[:, :9], scale=1, chunk_frames=6, overlap=2))
    plain = upscale_tensor(add_chunk_mean, clip, scale=1, chunk_frames=6, overlap=2)
    assert not torch.allclose(plain[:, 9:], cut[:, 9:], atol=1e-3)


# ------------------------------------------------------------------------------------------- upscale_video, CLI
class BidirectionalRecurrence(nn.Module):
    """A stand-in for a bidirectional recurrent VSR network (RealBasicVSR's propagation, minus its cost): a forward
    and a backward recurrence ``h_t = (h_{t -/+ 1} + x_t) / 2`` over the chunk, output ``(forward_t + backward_t) / 2``
    nearest-upsampled x4. Every output frame depends on every input frame of its chunk."""

    scale = 4

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        def run(frames):
            state, out = frames[0], []
            for frame in frames:
                state = (state + frame) / 2
                out.append(state)
            return out

        frames = list(lq.unbind(1))
        mixed = [(f + b) / 2 for f, b in zip(run(frames), run(frames[::-1])[::-1])]
        out = F.interpolate(torch.stack(mixed, 1).flatten(0, 1), scale_factor=self.scale, mode="nearest")
        return out.unflatten(0, lq.shape[:2])


def test_recurrent_net_does_not_carry_one_shot_into_the_next(shots, tmp_path):
    """With scene splitting, the frames after the cut are bit for bit shot B upscaled on its own (in chunks with
    cross-fades, and as one chunk per shot); without it, the recurrence carries shot A into them."""
    net = BidirectionalRecurrence()

    def run(name, source, **options):
        summary = upscale_video(net, shots[source], tmp_path / name, as_frames=True, progress=False, **options)
        return summary, open_video(tmp_path / name).read()

    summary, split = run("split", "joined_dir", chunk_frames=6, overlap=2)  # A: 4 chunks, B: 2, cross-faded
    assert summary["scenes"]["cuts"] == [CUT] and summary["scenes"]["shots"] == 2
    assert "2 shots, cuts at frames 16" in describe(summary["scenes"])
    assert split.shape == (24, 3, 128, 128)
    assert torch.equal(split[CUT:], run("b", "b_dir", chunk_frames=6, overlap=2)[1])
    assert torch.equal(split[:CUT], run("a", "a_dir", chunk_frames=6, overlap=2)[1])
    # one chunk per shot, and the control: the same whole-clip run without splitting differs after the cut only by
    # what the recurrence brought over from shot A
    _, whole_split = run("whole_split", "joined_dir", chunk_frames=None)
    _, whole_b = run("whole_b", "b_dir", chunk_frames=None)
    summary, whole_plain = run("whole_plain", "joined_dir", chunk_frames=None, scene_split=False)
    assert summary["scenes"]["split"] is False and summary["scenes"]["cuts"] == []
    assert torch.equal(whole_split[CUT:], whole_b)
    assert (whole_plain[CUT:] - whole_b).abs().amax() > 3 / 255


def test_cli_scene_flags(shots, tmp_path, capsys):
    """The flags reach upscale_video and the cuts are reported; a per-frame network (Real-ESRGAN, tiny, random)
    gives the same frames either way (chunks of a per-frame network blend bit-exactly)."""
    base = ["upscale", str(shots["joined_dir"]), "--model", "realesrgan", "--random-weights", "--variant", "tiny",
            "--frames", "--chunk-frames", "6", "--overlap", "2", "--device", "cpu", "--no-progress"]
    torch.manual_seed(0)
    assert main([*base, "-o", str(tmp_path / "split")]) == 0
    assert "scene cuts: 2 shots, cuts at frames 16 (an extra decoding pass of" in capsys.readouterr().out
    torch.manual_seed(0)  # the same random network
    assert main([*base, "-o", str(tmp_path / "plain"), "--no-scene-split"]) == 0
    assert "scene cuts: not looked for" in capsys.readouterr().out
    assert torch.equal(open_video(tmp_path / "split").read(), open_video(tmp_path / "plain").read())
    assert main([*base, "-o", str(tmp_path / "none"), "--scene-threshold", "100", "--max-frames", "20"]) == 0
    assert "scene cuts: 1 shot, no cut found" in capsys.readouterr().out
    code = main([*base, "-o", str(tmp_path / "bad"), "--scene-threshold", "0"])
    assert_usage_error(code, capsys.readouterr().err, "scene_threshold must be a positive number")
