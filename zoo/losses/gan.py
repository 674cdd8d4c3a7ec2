"""Adversarial losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GANLoss(nn.Module):
    """GAN loss on raw discriminator logits (any shape: per-image or per-pixel, as the UNet discriminator).

    ``gan_type``:
        * ``'vanilla'``: binary cross-entropy with logits against ``real_label`` / ``fake_label``
          (Goodfellow et al. 2014; RealBasicVSR and Real-ESRGAN use it with labels 1 / 0).
        * ``'nonsaturating'``: generator ``softplus(-D(fake))``, discriminator ``softplus(-D(real)) + softplus(D(fake))``
          split by ``target_is_real`` (StyleGAN2 / GigaGAN convention).
        * ``'hinge'``: discriminator ``relu(1 -+ D)``, generator ``-D(fake)``.

    Call as ``loss(logits, target_is_real, is_disc)``; returns an unweighted scalar.

    Raises:
        ValueError: for an unknown ``gan_type``.
    """

    def __init__(self, *, gan_type: str = "vanilla", real_label: float = 1.0, fake_label: float = 0.0) -> None:
        super().__init__()
        if gan_type not in ("vanilla", "nonsaturating", "hinge"):
            raise ValueError(f"GANLoss: unknown gan_type {gan_type!r}; expected 'vanilla', 'nonsaturating' or 'hinge'")
        self.gan_type = gan_type
        self.real_label = real_label
        self.fake_label = fake_label

    def forward(self, logits: torch.Tensor, target_is_real: bool, is_disc: bool = False) -> torch.Tensor:
        """Loss of ``logits`` (float, any shape) labelled real or fake; ``is_disc`` selects the hinge/D form."""
        if self.gan_type == "vanilla":
            target = torch.full_like(logits, self.real_label if target_is_real else self.fake_label)
            return F.binary_cross_entropy_with_logits(logits, target)
        if self.gan_type == "nonsaturating":
            return F.softplus(-logits).mean() if target_is_real else F.softplus(logits).mean()
        if is_disc:
            return F.relu(1.0 - logits).mean() if target_is_real else F.relu(1.0 + logits).mean()
        return -logits.mean()
