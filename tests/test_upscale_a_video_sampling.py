"""Upscale-A-Video sampler, latent propagation and colour fixes on tiny random networks (CPU).

Checks the sampler's plumbing: windows and tiles blend to the whole-clip result where they should, guidance, per-chunk
seeding, flow-direction conventions of the propagation, colour statistics, input checks and the ``as_upscaler`` adapter
with :mod:`zoo.inference`. (The shared loop over the scheduler's ``step`` is tested in ``tests/test_diffusion.py``,
the whole sampler against pre-port goldens in ``tests/test_upscale_a_video_goldens.py``.)
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image
from torch import nn

from zoo.diffusion.sampler import chunk_generator
from zoo.errors import ConfigError, InputError
from zoo.hub import family
from zoo.inference import upscale_tensor, upscale_video
from zoo.layers.color import adain_color_fix, apply_color_fix, wavelet_color_fix, wavelet_decomposition
from zoo.layers.latent_propagation import (
    estimate_bidirectional_flows,
    flow_consistency_mask,
    propagate_latents,
    resize_flow,
)
from zoo.models.upscale_a_video.load import load_upscale_a_video
from zoo.models.upscale_a_video.net import UpscaleAVideoComponents
from zoo.models.upscale_a_video.sampling import UpscaleAVideoPipeline
from zoo.testing import write_clip_tokenizer

torch.set_num_threads(1)

TINY = family("upscale_a_video").variant("tiny")
TINY_UNET, TINY_VAE = TINY["unet"], TINY["vae"]
FAST = dict(num_inference_steps=2, progress=False)


def _components(seed: int = 0, **unet_options: object) -> UpscaleAVideoComponents:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loud random-initialisation warning
        return load_upscale_a_video(None, unet=dict(TINY_UNET, **unet_options), vae=TINY_VAE)


def _pipeline(seed: int = 0, **unet_options: object) -> UpscaleAVideoPipeline:
    return UpscaleAVideoPipeline(_components(seed, **unet_options))


@pytest.fixture(scope="module")
def pipeline() -> UpscaleAVideoPipeline:
    return _pipeline()


def _lq(t: int = 5, h: int = 24, w: int = 32, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, t, 3, h, w, generator=g)


class PointwiseUNet(nn.Module):
    """Stand-in UNet with a 1x1 receptive field and no temporal mixing: any tiling/windowing must be exact."""

    max_noise_level = 350

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv_in = nn.Conv2d(7, 4, 1)

    def forward(self, latents, timestep, lq, noise_level, encoder_hidden_states):  # noqa: ANN001, ANN201
        t = latents.shape[1]
        x = rearrange(torch.cat([latents, lq], dim=2), "b t c h w -> (b t) c h w")
        out = rearrange(self.conv_in(x), "(b t) c h w -> b t c h w", t=t)
        return out * (1.0 + float(timestep) / 1000.0)


class ConstantFlowNet(nn.Module):
    """Stand-in RAFT: the flow is ``(mean(dst) - mean(src), 0)`` everywhere; records the input sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.sizes: list[tuple[int, int]] = []

    def forward(self, src, dst, num_flow_updates=20):  # noqa: ANN001, ANN201
        self.sizes.append(tuple(src.shape[-2:]))
        dx = (dst.mean(dim=(1, 2, 3)) - src.mean(dim=(1, 2, 3)))[:, None, None, None]
        flow = torch.cat([dx.expand(-1, 1, *src.shape[-2:]), torch.zeros_like(src[:, :1])], dim=1)
        return [flow * 0.5, flow]


# ------------------------------------------------------------------------------------------ sampler
def test_sampler_shape_range_determinism(pipeline):
    lq = _lq()
    sr = pipeline(lq, seed=1, **FAST)
    assert sr.shape == (1, 5, 3, 96, 128) and sr.dtype == torch.float32 and sr.device.type == "cpu"
    assert 0.0 <= float(sr.min()) and float(sr.max()) <= 1.0
    assert torch.equal(sr, pipeline(lq, seed=1, **FAST))
    assert not torch.equal(sr, pipeline(lq, seed=2, **FAST))


def test_window_covering_the_clip_equals_unwindowed(pipeline):
    lq = _lq(t=5)
    assert torch.equal(pipeline(lq, window=8, **FAST), pipeline(lq, window=None, **FAST))


def test_overlapping_windows_average_to_whole_clip_for_frame_independent_unet():
    """With per-frame GroupNorm and zero temporal layers the UNet treats frames independently: windows (3 frames, 1
    shared) averaged per frame must give the whole-clip latents."""
    pipe = _pipeline(norm_over_time=False)
    lq = _lq(t=6)
    windowed = pipe.sample_latents(lq, window=3, window_overlap=1, **FAST)
    whole = pipe.sample_latents(lq, window=None, **FAST)
    torch.testing.assert_close(windowed, whole, atol=1e-5, rtol=0)


def test_windows_change_the_result_with_clip_wide_norms(pipeline):
    lq = _lq(t=6)
    windowed = pipeline.sample_latents(lq, window=3, window_overlap=1, **FAST)
    assert not torch.allclose(windowed, pipeline.sample_latents(lq, window=None, **FAST))


def test_tile_covering_the_frame_equals_untiled(pipeline):
    lq = _lq()
    assert torch.equal(pipeline(lq, tile=64, tile_overlap=16, **FAST), pipeline(lq, tile=None, **FAST))


def test_tiles_blend_exactly_for_a_pointwise_unet():
    parts = _components()
    pipe = UpscaleAVideoPipeline(UpscaleAVideoComponents(unet=PointwiseUNet(), vae=parts.vae))
    lq = _lq(t=3)
    tiled = pipe.sample_latents(lq, tile=16, tile_overlap=8, **FAST)
    torch.testing.assert_close(tiled, pipe.sample_latents(lq, tile=None, **FAST), atol=1e-5, rtol=0)


def test_tiled_sampling_and_decoding_close_to_untiled(pipeline):
    lq = _lq(t=3, h=32, w=32)
    whole = pipeline.sample_latents(lq, tile=None, **FAST)
    tiled = pipeline.sample_latents(lq, tile=24, tile_overlap=16, **FAST)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean() < 0.1 * whole.abs().mean()
    # decoding: covering tile == untiled; overlapping feathered tiles close, no seams
    untiled = pipeline.decode_latents(whole, lq, tile=None, color_fix="none")
    assert torch.equal(pipeline.decode_latents(whole, lq, tile=32, tile_overlap=8, color_fix="none"), untiled)
    tiled_frames = pipeline.decode_latents(whole, lq, tile=24, tile_overlap=16, color_fix="none")
    assert (tiled_frames - untiled).abs().mean() < 0.02


def test_guidance_scale_one_equals_conditional_prediction(pipeline):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 3, 4, 16, 16, generator=g)
    lq = torch.rand(1, 3, 3, 16, 16, generator=g) * 2 - 1
    text, uncond = torch.randn(1, 7, 32, generator=g), torch.randn(1, 7, 32, generator=g)
    levels = torch.tensor([120])
    with torch.no_grad():
        cond_only = pipeline.guided_prediction(latents, 500, lq, levels, text, None, 1.0)
        guided = pipeline.guided_prediction(latents, 500, lq, levels, text, uncond, 1.0)
        uncond_only = pipeline.guided_prediction(latents, 500, lq, levels, uncond, None, 1.0)
        at_zero = pipeline.guided_prediction(latents, 500, lq, levels, text, uncond, 0.0)
    torch.testing.assert_close(guided, cond_only, atol=1e-5, rtol=0)
    torch.testing.assert_close(at_zero, uncond_only, atol=1e-5, rtol=0)
    assert not torch.allclose(cond_only, uncond_only)


def test_window_blend_feather_differs_from_the_plain_mean(pipeline):
    lq = _lq(t=6)
    feather = pipeline.sample_latents(lq, window=3, window_overlap=1, **FAST)
    mean = pipeline.sample_latents(lq, window=3, window_overlap=1, window_blend="uniform", **FAST)
    assert feather.shape == mean.shape and not torch.allclose(feather, mean)
    with pytest.raises(ConfigError, match="window_blend"):
        pipeline(lq, window_blend="median", **FAST)


def test_each_streamed_chunk_draws_its_own_noise(pipeline):
    """The generator is seeded from the seed and the chunk's first frame: identical chunk contents at different
    positions of a video get different noise; the same position always the same; frame 0 gives what ``seed`` gives."""
    upscaler = pipeline.as_upscaler(num_inference_steps=1, seed=3, progress=False)
    assert upscaler.takes_first_frame
    lq = _lq(t=2, h=16, w=16)
    first, again, later = upscaler(lq, first_frame=0), upscaler(lq, first_frame=0), upscaler(lq, first_frame=24)
    assert torch.equal(first, again) and not torch.allclose(first, later)
    assert torch.equal(first, pipeline(lq, num_inference_steps=1, seed=3, progress=False))
    a, b = chunk_generator(3, 0), torch.Generator().manual_seed(3)
    assert torch.equal(torch.randn(4, generator=a), torch.randn(4, generator=b))
    with pytest.raises(ConfigError, match="first_frame"):
        chunk_generator(3, -1)


def _tiny_text_encoder(folder: Path):  # noqa: ANN202
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    return CLIPTextModel(CLIPTextConfig(**TINY["text_encoder"])).eval(), write_clip_tokenizer(folder)


def test_text_encoder_prompts_and_guidance(tmp_path):
    parts = _components()
    parts.text_encoder, parts.tokenizer = _tiny_text_encoder(tmp_path)
    pipe = UpscaleAVideoPipeline(parts)
    with torch.no_grad():
        text = pipe.encode_prompt(["a b", "b a"], 2)
    assert text.shape == (2, 77, 32) and not torch.allclose(text[0], text[1])
    with pytest.raises(InputError, match="prompts"):
        pipe.encode_prompt(["a", "b", "a"], 2)
    lq = _lq(t=2, h=16, w=16)
    guided = pipe(lq, prompt="a", negative_prompt="b", guidance_scale=6.0, **FAST)
    plain = pipe(lq, prompt="a", negative_prompt="b", guidance_scale=1.0, **FAST)
    assert guided.shape == plain.shape and not torch.equal(guided, plain)


def test_no_text_encoder_gives_zero_tokens_and_warns():
    pipe = _pipeline()
    with pytest.warns(UserWarning, match="no text encoder"):
        text = pipe.encode_prompt("anything", 2)
    assert text.shape == (2, 77, 32) and not text.any()


def test_propagation_steps_run_in_the_sampler():
    parts = _components()
    parts.flow_net = ConstantFlowNet()
    pipe = UpscaleAVideoPipeline(parts)
    lq = _lq(t=4, h=16, w=16)
    plain = pipe.sample_latents(lq, **FAST)
    propagated = pipe.sample_latents(lq, propagation_steps=(0,), **FAST)
    assert propagated.shape == plain.shape and not torch.allclose(propagated, plain)
    assert parts.flow_net.sizes  # RAFT was called


def test_input_and_option_checks(pipeline):
    lq = _lq(t=2, h=16, w=16)
    with pytest.raises(InputError, match=r"\(b, t, 3, h, w\)"):
        pipeline(lq[0], **FAST)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        pipeline(lq * 2 - 1, **FAST)
    with pytest.raises(ConfigError, match="noise_level"):
        pipeline(lq, noise_level=400, **FAST)
    with pytest.raises(ConfigError, match="flow network"):
        pipeline(lq, propagation_steps=(1,), **FAST)
    with pytest.raises(ConfigError, match="propagation_steps"):
        pipeline(lq, propagation_steps=(5,), **FAST)
    with pytest.raises(ConfigError, match="tile_overlap"):
        pipeline(lq, tile=16, tile_overlap=16, **FAST)
    with pytest.raises(ConfigError, match="color_fix"):
        pipeline(lq, color_fix="histogram", **FAST)
    with pytest.raises(ConfigError, match="unknown"):
        pipeline.as_upscaler(steps=3)


def test_as_upscaler_with_zoo_inference(pipeline, tmp_path):
    upscaler = pipeline.as_upscaler(num_inference_steps=1, window=3, window_overlap=1)
    assert upscaler.scale == 4
    lq = _lq(t=5, h=16, w=16)
    sr = upscale_tensor(upscaler, lq, scale=4, chunk_frames=3, overlap=1)
    assert sr.shape == (1, 5, 3, 64, 64) and 0 <= float(sr.min()) and float(sr.max()) <= 1
    frames = tmp_path / "clip"
    frames.mkdir()
    for i in range(4):
        Image.fromarray((lq[0, i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(frames / f"{i:04d}.png")
    summary = upscale_video(upscaler, frames, tmp_path / "out", scale=4, chunk_frames=3, overlap=1, as_frames=True,
                            progress=False)
    assert summary["frames"] == 4 and summary["size"] == (64, 64)
    assert len(list((tmp_path / "out").glob("*.png"))) == 4


# ------------------------------------------------------------------------------------------ propagation
def test_zero_flow_warp_is_identity_and_consistent():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 4, 8, 8, generator=g)
    zero = torch.zeros(1, 3, 2, 8, 8)
    assert flow_consistency_mask(zero[:, 0], zero[:, 0]).min() == 1
    static = x[:, :1].expand(-1, 4, -1, -1, -1).clone()
    assert torch.equal(propagate_latents(static, zero, zero), static)
    # fully occluded (inconsistent flows): every frame keeps its own latent
    ones = torch.ones(1, 3, 2, 8, 8)
    assert torch.equal(propagate_latents(x, ones, ones), x)
    # zero flow on moving content: the documented recursive 0.5 / 0.5 fusion
    out = propagate_latents(x[:, :2], zero[:, :1], zero[:, :1])
    backward0 = 0.5 * x[:, 1] + 0.5 * x[:, 0]
    torch.testing.assert_close(out[:, 0], backward0)
    torch.testing.assert_close(out[:, 1], 0.5 * backward0 + 0.5 * x[:, 1])
    assert torch.equal(propagate_latents(x[:, :1], zero[:, :0], zero[:, :0]), x[:, :1])


def test_propagation_flow_directions_follow_motion():
    """Content moving right by 1 px per frame: with the matching flows the fusion changes nothing; swapped flows do."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, 4, 8, 12, generator=g)
    x = torch.stack([torch.roll(base, shifts=i, dims=-1) for i in range(4)], dim=1)
    flows_backward = torch.zeros(1, 3, 2, 8, 12)
    flows_backward[:, :, 0] = 1.0  # frame i -> i+1: pixels move right
    flows_forward = -flows_backward
    torch.testing.assert_close(propagate_latents(x, flows_forward, flows_backward), x)
    assert not torch.allclose(propagate_latents(x, flows_backward, flows_forward), x)


def test_flow_estimation_directions_padding_and_resize():
    net = ConstantFlowNet()
    frames = torch.stack([torch.full((3, 12, 20), v) for v in (0.0, 0.2, 0.6)])[None] * 2 - 1
    flows_forward, flows_backward = estimate_bidirectional_flows(net, frames)
    assert flows_forward.shape == flows_backward.shape == (1, 2, 2, 12, 20)
    assert set(net.sizes) == {(16, 24)}  # padded (resized) to multiples of 8 for RAFT
    # frame i -> i+1 is flows_backward; x scaled back by 20 / 24
    torch.testing.assert_close(flows_backward[0, :, 0, 0, 0], torch.tensor([0.4, 0.8]) * 20 / 24)
    torch.testing.assert_close(flows_forward, -flows_backward)
    flow = torch.ones(1, 2, 8, 8)
    halved = resize_flow(flow, (4, 2))
    assert halved.shape == (1, 2, 4, 2)
    torch.testing.assert_close(halved[:, 0], torch.full((1, 4, 2), 0.25))
    torch.testing.assert_close(halved[:, 1], torch.full((1, 4, 2), 0.5))


# ------------------------------------------------------------------------------------------ colour
def _smooth(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def test_wavelet_color_fix_takes_the_reference_low_band():
    reference = _smooth()
    g = torch.Generator().manual_seed(1)
    detail = 0.2 * torch.randn(reference.shape, generator=g)
    cast = torch.tensor([0.25, -0.1, 0.15]).view(1, 3, 1, 1)
    content = reference + cast + detail  # a colour cast + fine generated detail
    fixed = wavelet_color_fix(content, reference)
    low_fixed, low_ref = wavelet_decomposition(fixed)[1], wavelet_decomposition(reference)[1]
    before = (wavelet_decomposition(content)[1] - low_ref).abs().mean()
    assert (low_fixed - low_ref).abs().mean() < 0.05 * before
    torch.testing.assert_close(fixed.mean(dim=(2, 3)), reference.mean(dim=(2, 3)), atol=0.01, rtol=0)
    high_fixed, high_content = wavelet_decomposition(fixed)[0], wavelet_decomposition(content)[0]
    assert (high_fixed - high_content).abs().mean() < 0.2 * high_content.abs().mean()
    # affine equivariance: the same result in [0, 1] and [-1, 1]
    torch.testing.assert_close(wavelet_color_fix(content * 2 - 1, reference * 2 - 1), fixed * 2 - 1, atol=1e-5,
                               rtol=0)


def test_adain_color_fix_matches_reference_statistics():
    g = torch.Generator().manual_seed(0)
    sr = torch.rand(3, 3, 32, 32, generator=g) * 0.5 + 0.3
    reference = torch.rand(3, 3, 16, 16, generator=g) * 0.2
    fixed = adain_color_fix(sr, reference)
    torch.testing.assert_close(fixed.mean(dim=(2, 3)), reference.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(fixed.std(dim=(2, 3)), reference.std(dim=(2, 3)), atol=1e-3, rtol=1e-2)


def test_apply_color_fix_on_videos():
    video = torch.rand(1, 2, 3, 16, 16)
    reference = torch.rand(1, 2, 3, 16, 16)
    assert apply_color_fix(video, reference, "none") is video
    out = apply_color_fix(video, reference, "adain")
    torch.testing.assert_close(out[0, 1].mean(dim=(1, 2)), reference[0, 1].mean(dim=(1, 2)), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError):
        apply_color_fix(video, reference, "histogram")
    with pytest.raises(InputError):
        apply_color_fix(video, reference[:, :1], "wavelet")
