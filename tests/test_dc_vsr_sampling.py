"""The DC-VSR sampler: tiles and their Gaussian blending, the Euler step, tiled vs untiled, guidance, switches."""
from __future__ import annotations

import warnings

import pytest
import torch

from zoo.diffusion.sampler import chunk_generator, predict_over_tiles
from zoo.diffusion.tiles import TileAccumulator, plan_tiles, tile_weights
from zoo.errors import ConfigError
from zoo.models.dc_vsr.load import build_pipeline

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipeline():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return build_pipeline(None, variant="tiny", propagation={"sap_stride": 2, "num_frames_kept": 1})


def _lq(t: int = 4, h: int = 8, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_the_paper_tiles_cover_every_latent_voxel_and_their_gaussian_weights_sum_to_one():
    """64 x 64 x 14 latent tiles sharing 50% on a 720p clip of 30 frames: every voxel is covered, and blending a
    constant field gives it back (the normalised weights sum to 1 everywhere)."""
    shape = (30, 90, 160)
    tiles = plan_tiles(shape, (14, 64, 64), (7, 32, 32), exact=True)
    covered = torch.zeros(shape, dtype=torch.bool)
    plans = [sorted({spans[a] for _, spans in tiles}) for a in range(3)]
    blend = TileAccumulator((1, *shape), axes=(1, 2, 3))
    for index, spans in tiles:
        (t0, t1), (y0, y1), (x0, x1) = spans
        assert (t1 - t0, y1 - y0, x1 - x0) == (14, 64, 64)  # the trained size everywhere; neighbours share >= 50%
        covered[t0:t1, y0:y1, x0:x1] = True
        weights = tile_weights(plans, index, kind="gaussian", gaussian_sigma=0.1)
        blend.add(spans, torch.full((1, t1 - t0, y1 - y0, x1 - x0), 3.0), weights, floor=1e-3)
    assert bool(covered.all())
    torch.testing.assert_close(blend.result(), torch.full((1, *shape), 3.0))
    assert float(blend.weight_sum.min()) > 0
    # the sampler's own blending of an identity "model" returns its input
    latents = torch.randn(1, 16, 2, 40, 40)
    out = predict_over_tiles(lambda piece: piece, latents, window=14, window_overlap=7, tile=32, tile_overlap=16,
                             window_weights="gaussian", tile_weights_kind="gaussian", exact=True)
    torch.testing.assert_close(out, latents, rtol=1e-5, atol=1e-5)


def test_a_video_that_fits_one_tile_gives_the_same_result_tiled_and_untiled(pipeline):
    lq = _lq()
    options = dict(num_inference_steps=3, guidance_scale=2.0, vae_chunk=4, seed=1)
    untiled = pipeline(lq, window=None, tile=None, vae_tile=None, **options)
    tiled = pipeline(lq, window=14, window_overlap=7, tile=128, tile_overlap=64, vae_tile=128, **options)
    assert untiled.shape == (1, 4, 3, 32, 48)
    assert torch.equal(untiled, tiled)


def test_one_euler_step_equals_the_scheduler_step_and_the_edm_formula(pipeline):
    """A one-step schedule (sigma 700 -> 0), guidance off, one tile: the sampler's latents equal ``scheduler.step`` on
    the UNet's output computed here, and the EDM denoiser ``c_skip x + c_out F`` (v-prediction)."""
    lq = _lq()
    latents = pipeline.sample_latents(lq, num_inference_steps=1, guidance_scale=1.0, seed=4, window=None, tile=None,
                                      vae_tile=None)
    generator = chunk_generator(4, 0)
    up = pipeline.upsample(lq)
    x = torch.randn(latents.shape, generator=generator) * float(pipeline.scheduler.init_noise_sigma)
    cond = pipeline.condition_latents(up, torch.randn(up.shape, generator=generator), tile=None)
    scheduler = pipeline.scheduler
    scheduler.set_timesteps(1)
    t = scheduler.timesteps[0]
    with torch.no_grad():
        out = pipeline.unet_prediction(scheduler.scale_model_input(x, t), t, cond=cond,
                                       image_embeds=torch.zeros(1, 1, pipeline.cross_attention_dim),
                                       added_time_ids=pipeline.added_time_ids(1)).float()
    stepped = scheduler.step(out, t, x, return_dict=False)[0]
    torch.testing.assert_close(latents, stepped, rtol=1e-5, atol=1e-4)
    sigma = float(scheduler.sigmas[0])
    assert sigma == pytest.approx(700.0) and float(t) == pytest.approx(0.25 * torch.log(torch.tensor(700.0)).item())
    edm = x / (sigma**2 + 1) + out * (-sigma / (sigma**2 + 1) ** 0.5)
    torch.testing.assert_close(latents, edm, rtol=1e-4, atol=1e-3)


def test_switches_and_guidance_change_the_output_and_the_seed_fixes_it(pipeline):
    """Several tiles in space and time: SAP/TAP/DSSAG each change the result; the same seed gives the same video."""
    lq = _lq(t=4, h=12, w=12)
    options = dict(num_inference_steps=3, guidance_scale=2.0, seed=2, window=2, window_overlap=1, tile=8,
                   tile_overlap=4, vae_tile=8, vae_tile_overlap=2, vae_chunk=2)
    full = pipeline(lq, **options)
    assert full.shape == (1, 4, 3, 48, 48) and 0.0 <= float(full.min()) and float(full.max()) <= 1.0
    assert torch.equal(full, pipeline(lq, **options))
    for switch in ("sap", "tap", "dssag"):
        assert not torch.equal(full, pipeline(lq, **{**options, switch: False})), switch
    naive = pipeline(lq, **{**options, "sap": False, "tap": False, "dssag": False})
    assert not torch.equal(naive, pipeline(lq, **{**options, "sap": False, "tap": False, "dssag": False,
                                                 "guidance_scale": 1.0}))
    assert not torch.equal(full, pipeline(lq, **{**options, "seed": 3}))
    assert not pipeline.control.stores and not pipeline.control.carries  # nothing left behind after a call


def test_odd_sizes_are_padded_and_cropped_and_bad_options_fail_before_any_work(pipeline):
    out = pipeline(_lq(t=2, h=7, w=9), num_inference_steps=2, window=None, tile=None, vae_tile=None)
    assert out.shape == (1, 2, 3, 28, 36)
    for bad, message in ((dict(num_inference_steps=0), "num_inference_steps"), (dict(tile=8, tile_overlap=8),
                         "tile_overlap"), (dict(sap="yes"), "sap must be true or false"),
                         (dict(vae_tile=0), "vae_tile")):
        with pytest.raises(ConfigError, match=message):
            pipeline.as_upscaler(**bad)
    with pytest.raises(ConfigError, match="unknown DC-VSR sampling options"):
        pipeline.as_upscaler(strength=0.5)


def test_the_denoising_loop_equals_diffusers_stable_video_diffusion_pipeline(tmp_path, monkeypatch):
    """With SAP, TAP and DSSAG off and one tile, DC-VSR's loop runs the UNet exactly as diffusers'
    ``StableVideoDiffusionPipeline`` does (scaled noisy latent + condition latent on channels, image tokens, time ids,
    zero-condition guidance, the scheduler's own steps): given SVD's condition (the image latent repeated over the
    frames) and its CLIP embedding, the final latents agree."""
    import PIL.Image
    from diffusers import StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from zoo.hub import family

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = build_pipeline(None, variant="tiny", conditioning={"noise_aug_strength": 0.0})
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                                             num_attention_heads=2, image_size=224, patch_size=32,
                                                             projection_dim=32)).eval()
    svd = StableVideoDiffusionPipeline(vae=ours.vae, image_encoder=encoder, unet=ours.unet, scheduler=ours.scheduler,
                                       feature_extractor=CLIPImageProcessor())
    frames, size, steps, guidance = 3, 32, 3, 2.5
    pixels = torch.randint(0, 256, (size, size, 3), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    image = PIL.Image.fromarray(pixels.numpy())
    with torch.no_grad():
        embeds = svd._encode_image(image, "cpu", 1, False)  # (1, 1, 32): SVD's CLIP preprocessing
        image_latent = ours.vae.encode(svd.video_processor.preprocess(image, height=size, width=size)).latent_dist.mode()
    monkeypatch.setattr(ours, "condition_latents", lambda up, noise, **_: image_latent[:, None].repeat(1, frames, 1,
                                                                                                        1, 1))
    monkeypatch.setattr(ours, "image_embeddings", lambda up: embeds)
    lq = torch.rand(1, frames, 3, size // 4, size // 4)
    got = ours.sample_latents(lq, num_inference_steps=steps, guidance_scale=guidance, sap=False, tap=False,
                              dssag=False, seed=7, window=None, tile=None, vae_tile=None)
    start = torch.randn(got.shape, generator=chunk_generator(7, 0))  # the sampler's first draw
    with torch.no_grad():
        want = svd(image, height=size, width=size, num_frames=frames, num_inference_steps=steps,
                   min_guidance_scale=guidance, max_guidance_scale=guidance, fps=7, motion_bucket_id=127,
                   noise_aug_strength=0.0, latents=start.clone(), output_type="latent").frames
    assert family("dc_vsr").variant("tiny")["unet"]["cross_attention_dim"] == embeds.shape[-1]
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)
