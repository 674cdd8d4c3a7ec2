"""Upscale-A-Video networks: inflation equivalence with the diffusers image nets, temporal layers, input checks.

Tiny configurations (32/64 channels, 16x16 latents) on the CPU. Numerical parity with the official code is checked
by the parity script outside the project (see zoo/models/upscale_a_video/README.md); the port onto zoo.diffusion by the
committed goldens (tests/test_upscale_a_video_goldens.py).
"""
from __future__ import annotations

import copy

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from einops import rearrange, repeat

from zoo.errors import ConfigError, InputError
from zoo.diffusion.attention import (
    RelativePositionBias,
    TemporalAttnProcessor,
    apply_rotary,
    attention_processors,
    set_attention_processor,
    temporal_attention,
)
from zoo.diffusion.inflation import FrameContext, FrameGroupNorm, SFTLayer, TemporalConvBlock
from zoo.hub import family
from zoo.models.upscale_a_video.net import UpscaleAVideoUNet, UpscaleAVideoVAE, is_new_parameter

torch.set_num_threads(1)

TINY_UNET = family("upscale_a_video").variant("tiny")["unet"]
TINY_VAE = dict(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32)


def _image_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    kw = dict(TINY_UNET)
    kw["only_cross_attention"] = list(kw["only_cross_attention"])
    unet = UNet2DConditionModel(in_channels=7, out_channels=4, num_class_embeds=1000, use_linear_projection=True,
                                norm_num_groups=32, **kw)
    with torch.no_grad():  # move norms away from the identity so that they matter
        for name, p in unet.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return unet.eval()


def _inputs(b: int = 2, t: int = 3, h: int = 16, w: int = 16, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return dict(latents=torch.randn(b, t, 4, h, w, generator=g), lq=torch.rand(b, t, 3, h, w, generator=g) * 2 - 1,
                timestep=torch.tensor([900, 15])[:b], noise_level=torch.tensor([120, 7])[:b],
                encoder_hidden_states=torch.randn(b, 5, 32, generator=g))


def _image_unet_per_frame(unet: UNet2DConditionModel, x: dict[str, torch.Tensor]) -> torch.Tensor:
    b, t = x["latents"].shape[:2]
    sample = rearrange(torch.cat([x["latents"], x["lq"]], dim=2), "b t c h w -> (b t) c h w")
    out = unet(sample, repeat(x["timestep"], "b -> (b t)", t=t),
               encoder_hidden_states=repeat(x["encoder_hidden_states"], "b n d -> (b t) n d", t=t),
               class_labels=repeat(x["noise_level"], "b -> (b t)", t=t)).sample
    return rearrange(out, "(b t) c h w -> b t c h w", t=t)


def test_fresh_inflated_unet_equals_image_unet_frame_by_frame():
    image = _image_unet()
    video = UpscaleAVideoUNet.from_image_unet(image, norm_over_time=False).eval()
    x = _inputs(t=3)
    with torch.no_grad():
        ours, ref = video(**x), _image_unet_per_frame(image, x)
    assert ours.shape == (2, 3, 4, 16, 16)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_clip_wide_norm_equals_image_unet_when_frames_agree():
    """norm_over_time=True (official) pools GroupNorm statistics over the clip: identical for t=1 or equal frames,
    different from the image UNet for a clip of different frames."""
    image = _image_unet()
    video = UpscaleAVideoUNet.from_image_unet(image).eval()  # norm_over_time=True
    with torch.no_grad():
        one = _inputs(t=1)
        torch.testing.assert_close(video(**one), _image_unet_per_frame(image, one), atol=1e-5, rtol=0)
        same = _inputs(t=1)
        same["latents"], same["lq"] = same["latents"].repeat(1, 3, 1, 1, 1), same["lq"].repeat(1, 3, 1, 1, 1)
        torch.testing.assert_close(video(**same), _image_unet_per_frame(image, same), atol=1e-5, rtol=0)
        diff = _inputs(t=3)
        assert (video(**diff) - _image_unet_per_frame(image, diff)).abs().max() > 1e-3


def test_inflation_only_adds_temporal_parameters_and_they_train():
    image = _image_unet()
    video = UpscaleAVideoUNet.from_image_unet(image)
    image_keys, video_keys = set(image.state_dict()), set(video.state_dict())
    assert image_keys <= video_keys
    new = video_keys - image_keys
    assert new and all(is_new_parameter(k) for k in new)
    assert not any(is_new_parameter(k) for k in image_keys)
    assert {id(p) for p in video.temporal_parameters()} == {id(p) for n, p in video.named_parameters() if n in new}
    # every parameter receives a gradient; the zero-initialised outputs get non-zero ones
    video.train()
    video(**_inputs(b=1, t=2)).square().mean().backward()
    grads = {n: p.grad for n, p in video.named_parameters()}
    assert all(g is not None for g in grads.values())
    for name in ("down_temporal.0.proj_out.weight",
                 "down_blocks.1.attentions.0.transformer_blocks.0.attn_temporal.to_out.0.weight",
                 "down_blocks.1.attentions.0.temporal_conv.conv2.weight"):
        assert grads[name].abs().sum() > 0, name


def test_unet_random_init_shapes_odd_sizes_checkpointing_and_deepcopy():
    torch.manual_seed(0)
    net = UpscaleAVideoUNet(**TINY_UNET, zero_init=False)
    x = _inputs(b=1, t=2, h=10, w=14)  # not multiples of 2**num_upsamplers: forwarded upsample sizes
    x["timestep"], x["noise_level"] = 500, 20  # scalars broadcast over the batch
    y = net(**x)
    assert y.shape == (1, 2, 4, 10, 14)
    y.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.gradient_checkpointing = True
    y2 = net(**x)
    y2.sum().backward()
    torch.testing.assert_close(y2, y)
    for g, p in zip(grads, net.parameters()):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)
    twin = copy.deepcopy(net)
    norm = twin.down_blocks[0].resnets[0].norm1
    assert isinstance(norm, FrameGroupNorm) and norm.frames is twin.frames and twin.frames is not net.frames


def test_unet_input_errors():
    net = UpscaleAVideoUNet(**TINY_UNET)
    x = _inputs(b=1, t=2)
    with pytest.raises(InputError, match="noise_level"):
        net(**dict(x, noise_level=351))
    with pytest.raises(InputError, match="latents"):
        net(**dict(x, latents=x["latents"][0]))
    with pytest.raises(InputError, match="lq"):
        net(**dict(x, lq=x["lq"][:, :1]))
    with pytest.raises(InputError, match="timestep"):
        net(**dict(x, timestep=torch.tensor([1, 2, 3])))
    with pytest.raises(ConfigError):
        UpscaleAVideoUNet(**dict(TINY_UNET, down_block_types=("DownBlock2D",)))
    lean = UpscaleAVideoUNet(**TINY_UNET, temporal_modules=False)
    assert not any(k.startswith(("down_temporal", "mid_temporal", "up_temporal")) for k in lean.state_dict())
    assert lean(**x).shape == x["latents"].shape


def _image_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, scaling_factor=0.08333,
                        **TINY_VAE)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return vae.eval()


@pytest.mark.parametrize("norm_over_time", [False, True])
def test_fresh_temporal_vae_equals_image_vae(norm_over_time):
    image = _image_vae()
    video = UpscaleAVideoVAE.from_image_vae(image, lq_condition=True, condition_channels=32, temporal_convs=True,
                                            norm_over_time=norm_over_time).eval()
    assert set(image.state_dict()) <= set(video.state_dict())
    assert all(is_new_parameter(k) for k in set(video.state_dict()) - set(image.state_dict()))
    g = torch.Generator().manual_seed(3)
    t = 3 if not norm_over_time else 1
    latents = torch.randn(2, t, 4, 8, 8, generator=g)
    lq = torch.rand(2, t, 3, 8, 8, generator=g) * 2 - 1
    frames = torch.rand(2, t, 3, 16, 16, generator=g) * 2 - 1
    with torch.no_grad():
        ours = video.decode(latents, lq)
        ref = image.decode(rearrange(latents / 0.08333, "b t c h w -> (b t) c h w")).sample
        torch.testing.assert_close(ours, rearrange(ref, "(b t) c h w -> b t c h w", t=t), atol=1e-5, rtol=0)
        enc = video.encode(frames)
        ref = image.encode(rearrange(frames, "b t c h w -> (b t) c h w")).latent_dist.mode() * 0.08333
        torch.testing.assert_close(enc, rearrange(ref, "(b t) c h w -> b t c h w", t=t), atol=1e-5, rtol=0)
        assert video.encode(frames, sample=True, generator=torch.Generator().manual_seed(0)).shape == enc.shape


def test_vae_lq_condition_is_used_and_checked():
    torch.manual_seed(0)
    vae = UpscaleAVideoVAE(**TINY_VAE, condition_channels=32, zero_init=False).eval()
    latents, lq = torch.randn(1, 2, 4, 8, 8), torch.rand(1, 2, 3, 8, 8)
    with torch.no_grad():
        a, b = vae.decode(latents, lq), vae.decode(latents, -lq)
        assert a.shape == (1, 2, 3, 16, 16) and (a - b).abs().max() > 1e-4
        torch.testing.assert_close(vae.decode(latents, lq, lq_weight=0.0), vae.decode(latents, -lq, lq_weight=0.0))
    with pytest.raises(InputError, match="lq"):
        vae.decode(latents)
    with pytest.raises(InputError, match="match"):
        vae.decode(latents, lq[..., :4, :4])
    with pytest.raises(InputError, match="multiples"):
        vae.encode(torch.rand(1, 2, 3, 9, 9))  # tiny VAE: downscale 2
    plain = UpscaleAVideoVAE(**TINY_VAE, lq_condition=False, temporal_convs=False)
    assert not any(is_new_parameter(k) for k in plain.state_dict())
    assert plain.decode(latents).shape == (1, 2, 3, 16, 16)


# ------------------------------------------------------------------------------------------------ layers
def test_rotary_embedding_depends_on_relative_position_only():
    def rope(x: torch.Tensor) -> torch.Tensor:
        return apply_rotary(x, 8)

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 12, generator=g), torch.randn(1, 1, 1, 12, generator=g)
    seq_q, seq_k = q.expand(1, 1, 6, 12), k.expand(1, 1, 6, 12)  # same vectors at positions 0..5
    scores = rope(seq_q) @ rope(seq_k).transpose(-1, -2)
    torch.testing.assert_close(scores[0, 0, 1, 3], scores[0, 0, 2, 4])
    torch.testing.assert_close(scores[0, 0, 0, 0], (q[..., :12] * k[..., :12]).sum())
    torch.testing.assert_close(rope(seq_q)[..., 8:], seq_q[..., 8:])  # channels beyond dim pass unchanged
    with pytest.raises(ConfigError):
        apply_rotary(seq_q, 7)


def test_relative_position_buckets_follow_t5():
    bias = RelativePositionBias(num_heads=2, num_buckets=32, max_distance=32)
    bucket = bias.bucket(40, torch.device("cpu"))
    assert bucket[5, 0] == 5 and bucket[0, 5] == 16 + 5  # exact buckets: i - j >= 0 low half, < 0 high half
    assert bucket[39, 0] == 15 and bucket[0, 39] == 31  # beyond max_distance: last bucket
    assert bias(7, torch.device("cpu")).shape == (2, 7, 7)


def test_temporal_layers_start_as_identity():
    x = torch.randn(2, 32, 4, 3, 3)
    torch.testing.assert_close(TemporalConvBlock(32, kernel_size=5, temb_channels=8)(x, torch.randn(2, 8)), x)
    tokens = torch.randn(5, 4, 32)
    assert temporal_attention(32, num_heads=1, head_dim=32)(tokens).abs().max() == 0
    feats, cond = torch.randn(3, 32, 4, 4), torch.randn(3, 32, 4, 4)
    torch.testing.assert_close(SFTLayer(32, 32)(feats, cond), feats)
    with pytest.raises(ConfigError):
        temporal_attention(32, num_heads=2, head_dim=16, rope_dim=32)


def test_temporal_attention_processor_equals_a_plain_computation():
    torch.manual_seed(0)
    attn = temporal_attention(16, num_heads=2, head_dim=8, rope_dim=4, zero_init=False)
    with torch.no_grad():
        attn.relative_position.embedding.weight.normal_()
    tokens = torch.randn(3, 5, 16)
    q, k, v = (rearrange(proj(tokens), "n t (h d) -> n h t d", h=2) for proj in (attn.to_q, attn.to_k, attn.to_v))
    q, k = apply_rotary(q, 4), apply_rotary(k, 4)
    logits = q @ k.transpose(-1, -2) / 8**0.5 + attn.relative_position(5, torch.device("cpu"))
    reference = attn.to_out[0](rearrange(logits.softmax(-1) @ v, "n h t d -> n t (h d)"))
    torch.testing.assert_close(attn(tokens), reference, atol=1e-6, rtol=1e-5)


def test_attention_processors_can_be_listed_and_swapped_by_name():
    from diffusers.models.attention_processor import AttnProcessor

    torch.manual_seed(0)
    net = UpscaleAVideoUNet(**TINY_UNET)
    processors = attention_processors(net)
    temporal = [name for name, p in processors.items() if isinstance(p, TemporalAttnProcessor)]
    assert temporal and all(".attn_temporal.processor" in name for name in temporal)
    assert len(temporal) == sum(1 for n, _ in net.named_modules() if n.endswith("attn_temporal"))
    spatial = [name for name in processors if name not in temporal]
    assert spatial and all(name.endswith(("attn1.processor", "attn2.processor")) for name in spatial)
    # swap every spatial self-attention layer's processor: the network computes the same (same math)
    inputs = _inputs(b=1, t=2)
    with torch.no_grad():
        before = net(**inputs)
        count = set_attention_processor(net, lambda name, layer: None if name.endswith("attn_temporal")
                                        else AttnProcessor())
        after = net(**inputs)
    assert count == len(spatial)
    assert all(type(p).__name__ == "AttnProcessor" for n, p in attention_processors(net).items() if n in spatial)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="no attention layer"):
        set_attention_processor(net, {"nowhere.processor": AttnProcessor()})


def test_frame_group_norm_pools_over_the_clip():
    frames = FrameContext()
    norm = FrameGroupNorm(2, 4, frames=frames)
    x = torch.randn(6, 4, 3, 3)  # b=2, t=3 folded
    with frames.clip(3):
        y = norm(x)
    ref = torch.nn.functional.group_norm(rearrange(x, "(b t) c h w -> b c t h w", t=3), 2, eps=norm.eps)
    torch.testing.assert_close(y, rearrange(ref, "b c t h w -> (b t) c h w"))
    with pytest.raises(RuntimeError, match="FrameContext"):
        norm(x)
