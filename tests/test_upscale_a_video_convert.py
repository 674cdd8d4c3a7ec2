"""Upscale-A-Video weight conversion and loading.

``tests/data/upscale_a_video_official_keys.json`` lists the key names and shapes of TINY official models
(``UNetVideoModel``, ``AutoencoderKLVideo`` as vae_3d / vae_video, RAFT with DataParallel ``module.`` prefix) and
their configs; it was written by the parity script from the official code (sczhou/Upscale-A-Video, diffusers 0.16). The tests check that the converters map exactly that key set onto
our networks with matching shapes, and load synthetic released / SD x4 folders end to end.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from torchvision.models.optical_flow import raft_large

from zoo.errors import ConfigError, WeightsError
from zoo.hub import family
from zoo.models.upscale_a_video import convert
from zoo.models.upscale_a_video.load import load_upscale_a_video
from zoo.models.upscale_a_video.net import UpscaleAVideoUNet, UpscaleAVideoVAE, is_new_parameter
from zoo.testing import official_random_state, write_clip_tokenizer

torch.set_num_threads(1)
KEYS = json.loads((Path(__file__).parent / "data" / "upscale_a_video_official_keys.json").read_text())
ROPE = 1.0 / 10000.0 ** (torch.arange(0, 32, 2, dtype=torch.float32) / 32)
TINY_TEXT = family("upscale_a_video").variant("tiny")["text_encoder"]
_official_state = official_random_state  # random tensors with the official names and shapes


def _unet() -> UpscaleAVideoUNet:
    return UpscaleAVideoUNet(**convert.unet_kwargs_from_official(KEYS["unet_video"]["config"]))


def _vae(name: str) -> UpscaleAVideoVAE:
    return UpscaleAVideoVAE(**convert.vae_kwargs_from_official(KEYS[name]["config"]))


# ------------------------------------------------------------------------------------------ key maps
def test_unet_key_map_covers_the_official_key_set():
    net = _unet()
    official = _official_state(KEYS["unet_video"])
    converted = convert.convert_unet_state_dict(official, net)  # raises on missing/unexpected/mis-shaped
    assert set(converted) == set(net.state_dict())
    kept = {k: convert.unet_official_key(k) for k in official}
    dropped = [k for k, v in kept.items() if v is None]
    assert dropped and all(k.endswith("rotary_emb.freqs") for k in dropped)
    for key, ours in kept.items():
        if ours is not None:
            assert converted[ours] is official[key]
            assert is_new_parameter(ours) == any(s in key for s in ("temporal", "temp_block")), key


@pytest.mark.parametrize("name", ["vae_3d", "vae_video"])
def test_vae_key_map_covers_the_official_key_set(name):
    net = _vae(name)
    official = _official_state(KEYS[name])
    converted = convert.convert_vae_state_dict(official, net)
    assert set(converted) == set(net.state_dict())
    for key, value in official.items():
        assert converted[convert.vae_official_key(key)] is value
    assert any(is_new_parameter(k) for k in converted) == (name == "vae_video")


def test_raft_key_map_covers_official_keys_and_inverts_torchvision():
    net = raft_large(weights=None, progress=False)
    official = _official_state(KEYS["raft"])
    converted = convert.convert_raft_state_dict(official, net)
    assert set(converted) == set(net.state_dict())
    key_map = {k: convert.RAFT_KEYS.rename(k) for k in (key.removeprefix("module.") for key in KEYS["raft"]["keys"])}
    key_map = {k: v for k, v in key_map.items() if v is not None}  # norm3 twins are dropped
    assert len(set(key_map.values())) == len(key_map) == len(net.state_dict())
    # synthetic official checkpoint from torchvision's weights through the inverse map
    ours = net.state_dict()
    inverse = {v: k for k, v in key_map.items()}
    synthetic = {f"module.{inverse[k]}": v for k, v in ours.items()}
    for key in list(synthetic):
        if ".downsample.1." in key and key.startswith("module.cnet"):
            synthetic[key.replace(".downsample.1.", ".norm3.")] = synthetic[key]
    assert sorted(synthetic) == sorted(KEYS["raft"]["keys"])  # the inverse map reproduces the official names
    back = convert.convert_raft_state_dict(synthetic, net)
    assert all(torch.equal(back[k], v) for k, v in ours.items())


# ------------------------------------------------------------------------------------------ failures
def test_unet_conversion_fails_on_bad_keys():
    net = _unet()
    good = _official_state(KEYS["unet_video"])
    key = "down_blocks.1.attentions.0.transformer_blocks.0.attn_temporal.to_q.weight"
    with pytest.raises(WeightsError, match="mis-shaped"):
        convert.convert_unet_state_dict(dict(good, **{key: torch.zeros(3, 3)}), net)
    with pytest.raises(WeightsError, match="1 missing"):
        convert.convert_unet_state_dict({k: v for k, v in good.items() if k != key}, net)
    with pytest.raises(WeightsError, match="1 unexpected"):
        convert.convert_unet_state_dict(dict(good, **{"down_blocks.9.extra.weight": torch.zeros(1)}), net)
    with pytest.raises(WeightsError, match="RoPE"):
        convert.convert_unet_state_dict(dict(good, **{"temporal_rotary_emb.freqs": ROPE * 2}), net)
    with pytest.raises(WeightsError, match="not a state dict"):
        convert.convert_unet_state_dict([1, 2], net)
    with pytest.raises(WeightsError, match="does not look like"):
        convert.convert_unet_state_dict({"foo.weight": torch.zeros(1)}, net)


def test_vae_and_raft_conversion_fail_on_bad_keys():
    net = _vae("vae_video")
    good = _official_state(KEYS["vae_video"])
    with pytest.raises(WeightsError, match="missing"):  # a vae_3d file for the video decoder
        convert.convert_vae_state_dict(_official_state(KEYS["vae_3d"]), net)
    with pytest.raises(WeightsError, match="mis-shaped"):
        convert.convert_vae_state_dict(dict(good, **{"decoder.conv_in.weight": torch.zeros(1, 1, 3, 3)}), net)
    raft = _official_state(KEYS["raft"])
    twin = "module.cnet.layer2.0.norm3.weight"
    with pytest.raises(WeightsError, match="differs"):
        convert.convert_raft_state_dict(dict(raft, **{twin: raft[twin] + 1}))
    with pytest.raises(WeightsError, match="small RAFT"):
        convert.convert_raft_state_dict(dict(raft, **{"module.update_block.extra.weight": torch.zeros(1)}))
    with pytest.raises(WeightsError, match="missing"):
        convert.convert_raft_state_dict({k: v for k, v in raft.items() if "flow_head" not in k})


def test_official_configs_outside_the_supported_family_are_refused():
    config = dict(KEYS["unet_video"]["config"])
    with pytest.raises(ConfigError, match="temporal module levels"):
        convert.unet_kwargs_from_official(dict(config, down_temporal_idx=[0, 1]))
    with pytest.raises(ConfigError, match="attention_block_types"):
        convert.unet_kwargs_from_official(dict(config, temporal_module_config={"attention_block_types":
                                                                                ["Temporal", "Temporal"]}))
    with pytest.raises(ConfigError, match="block type"):
        convert.unet_kwargs_from_official(dict(config, down_block_types=["DownBlockXD"] * 3))
    with pytest.raises(ConfigError, match="block types"):
        convert.vae_kwargs_from_official(dict(KEYS["vae_video"]["config"],
                                              up_block_types=["UpDecoderBlock3D", "UpDecoderBlock3D_plus"]))


# ------------------------------------------------------------------------------------------ folders
def _write_text_encoder(folder: Path) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    CLIPTextModel(CLIPTextConfig(**TINY_TEXT)).save_pretrained(folder / "text_encoder")
    write_clip_tokenizer(folder / "tokenizer")


def _write_schedulers(folder: Path) -> None:
    DDIMScheduler(prediction_type="v_prediction").save_config(folder / "scheduler")
    DDPMScheduler().save_config(folder / "low_res_scheduler")


def _released_folder(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Write a tiny released-format folder; return the official state dicts written."""
    states = {name: _official_state(KEYS[name], seed=i) for i, name in enumerate(("unet_video", "vae_3d",
                                                                                  "vae_video", "raft"))}
    (root / "unet").mkdir(parents=True)
    (root / "vae").mkdir()
    (root / "propagator").mkdir()
    (root / "unet" / "unet_video_config.json").write_text(json.dumps(KEYS["unet_video"]["config"]))
    torch.save(states["unet_video"], root / "unet" / "unet_video.bin")
    for name in ("vae_3d", "vae_video"):
        (root / "vae" / f"{name}_config.json").write_text(json.dumps(KEYS[name]["config"]))
        torch.save(states[name], root / "vae" / f"{name}.bin")
    torch.save(states["raft"], root / "propagator" / "raft-things.pth")
    _write_schedulers(root)
    _write_text_encoder(root)
    return states


def test_released_folder_round_trip(tmp_path):
    states = _released_folder(tmp_path)
    parts = load_upscale_a_video(tmp_path, use_video_vae=True)
    unet_state = parts.unet.state_dict()
    for key, value in states["unet_video"].items():
        ours = convert.unet_official_key(key)
        assert ours is None or torch.equal(unet_state[ours], value), key
    vae_state = parts.vae.state_dict()
    assert all(torch.equal(vae_state[convert.vae_official_key(k)], v) for k, v in states["vae_video"].items())
    assert parts.vae.decoder.condition_fuse is not None and not parts.unet.training
    assert isinstance(parts.scheduler, DDIMScheduler) and parts.scheduler.config.prediction_type == "v_prediction"
    assert isinstance(parts.low_res_scheduler, DDPMScheduler)
    ids = parts.tokenizer(["a b"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert parts.text_encoder(ids)[0].shape == (1, 77, 32)
    assert torch.equal(parts.flow_net.state_dict()["update_block.flow_head.conv2.weight"],
                       states["raft"]["module.update_block.flow_head.conv2.weight"])
    with torch.no_grad():
        v = parts.unet(torch.randn(1, 2, 4, 8, 8), 500, torch.rand(1, 2, 3, 8, 8), 20, torch.randn(1, 4, 32))
        frames = parts.vae.decode(torch.randn(1, 2, 4, 8, 8), torch.rand(1, 2, 3, 8, 8))
    assert v.shape == (1, 2, 4, 8, 8) and frames.shape == (1, 2, 3, 16, 16) and torch.isfinite(frames).all()

    plain = load_upscale_a_video(tmp_path, load_text_encoder=False, load_flow_net=False)  # official default vae_3d
    assert plain.vae.decoder.condition_fuse is None and plain.text_encoder is None and plain.flow_net is None
    with pytest.raises(ConfigError, match="fixes the architecture"):
        load_upscale_a_video(tmp_path, unet={"norm_over_time": False})

    torch.save(dict(states["unet_video"], **{"conv_in.weight": torch.zeros(1)}), tmp_path / "unet" / "unet_video.bin")
    with pytest.raises(WeightsError, match="mis-shaped"):
        load_upscale_a_video(tmp_path, load_text_encoder=False)


def test_sd_x4_folder_initialises_the_video_nets(tmp_path):
    torch.manual_seed(0)
    image_unet = UNet2DConditionModel(
        in_channels=7, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        only_cross_attention=[True, False], attention_head_dim=1, cross_attention_dim=32, num_class_embeds=1000,
        use_linear_projection=True)
    image_vae = AutoencoderKL(block_out_channels=(32, 64), layers_per_block=1,
                              down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    image_unet.save_pretrained(tmp_path / "unet")
    image_vae.save_pretrained(tmp_path / "vae")  # default scaling_factor 0.18215: the loader resets it
    _write_schedulers(tmp_path)
    with pytest.warns(UserWarning, match="scaling_factor"):
        parts = load_upscale_a_video(tmp_path, load_text_encoder=False, use_video_vae=True,
                                     vae={"condition_channels": 32})
    unet_state = parts.unet.state_dict()
    for key, value in image_unet.state_dict().items():
        assert torch.equal(unet_state[key], value), key
    assert all(is_new_parameter(k) for k in set(unet_state) - set(image_unet.state_dict()))
    vae_state = parts.vae.state_dict()
    assert all(torch.equal(vae_state[k], v) for k, v in image_vae.state_dict().items())
    assert parts.vae.scaling_factor == pytest.approx(0.08333) and parts.vae.decoder.condition_fuse is not None
    assert parts.flow_net is None and isinstance(parts.scheduler, DDIMScheduler)


def test_random_init_warns_and_loader_errors(tmp_path):
    tiny_unet = dict(block_out_channels=(32, 64), layers_per_block=1,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), only_cross_attention=(True, False),
                     attention_head_dim=1, cross_attention_dim=32)
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        parts = load_upscale_a_video(None, unet=tiny_unet, vae={"block_out_channels": (32, 64),
                                                               "layers_per_block": 1})
    assert parts.unet.down_temporal[0].proj_out.weight.abs().sum() == 0 and parts.text_encoder is None
    with pytest.raises(WeightsError, match="not found"):
        load_upscale_a_video(tmp_path / "missing")
    with pytest.raises(WeightsError, match="no known Upscale-A-Video weights layout"):
        load_upscale_a_video(tmp_path)
    with pytest.raises(ConfigError, match="unknown overrides"):
        load_upscale_a_video(None, vae_path="x")
