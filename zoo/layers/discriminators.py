"""Discriminators shared by the zoo's GAN-trained families.

- :class:`UNetDiscriminatorSN`: the U-Net discriminator with spectral normalisation of Real-ESRGAN (Wang et al.,
  ICCVW 2021, Sec. 4.2), per-pixel logits. Used by RealBasicVSR's GAN stage and Upscale-A-Video's VAE fine-tune;
  official layout and parameter names of mmediting 0.x ``mmedit/models/components/discriminators/unet_disc.py``
  (``UNetDiscriminatorWithSpectralNorm``), so official ``discriminator.*`` weights load directly.
- :class:`VideoDiscriminator`: a StyleGAN2-like residual image discriminator inflated to see time, one logit per
  frame (VideoGigaGAN, Xu et al., ECCV 2024, Sec. 3: "the discriminator is inflated to video"; the paper gives no
  layer list, the layout is ours and the VideoGigaGAN README lists it).
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from timm.layers import BlurPool2d
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from zoo.config import register_init_args
from zoo.errors import ConfigError, InputError
from zoo.layers.antialias import Downsample2d, check_filter_size
from zoo.layers.blocks import scaled_leaky_relu
from zoo.layers.temporal import TemporalConv

__all__ = ["DiscriminatorBlock", "UNetDiscriminatorSN", "VideoDiscriminator"]


class UNetDiscriminatorSN(nn.Module):
    """U-Net discriminator with spectral normalisation (Real-ESRGAN, Wang et al. ICCVW 2021, Sec. 4.2).

    Official layout (mmediting 0.x ``UNetDiscriminatorWithSpectralNorm``, same parameter names ``conv_0`` ..
    ``conv_9``, so ``discriminator.*`` keys of an official checkpoint load directly): ``conv_0`` 3x3, three
    4x4 stride-2 spectral-norm convs down (x2, x4, x8 channels), three bilinear x2 upsamplings each followed
    by a spectral-norm 3x3 conv (with skip additions when ``skip_connection``), two more spectral-norm 3x3
    convs and a plain 3x3 conv to one channel. LeakyReLU 0.2 everywhere. Spectral norm is
    ``torch.nn.utils.spectral_norm`` (keys ``weight_orig``, ``weight_u``, ``weight_v``).

    Args:
        in_channels: channels of the input images (3).
        mid_channels: channels of the first level (64).
        skip_connection: add encoder features to the decoder features (True).
    """

    @register_init_args
    def __init__(self, *, in_channels: int = 3, mid_channels: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        c = mid_channels
        self.conv_0 = nn.Conv2d(in_channels, c, 3, 1, 1)
        self.conv_1 = spectral_norm(nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False))
        self.conv_2 = spectral_norm(nn.Conv2d(2 * c, 4 * c, 4, 2, 1, bias=False))
        self.conv_3 = spectral_norm(nn.Conv2d(4 * c, 8 * c, 4, 2, 1, bias=False))
        self.conv_4 = spectral_norm(nn.Conv2d(8 * c, 4 * c, 3, 1, 1, bias=False))
        self.conv_5 = spectral_norm(nn.Conv2d(4 * c, 2 * c, 3, 1, 1, bias=False))
        self.conv_6 = spectral_norm(nn.Conv2d(2 * c, c, 3, 1, 1, bias=False))
        self.conv_7 = spectral_norm(nn.Conv2d(c, c, 3, 1, 1, bias=False))
        self.conv_8 = spectral_norm(nn.Conv2d(c, c, 3, 1, 1, bias=False))
        self.conv_9 = nn.Conv2d(c, 1, 3, 1, 1)

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel real/fake logits.

        Args:
            x: images (n, c, h, w) or clips (b, t, c, h, w), float (the RealBasicVSR recipe feeds SR / GT in
                [0, 1]); h and w must be multiples of 8 (three stride-2 levels).

        Returns:
            Logits (n, 1, h, w), or (b, t, 1, h, w) for clip input; unbounded (use with a sigmoid-based loss).

        Raises:
            InputError: on a wrong number of dimensions or h, w not multiples of 8.
        """
        if x.ndim == 5:
            b = x.shape[0]
            logits = self.forward(rearrange(x, "b t c h w -> (b t) c h w"))
            return rearrange(logits, "(b t) c h w -> b t c h w", b=b)
        if x.ndim != 4:
            raise InputError(f"discriminator input must be (n, c, h, w) or (b, t, c, h, w); got {tuple(x.shape)}")
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise InputError(f"discriminator input height and width must be multiples of 8; got {tuple(x.shape)}")
        feat_0 = F.leaky_relu(self.conv_0(x), 0.2)
        feat_1 = F.leaky_relu(self.conv_1(feat_0), 0.2)
        feat_2 = F.leaky_relu(self.conv_2(feat_1), 0.2)
        feat_3 = F.leaky_relu(self.conv_3(feat_2), 0.2)

        feat_4 = F.leaky_relu(self.conv_4(self._up(feat_3)), 0.2)
        if self.skip_connection:
            feat_4 = feat_4 + feat_2
        feat_5 = F.leaky_relu(self.conv_5(self._up(feat_4)), 0.2)
        if self.skip_connection:
            feat_5 = feat_5 + feat_1
        feat_6 = F.leaky_relu(self.conv_6(self._up(feat_5)), 0.2)
        if self.skip_connection:
            feat_6 = feat_6 + feat_0

        out = F.leaky_relu(self.conv_7(feat_6), 0.2)
        out = F.leaky_relu(self.conv_8(out), 0.2)
        return self.conv_9(out)


class DiscriminatorBlock(nn.Module):
    """StyleGAN2 residual discriminator block with anti-aliased x2 downsampling, optionally followed by a residual
    temporal convolution (kernel 3 over time) that inflates it to video.

    ``main = lrelu(Downsample2d(lrelu(conv3x3(x))))`` (BlurPool + 3x3 conv), ``skip = conv1x1(BlurPool(x))``,
    ``out = (main + skip) / sqrt(2)`` (Karras et al. CVPR 2020, Fig. 7b, residual D with blurred downsampling).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        temporal: add a :class:`zoo.layers.temporal.TemporalConv` (random init, not zero) after the block.
        blur_filter_size: binomial filter size, 3 or 5.
    """

    def __init__(self, *, in_channels: int, out_channels: int, temporal: bool, blur_filter_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.down = Downsample2d(in_channels=in_channels, out_channels=out_channels, blurpool=True,
                                 filter_size=blur_filter_size)
        self.skip_pool = BlurPool2d(channels=None, filt_size=blur_filter_size, stride=2, pad_mode="reflect")
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.temporal = TemporalConv(channels=out_channels, kernel_size=3, zero_init=False) if temporal else None

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Apply the block to frames ``x`` ((b t), in_channels, h, w) -> ((b t), out_channels, h / 2, w / 2)."""
        main = scaled_leaky_relu(self.down(scaled_leaky_relu(self.conv(x))))
        x = (main + self.skip(self.skip_pool(x))) / math.sqrt(2.0)
        if self.temporal is not None:
            video = self.temporal(rearrange(x, "(b t) c h w -> b t c h w", t=num_frames))
            x = rearrange(video, "b t c h w -> (b t) c h w")
        return x


class VideoDiscriminator(nn.Module):
    """StyleGAN2-like residual image discriminator inflated to see time (VideoGigaGAN Sec. 3: "the discriminator is
    inflated to video" — the paper gives no layer list; this layout is ours, see README).

    ``x * 2 - 1`` (StyleGAN's [-1, 1] input range) -> 1x1 ``from_rgb`` + LeakyReLU -> ``len(channel_mults) - 1``
    :class:`DiscriminatorBlock` (x2 down each, temporal convolution k=3 after each when ``temporal``) -> 3x3 conv +
    LeakyReLU -> spatial mean -> Linear + LeakyReLU -> Linear -> one logit per frame. Through the temporal
    convolutions each frame's logit sees ``2 * (len(channel_mults) - 1)`` neighbouring frames on each side.

    Args:
        in_channels: channels of the input frames (3).
        base_channels: channels of the first level.
        channel_mults: channel multipliers per level; ``len - 1`` downsamplings.
        temporal: inflate to video (False: a per-frame image discriminator).
        blur_filter_size: binomial filter of the BlurPool downsamplings, 3 or 5.

    With the defaults the discriminator has 11,920,833 parameters (10,100,801 with ``temporal=False``).
    """

    @register_init_args
    def __init__(
        self,
        *,
        in_channels: int = 3,
        base_channels: int = 64,
        channel_mults: tuple[int, ...] = (1, 2, 4, 8, 8),
        temporal: bool = True,
        blur_filter_size: int = 3,
    ) -> None:
        super().__init__()
        if len(channel_mults) < 2:
            raise ConfigError(f"VideoDiscriminator needs at least two channel_mults; got {channel_mults!r}")
        check_filter_size(blur_filter_size)
        channels = [base_channels * mult for mult in channel_mults]
        self.in_channels = in_channels
        self.size_multiple = 2 ** (len(channels) - 1)
        self.from_rgb = nn.Conv2d(in_channels, channels[0], 1)
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(in_channels=c_in, out_channels=c_out, temporal=temporal,
                               blur_filter_size=blur_filter_size)
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.final_conv = nn.Conv2d(channels[-1], channels[-1], 3, 1, 1)
        self.fc = nn.Linear(channels[-1], channels[-1])
        self.out = nn.Linear(channels[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score clips.

        Args:
            x: (b, t, in_channels, H, W) float in [0, 1] (SR or GT clips); H and W multiples of
                ``2**(len(channel_mults) - 1)`` and at least twice that.

        Returns:
            Logits (b, t), one per frame, unbounded (use with a softplus / non-saturating GAN loss).

        Raises:
            InputError: on a wrong layout or a size that is not a multiple of :attr:`size_multiple`.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[2] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"VideoDiscriminator expects clips (b, t, {self.in_channels}, H, W); got {shape}")
        b, t, _, height, width = x.shape
        m = self.size_multiple
        if height % m or width % m or min(height, width) < 2 * m:
            raise InputError(f"VideoDiscriminator needs H and W multiples of {m} and >= {2 * m}; got {height}x{width}")
        frames = rearrange(x, "b t c h w -> (b t) c h w") * 2.0 - 1.0
        feat = scaled_leaky_relu(self.from_rgb(frames))
        for block in self.blocks:
            feat = block(feat, t)
        feat = scaled_leaky_relu(self.final_conv(feat)).mean(dim=(2, 3))
        logits = self.out(scaled_leaky_relu(self.fc(feat)))
        return rearrange(logits, "(b t) 1 -> b t", b=b, t=t)
