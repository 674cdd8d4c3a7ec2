"""SATeCo's networks on tiny sizes: TFA against a plain per-tubelet reference, zero-initialised adapters reproduce the
frozen UNet and VAE decoder exactly, and the upscaler / refiner / latent encoder keep their contracts."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from einops import rearrange

from zoo.errors import ConfigError, InputError
from zoo.hub import family
from zoo.models.sateco.load import build_pipeline
from zoo.models.sateco.net import (
    GuidedAdapter,
    LatentEncoder,
    SpatialFeatureAdaptation,
    TemporalFeatureAlignment,
    VideoRefiner,
    VideoUpscaler,
)

torch.set_num_threads(1)
TINY = family("sateco").variant("tiny")


def _tiny_pipeline(**options):  # noqa: ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-base warning
        torch.manual_seed(0)
        return build_pipeline(None, variant="tiny", **options)


def _reference_tfa(tfa: TemporalFeatureAlignment, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Plain loops: for every tubelet (cut at the clip's and frames' ends, no padding), self-attention over its real
    tokens (with the position embedding of each token's place in the full tubelet), then cross-attention to the same
    tokens of the guide; the layers' weights applied by hand (not through diffusers' Attention)."""

    def attend(layer, x, context):  # noqa: ANN001, ANN202
        heads = layer.heads
        q = layer.to_q(x)
        k, v = layer.to_k(context), layer.to_v(context)
        q, k, v = (rearrange(y, "n (h d) -> h n d", h=heads) for y in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        return layer.to_out[0](rearrange(weights @ v, "h n d -> n (h d)"))

    b, t, c, h, w = f.shape
    L, wh, ww = tfa.window
    out = torch.empty_like(f)
    for bi in range(b):
        for t0 in range(0, t, L):
            for y0 in range(0, h, wh):
                for x0 in range(0, w, ww):
                    ts, ys, xs = range(t0, min(t, t0 + L)), range(y0, min(h, y0 + wh)), range(x0, min(w, x0 + ww))
                    idx = [(ti, yi, xi) for ti in ts for yi in ys for xi in xs]
                    x = torch.stack([f[bi, ti, :, yi, xi] for ti, yi, xi in idx])
                    guide = torch.stack([g[bi, ti, :, yi, xi] for ti, yi, xi in idx])
                    pos = torch.stack([tfa.position[((ti - t0) * wh + (yi - y0)) * ww + (xi - x0)]
                                       for ti, yi, xi in idx])
                    x = x + attend(tfa.self_attn, tfa.norm_self(x + pos), tfa.norm_self(x + pos))
                    x = x + attend(tfa.cross_attn, tfa.norm_cross(x), tfa.norm_guide(guide))
                    for (ti, yi, xi), value in zip(idx, x):
                        out[bi, ti, :, yi, xi] = value
    return out


@pytest.mark.parametrize("shape", [(1, 6, 8, 16), (2, 7, 10, 13), (1, 3, 5, 9)])
def test_tfa_equals_per_tubelet_reference(shape):
    """Clips of 6 (one tubelet), 7 and 3 frames; frames of multiples of 8 and not: padded tokens never take part."""
    torch.manual_seed(0)
    b, t, h, w = shape
    tfa = TemporalFeatureAlignment(16, 8, head_dim=8).eval()
    f, g = torch.randn(b, t, 16, h, w), torch.randn(b, t, 8, h, w)
    with torch.no_grad():
        ours = tfa(f, g)
        reference = _reference_tfa(tfa, f, g)
        tfa.max_tubelets = 1  # one tubelet per attention call: same result
        chunked = tfa(f, g)
    assert ours.shape == f.shape
    torch.testing.assert_close(ours, reference, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(chunked, ours, atol=1e-6, rtol=1e-6)


def test_tfa_links_frames_only_within_a_tubelet():
    """Changing frame 7 (second tubelet of a 12-frame clip) changes frames 6..11 and leaves frames 0..5 unchanged."""
    torch.manual_seed(0)
    tfa = TemporalFeatureAlignment(16, 8, head_dim=8).eval()
    f, g = torch.randn(1, 12, 16, 8, 8), torch.randn(1, 12, 8, 8, 8)
    f2 = f.clone()
    f2[:, 7] += 1.0
    with torch.no_grad():
        a, b = tfa(f, g), tfa(f2, g)
    assert torch.equal(a[:, :6], b[:, :6])
    assert (a[:, 6:] - b[:, 6:]).abs().amax(dim=(0, 2, 3, 4)).min() > 0


def test_sfa_is_a_per_pixel_affine_modulation():
    """f' = S(g) norm(f) + M(g): with M, S set to 1x1 identity maps of the guide, f' = g * norm(f) + g."""
    sfa = SpatialFeatureAdaptation(4, 4, norm="instance")
    with torch.no_grad():
        for conv in (sfa.scale, sfa.shift):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[:, :, 1, 1] = torch.eye(4)
    f, g = torch.randn(2, 4, 6, 6), torch.rand(2, 4, 6, 6)
    normed = (f - f.mean(dim=(2, 3), keepdim=True)) / torch.sqrt(f.var(dim=(2, 3), unbiased=False, keepdim=True)
                                                               + 1e-6)
    torch.testing.assert_close(sfa(f, g), g * normed + g, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="norm"):
        SpatialFeatureAdaptation(4, 4, norm="batch")


def test_fresh_adapter_is_the_identity_and_learns():
    torch.manual_seed(0)
    adapter = GuidedAdapter(16, 8, head_dim=8)
    f, g = torch.randn(1, 6, 16, 8, 8), torch.randn(1, 6, 8, 4, 4)  # guide at half size: resized
    assert torch.equal(adapter(f, g), f)
    adapter(f, g).square().mean().backward()
    assert adapter.out.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="SFA, TFA or both"):
        GuidedAdapter(16, 8, use_sfa=False, use_tfa=False)


def test_fresh_pipeline_reproduces_the_frozen_unet_and_vae_decoder_exactly():
    pipe = _tiny_pipeline()
    torch.manual_seed(1)
    x, z = torch.randn(1, 6, 4, 8, 8), torch.randn(1, 6, 4, 8, 8)
    text = torch.randn(1, 77, pipe.cross_attention_dim)
    t = torch.tensor([500])
    with torch.no_grad():
        guided = pipe.unet_prediction(x, t, z=z, text=text)
        pipe.unet_adapters.set_guidance(None)
        plain = pipe.unet(rearrange(x, "b n c h w -> (b n) c h w"), t.repeat(6),
                          encoder_hidden_states=text.repeat(6, 1, 1)).sample
        assert torch.equal(guided, rearrange(plain, "(b n) c h w -> b n c h w", b=1))
        x_u = torch.rand(1, 6, 3, 64, 64) * 2 - 1
        decoded = pipe.decode_guided(z, x_u)
        base = pipe.vae.decode(rearrange(z, "b n c h w -> (b n) c h w") / pipe.vae.config.scaling_factor).sample
    assert torch.equal(decoded, rearrange(base, "(b n) c h w -> b n c h w", b=1))
    # trained adapters do change the outputs (the hooks are live)
    with torch.no_grad():
        for adapter in [*pipe.unet_adapters.adapters, *pipe.vae_adapters.adapters]:
            adapter.out.weight.normal_(0, 0.1)
        assert not torch.equal(pipe.unet_prediction(x, t, z=z, text=text), guided)
        assert not torch.equal(pipe.decode_guided(z, x_u), decoded)


def test_adapters_sit_on_every_decoder_block_with_matching_guides():
    pipe = _tiny_pipeline()
    assert len(pipe.unet_adapters.adapters) == len(pipe.unet.up_blocks)
    assert len(pipe.vae_adapters.adapters) == len(pipe.vae.decoder.up_blocks)
    guides = pipe.latent_guides(torch.randn(1, 6, 4, 8, 8))
    # tiny UNet: 3 up blocks at 1/2, 1, 1 of the latent
    assert [tuple(g.shape[-2:]) for g in guides] == [(4, 4), (8, 8), (8, 8)]
    vae_guides = pipe.vae_guides(torch.rand(1, 2, 3, 64, 64))
    # VAE decoder: 4 up blocks at 1/4, 1/2, 1, 1 of the image, guided by the encoder's features there
    assert [tuple(g.shape[-2:]) for g in vae_guides] == [(16, 16), (32, 32), (64, 64), (64, 64)]
    assert _tiny_pipeline(vae_adapters=False).vae_adapters is None


def test_upscaler_refiner_latent_encoder_contracts():
    torch.manual_seed(0)
    lq = torch.rand(1, 5, 3, 11, 14)  # odd frame count, sizes not multiples of the TMSA window
    up = VideoUpscaler(channels=8, num_blocks=2, num_heads=2)
    assert up(lq).shape == (1, 5, 3, 44, 56)
    plain = VideoUpscaler(channels=8, num_blocks=0)
    assert len(plain.blocks) == 0 and plain(lq).shape == (1, 5, 3, 44, 56)
    with pytest.raises(ConfigError, match="power of 2"):
        VideoUpscaler(scale=3)
    x_u, x_d = torch.rand(1, 2, 3, 8, 8), torch.rand(1, 2, 3, 8, 8)
    for w in (0.0, 0.5, 1.0):
        torch.testing.assert_close(VideoRefiner(weight=w, channels=4, num_blocks=1)(x_u, x_d), w * x_u + (1 - w) * x_d)
    with pytest.raises(ConfigError, match="refiner weight"):
        VideoRefiner(weight=1.5)
    with pytest.raises(InputError, match="refiner inputs"):
        VideoRefiner()(x_u, x_d[..., :4])
    levels = LatentEncoder(channels=(8, 16, 32))(torch.randn(2, 4, 11, 13))
    assert [tuple(x.shape) for x in levels] == [(2, 8, 11, 13), (2, 16, 6, 7), (2, 32, 3, 4)]


def test_vae_guides_are_the_encoders_own_features():
    """The decoder's guides (the encoder run up to the deepest level needed) equal the outputs of the last ResNet of
    each level in a full pass of diffusers' encoder."""
    pipe = _tiny_pipeline()
    frames = torch.rand(1, 2, 3, 64, 64) * 2 - 1
    captured = {}
    handles = [block.resnets[-1].register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(i, out))
               for i, block in enumerate(pipe.vae.encoder.down_blocks)]
    with torch.no_grad():
        pipe.vae.encoder(rearrange(frames, "b n c h w -> (b n) c h w"))
    for handle in handles:
        handle.remove()
    for guide, level in zip(pipe.vae_guides(frames), pipe._vae_levels):
        assert torch.equal(rearrange(guide, "b n c h w -> (b n) c h w"), captured[level])
