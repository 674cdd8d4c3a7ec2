"""`vsrzoo upscale --model upscale_a_video` on a small real mp4 through the full sampling path, and its flag checks.

The weights are the tiny synthetic released-format folder of ``tests/test_hub.py`` (random weights, x4 VAE, CLIP text
encoder, RAFT): the run exercises loading, streaming chunks, temporal windows, classifier-free guidance, latent
propagation with RAFT, VAE decoding and the wavelet colour fix; the pictures are meaningless.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from test_hub import write_tiny_released_folder
from zoo.cli import main
from zoo.data.video_io import open_video
from zoo.testing import assert_upscale_run, assert_usage_error, sample_clip_dir, \
    write_small_real_mp4

torch.set_num_threads(1)

#: LQ side of the test clip: RAFT (latent propagation) needs frames of at least 128 px.
SIDE = 128
NUM_FRAMES = 6


@pytest.fixture(scope="module")
def small_real_mp4(tmp_path_factory) -> Path:
    """The first 6 frames of the real old_video_1.mp4 (25 fps, AAC audio copied), centre crop at 128x128.

    Falls back to the embedded real sample frames (no audio) when ../shared/data is absent.
    """
    return write_small_real_mp4(tmp_path_factory.mktemp("video") / "old_video_small.mp4", height=SIDE, width=SIDE,
                                num_frames=NUM_FRAMES, square=True)


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    return write_tiny_released_folder(tmp_path_factory.mktemp("uav") / "upscale_a_video")


def test_upscale_real_mp4_full_sampling_path(small_real_mp4, released, tmp_path, capsys):
    """Streams two chunks of 4 frames (2 shared); per chunk: RAFT flows, 2 DDIM steps with guidance and one
    propagation, VAE decoding 2 frames at a time, wavelet colour fix; audio and fps kept."""
    src = open_video(small_real_mp4)
    assert src.num_frames == NUM_FRAMES and (src.width, src.height) == (SIDE, SIDE)
    out = tmp_path / "sr.mp4"
    code = main(["upscale", str(small_real_mp4), "-o", str(out), "--model", "upscale_a_video", "--weights",
                 str(released), "--steps", "2", "--propagation-steps", "1", "--color-fix", "wavelet",
                 "--guidance-scale", "6", "--noise-level", "60", "--prompt", "a b", "--negative-prompt", "b",
                 "--seed", "3", "--chunk-frames", "4", "--overlap", "2", "--option", "vae_chunk=2", "--tile", "0",
                 "--device", "cpu", "--no-progress"])
    frames = assert_upscale_run(code, capsys.readouterr(), small_real_mp4, out)
    assert frames.shape[0] == NUM_FRAMES


def _frames_folder(root: Path, n: int = 2, size: int = 16) -> Path:
    from PIL import Image

    root.mkdir()
    for i, img in enumerate(open_video(sample_clip_dir()).iter_frames(stop=n)):
        Image.fromarray(img[:size, :size]).save(root / f"{i:08d}.png")
    return root


def test_random_weights_run_with_a_loud_warning(tmp_path):
    clip = _frames_folder(tmp_path / "clip")
    out = tmp_path / "sr"
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        code = main(["upscale", str(clip), "-o", str(out), "--frames", "--model", "upscale_a_video",
                     "--random-weights", "--variant", "tiny", "--steps", "1", "--device", "cpu", "--no-progress"])
    assert code == 0
    assert len(list(out.glob("*.png"))) == 2 and open_video(out).width == 64


@pytest.mark.parametrize("case", ["flags_for_regression", "variant_without_random", "unknown_variant", "no_weights",
                                  "weights_and_random", "bad_steps", "propagation_too_small", "flag_and_option"])
def test_diffusion_flag_errors(case, released, tmp_path, capsys):
    clip = _frames_folder(tmp_path / "clip")
    base = ["upscale", str(clip), "-o", str(tmp_path / "out"), "--frames", "--device", "cpu", "--no-progress"]
    uav = ["--model", "upscale_a_video"]
    argv, expect = {
        "flags_for_regression": (["--weights", str(tmp_path / "w.pth"), "--steps", "3", "--seed", "1"],
                                 "--seed, --steps: not a sampling option of --model realbasicvsr"),
        "variant_without_random": (uav + ["--weights", str(released), "--variant", "tiny"], "with --random-weights"),
        "unknown_variant": (uav + ["--random-weights", "--variant", "huge"], "no variant 'huge'"),
        "no_weights": (uav, "--random-weights"),
        "weights_and_random": (uav + ["--weights", str(released), "--random-weights"], "not both"),
        "bad_steps": (uav + ["--weights", str(released), "--steps", "4", "--propagation-steps", "1,x"],
                      "propagation_steps must be integers"),
        "propagation_too_small": (uav + ["--weights", str(released), "--steps", "4", "--propagation-steps", "3"],
                                  "at least 128x128"),
        "flag_and_option": (uav + ["--weights", str(released), "--seed", "1", "--option", "seed=2"], "both"),
    }[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(base + argv)
    err = capsys.readouterr().err
    assert_usage_error(code, err, expect)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
