"""zoo.diffusion, the layer every latent-diffusion family shares: tiles, the sampler loop over diffusers schedulers,
guidance, chunked/tiled VAE coding, local folders, training targets, and the LatentDiffusionSystem checkpoints."""
from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler

from zoo.diffusion.folders import detect_folder_kind, load_model, load_scheduler
from zoo.diffusion.sampler import (
    classifier_free_guidance,
    denoise,
    predict_over_tiles,
    split_prediction,
    step_inputs,
)
from zoo.diffusion.targets import edm_training_pair, training_pair
from zoo.diffusion.tiles import TileAccumulator, plan_tiles, plan_windows, tile_weights, window_weights
from zoo.diffusion.vae import decode_chunked, diffusers_decoder, diffusers_encoder, encode_chunked
from zoo.errors import ConfigError, WeightsError

torch.set_num_threads(1)

#: SD x4 upscaler's DDIM (v-prediction) and Stable Video Diffusion's Euler (EDM, Karras sigmas, continuous timesteps).
DDIM = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear",
            prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
SVD_EULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 prediction_type="v_prediction", use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0,
                 timestep_type="continuous", interpolation_type="linear", timestep_spacing="leading", steps_offset=1)


# ------------------------------------------------------------------------------------------------ tiles
@pytest.mark.parametrize("kind", ["feather", "gaussian", "uniform"])
def test_3d_tiles_cover_every_latent_voxel_with_weights_summing_to_one(kind):
    """DC-VSR's 64x64x14 latent tiles with 50% overlap, on a clip of 30 frames and 90x120 latents."""
    shape, size, overlap = (30, 90, 120), (14, 64, 64), (7, 32, 32)
    tiles = plan_tiles(shape, size, overlap)
    plans = [plan_windows(n, s, o) for n, s, o in zip(shape, size, overlap)]
    assert len(tiles) == len(plans[0]) * len(plans[1]) * len(plans[2])
    blend = TileAccumulator((1,) + shape, axes=(1, 2, 3))
    for index, spans in tiles:
        (t0, t1), (y0, y1), (x0, x1) = spans
        assert (t1 - t0, y1 - y0, x1 - x0) <= size
        blend.add(spans, torch.ones(1, t1 - t0, y1 - y0, x1 - x0), tile_weights(plans, index, kind=kind))
    assert torch.equal(blend.result(), torch.ones((1,) + shape))  # a blend of identical pieces is exact
    assert (blend.weight_sum > 0).all()
    if kind == "feather":  # neighbours' feathered weights sum to 1 on what they share
        torch.testing.assert_close(blend.weight_sum, torch.ones_like(blend.weight_sum))


def test_window_weights_feather_gaussian_and_floor():
    plan = plan_windows(20, 8, 4)
    feather = [window_weights(plan, i) for i in range(len(plan))]
    assert feather[0][0] == 1 and feather[-1][-1] == 1  # the ends of the whole range keep full weight
    shared = plan[0][1] - plan[1][0]
    torch.testing.assert_close(feather[0][-shared:] + feather[1][:shared], torch.ones(shared))
    gauss = window_weights(plan, 1, kind="gaussian")
    assert (gauss > 0).all() and gauss.argmax() in (len(gauss) // 2 - 1, len(gauss) // 2)
    assert window_weights(plan, 1, floor=0.1).min() == pytest.approx(0.1)
    assert torch.equal(window_weights([(0, 5)], 0, kind="gaussian"), torch.ones(5))  # one window: no blending
    with pytest.raises(ConfigError, match="blend weights"):
        window_weights(plan, 0, kind="median")
    with pytest.raises(ConfigError, match="overlap of axis 1"):
        plan_tiles((4, 4), (2, 2), (0, 2))


def test_predict_over_tiles_is_exact_for_a_pointwise_model_and_visits_in_order():
    g = torch.Generator().manual_seed(0)
    latents, lq = torch.randn(1, 7, 4, 20, 28, generator=g), torch.rand(1, 7, 3, 20, 28, generator=g)
    weight = torch.randn(4, 7, generator=g)

    def pointwise(piece: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oc,btchw->btohw", weight, torch.cat([piece, lq], dim=2))

    whole = pointwise(latents, lq)
    visits = []
    tiled = predict_over_tiles(pointwise, latents, context={"lq": lq}, window=4, window_overlap=1, tile=12,
                               tile_overlap=4, reverse_time=True, on_tile=lambda index, spans: visits.append(index))
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)
    assert [v[0] for v in visits] == sorted((v[0] for v in visits), reverse=True)  # last window first
    assert len(visits) == len(plan_windows(7, 4, 1)) * len(plan_windows(20, 12, 4)) * len(plan_windows(28, 12, 4))


# ------------------------------------------------------------------------------------------------ sampler loop
def _model(scale: float = 0.3):  # noqa: ANN202
    """A fixed smooth 'denoiser' so loops can be compared step by step."""
    def model(x: torch.Tensor, timestep: torch.Tensor, step: object) -> torch.Tensor:
        return torch.tanh(x) * scale + float(timestep) * 1e-4
    return model


def test_denoise_equals_a_hand_written_loop_over_scheduler_step():
    for scheduler in (DDIMScheduler(**DDIM), EulerDiscreteScheduler(**SVD_EULER)):
        start = torch.randn(1, 3, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
        ours = denoise(scheduler, start, _model(), num_inference_steps=5)
        scheduler.set_timesteps(5)
        x = start
        for t in scheduler.timesteps:
            x = scheduler.step(_model()(scheduler.scale_model_input(x, t), t, None), t, x).prev_sample
        torch.testing.assert_close(ours, x, atol=0, rtol=0)


def test_x0_hook_that_returns_nothing_changes_nothing_and_identity_is_exact_to_rounding():
    for scheduler in (DDIMScheduler(**DDIM), DDPMScheduler(**{k: v for k, v in DDIM.items() if k != "set_alpha_to_one"}),
                      EulerDiscreteScheduler(**SVD_EULER)):
        start = torch.randn(1, 2, 4, 6, 6, generator=torch.Generator().manual_seed(1)) * scheduler.init_noise_sigma
        run = dict(num_inference_steps=4, generator=torch.Generator().manual_seed(2))
        plain = denoise(scheduler, start, _model(), **run)
        run["generator"] = torch.Generator().manual_seed(2)
        untouched = denoise(scheduler, start, _model(), on_x0=lambda x0, step: None, **run)
        run["generator"] = torch.Generator().manual_seed(2)
        identity = denoise(scheduler, start, _model(), on_x0=lambda x0, step: x0, **run)
        assert torch.equal(untouched, plain)
        torch.testing.assert_close(identity, plain, atol=1e-4 * float(plain.abs().max()), rtol=1e-5)


def test_x0_hook_keeps_the_noise_estimate_ddim_formula():
    """Upscale-A-Video's official propagation step: x_prev = sqrt(a_prev) x0' + sqrt(1 - a_prev) eps."""
    scheduler = DDIMScheduler(**DDIM)
    g = torch.Generator().manual_seed(3)
    start = torch.randn(1, 2, 4, 6, 6, generator=g)
    shift = torch.randn(1, 2, 4, 6, 6, generator=g) * 0.1
    ours = denoise(scheduler, start, _model(), num_inference_steps=3, on_x0=lambda x0, step: x0 + shift)
    scheduler.set_timesteps(3)
    x = start.double()
    for t in scheduler.timesteps:
        a = float(scheduler.alphas_cumprod[int(t)])
        prev = int(t) - 1000 // 3
        a_prev = float(scheduler.alphas_cumprod[prev]) if prev >= 0 else float(scheduler.final_alpha_cumprod)
        v = _model()(x.float(), t, None).double()
        x0, eps = a**0.5 * x - (1 - a) ** 0.5 * v, a**0.5 * v + (1 - a) ** 0.5 * x
        x = a_prev**0.5 * (x0 + shift) + (1 - a_prev) ** 0.5 * eps
    torch.testing.assert_close(ours.double(), x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_split_and_step_inputs_are_inverse(kind):
    for scheduler in (DDIMScheduler(**dict(DDIM, prediction_type=kind)),
                      EulerDiscreteScheduler(**dict(SVD_EULER, prediction_type=kind))):
        scheduler.set_timesteps(6)
        t = scheduler.timesteps[2]
        g = torch.Generator().manual_seed(4)
        sample, out = torch.randn(2, 3, generator=g) * scheduler.init_noise_sigma, torch.randn(2, 3, generator=g)
        scheduler.scale_model_input(sample, t)  # fixes Euler's step index
        x0, eps = split_prediction(scheduler, out, sample, t)
        back_sample, back_out = step_inputs(scheduler, x0, eps, t)
        torch.testing.assert_close(back_sample.float(), sample, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(back_out.float(), out, atol=1e-4, rtol=1e-5)
        step = scheduler.step(out, t, sample)
        if hasattr(step, "pred_original_sample") and step.pred_original_sample is not None:
            torch.testing.assert_close(x0.float(), step.pred_original_sample, atol=1e-4, rtol=1e-4)


def test_late_start_and_bad_step_counts():
    scheduler = DDIMScheduler(**DDIM)
    start = torch.randn(1, 4, 4, 4)
    calls = []
    denoise(scheduler, start, lambda x, t, step: (calls.append(step), x * 0)[1], num_inference_steps=10,
            first_step=6)
    assert len(calls) == 4 and calls[0].num_steps == 4 and int(calls[0].timestep) == int(scheduler.timesteps[6])
    with pytest.raises(ConfigError, match="first_step"):
        denoise(scheduler, start, _model(), num_inference_steps=3, first_step=3)
    with pytest.raises(ConfigError, match="num_inference_steps"):
        denoise(scheduler, start, _model(), num_inference_steps=0)


def test_classifier_free_guidance_over_any_conditioning():
    seen = {}

    def model(x: torch.Tensor, t: int, *, image: torch.Tensor, added_time_ids: torch.Tensor, lq: torch.Tensor):
        seen.update(batch=x.shape[0], ids=added_time_ids[:, 0].tolist())
        return x + image.mean(dim=(1, 2))[:, None] + added_time_ids.sum(dim=1)[:, None] + lq

    x, lq = torch.zeros(2, 3), torch.ones(2, 3)
    cond = {"image": torch.full((2, 4, 5), 2.0), "added_time_ids": torch.tensor([[7.0, 1.0], [7.0, 1.0]])}
    uncond = {"image": torch.zeros(2, 4, 5), "added_time_ids": torch.tensor([[0.0, 1.0], [0.0, 1.0]])}
    out = classifier_free_guidance(model, x, 5, cond=cond, uncond=uncond, guidance_scale=3.0, shared={"lq": lq})
    assert seen == {"batch": 4, "ids": [0.0, 0.0, 7.0, 7.0]}  # one call, unconditional rows first
    u, c = 0 + 1 + 1, 2 + 8 + 1
    torch.testing.assert_close(out, torch.full((2, 3), u + 3.0 * (c - u)))
    torch.testing.assert_close(classifier_free_guidance(model, x, 5, cond=cond, uncond=None, guidance_scale=3.0,
                                                        shared={"lq": lq}), torch.full((2, 3), float(c)))
    with pytest.raises(ConfigError, match="keys"):
        classifier_free_guidance(model, x, 5, cond=cond, uncond={"image": uncond["image"]}, guidance_scale=2.0)


# ------------------------------------------------------------------------------------------------ VAE
def test_chunked_tiled_vae_coding_equals_whole_clip_where_it_should(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2).eval()
    frames = torch.rand(1, 5, 3, 24, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    encode, decode = diffusers_encoder(vae), diffusers_decoder(vae)
    with torch.no_grad():
        latents = encode(frames)
        whole = decode(latents)
        assert latents.shape == (1, 5, 4, 12, 16) and whole.shape == frames.shape
        # chunks of frames: equal to rounding (the image VAE is per frame); a tile covering the frame: likewise
        torch.testing.assert_close(decode_chunked(decode, latents, scale=2, chunk=2), whole, atol=1e-5, rtol=0)
        torch.testing.assert_close(decode_chunked(decode, latents, scale=2, chunk=3, tile=16, tile_overlap=4), whole,
                                   atol=1e-5, rtol=0)
        tiled = decode_chunked(decode, latents, scale=2, chunk=3, tile=8, tile_overlap=4)
        assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
        # where only the first tile reaches (latent rows and columns 0..3), its own decoding is taken as it is
        first = decode(latents[:, :3, :, :8, :8])
        torch.testing.assert_close(tiled[:, :3, :, :8, :8], first[..., :8, :8], atol=1e-5, rtol=0)
        torch.testing.assert_close(encode_chunked(encode, frames, factor=2, chunk=2), latents, atol=1e-5, rtol=0)
        # the scaling factor of diffusion space is applied
        raw = vae.encode(frames[0]).latent_dist.mode()
        torch.testing.assert_close(latents[0], raw * vae.config.scaling_factor, atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="chunk"):
        decode_chunked(decode, latents, scale=2, chunk=0)


# ------------------------------------------------------------------------------------------------ folders
def test_local_folders_name_the_missing_file(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8,), layers_per_block=1, norm_num_groups=8)
    vae.save_pretrained(tmp_path / "pipe" / "vae")
    DDIMScheduler(**DDIM).save_config(tmp_path / "pipe" / "scheduler")
    loaded = load_model(AutoencoderKL, tmp_path / "pipe", "vae")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), vae.state_dict().values()))
    assert isinstance(load_scheduler(tmp_path / "pipe", "scheduler"), DDIMScheduler)
    assert isinstance(load_scheduler(None, default=dict(DDIM, _class_name="DDIMScheduler")), DDIMScheduler)
    with pytest.raises(WeightsError, match=r"unet: .*pipe/unet not found"):
        load_model(AutoencoderKL, tmp_path / "pipe", "unet")
    (tmp_path / "pipe" / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(WeightsError, match="no weights file in"):
        load_model(AutoencoderKL, tmp_path / "pipe", "vae")
    with pytest.raises(WeightsError, match="low_res_scheduler.*not found"):
        load_scheduler(tmp_path / "pipe", "low_res_scheduler")
    kinds = {"released": ("unet/unet_video.bin",), "diffusers": ("vae/config.json",)}
    assert detect_folder_kind(tmp_path / "pipe", kinds, family="X") == "diffusers"
    with pytest.raises(WeightsError, match="no known X weights layout"):
        detect_folder_kind(tmp_path, kinds, family="X")


# ------------------------------------------------------------------------------------------------ targets
def test_training_targets_invert_to_the_clean_latents():
    g = torch.Generator().manual_seed(5)
    x0, noise = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
    for kind in ("epsilon", "v_prediction"):
        scheduler = DDPMScheduler(prediction_type=kind)
        timesteps = torch.tensor([10, 500, 990])
        noisy, target = training_pair(scheduler, x0, noise, timesteps)
        a = scheduler.alphas_cumprod[timesteps].reshape(-1, 1, 1, 1)
        if kind == "epsilon":
            torch.testing.assert_close(target, noise)
        else:  # v = sqrt(a) eps - sqrt(1 - a) x0
            torch.testing.assert_close(target, a.sqrt() * noise - (1 - a).sqrt() * x0)
        torch.testing.assert_close(noisy, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    sigmas = torch.tensor([0.05, 1.0, 80.0])
    pair = edm_training_pair(x0, noise, sigmas)
    # a perfect model output F* gives back x0 through diffusers' Euler v-prediction formula
    view = sigmas.reshape(-1, 1, 1, 1)
    x0_back = pair["target"] * (-view / (view**2 + 1) ** 0.5) + pair["noisy"] / (view**2 + 1)
    torch.testing.assert_close(x0_back, x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pair["model_input"], pair["noisy"] / (view**2 + 1) ** 0.5)
    torch.testing.assert_close(pair["timestep"], 0.25 * sigmas.log())


def test_temporal_decoder_gets_num_frames_and_mixes_the_frames_of_a_chunk():
    """Stable Video Diffusion's AutoencoderKLTemporalDecoder: ``decode(z, num_frames=n)`` sees a chunk's frames
    together, so chunks of 2 are what decoding 2 frames at a time gives, and frames of a chunk depend on each other."""
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=(32, 32), layers_per_block=1, latent_channels=4,
                                       down_block_types=("DownEncoderBlock2D",) * 2).eval()
    decode = diffusers_decoder(vae)
    z = torch.randn(1, 4, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        chunked = decode_chunked(decode, z, scale=2, chunk=2)
        assert chunked.shape == (1, 4, 3, 12, 12)
        torch.testing.assert_close(chunked, torch.cat([decode(z[:, :2]), decode(z[:, 2:])], dim=1), atol=1e-6, rtol=0)
        moved = z.clone()
        moved[:, 0] += 1.0
        assert not torch.allclose(decode(moved)[:, 1], decode(z)[:, 1])  # frame 1 sees frame 0
