"""Unweighted loss modules shared by the zoo's systems (weights live in the systems' configs)."""
from zoo.losses.gan import GANLoss
from zoo.losses.perceptual import PerceptualLoss, vgg19_weights_path
from zoo.losses.pixel import CharbonnierLoss

__all__ = ["CharbonnierLoss", "GANLoss", "PerceptualLoss", "vgg19_weights_path"]
