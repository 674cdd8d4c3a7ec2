"""Convolutional building blocks shared by the recurrent VSR families.

Implements the blocks of BasicVSR / RealBasicVSR as defined in mmediting 0.x
(``mmedit/models/common/sr_backbone_utils.py``, ``mmedit/models/common/upsample.py`` and
``ResidualBlocksWithInputConv`` in ``mmedit/models/backbones/sr_backbones/basicvsr_net.py``).
Parameter names are our own; ``zoo/models/realbasicvsr/convert.py`` maps the official names onto them.

All blocks work on single feature maps ``(n, c, h, w)``; video tensors are folded to frames by the caller.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _scaled_kaiming_(conv: nn.Conv2d, scale: float) -> None:
    """Kaiming-normal init (fan_in, ReLU gain) multiplied by ``scale``, zero bias.

    This is the ESRGAN initialisation (Wang et al. 2018, Sec. 3.3 "smaller initialisation"): residual
    branches start with weights scaled by 0.1 so that a deep stack of blocks starts close to identity.
    """
    nn.init.kaiming_normal_(conv.weight, a=0.0, mode="fan_in", nonlinearity="relu")
    with torch.no_grad():
        conv.weight.mul_(scale)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class ResidualBlockNoBN(nn.Module):
    """Residual block without normalisation: ``x + res_scale * conv2(relu(conv1(x)))``.

    Both convolutions are 3x3, stride 1, padding 1, with bias, so the spatial size is kept.
    Source: EDSR (Lim et al. 2017) style block as in mmediting 0.x ``ResidualBlockNoBN``; when
    ``res_scale == 1`` the convolutions get the ESRGAN init (Kaiming fan_in scaled by 0.1), otherwise the
    PyTorch default init (as in EDSR).

    Args:
        mid_channels: channels of input, hidden and output features.
        res_scale: factor applied to the residual branch before the addition.
    """

    def __init__(self, *, mid_channels: int = 64, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1, bias=True)
        if res_scale == 1.0:
            _scaled_kaiming_(self.conv1, 0.1)
            _scaled_kaiming_(self.conv2, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: features ``(n, mid_channels, h, w)``, any float dtype.

        Returns:
            Features of the same shape and dtype.
        """
        residual = self.conv2(F.relu(self.conv1(x), inplace=True))
        if self.res_scale == 1.0 and residual.dtype == x.dtype:
            # ``x + residual * 1`` rounds exactly like ``residual + x``; adding into the conv output (which conv
            # backward does not save) skips a multiply pass and an allocation. Mixed dtypes (autocast) keep the
            # out-of-place sum, whose dtype is promoted.
            return residual.add_(x)
        return x + residual * self.res_scale


class ResidualBlocksWithInputConv(nn.Module):
    """A 3x3 input convolution + LeakyReLU(0.1) followed by ``num_blocks`` :class:`ResidualBlockNoBN`.

    Used by BasicVSR for each propagation branch (input: frame RGB concatenated with the propagated
    features) and by RealBasicVSR's image cleaning module. Source: mmediting 0.x
    ``basicvsr_net.py::ResidualBlocksWithInputConv``.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the residual blocks and of the output.
        num_blocks: number of residual blocks.
    """

    def __init__(self, *, in_channels: int, out_channels: int = 64, num_blocks: int = 30) -> None:
        super().__init__()
        self.input_conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=True)
        self.blocks = nn.Sequential(*(ResidualBlockNoBN(mid_channels=out_channels) for _ in range(num_blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the input conv and the residual blocks.

        Args:
            x: input ``(n, in_channels, h, w)``.

        Returns:
            Features ``(n, out_channels, h, w)``.
        """
        return self.blocks(F.leaky_relu(self.input_conv(x), negative_slope=0.1, inplace=True))


class PixelShufflePack(nn.Module):
    """Sub-pixel upsampling: a convolution to ``out_channels * scale_factor**2`` channels + pixel shuffle.

    Source: Shi et al. 2016 (ESPCN); mmediting 0.x ``upsample.py::PixelShufflePack`` (convolution with
    bias, Kaiming fan_in init, ``padding = (upsample_kernel - 1) // 2``).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        scale_factor: integer upsampling factor.
        upsample_kernel: kernel size of the expanding convolution (odd).
    """

    def __init__(self, *, in_channels: int, out_channels: int, scale_factor: int, upsample_kernel: int = 3) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.conv = nn.Conv2d(
            in_channels, out_channels * scale_factor * scale_factor, upsample_kernel, 1, (upsample_kernel - 1) // 2
        )
        _scaled_kaiming_(self.conv, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample.

        Args:
            x: features ``(n, in_channels, h, w)``.

        Returns:
            Features ``(n, out_channels, h * scale_factor, w * scale_factor)``.
        """
        return F.pixel_shuffle(self.conv(x), self.scale_factor)


#: Negative slope and gain of StyleGAN2's LeakyReLU (``fused_leaky_relu``: slope 0.2, output times sqrt(2) to keep
#: unit variance; Karras et al., CVPR 2020).
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def scaled_leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's activation: ``leaky_relu(x, 0.2) * sqrt(2)`` (same shape and dtype as ``x``)."""
    return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


def bicubic_skip(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic skip connection of networks that add a residual to an upsampled input (differentiable, fast).

    ``F.interpolate(x, scale_factor=scale, mode='bicubic', align_corners=False)``: Keys cubic with a = -0.75 and
    replicated borders. This is an architectural choice inside a network, not a baseline: the zoo's "Bicubic" row
    (MATLAB ``imresize``) is :func:`zoo.data.degradations.bicubic_upsample`. Families whose official code fixes another
    skip keep it (RealBasicVSR: bilinear).

    Args:
        x: ``(n, c, h, w)`` frames.
        scale: integer factor.

    Returns:
        ``(n, c, scale h, scale w)``, not clamped.
    """
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
