"""DC-VSR weights: the released ``unet_ema/`` layout with a Stable Video Diffusion folder, SVD folders, and clear
one-line errors for every wrong folder (each names the file)."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from diffusers import UNetSpatioTemporalConditionModel

from zoo.errors import ConfigError, WeightsError
from zoo.hub import family, load_pretrained
from zoo.models.dc_vsr.attention import PropagationAttnProcessor
from zoo.testing import write_svd_folder, write_unet_ema_folder

torch.set_num_threads(1)
TINY = family("dc_vsr").variant("tiny")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """(release root holding unet_ema/, SVD folder with unet/, vae/, scheduler/): tiny, random, written by diffusers."""
    root = tmp_path_factory.mktemp("dc_vsr")
    write_unet_ema_folder(root / "release", unet=TINY["unet"], seed=1)
    svd = write_svd_folder(root / "svd", unet=TINY["unet"], vae=TINY["vae"], seed=2)
    return root / "release", svd


def _quiet_load(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_pretrained("dc_vsr", path, **options)


def test_the_released_layout_loads_with_the_svd_vae_and_scheduler(folders):
    release, svd = folders
    assert sorted(p.name for p in (release / "unet_ema").iterdir()) == ["config.json",
                                                                       "diffusion_pytorch_model.safetensors"]
    upscaler = _quiet_load(release, svd=str(svd), num_inference_steps=2, tile=None, window=None, vae_tile=None)
    pipeline = upscaler.pipeline
    saved = UNetSpatioTemporalConditionModel.from_pretrained(release / "unet_ema")
    for (name, got), (_, want) in zip(pipeline.unet.state_dict().items(), saved.state_dict().items()):
        assert torch.equal(got, want), name
    assert type(pipeline.vae).__name__ == "AutoencoderKLTemporalDecoder"
    assert pipeline.scheduler.config.prediction_type == "v_prediction" and pipeline.scheduler.config.use_karras_sigmas
    assert all(isinstance(pipeline.unet.get_submodule(name).processor, PropagationAttnProcessor)
               for name in pipeline.processor_roles)
    # the unet_ema folder itself is accepted too, and the loaded model runs
    again = _quiet_load(release / "unet_ema", svd=str(svd), num_inference_steps=2, tile=None, window=None,
                        vae_tile=None)
    lq = torch.rand(1, 2, 3, 8, 8)
    assert torch.equal(upscaler(lq), again(lq))


def test_an_svd_folder_alone_loads_its_own_unet_with_a_warning(folders):
    _, svd = folders
    with pytest.warns(UserWarning, match="NOT fine-tuned"):
        upscaler = load_pretrained("dc_vsr", svd, num_inference_steps=2)
    saved = UNetSpatioTemporalConditionModel.from_pretrained(svd / "unet")
    assert torch.equal(upscaler.pipeline.unet.conv_in.weight, saved.conv_in.weight)


def _edit_config(path: Path, **changes) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("case", ["no_svd", "class", "in_channels", "weights", "svd_vae_class", "svd_scheduler",
                                  "svd_missing", "empty", "variant"])
def test_wrong_folders_fail_naming_the_file(case, folders, tmp_path):
    release, svd = folders
    bad_release, bad_svd = tmp_path / "release", tmp_path / "svd"
    shutil.copytree(release, bad_release)
    shutil.copytree(svd, bad_svd)
    options = {"svd": str(bad_svd)}
    error, expect = WeightsError, None
    if case == "no_svd":
        options, expect = {}, "pass the Stable Video Diffusion folder"
    elif case == "class":
        _edit_config(bad_release / "unet_ema" / "config.json", _class_name="UNet2DConditionModel")
        expect = "unet_ema/config.json: class 'UNet2DConditionModel'"
    elif case == "in_channels":
        _edit_config(bad_release / "unet_ema" / "config.json", in_channels=4)
        expect = "unet_ema/config.json: in_channels 4"
    elif case == "weights":
        (bad_release / "unet_ema" / "diffusion_pytorch_model.safetensors").unlink()
        expect = "unet_ema/diffusion_pytorch_model.safetensors not found"
    elif case == "svd_vae_class":
        _edit_config(bad_svd / "vae" / "config.json", _class_name="AutoencoderKL")
        expect = "vae/config.json: class 'AutoencoderKL'"
    elif case == "svd_scheduler":
        _edit_config(bad_svd / "scheduler" / "scheduler_config.json", _class_name="DDIMScheduler",
                     prediction_type="epsilon")
        expect = "scheduler/scheduler_config.json: DDIMScheduler with prediction_type 'epsilon'"
    elif case == "svd_missing":
        (bad_svd / "scheduler" / "scheduler_config.json").unlink()
        expect = "scheduler/scheduler_config.json not found"
    elif case == "empty":
        bad_release = tmp_path / "nothing"
        bad_release.mkdir()
        options, expect = {}, "no known DC-VSR weights layout"
    elif case == "variant":
        options, error, expect = {"svd": str(bad_svd), "variant": "tiny"}, ConfigError, "variant='tiny' sizes random"
    with pytest.raises(error) as info:
        _quiet_load(bad_release, **options)
    message = str(info.value)
    assert expect in message and "\n" not in message, message


def test_unknown_options_are_refused_by_name(folders):
    release, svd = folders
    with pytest.raises(ConfigError, match="unknown DC-VSR loader option"):
        _quiet_load(release, svd=str(svd), colour_fix="wavelet")
    with pytest.raises(ConfigError, match="unknown DC-VSR propagation options"):
        _quiet_load(release, svd=str(svd), propagation={"stride": 2})
    with pytest.raises(ConfigError, match="a switch must be on/off"):
        _quiet_load(release, svd=str(svd), sap="maybe")


def test_clip_image_embedding_from_the_svd_image_encoder(tmp_path):
    """``conditioning.image_embedding='clip'``: the SVD folder's CLIP image encoder embeds the middle upsampled frame
    (one token per clip); without an image encoder the option fails by name."""
    clip = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=224,
                patch_size=32, projection_dim=32)
    svd = write_svd_folder(tmp_path / "svd", unet=TINY["unet"], vae=TINY["vae"], image_encoder=clip)
    options = dict(num_inference_steps=2, tile=None, window=None, vae_tile=None)
    with_clip = _quiet_load(svd, conditioning={"image_embedding": "clip"}, **options)
    up = torch.rand(1, 3, 3, 32, 32)
    tokens = with_clip.pipeline.image_embeddings(up)
    assert tokens.shape == (1, 1, 32) and float(tokens.abs().sum()) > 0
    lq = torch.rand(1, 2, 3, 8, 8)
    assert not torch.equal(with_clip(lq), _quiet_load(svd, **options)(lq))
    with pytest.raises(ConfigError, match="image_embedding='clip' needs the CLIP image encoder"):
        _quiet_load(None, variant="tiny", conditioning={"image_embedding": "clip"})
