"""Tiny networks of the families' ``tiny`` variants (``zoo/models/<family>/spec.py``), shared by the test files."""
from __future__ import annotations

from zoo.hub import family
from zoo.layers.discriminators import VideoDiscriminator
from zoo.models.videogigagan.net import VideoGigaGANNet

VIDEOGIGAGAN_TINY = family("videogigagan").variant("tiny")


def tiny_net(**overrides: object) -> VideoGigaGANNet:
    """The VideoGigaGAN family's tiny generator; ``overrides`` win."""
    return VideoGigaGANNet(**{**VIDEOGIGAGAN_TINY["net"], **overrides})


def tiny_discriminator(**overrides: object) -> VideoDiscriminator:
    """The VideoGigaGAN family's tiny video discriminator; ``overrides`` win."""
    return VideoDiscriminator(**{**VIDEOGIGAGAN_TINY["discriminator"], **overrides})
