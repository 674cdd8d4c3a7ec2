"""`vsrzoo upscale` on real video and the command line's handling of bad input (one clear line, exit 2)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo.cli import main
from zoo.data.video_io import open_video
from zoo.hub import family
from zoo.models.realbasicvsr.convert import to_official_state_dict
from zoo.models.realbasicvsr.net import RealBasicVSRNet
from zoo.testing import assert_upscaled_copy, sample_clip_dir, shared_data_dir, write_small_real_mp4

TINY_NET = family("realbasicvsr").variant("tiny")["net"]


@pytest.fixture(scope="module")
def tiny_official_weights(tmp_path_factory) -> Path:
    """A tiny RealBasicVSR in the released mmediting checkpoint layout (random weights)."""
    torch.manual_seed(0)
    net = RealBasicVSRNet(**TINY_NET)
    state = to_official_state_dict(net.state_dict())
    ckpt = {
        "meta": {"mmedit_version": "0.x"},
        "state_dict": {**{f"generator.{k}": v for k, v in state.items()},
                       **{f"generator_ema.{k}": v for k, v in state.items()},
                       "step_counter": torch.tensor(0)},
    }
    path = tmp_path_factory.mktemp("weights") / "tiny_realbasicvsr.pth"
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def small_real_mp4(tmp_path_factory) -> Path:
    """The real old_video_1.mp4 (28 frames, 25 fps, AAC) downscaled to 160x90 with its audio stream copied.

    Falls back to an mp4 encoded from the embedded real sample frames (no audio) when ../shared/data is absent.
    """
    return write_small_real_mp4(tmp_path_factory.mktemp("video") / "small_real.mp4", height=90, width=160)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, timeout=600)


def test_upscale_real_mp4_keeps_frames_fps_audio(tiny_official_weights, small_real_mp4, tmp_path) -> None:
    src = open_video(small_real_mp4)
    out = tmp_path / "sr.mp4"
    result = _run_cli("upscale", str(small_real_mp4), "-o", str(out), "--model", "realbasicvsr",
                      "--weights", str(tiny_official_weights), "--chunk-frames", "10", "--overlap", "2",
                      "--device", "cpu", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert out.is_file() and not list(tmp_path.glob("*.tmp*"))
    assert_upscaled_copy(small_real_mp4, out, scale=4)
    if shared_data_dir() is not None:
        assert src.num_frames == 28 and src.has_audio and abs(src.fps - 25) < 1e-6


def test_contract_check_catches_a_wrong_output(small_real_mp4) -> None:
    """The I/O contract check used above fails on an output that is not an x4 copy (here: the input itself)."""
    with pytest.raises(AssertionError, match="not x4"):
        assert_upscaled_copy(small_real_mp4, small_real_mp4, scale=4)
    assert_upscaled_copy(small_real_mp4, small_real_mp4, scale=1)


def test_upscale_frames_output_and_python_module_entry(tiny_official_weights, tmp_path) -> None:
    """Frame folder in, PNG frames out (--frames), through `python -m zoo`; the input is untouched."""
    clip = tmp_path / "clip"
    clip.mkdir()
    for i, img in enumerate(open_video(sample_clip_dir()).iter_frames(stop=3)):
        from PIL import Image

        Image.fromarray(img[:48, :64]).save(clip / f"{i:08d}.png")
    before = sorted(p.read_bytes() for p in clip.iterdir())
    out = tmp_path / "sr_frames"
    result = _run_cli("upscale", str(clip), "-o", str(out), "--frames", "--weights", str(tiny_official_weights),
                      "--device", "cpu", "--no-progress", "--option", "dynamic_refine_thres=5")
    assert result.returncode == 0, result.stderr
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 3
    assert open_video(out).height == 4 * 48 and open_video(out).width == 4 * 64
    assert sorted(p.read_bytes() for p in clip.iterdir()) == before


@pytest.mark.parametrize(
    "case",
    ["missing_input", "unsupported_file", "corrupt_video", "weights_not_torch", "weights_wrong_kind",
     "weights_missing", "output_is_input", "bad_option"],
)
def test_bad_input_gives_one_clear_line(case, tiny_official_weights, small_real_mp4, tmp_path, capsys) -> None:
    weights = str(tiny_official_weights)
    src = str(small_real_mp4)
    out = str(tmp_path / "out.mp4")
    expect = {
        "missing_input": "not found",
        "unsupported_file": "unsupported",
        "corrupt_video": "",
        "weights_not_torch": "",
        "weights_wrong_kind": "",
        "weights_missing": "",
        "output_is_input": "input",
        "bad_option": "dynamic_refine",
    }[case]
    if case == "missing_input":
        src = str(tmp_path / "nope.mp4")
    elif case == "unsupported_file":
        src = str(tmp_path / "notes.txt")
        Path(src).write_text("not a video")
    elif case == "corrupt_video":
        data = Path(small_real_mp4).read_bytes()
        src = str(tmp_path / "truncated.mp4")
        Path(src).write_bytes(data[: len(data) // 20])
    elif case == "weights_not_torch":
        weights = str(tmp_path / "w.pth")
        Path(weights).write_text("hello")
    elif case == "weights_wrong_kind":
        weights = str(tmp_path / "other.pth")
        torch.save({"state_dict": {"encoder.conv.weight": torch.zeros(3, 3)}}, weights)
    elif case == "weights_missing":
        weights = str(tmp_path / "missing.pth")
    elif case == "output_is_input":
        out = src
    argv = ["upscale", src, "-o", out, "--weights", weights, "--device", "cpu", "--no-progress"]
    if case == "bad_option":
        argv += ["--option", "dynamic_refine=5"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert expect.lower() in err.lower()
    if case == "output_is_input":
        assert Path(src).read_bytes() == Path(small_real_mp4).read_bytes()


def test_unknown_command_and_help(capsys) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "upscale" in capsys.readouterr().out


def test_models_lists_the_family_table(capsys) -> None:
    from zoo.hub import FAMILIES

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for spec in FAMILIES.values():
        assert f"| {spec.name} | {spec.kind} |" in out and spec.paper in out


@pytest.mark.parametrize("family_name", ["realbasicvsr", "videogigagan", "upscale_a_video"])
def test_random_tiny_variant_of_every_family_runs_a_real_mp4(family_name, small_real_mp4, tmp_path) -> None:
    """`vsrzoo upscale --random-weights --variant tiny`: the whole path of any family (loading, streaming chunks,
    the family's own tiling, video writing) on real video, without weights."""
    out = tmp_path / "sr.mp4"
    extra = ["--steps", "1"] if family(family_name).kind == "diffusion" else []
    result = _run_cli("upscale", str(small_real_mp4), "-o", str(out), "--model", family_name, "--random-weights",
                      "--variant", "tiny", "--max-frames", "6", "--chunk-frames", "4", "--overlap", "1",
                      "--device", "cpu", "--no-progress", *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RANDOM" in result.stderr  # the loud warning
    written = open_video(out)
    assert written.num_frames == 6 and (written.width, written.height) == (640, 360)
