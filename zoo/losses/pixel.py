"""Pixel losses."""
from __future__ import annotations

import torch
from torch import nn


class CharbonnierLoss(nn.Module):
    """Charbonnier (smooth L1) loss ``mean(sqrt((x - y)^2 + eps^2))``.

    Source: Lai et al., "Deep Laplacian Pyramid Networks", CVPR 2017, Eq. 3; used by BasicVSR and VideoGigaGAN.

    Args:
        eps: smoothing constant, in the units of the inputs (1e-3 for images in [0, 1], as BasicSR).
    """

    def __init__(self, *, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss for two tensors of the same shape (any layout)."""
        if pred.shape != target.shape:
            raise ValueError(f"CharbonnierLoss: shapes differ, pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
        return torch.sqrt((pred - target) ** 2 + self.eps**2).mean()
