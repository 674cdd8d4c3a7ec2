"""Configurations of the pretrained bases the diffusion families are built on, for random initialisation and timing.

Only the architecture is here (diffusers / transformers constructor options, written from the configs of the released
folders); weights always come from a local folder. Random networks of these sizes let tests, smoke runs and speed
benchmarks use the real shapes where no weights can be downloaded.

- ``SD21_BASE_*``: ``stabilityai/stable-diffusion-2-1-base`` (``unet/config.json``, ``vae/config.json``,
  ``text_encoder/config.json``: the OpenCLIP ViT-H/14 text tower cut to 23 layers; ``scheduler/scheduler_config.json``):
  latent diffusion with an 8x VAE of 4 latent channels, scaled-linear betas 0.00085 -> 0.012 over 1000 steps,
  epsilon prediction.
- ``SVD_*``: ``stabilityai/stable-video-diffusion-img2vid`` (``unet/``, ``vae/``, ``scheduler/``): a
  ``UNetSpatioTemporalConditionModel`` whose 8 input channels are the noisy latent and a conditioning latent, 1024-d
  image-embedding tokens and 3 added time ids (fps - 1, motion bucket, noise-augmentation strength); an 8x
  ``AutoencoderKLTemporalDecoder``; EDM sampling with diffusers' ``EulerDiscreteScheduler`` (v-prediction, Karras
  sigmas 0.002 .. 700, continuous timesteps ``0.25 ln sigma``).
"""
from __future__ import annotations

__all__ = ["SD21_BASE_SCHEDULER", "SD21_BASE_TEXT_ENCODER", "SD21_BASE_UNET", "SD21_BASE_VAE", "SVD_SCHEDULER", "SVD_UNET",
           "SVD_VAE", "is_sd_base_schedule", "is_svd_schedule"]

#: ``UNet2DConditionModel`` options of SD 2.1-base (865 M parameters).
SD21_BASE_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True,
)
#: ``AutoencoderKL`` options of SD 2.1-base (84 M parameters; 8x, 4 latent channels).
SD21_BASE_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=768,
    block_out_channels=(128, 256, 512, 512), norm_num_groups=32, scaling_factor=0.18215,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
#: ``transformers.CLIPTextConfig`` options of SD 2.1-base's text encoder (340 M parameters).
SD21_BASE_TEXT_ENCODER = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                              num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                              projection_dim=512)
#: The noise schedule of SD 2.1-base as a diffusers ``DDIMScheduler`` configuration (its folder ships a PNDM
#: scheduler with the same betas).
SD21_BASE_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                           prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def is_sd_base_schedule(config: dict) -> bool:
    """True when a scheduler configuration has SD 1.x / 2.x-base's training schedule (betas 0.00085 -> 0.012,
    scaled linear, 1000 steps)."""
    return (int(config.get("num_train_timesteps", 0)) == 1000 and config.get("beta_schedule") == "scaled_linear"
            and abs(float(config.get("beta_start", 0)) - 0.00085) < 1e-9
            and abs(float(config.get("beta_end", 0)) - 0.012) < 1e-9)


#: ``UNetSpatioTemporalConditionModel`` options of SVD img2vid (1.52 G parameters; 14 frames).
SVD_UNET = dict(
    sample_size=96, in_channels=8, out_channels=4, layers_per_block=2, num_frames=14,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=768, num_attention_heads=(5, 10, 20, 20),
    cross_attention_dim=1024, transformer_layers_per_block=1,
)
#: ``AutoencoderKLTemporalDecoder`` options of SVD img2vid (98 M parameters; 8x, 4 latent channels).
SVD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=768,
               block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
               scaling_factor=0.18215, force_upcast=True)
#: SVD img2vid's ``scheduler/scheduler_config.json`` (an ``EulerDiscreteScheduler``).
SVD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                     prediction_type="v_prediction", interpolation_type="linear", use_karras_sigmas=True,
                     sigma_min=0.002, sigma_max=700.0, timestep_spacing="leading", timestep_type="continuous",
                     steps_offset=1, set_alpha_to_one=False, skip_prk_steps=True, clip_sample=False)


def is_svd_schedule(config: dict) -> bool:
    """True when a scheduler configuration is SVD's EDM sampler: an ``EulerDiscreteScheduler`` with v-prediction,
    Karras sigmas and continuous timesteps."""
    return (config.get("_class_name", "EulerDiscreteScheduler") == "EulerDiscreteScheduler"
            and config.get("prediction_type") == "v_prediction" and bool(config.get("use_karras_sigmas"))
            and config.get("timestep_type") == "continuous")
