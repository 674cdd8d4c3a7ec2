"""Upscale-A-Video (Zhou et al., CVPR 2024): video UNet and temporal VAE on diffusers, official-weight conversion."""
from zoo.models.upscale_a_video.net import (
    TemporalDecoder,
    TemporalModule,
    UpscaleAVideoComponents,
    UpscaleAVideoUNet,
    UpscaleAVideoVAE,
)
from zoo.models.upscale_a_video.sampling import SamplingOptions, UpscaleAVideoPipeline, UpscaleAVideoUpscaler

__all__ = ["SamplingOptions", "TemporalDecoder", "TemporalModule", "UpscaleAVideoComponents", "UpscaleAVideoPipeline",
           "UpscaleAVideoUNet", "UpscaleAVideoUpscaler", "UpscaleAVideoVAE"]
