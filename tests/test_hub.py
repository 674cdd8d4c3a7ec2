"""zoo.hub: the family table, path handling, random variants and the folder-based Upscale-A-Video family.

The Upscale-A-Video weights are a synthetic, tiny **released-format folder** written by
:func:`write_tiny_released_folder`: official configs (the tiny ones of
``tests/data/upscale_a_video_official_keys.json``, shrunk; a three-level VAE so that it upscales x4 like the released
one), random weights saved under the official key names (our names mapped back by the inverse of the converter's
rules, each checked against the converter), RAFT with the official key set, a tiny CLIP text encoder and tokenizer,
the SD x4 schedulers. ``tests/test_upscale_a_video_cli.py`` reuses it.
"""
from __future__ import annotations

import json
import re
import shutil
import warnings
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from zoo.errors import ConfigError, WeightsError
from zoo.hub import FAMILIES, available_families, diffusion_families, families_table, family, load_pretrained
from zoo.testing import official_random_state, write_clip_tokenizer

torch.set_num_threads(1)

KEYS = json.loads((Path(__file__).parent / "data" / "upscale_a_video_official_keys.json").read_text())
#: Official configs of a tiny UNet and a tiny three-level (x4, like the released one) ``vae_3d``, derived from the tiny
#: official configs in the key file and shrunk for speed (one residual block per level, few channels at full size).
TINY_UNET_CONFIG = dict(KEYS["unet_video"]["config"], block_out_channels=[32, 32, 32], layers_per_block=1)
TINY_VAE_CONFIG = dict(KEYS["vae_3d"]["config"], block_out_channels=[8, 16, 32], norm_num_groups=8,
                       down_block_types=["DownEncoderBlock3D"] * 3, up_block_types=["UpDecoderBlock3D"] * 3)
#: Our key names -> the official ones (the inverse of zoo/models/upscale_a_video/convert.py's rules; first match).
_UNET_TO_OFFICIAL = (
    (r"^(down|up)_temporal\.(\d+)\.temporal_conv\.", r"\1_temp_blocks.\2.resblocks_3d_temporal."),
    (r"^(down|up)_temporal\.(\d+)\.spatial_res\.", r"\1_temp_blocks.\2.resblocks_3d_spatial."),
    (r"^(down|up)_temporal\.(\d+)\.proj_out\.", r"\1_temp_blocks.\2.shift_conv."),
    (r"^mid_temporal\.temporal_conv\.", "mid_temp_block.resblocks_3d_temporal."),
    (r"^mid_temporal\.spatial_res\.", "mid_temp_block.resblocks_3d_spatial."),
    (r"^mid_temporal\.proj_out\.", "mid_temp_block.shift_conv."),
    (r"^(.*\.attentions\.\d+)\.temporal_conv\.", r"\1.resblock_temporal."),
    (r"^(.*\.attn_temporal)\.to_out\.(weight|bias)$", r"\1.to_out.0.\2"),
    (r"^(.*\.attn_temporal)\.relative_position\.embedding\.weight$",
     r"\1.time_rel_pos_bias.relative_attention_bias.weight"),
)
_VAE_TO_OFFICIAL = ((r"^(.*\.mid_block\.attentions\.\d+)\.to_q\.", r"\1.query."),
                    (r"^(.*\.mid_block\.attentions\.\d+)\.to_k\.", r"\1.key."),
                    (r"^(.*\.mid_block\.attentions\.\d+)\.to_v\.", r"\1.value."),
                    (r"^(.*\.mid_block\.attentions\.\d+)\.to_out\.0\.", r"\1.proj_attn."))
FAST = dict(num_inference_steps=2, progress=False)
TINY = family("upscale_a_video").variant("tiny")
TINY_UNET, TINY_VAE = TINY["unet"], TINY["vae"]


def _official_state(net: torch.nn.Module, rules: tuple, to_ours, seed: int) -> dict[str, torch.Tensor]:  # noqa: ANN001
    """``net``'s weights (zero-initialised layers made small random) under the official names, checked against
    the converter's own map ``to_ours``."""
    g = torch.Generator().manual_seed(seed)
    official = {}
    for key, value in net.state_dict().items():
        name = key
        for pattern, replacement in rules:
            name, count = re.subn(pattern, replacement, name)
            if count:
                break
        assert to_ours(name) == key, (key, name)
        if value.is_floating_point() and not value.any():
            value = torch.randn(value.shape, generator=g) * 0.02
        official[name] = value.clone()
    return official


def write_tiny_text_encoder(root: Path) -> None:
    """A tiny CLIP text encoder (32-d tokens, the tiny UNet's cross-attention width) and a 6-token tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    CLIPTextModel(CLIPTextConfig(**TINY["text_encoder"])).save_pretrained(root / "text_encoder")
    write_clip_tokenizer(root / "tokenizer")


def write_tiny_released_folder(root: Path, *, seed: int = 0) -> Path:
    """Write a tiny Upscale-A-Video folder in the released layout (random weights, x4 VAE); return ``root``."""
    from diffusers import DDIMScheduler, DDPMScheduler

    from zoo.models.upscale_a_video import convert
    from zoo.models.upscale_a_video.net import UpscaleAVideoUNet, UpscaleAVideoVAE
    from zoo.models.upscale_a_video.sampling import DEFAULT_LOW_RES_SCHEDULER, DEFAULT_SCHEDULER

    for sub in ("unet", "vae", "propagator"):
        (root / sub).mkdir(parents=True)
    torch.manual_seed(seed)
    unet = UpscaleAVideoUNet(**convert.unet_kwargs_from_official(TINY_UNET_CONFIG))
    vae = UpscaleAVideoVAE(**convert.vae_kwargs_from_official(TINY_VAE_CONFIG))
    (root / "unet" / "unet_video_config.json").write_text(json.dumps(TINY_UNET_CONFIG))
    torch.save(_official_state(unet, _UNET_TO_OFFICIAL, convert.unet_official_key, seed),
               root / "unet" / "unet_video.bin")
    (root / "vae" / "vae_3d_config.json").write_text(json.dumps(TINY_VAE_CONFIG))
    torch.save(_official_state(vae, _VAE_TO_OFFICIAL, convert.vae_official_key, seed), root / "vae" / "vae_3d.bin")
    torch.save(official_random_state(KEYS["raft"], seed + 2), root / "propagator" / "raft-things.pth")
    DDIMScheduler(**DEFAULT_SCHEDULER).save_config(root / "scheduler")
    DDPMScheduler(**DEFAULT_LOW_RES_SCHEDULER).save_config(root / "low_res_scheduler")
    write_tiny_text_encoder(root)
    return root


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    return write_tiny_released_folder(tmp_path_factory.mktemp("uav") / "upscale_a_video")


# ------------------------------------------------------------------------------------------ table and paths
def test_families_are_listed():
    assert {"dc_vsr", "realbasicvsr", "sateco", "upscale_a_video", "videogigagan"} <= set(available_families())
    assert available_families() == sorted(available_families())
    assert diffusion_families() == ["dc_vsr", "sateco", "upscale_a_video"]
    from zoo.models.upscale_a_video.sampling import SamplingOptions

    options = {option.name for option in family("upscale_a_video").sampling_options}
    assert options <= {f.name for f in fields(SamplingOptions)}  # every flag is a sampler option
    table = families_table()
    for spec in FAMILIES.values():
        assert spec.name in table and spec.paper in table and spec.readme_path().is_file()
        assert spec.weight_forms and "tiny" in spec.variants


def test_unknown_family_missing_path_and_wrong_kind(tmp_path):
    with pytest.raises(ConfigError, match="unknown family 'nope'"):
        load_pretrained("nope", tmp_path)
    for family in available_families():
        with pytest.raises(WeightsError, match=re.escape(str(tmp_path / "absent.pth"))):
            load_pretrained(family, tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="is a folder"):
        load_pretrained("realbasicvsr", tmp_path)
    with pytest.raises(ConfigError, match="variant"):
        load_pretrained("realbasicvsr", None, variant="huge")
    with pytest.raises(ConfigError, match="sizes random"):
        load_pretrained("upscale_a_video", tmp_path, variant="tiny")
    with pytest.raises(WeightsError, match="no known Upscale-A-Video weights layout"):
        load_pretrained("upscale_a_video", tmp_path)  # an empty folder
    other = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="not an Upscale-A-Video checkpoint.*accepted: the released"):
        load_pretrained("upscale_a_video", other)


# ------------------------------------------------------------------------------------------ upscale_a_video
def test_released_folder_gives_a_x4_upscaler(released):
    upscaler = load_pretrained("upscale_a_video", released, noise_level=20, guidance_scale=3.0,
                               propagation_steps="1", **FAST)
    assert upscaler.scale == 4 and not upscaler.training
    assert upscaler.options.noise_level == 20 and upscaler.options.propagation_steps == (1,)
    assert upscaler.options.color_fix == "wavelet" and upscaler.options.window == 8  # official defaults kept
    assert upscaler.pipeline.text_encoder is not None and upscaler.pipeline.flow_net is not None
    plain = load_pretrained("upscale_a_video", released, load_flow_net=False, **FAST)
    lq = torch.rand(1, 3, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    sr = plain(lq)
    assert sr.shape == (1, 3, 3, 64, 48) and sr.dtype == torch.float32
    assert 0 <= float(sr.min()) and float(sr.max()) <= 1 and torch.isfinite(sr).all()
    torch.testing.assert_close(plain(lq), sr, atol=0, rtol=0)  # seeded


def test_upscale_a_video_option_errors(released):
    with pytest.raises(ConfigError, match="unknown Upscale-A-Video loader option"):
        load_pretrained("upscale_a_video", released, steps=3)
    with pytest.raises(ConfigError, match="noise_level"):
        load_pretrained("upscale_a_video", released, noise_level=400, load_text_encoder=False)
    with pytest.raises(ConfigError, match="propagation_steps"):
        load_pretrained("upscale_a_video", released, propagation_steps=[2], load_text_encoder=False, **FAST)
    with pytest.raises(ConfigError, match="flow network"):
        load_pretrained("upscale_a_video", released, propagation_steps=[1], load_flow_net=False,
                        load_text_encoder=False, **FAST)
    with pytest.raises(ConfigError, match="color_fix"):
        load_pretrained("upscale_a_video", released, color_fix="histogram", load_text_encoder=False)
    with pytest.raises(ConfigError, match="checkpoint only"):
        load_pretrained("upscale_a_video", released, use_ema=False, load_text_encoder=False)


def test_random_weights_warn_loudly_and_their_checkpoint_does_not(tmp_path):
    from zoo.models.upscale_a_video.system import UpscaleAVideo

    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        upscaler = load_pretrained("upscale_a_video", None, unet=TINY_UNET, vae=TINY_VAE, **FAST)
    assert upscaler.pipeline.text_encoder is None and upscaler(torch.rand(1, 2, 3, 8, 8)).shape == (1, 2, 3, 32, 32)
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        system = UpscaleAVideo(pretrained=None, unet=TINY_UNET, vae=TINY_VAE)
    path = tmp_path / "random.ckpt"
    torch.save({"state_dict": system.state_dict(), "hyper_parameters": dict(system.hparams)}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the weights come from the checkpoint: no random-init warning
        loaded = load_pretrained("upscale_a_video", path, **FAST)
    assert all(torch.equal(v, system.net_g.state_dict()[k]) for k, v in loaded.pipeline.state_dict().items())


def test_lightning_checkpoint_of_the_system(released, tmp_path):
    from zoo.models.upscale_a_video.system import UpscaleAVideo

    folder = tmp_path / "trained_from"
    shutil.copytree(released, folder)
    system = UpscaleAVideo(pretrained=str(folder))
    with torch.no_grad():  # "training" moved a temporal layer away from the released weights
        system.net_g.unet.up_temporal[0].proj_out.weight.add_(0.5)
    ckpt = {"state_dict": system.state_dict(), "hyper_parameters": dict(system.hparams), "global_step": 1}
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    upscaler = load_pretrained("upscale_a_video", path, **FAST)
    assert torch.equal(upscaler.pipeline.unet.up_temporal[0].proj_out.weight,
                       system.net_g.unet.up_temporal[0].proj_out.weight)
    assert upscaler.pipeline.flow_net is not None and upscaler.pipeline.tokenizer is not None
    assert upscaler(torch.rand(1, 2, 3, 8, 8)).shape == (1, 2, 3, 32, 32)

    moved = tmp_path / "moved"
    folder.rename(moved)
    with pytest.raises(WeightsError, match="trained_from.*not found.*pretrained"):
        load_pretrained("upscale_a_video", path)
    relocated = load_pretrained("upscale_a_video", path, pretrained=str(moved), load_flow_net=False, **FAST)
    assert relocated.pipeline.flow_net is None
    assert torch.equal(relocated.pipeline.unet.up_temporal[0].proj_out.weight,
                       system.net_g.unet.up_temporal[0].proj_out.weight)
    with pytest.raises(ConfigError, match="recorded in the checkpoint"):
        load_pretrained("upscale_a_video", path, pretrained=str(moved), use_video_vae=True)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_builds_its_tiny_variant_with_random_weights(name):
    options = dict(FAST) if family(name).kind == "diffusion" else {}  # random networks have no text encoder
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOM"):
        net = load_pretrained(name, None, variant="tiny", **options)
    lq = torch.rand(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sr = net(lq)
    assert sr.shape == (1, 2, 3, 64, 64) and torch.isfinite(sr).all()
    params = sum(p.numel() for p in net.parameters())
    assert params < 20_000_000  # tiny (RAFT/SPyNet included where the family has one)


def test_sampling_flags_shared_by_families_agree_on_their_type():
    """``vsrzoo upscale`` defines each sampling flag once for every diffusion family that declares it."""
    from zoo.cli import _sampling_flags, _upscale_parser

    for dest, owners in _sampling_flags().items():
        kinds = {(option.type, option.parse is None, option.choices) for _, option in owners}
        assert len(kinds) == 1, (dest, kinds)
    help_text = _upscale_parser().format_help()
    for spec in FAMILIES.values():
        for option in spec.sampling_options:
            assert option.cli_flag in help_text
