"""VideoGigaGAN (Xu et al., ECCV 2024): the GigaGAN upsampler inflated to video. See README.md in this folder."""
from zoo.models.videogigagan.net import VideoDiscriminator, VideoGigaGANNet

__all__ = ["VideoDiscriminator", "VideoGigaGANNet"]
