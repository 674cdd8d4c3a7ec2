"""`vsrzoo upscale --model dc_vsr` on a small real mp4 through the full tiled sampler, its switches and its errors.

The weights are a tiny folder in the released layout (``unet_ema/``) plus a tiny Stable Video Diffusion folder (VAE,
scheduler): the run exercises the released-layout loader, streaming chunks, bicubic conditioning with VAE encoding,
spatio-temporal UNet tiles with SAP, TAP and DSSAG-guided classifier-free guidance, Gaussian blending, the Euler
steps, temporal VAE decoding in tiles and H.264 writing with the source fps and audio; the pictures are meaningless.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from zoo.cli import main
from zoo.data.video_io import open_video
from zoo.hub import family
from zoo.testing import assert_upscale_run, assert_usage_error, write_small_real_mp4, write_svd_folder, \
    write_unet_ema_folder

torch.set_num_threads(1)
TINY = family("dc_vsr").variant("tiny")
SIDE, NUM_FRAMES = 32, 8
# tiles of 16 LQ px (8 latents) sharing 8 and 4 frames sharing 2: 3 x 3 spatial x 2 temporal tiles per 6-frame chunk
TILES = ["--tile", "16", "--tile-overlap", "8", "--option", "window=4", "--option", "window_overlap=2",
         "--option", "vae_tile=16", "--option", "vae_tile_overlap=4", "--option", "vae_chunk=4"]


@pytest.fixture(scope="module")
def small_real_mp4(tmp_path_factory) -> Path:
    """The first 8 frames of the real old_video_1.mp4 (25 fps, AAC audio copied), 32x32 centre crop (or the embedded
    sample's frames without audio when ../shared/data is absent)."""
    return write_small_real_mp4(tmp_path_factory.mktemp("video") / "old_video_small.mp4", height=SIDE, width=SIDE,
                                num_frames=NUM_FRAMES, square=True)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dc_vsr")
    write_unet_ema_folder(root / "release", unet=TINY["unet"], seed=1)
    return root / "release", write_svd_folder(root / "svd", unet=TINY["unet"], vae=TINY["vae"], with_unet=False)


def test_upscale_real_mp4_through_the_full_tiled_sampler(small_real_mp4, weights, tmp_path, capsys):
    release, svd = weights
    src = open_video(small_real_mp4)
    assert src.num_frames == NUM_FRAMES and (src.width, src.height) == (SIDE, SIDE)
    out = tmp_path / "sr.mp4"
    code = main(["upscale", str(small_real_mp4), "-o", str(out), "--model", "dc_vsr", "--weights", str(release),
                 "--option", f"svd={svd}", "--steps", "2", "--guidance-scale", "2", "--sap", "on", "--tap", "on",
                 "--dssag", "on", "--seed", "3", "--chunk-frames", "6", "--overlap", "4", *TILES, "--device", "cpu",
                 "--no-progress"])
    frames = assert_upscale_run(code, capsys.readouterr(), small_real_mp4, out)
    assert frames.shape[0] == NUM_FRAMES


def test_same_seed_same_video_and_each_switch_changes_it(small_real_mp4, weights, tmp_path):
    release, svd = weights
    base = ["upscale", str(small_real_mp4), "--model", "dc_vsr", "--weights", str(release), "--option", f"svd={svd}",
            "--steps", "2", "--frames", "--max-frames", "4", *TILES, "--device", "cpu", "--no-progress"]
    runs = {}
    for name, extra in (("a", []), ("b", []), ("no_sap", ["--sap", "off"]), ("no_tap", ["--tap", "off"]),
                        ("no_dssag", ["--dssag", "off"])):
        assert main(base + ["-o", str(tmp_path / name), *extra]) == 0
        runs[name] = open_video(tmp_path / name).read()
    assert torch.equal(runs["a"], runs["b"])
    for name in ("no_sap", "no_tap", "no_dssag"):
        assert not torch.equal(runs["a"], runs[name]), name


@pytest.mark.parametrize("case", ["bad_switch", "no_svd", "svd_missing_file", "sateco_flag", "unknown_option"])
def test_errors_are_one_line(case, weights, small_real_mp4, tmp_path, capsys):
    release, svd = weights
    argv, expect = {
        "bad_switch": (["--weights", str(release), "--option", f"svd={svd}", "--sap", "maybe"],
                       "a switch must be on/off"),
        "no_svd": (["--weights", str(release)], "pass the Stable Video Diffusion folder"),
        "svd_missing_file": (["--weights", str(release), "--option", f"svd={tmp_path}"],
                             "vae/config.json not found"),
        "sateco_flag": (["--weights", str(release), "--option", f"svd={svd}", "--strength", "0.5"],
                        "not a sampling option of --model dc_vsr"),
        "unknown_option": (["--weights", str(release), "--option", f"svd={svd}", "--option", "colour=1"],
                           "unknown DC-VSR loader option"),
    }[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["upscale", str(small_real_mp4), "-o", str(tmp_path / "out.mp4"), "--model", "dc_vsr",
                     "--device", "cpu", "--no-progress", *argv])
    err = capsys.readouterr().err
    assert_usage_error(code, err, expect)
    assert not (tmp_path / "out.mp4").exists()


def test_random_weights_run_with_a_loud_warning(small_real_mp4, tmp_path):
    out = tmp_path / "sr"
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        code = main(["upscale", str(small_real_mp4), "-o", str(out), "--frames", "--model", "dc_vsr",
                     "--random-weights", "--variant", "tiny", "--steps", "2", "--max-frames", "2", *TILES,
                     "--device", "cpu", "--no-progress"])
    assert code == 0
    assert len(list(out.glob("*.png"))) == 2 and open_video(out).width == 4 * SIDE
