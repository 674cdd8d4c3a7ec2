"""Temporal layers that inflate an image network to video: a convolution over time and self-attention over time.

Both are residual, ``x + g(x)``, with ``g``'s output projection initialised to zero, so a freshly inserted layer is
the identity and an image network inflated with them computes exactly what it computed per frame (the inflation
recipe of video diffusion models such as VideoLDM, Blattmann et al. CVPR 2023, used by VideoGigaGAN, Xu et al.
ECCV 2024, Sec. 3, to turn the GigaGAN image upsampler into a video upsampler).

Layout: both modules take and return video features ``(b, t, c, h, w)``; every spatial position is processed
independently along ``t``.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from timm.layers import Attention
from torch import nn
from torch.nn import functional as F

from zoo.errors import ConfigError, InputError


def _check_video_features(x: torch.Tensor, channels: int, name: str) -> None:
    if x.ndim != 5 or x.shape[2] != channels:
        raise InputError(f"{name} expects video features (b, t, {channels}, h, w); got shape {tuple(x.shape)}")


def sinusoidal_frame_embedding(num_frames: int, channels: int, *, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal position code of frame indices 0..num_frames-1 (Vaswani et al. 2017, Sec. 3.5).

    ``emb[t, 2i] = sin(t / 10000**(2i / c))``, ``emb[t, 2i + 1] = cos(t / 10000**(2i / c))`` (an odd last channel
    stays 0).

    Returns:
        (num_frames, channels) tensor in [-1, 1].
    """
    half = channels // 2
    position = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) * 2 / channels)
    emb = torch.zeros(num_frames, channels, device=device, dtype=torch.float32)
    emb[:, 0:2 * half:2] = torch.sin(position * frequency)
    emb[:, 1:2 * half:2] = torch.cos(position * frequency)
    return emb.to(dtype or torch.float32)


class TemporalConv(nn.Module):
    """Residual 1D convolution over time: ``x + Conv_t(SiLU(x))``, kernel ``kernel_size`` along ``t``.

    Implemented as a ``Conv3d`` with kernel ``(kernel_size, 1, 1)`` on ``(b, c, t, h, w)``; the clip ends are padded
    by replication (a clip cut out of a longer video sees its end frames repeated rather than black features).
    With ``zero_init`` the convolution's weight and bias start at zero, so the layer starts as the identity.

    Args:
        channels: feature channels ``c``.
        kernel_size: odd temporal kernel size (VideoGigaGAN: 3).
        zero_init: zero-initialise the convolution (identity at initialisation).

    Raises:
        ConfigError: for an even kernel size.
    """

    def __init__(self, *, channels: int, kernel_size: int = 3, zero_init: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ConfigError(f"TemporalConv kernel_size must be odd; got {kernel_size}")
        self.channels = channels
        self.conv = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0),
                              padding_mode="replicate")
        if zero_init:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer to video features ``x`` (b, t, c, h, w) -> same shape and dtype.

        Raises:
            InputError: if ``x`` is not (b, t, channels, h, w).
        """
        _check_video_features(x, self.channels, "TemporalConv")
        y = rearrange(F.silu(x), "b t c h w -> b c t h w")
        y = rearrange(self.conv(y), "b c t h w -> b t c h w")
        return x + y


class TemporalSelfAttention(nn.Module):
    """Residual multi-head self-attention over time at every spatial position.

    ``tokens = LayerNorm(x) + sinusoidal frame code`` for the ``t`` frames of one pixel, then
    ``x + Attention(tokens)`` (``timm.layers.Attention``, ``num_heads`` heads, QKV with bias). The frame code tells
    the attention which frame is which (self-attention alone is blind to order). With ``zero_init`` the output
    projection starts at zero: the layer is the identity at initialisation but the projection's gradient is not zero,
    so training moves it away from the identity.

    Memory: attention over ``t`` tokens for ``b * h * w`` sequences, O(b h w t^2) scores per head.

    Args:
        channels: feature channels ``c`` (divisible by ``num_heads``).
        num_heads: attention heads.
        zero_init: zero-initialise the output projection.

    Raises:
        ConfigError: if ``channels`` is not divisible by ``num_heads``.
    """

    def __init__(self, *, channels: int, num_heads: int = 4, zero_init: bool = True) -> None:
        super().__init__()
        if num_heads < 1 or channels % num_heads != 0:
            raise ConfigError(f"TemporalSelfAttention: channels ({channels}) must be divisible by num_heads "
                              f"({num_heads})")
        self.channels = channels
        self.norm = nn.LayerNorm(channels)
        self.attn = Attention(channels, num_heads=num_heads, qkv_bias=True)
        if zero_init:
            nn.init.zeros_(self.attn.proj.weight)
            nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer to video features ``x`` (b, t, c, h, w) -> same shape and dtype.

        Raises:
            InputError: if ``x`` is not (b, t, channels, h, w).
        """
        _check_video_features(x, self.channels, "TemporalSelfAttention")
        b, t, _, h, w = x.shape
        tokens = rearrange(x, "b t c h w -> (b h w) t c")
        code = sinusoidal_frame_embedding(t, self.channels, device=x.device, dtype=x.dtype)
        update = self.attn(self.norm(tokens) + code)
        update = rearrange(update, "(b h w) t c -> b t c h w", b=b, h=h, w=w)
        return x + update
