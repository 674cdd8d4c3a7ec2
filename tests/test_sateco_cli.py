"""`vsrzoo upscale --model sateco` on a small real mp4 through the full sampling path, and its errors.

The weights are a tiny SATeCo checkpoint trained for one step on a tiny stable-diffusion-2-1-base-layout folder (random
base, CLIP text encoder, tokenizer, scheduler): the run exercises checkpoint loading with its base folder, streaming
chunks, the upscaler, VAE encoding, 6-frame windows, DDIM at a start strength, guided UNet and VAE decoder, the
refiner and H.264 writing with the source fps and audio; the pictures are meaningless.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from zoo.cli import main
from zoo.data.video_io import open_video
from zoo.hub import family
from zoo.models.sateco.sampling import SamplingOptions
from zoo.models.sateco.system import SATeCo
from zoo.testing import assert_upscale_run, assert_usage_error, write_sd_base_folder, write_small_real_mp4

torch.set_num_threads(1)
TINY = family("sateco").variant("tiny")
SIDE, NUM_FRAMES = 32, 8


@pytest.fixture(scope="module")
def small_real_mp4(tmp_path_factory) -> Path:
    """The first 8 frames of the real old_video_1.mp4 (25 fps, AAC audio copied), 32x32 centre crop (or the embedded
    sample's frames without audio when ../shared/data is absent)."""
    return write_small_real_mp4(tmp_path_factory.mktemp("video") / "old_video_small.mp4", height=SIDE, width=SIDE,
                                num_frames=NUM_FRAMES, square=True)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, base folder): a stage-2 SATeCo checkpoint on a tiny SD folder, adapters made non-zero."""
    root = tmp_path_factory.mktemp("sateco")
    folder = write_sd_base_folder(root / "sd21base", unet=TINY["unet"], vae=TINY["vae"],
                                  text_encoder=TINY["text_encoder"])
    sizes = {k: TINY[k] for k in ("upscaler", "latent_encoder", "adapters", "refiner")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        system = SATeCo(stage="unet", pretrained=str(folder), sampling=SamplingOptions(num_inference_steps=2),
                        **sizes)
    with torch.no_grad():
        for adapter in [*system.net_g.unet_adapters.adapters, *system.net_g.vae_adapters.adapters]:
            adapter.out.weight.normal_(0, 0.05)
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(system)
    ckpt = root / "sateco_stage2.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt, folder


def test_upscale_real_mp4_full_sampling_path(small_real_mp4, weights, tmp_path, capsys):
    """Two streamed chunks of 6 frames (4 shared); per chunk: upscaler, VAE encoding, 2 of 4 DDIM steps (strength 0.5)
    with classifier-free guidance on 6-frame windows, guided VAE decoding, refiner; audio and fps kept."""
    ckpt, _ = weights
    src = open_video(small_real_mp4)
    assert src.num_frames == NUM_FRAMES and (src.width, src.height) == (SIDE, SIDE)
    out = tmp_path / "sr.mp4"
    code = main(["upscale", str(small_real_mp4), "-o", str(out), "--model", "sateco", "--weights", str(ckpt),
                 "--steps", "4", "--strength", "0.5", "--seed", "3", "--guidance-scale", "2", "--prompt", "a b",
                 "--chunk-frames", "6", "--overlap", "4", "--tile", "0", "--device", "cpu", "--no-progress"])
    frames = assert_upscale_run(code, capsys.readouterr(), small_real_mp4, out)
    assert frames.shape[0] == NUM_FRAMES


def test_same_seed_same_video_and_the_refiner_weight_option(small_real_mp4, weights, tmp_path):
    ckpt, _ = weights
    base = ["upscale", str(small_real_mp4), "--model", "sateco", "--weights", str(ckpt), "--steps", "2",
            "--strength", "1", "--frames", "--max-frames", "6", "--tile", "0", "--device", "cpu", "--no-progress"]
    runs = {}
    for name, extra in (("a", []), ("b", []), ("w1", ["--option", "refiner_weight=1"])):
        assert main(base + ["-o", str(tmp_path / name), *extra]) == 0
        runs[name] = open_video(tmp_path / name).read()
    assert torch.equal(runs["a"], runs["b"])
    assert not torch.equal(runs["a"], runs["w1"])  # w = 1 keeps the upscaler's output (plus the residual)


@pytest.mark.parametrize("case", ["strength_zero", "unknown_option", "moved_base", "sd_folder_missing_file",
                                  "uav_flag"])
def test_errors_are_one_line(case, weights, small_real_mp4, tmp_path, capsys):
    ckpt, folder = weights
    broken = tmp_path / "broken_sd"
    if case == "sd_folder_missing_file":
        import shutil

        shutil.copytree(folder, broken)
        (broken / "scheduler" / "scheduler_config.json").unlink()
    argv, expect = {
        "strength_zero": (["--weights", str(ckpt), "--strength", "0"], "strength must be in (0, 1]"),
        "unknown_option": (["--weights", str(ckpt), "--option", "colour=1"], "unknown SATeCo loader option"),
        "moved_base": (["--weights", str(ckpt), "--option", f"pretrained={tmp_path / 'gone'}"],
                       "which is not found; pass its new location"),
        "sd_folder_missing_file": (["--weights", str(broken)], "scheduler/scheduler_config.json not found"),
        "uav_flag": (["--weights", str(ckpt), "--propagation-steps", "1"], "not a sampling option of --model sateco"),
    }[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["upscale", str(small_real_mp4), "-o", str(tmp_path / "out.mp4"), "--model", "sateco",
                     "--device", "cpu", "--no-progress", *argv])
    err = capsys.readouterr().err
    assert_usage_error(code, err, expect)
    assert not (tmp_path / "out.mp4").exists()


def test_random_weights_run_with_a_loud_warning(small_real_mp4, tmp_path):
    out = tmp_path / "sr"
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        code = main(["upscale", str(small_real_mp4), "-o", str(out), "--frames", "--model", "sateco",
                     "--random-weights", "--variant", "tiny", "--steps", "2", "--max-frames", "2", "--device", "cpu",
                     "--no-progress"])
    assert code == 0
    assert len(list(out.glob("*.png"))) == 2 and open_video(out).width == 4 * SIDE
