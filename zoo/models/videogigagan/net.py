"""VideoGigaGAN generator, read top to bottom (its video discriminator is :class:`zoo.layers.discriminators.VideoDiscriminator`).

Paper: Y. Xu, T. Park, R. Zhang, Y. Zhou, E. Shechtman, F. Liu, J.-B. Huang, D. Liu, "VideoGigaGAN: Towards
Detail-rich Video Super-Resolution", ECCV 2024 (arXiv 2404.12388), Sec. 3. It builds on the upsampler of GigaGAN
(M. Kang et al., "Scaling up GANs for Text-to-Image Synthesis", CVPR 2023, Sec. 3.6, GAN-based upsampler). Neither
paper has official code; this file is our reading of the two papers. What is stated by the papers and what is our choice
is listed in ``zoo/models/videogigagan/README.md``. lucidrains/gigagan-pytorch ``UnetUpsampler`` (an unofficial
reading of the GigaGAN upsampler) was studied for comparison only.

Data flow of :class:`VideoGigaGANNet` (``L = len(channel_mults)`` encoder levels, stride ``2**(L-1)``)::

    lq (b, t, 3, h, w)
      --[flow_propagation] BidirectionalPropagation (SPyNet + warp + residual blocks, whole clip)
                           --> feats (b, t, 2 * propagation_channels, h, w)
      --pad h, w to the stride (reflect)-- fold frames into the batch: (b t) c h w
      encoder, level i = 0 .. L-1 at (h / 2**i, w / 2**i):
          [input conv at level 0 on concat(lq, feats)] -> style res blocks -> [self-attention if i in attn_levels]
          -> f_i;  skip_i = f_i - LowPass(f_i)  [hf_shuttle]  or  f_i  [no shuttle]
          -> x2 down: BlurPool + conv [blurpool] or strided conv  (f_i, not f_i's low-pass: BlurPool does the
             low-pass itself, so with blurpool the encoder passes exactly the subsampled f_LF down)
      middle: style res block -> self-attention -> style res block
      decoder, level i = L-1 .. 0: [bilinear x2 up] -> concat skip_i -> style res blocks
          -> [self-attention if i in attn_levels] -> [temporal conv k=3 -> temporal self-attention]
      high-resolution decoder, log2(scale) levels above the input size: bilinear x2 up -> style res blocks
          -> [temporal conv -> temporal self-attention]
      -> 3x3 conv to RGB, crop to (scale h, scale w) --> + bicubic x scale of lq --> sr (b, t, 3, scale h, scale w)

Style: a learned constant latent (``style_dim``) through a two-layer mapping MLP gives ``w``; every convolution of
the U-Net is a StyleGAN2 modulated convolution with demodulation driven by ``w`` (no text conditioning).
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from timm.layers import Attention, DropPath, Mlp
from torch import nn
from torch.nn import functional as F

from zoo.config import register_init_args
from zoo.errors import ConfigError, InputError
from zoo.layers.checks import check_rgb_video
from zoo.layers.antialias import Downsample2d, HighFrequencyShuttle, check_filter_size
from zoo.layers.blocks import bicubic_skip, scaled_leaky_relu
from zoo.layers.propagation import BidirectionalPropagation
from zoo.layers.temporal import TemporalConv, TemporalSelfAttention

#: Epsilon inside the demodulation ``rsqrt`` (StyleGAN2, Karras et al. CVPR 2020, Eq. 3).
DEMOD_EPS = 1e-8


def _pad_frames(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad (n, c, h, w) at the bottom/right to (height, width): reflect, or replicate when the pad exceeds the side."""
    pad_h, pad_w = height - x.shape[-2], width - x.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


# ----------------------------------------------------------------------------------------------------------------------
# Generator building blocks
# ----------------------------------------------------------------------------------------------------------------------


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution with demodulation (Karras et al., "Analyzing and Improving the Image Quality
    of StyleGAN", CVPR 2020, Sec. 2.2, Eqs. 1-3).

    ``s = A(w)`` (an affine layer, bias initialised to 1) scales the input channels; the demodulation divides each
    output channel by ``sqrt(sum_{i,k} (W_oik s_i)^2 + 1e-8)``, restoring unit output variance. Computed as
    ``conv(x * s, W) * d`` (the non-fused form of StyleGAN2, identical to a convolution with per-sample weights).
    Weights are stored N(0, 1) and scaled by ``1 / sqrt(fan_in)`` at run time (equalised learning rate).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size (padding keeps the spatial size).
        style_dim: dimension of the style vector ``w``.
        demodulate: apply the demodulation.
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        fan_in = in_channels * kernel_size * kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / math.sqrt(fan_in))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.affine = nn.Linear(style_dim, in_channels)
        nn.init.ones_(self.affine.bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Convolve features ``x`` (n, in_channels, h, w) modulated by styles ``w`` (n, style_dim).

        Returns:
            (n, out_channels, h, w).
        """
        styles = self.affine(w)  # (n, in)
        weight = self.weight
        out = F.conv2d(x * styles[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            # sum_{i,k} (W_oik s_i)^2 = sum_i s_i^2 * sum_k W_oik^2
            energy = styles.square() @ weight.square().sum(dim=(2, 3)).t()  # (n, out)
            out = out * torch.rsqrt(energy + DEMOD_EPS)[:, :, None, None]
        return out + self.bias[None, :, None, None]


class StyleResBlock(nn.Module):
    """Residual block of two 3x3 modulated convolutions, ``(skip(x) + lrelu(conv2(lrelu(conv1(x))))) / sqrt(2)``.

    The ``1/sqrt(2)`` keeps the variance of the sum (StyleGAN2 residual networks); ``skip`` is a 1x1 convolution
    without bias when the channel count changes, the identity otherwise.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        style_dim: dimension of ``w``.
    """

    def __init__(self, *, in_channels: int, out_channels: int, style_dim: int) -> None:
        super().__init__()
        self.conv1 = ModulatedConv2d(in_channels=in_channels, out_channels=out_channels, kernel_size=3,
                                     style_dim=style_dim)
        self.conv2 = ModulatedConv2d(in_channels=out_channels, out_channels=out_channels, kernel_size=3,
                                     style_dim=style_dim)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` (n, in_channels, h, w), styles ``w`` (n, style_dim) -> (n, out_channels, h, w)."""
        out = scaled_leaky_relu(self.conv2(scaled_leaky_relu(self.conv1(x, w)), w))
        skip = x if self.skip is None else self.skip(x)
        return (skip + out) / math.sqrt(2.0)


class SpatialSelfAttention(nn.Module):
    """Pre-norm transformer block over the ``h * w`` positions of each frame.

    ``x + DropPath(Attention(LN(x)))`` then ``x + DropPath(Mlp(LN(x)))`` with ``timm.layers.Attention`` (QKV with
    bias) and ``timm.layers.Mlp`` (GELU, hidden ``mlp_ratio * c``). GigaGAN interleaves self-attention with the
    convolutions of its generator and upsampler (GigaGAN Sec. 3.2 and 3.6); we use it at low resolutions only.

    Args:
        channels: feature channels (divisible by ``num_heads``).
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP relative to ``channels``.
        drop_path: stochastic-depth rate of both residual branches.
    """

    def __init__(self, *, channels: int, num_heads: int, mlp_ratio: float = 2.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.attn = Attention(channels, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = Mlp(in_features=channels, hidden_features=int(channels * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to frames ``x`` (n, c, h, w) -> (n, c, h, w)."""
        h, w = x.shape[-2:]
        tokens = rearrange(x, "n c h w -> n (h w) c")
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens)))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return rearrange(tokens, "n (h w) c -> n c h w", h=h, w=w)


class EncoderLevel(nn.Module):
    """One encoder level at LQ resolution / 2**i: style res blocks, optional self-attention, skip output, x2 down.

    Args:
        in_channels: channels entering the level.
        channels: channels of the level (and of its skip output).
        out_channels: channels after the downsampling (ignored without downsampling).
        num_res_blocks: style res blocks.
        style_dim: dimension of ``w``.
        attention: add a :class:`SpatialSelfAttention` after the blocks.
        num_heads, mlp_ratio, drop_path: of the attention block.
        downsample: end with a x2 :class:`zoo.layers.antialias.Downsample2d`.
        blurpool: anti-aliased (BlurPool) instead of strided downsampling.
        hf_shuttle: the skip carries ``f - LowPass(f)`` instead of ``f``.
        blur_filter_size: binomial filter size of BlurPool and of the low-pass.
    """

    def __init__(self, *, in_channels: int, channels: int, out_channels: int, num_res_blocks: int, style_dim: int,
                 attention: bool, num_heads: int, mlp_ratio: float, drop_path: float, downsample: bool,
                 blurpool: bool, hf_shuttle: bool, blur_filter_size: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            StyleResBlock(in_channels=in_channels if k == 0 else channels, out_channels=channels, style_dim=style_dim)
            for k in range(num_res_blocks)
        )
        self.attn = SpatialSelfAttention(channels=channels, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                         drop_path=drop_path) if attention else None
        self.skip = HighFrequencyShuttle(filter_size=blur_filter_size) if hf_shuttle else nn.Identity()
        self.down = Downsample2d(in_channels=channels, out_channels=out_channels, blurpool=blurpool,
                                 filter_size=blur_filter_size) if downsample else None

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode frames ``x`` (n, in_channels, h, w) with styles ``w`` (n, style_dim).

        Returns:
            ``(x_next, skip)``: the input of the next level (n, out_channels, h/2, w/2) (or (n, channels, h, w)
            without downsampling) and the skip features (n, channels, h, w).
        """
        for block in self.blocks:
            x = block(x, w)
        if self.attn is not None:
            x = self.attn(x)
        skip = self.skip(x)
        if self.down is not None:
            x = scaled_leaky_relu(self.down(x))
        return x, skip


class DecoderLevel(nn.Module):
    """One decoder level: optional bilinear x2 upsampling, optional skip concat, style res blocks, optional spatial
    self-attention, optional temporal convolution + temporal self-attention (zero-initialised, VideoGigaGAN Sec. 3).

    Args:
        in_channels: channels entering the level (before the concat).
        skip_channels: channels of the skip features concatenated after upsampling (0: no skip).
        channels: channels of the level's output.
        num_res_blocks: style res blocks.
        style_dim: dimension of ``w``.
        upsample: start with a bilinear x2 upsampling.
        attention: spatial self-attention after the blocks.
        temporal: temporal convolution (k=3) and temporal self-attention after that.
        num_heads, mlp_ratio, drop_path: of the attention blocks.
    """

    def __init__(self, *, in_channels: int, skip_channels: int, channels: int, num_res_blocks: int, style_dim: int,
                 upsample: bool, attention: bool, temporal: bool, num_heads: int, mlp_ratio: float,
                 drop_path: float) -> None:
        super().__init__()
        self.upsample = upsample
        self.blocks = nn.ModuleList(
            StyleResBlock(in_channels=in_channels + skip_channels if k == 0 else channels, out_channels=channels,
                          style_dim=style_dim)
            for k in range(num_res_blocks)
        )
        self.attn = SpatialSelfAttention(channels=channels, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                         drop_path=drop_path) if attention else None
        self.temporal_conv = TemporalConv(channels=channels, kernel_size=3) if temporal else None
        self.temporal_attn = TemporalSelfAttention(channels=channels, num_heads=num_heads) if temporal else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, w: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Decode frames ``x`` (n = b * t, in_channels, h, w) with ``skip`` (n, skip_channels, h', w') or None.

        ``h', w'`` is ``2h, 2w`` with upsampling, ``h, w`` otherwise; ``w`` (n, style_dim); ``num_frames`` = t (frames
        are folded into the batch frame-major per clip, ``(b t)``).

        Returns:
            (n, channels, h', w').
        """
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        for block in self.blocks:
            x = block(x, w)
        if self.attn is not None:
            x = self.attn(x)
        if self.temporal_conv is not None:
            video = rearrange(x, "(b t) c h w -> b t c h w", t=num_frames)
            video = self.temporal_attn(self.temporal_conv(video))
            x = rearrange(video, "b t c h w -> (b t) c h w")
        return x


# ----------------------------------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------------------------------


class VideoGigaGANNet(nn.Module):
    """VideoGigaGAN: the GigaGAN upsampler (asymmetric style U-Net) inflated to video, with four switchable mechanisms.

    - ``temporal_attention`` (paper Sec. 3, "inflation"): every decoder level (also those above the input size) gets
      a temporal convolution (kernel 3 over time) and a temporal self-attention layer, both residual with zero-
      initialised outputs: a freshly built temporal net computes exactly the per-frame net's output.
    - ``flow_propagation`` (Sec. 3, "flow-guided feature propagation"):
      :class:`zoo.layers.propagation.BidirectionalPropagation` (SPyNet, frozen by default, + BasicVSR recurrent
      branches) runs over the whole clip first; its two per-frame features are concatenated with the LQ frame as the
      U-Net's input.
    - ``blurpool`` (Sec. 3, "anti-aliasing"): the encoder's strided convolutions become BlurPool + convolution.
    - ``hf_shuttle`` (Sec. 3, "high-frequency shuttle"): the skip of each encoder level carries
      ``f_HF = f - LowPass(f)`` (same binomial filter as BlurPool) instead of ``f``. Without the shuttle the skips
      carry the full features ``f``, the GigaGAN U-Net skip (our reading, see README).

    Spatial sizes: any ``h, w >= 1``. The U-Net pads (reflect; replicate for tiny frames) to a multiple of
    :attr:`size_multiple` (``2**(len(channel_mults) - 1)``) and at least ``size_multiple * (blur_filter_size // 2 + 1)``
    so every reflect pad of the blur fits, then crops the output to ``(scale h, scale w)``.

    Args:
        scale: upsampling factor, a power of two >= 2 (the paper reports x4 and x8; x2 and x4 are tested).
        base_channels: channels of encoder level 0.
        channel_mults: channel multipliers of the encoder levels (level i at LQ size / 2**i); the decoder mirrors them.
        num_res_blocks: style res blocks per level (encoder, decoder and high-resolution decoder).
        style_dim: dimension of the learned constant latent and of ``w``.
        attn_levels: encoder/decoder levels (0 = LQ size) with spatial self-attention; the middle block always has one.
        hr_channels: channels of the ``log2(scale)`` decoder levels above the input size (2x, 4x, ...); None gives
            ``max(base_channels // 2**k, 16)`` for k = 0, 1, ...
        temporal_attention: add the temporal layers to the decoder (see above).
        flow_propagation: flow-guided propagation in front of the U-Net.
        blurpool: anti-aliased downsampling in the encoder.
        hf_shuttle: high-frequency skips.
        num_heads: heads of the spatial and temporal attention layers (must divide every level's channels).
        mlp_ratio: hidden width of the spatial attention MLPs.
        drop_path_rate: stochastic depth of the spatial attention blocks (0 disables it).
        propagation_channels: channels of each propagation direction.
        num_propagation_blocks: residual blocks per propagation direction.
        blur_filter_size: binomial filter of BlurPool and the HF split, 3 or 5.
        spynet_pretrained: optional path of SPyNet weights (``spynet_20210409-c6c1bd09.pth``).
        freeze_spynet: keep SPyNet fixed during training.

    Raises:
        ConfigError: for an unsupported scale, an ``attn_levels`` entry outside the levels, an ``hr_channels`` of the
            wrong length, channels not divisible by ``num_heads``, or an unsupported ``blur_filter_size``.
        WeightsError: if ``spynet_pretrained`` cannot be loaded.

    With the defaults (x4) the net has 25,293,199 parameters, 23,852,899 trainable (SPyNet's 1,440,300 are frozen);
    the temporal layers cost 1,102,304 and the propagation module 2,994,732 (SPyNet included); see the README.
    """

    @register_init_args
    def __init__(
        self,
        *,
        scale: int = 4,
        base_channels: int = 64,
        channel_mults: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        style_dim: int = 256,
        attn_levels: tuple[int, ...] = (2, 3),
        hr_channels: tuple[int, ...] | None = None,
        temporal_attention: bool = True,
        flow_propagation: bool = True,
        blurpool: bool = True,
        hf_shuttle: bool = True,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.0,
        propagation_channels: int = 64,
        num_propagation_blocks: int = 10,
        blur_filter_size: int = 5,
        spynet_pretrained: str | None = None,
        freeze_spynet: bool = True,
    ) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ConfigError(f"VideoGigaGANNet scale must be a power of two >= 2 (2, 4, 8); got {scale!r}")
        if not channel_mults or num_res_blocks < 1:
            raise ConfigError(f"channel_mults must be non-empty and num_res_blocks >= 1; got {channel_mults!r}, "
                              f"{num_res_blocks!r}")
        check_filter_size(blur_filter_size)
        num_levels = len(channel_mults)
        bad_levels = [level for level in attn_levels if not 0 <= level < num_levels]
        if bad_levels:
            raise ConfigError(f"attn_levels {tuple(attn_levels)} has levels {bad_levels} outside 0..{num_levels - 1} "
                              f"(one level per channel_mults entry)")
        num_hr_levels = int(math.log2(scale))
        if hr_channels is None:
            hr_channels = tuple(max(base_channels // 2**k, 16) for k in range(num_hr_levels))
        hr_channels = tuple(hr_channels)
        if len(hr_channels) != num_hr_levels:
            raise ConfigError(f"hr_channels needs log2(scale) = {num_hr_levels} entries for scale {scale}; "
                              f"got {hr_channels}")
        channels = [base_channels * mult for mult in channel_mults]
        bad_heads = [c for c in (*channels, *hr_channels) if c % num_heads]
        if num_heads < 1 or bad_heads:
            raise ConfigError(f"num_heads ({num_heads}) must divide the channels of every level; it does not divide "
                              f"{bad_heads}")

        self.scale = scale
        self.num_levels = num_levels
        self.size_multiple = 2 ** (num_levels - 1)
        self.min_size = self.size_multiple * (blur_filter_size // 2 + 1)
        self.flow_propagation = flow_propagation
        self.temporal_attention = temporal_attention
        self.propagation_channels = propagation_channels
        attn_kwargs = {"num_heads": num_heads, "mlp_ratio": mlp_ratio, "drop_path": drop_path_rate}

        # Global style: learned constant latent -> mapping MLP -> w (GigaGAN/StyleGAN mapping network, no text).
        self.latent = nn.Parameter(torch.randn(1, style_dim))
        self.mapping = Mlp(in_features=style_dim, hidden_features=style_dim, out_features=style_dim)

        # Flow-guided propagation over the whole clip.
        self.propagation = BidirectionalPropagation(
            mid_channels=propagation_channels, num_blocks=num_propagation_blocks,
            spynet_pretrained=spynet_pretrained, freeze_spynet=freeze_spynet) if flow_propagation else None
        in_channels = 3 + (2 * propagation_channels if flow_propagation else 0)
        self.input_conv = nn.Conv2d(in_channels, channels[0], 3, 1, 1)

        # Encoder at LQ resolution / 2**i.
        self.encoder = nn.ModuleList(
            EncoderLevel(in_channels=channels[i], channels=channels[i],
                         out_channels=channels[min(i + 1, num_levels - 1)], num_res_blocks=num_res_blocks,
                         style_dim=style_dim, attention=i in attn_levels, downsample=i < num_levels - 1,
                         blurpool=blurpool, hf_shuttle=hf_shuttle, blur_filter_size=blur_filter_size, **attn_kwargs)
            for i in range(num_levels)
        )

        # Middle at the lowest resolution.
        self.middle_block1 = StyleResBlock(in_channels=channels[-1], out_channels=channels[-1], style_dim=style_dim)
        self.middle_attn = SpatialSelfAttention(channels=channels[-1], **attn_kwargs)
        self.middle_block2 = StyleResBlock(in_channels=channels[-1], out_channels=channels[-1], style_dim=style_dim)

        # Decoder back to LQ resolution (with skips), then above it (no skips): the asymmetric U-Net.
        decoder = []
        for i in range(num_levels - 1, -1, -1):
            decoder.append(DecoderLevel(
                in_channels=channels[min(i + 1, num_levels - 1)], skip_channels=channels[i], channels=channels[i],
                num_res_blocks=num_res_blocks, style_dim=style_dim, upsample=i < num_levels - 1,
                attention=i in attn_levels, temporal=temporal_attention, **attn_kwargs))
        previous = channels[0]
        for hr in hr_channels:
            decoder.append(DecoderLevel(
                in_channels=previous, skip_channels=0, channels=hr, num_res_blocks=num_res_blocks,
                style_dim=style_dim, upsample=True, attention=False, temporal=temporal_attention, **attn_kwargs))
            previous = hr
        self.decoder = nn.ModuleList(decoder)
        self.to_rgb = nn.Conv2d(previous, 3, 3, 1, 1)

    def style(self, n: int) -> torch.Tensor:
        """The style vector ``w`` = mapping(normalised learned latent), repeated for ``n`` frames: (n, style_dim)."""
        latent = self.latent * torch.rsqrt(self.latent.square().mean(dim=1, keepdim=True) + DEMOD_EPS)
        return self.mapping(latent).expand(n, -1)

    def propagate(self, lq: torch.Tensor) -> torch.Tensor:
        """Flow-guided features of the whole clip (run once per video, then :meth:`upsample` chunk by chunk).

        Args:
            lq: (b, t, 3, h, w) RGB float in [0, 1].

        Returns:
            feats (b, t, 2 * propagation_channels, h, w): backward-branch then forward-branch features.

        Raises:
            ConfigError: if the net was built with ``flow_propagation=False``.
            InputError: if ``lq`` is not laid out as (b, t, 3, h, w).
        """
        if self.propagation is None:
            raise ConfigError("this VideoGigaGANNet was built with flow_propagation=False; it has no propagate()")
        check_rgb_video(lq, "lq")
        feats_backward, feats_forward = self.propagation(lq)
        return torch.cat([feats_backward, feats_forward], dim=2)

    def upsample(self, lq: torch.Tensor, feats: torch.Tensor | None = None) -> torch.Tensor:
        """Run the inflated U-Net on a clip (or a chunk of one), given its propagated features.

        Args:
            lq: (b, t, 3, h, w) RGB float in [0, 1].
            feats: (b, t, 2 * propagation_channels, h, w) from :meth:`propagate` (for a chunk: the matching slice of
                the whole video's features). Computed here when None and ``flow_propagation``; must be None otherwise.

        Returns:
            sr (b, t, 3, scale h, scale w), float, not clamped.

        Raises:
            InputError: for a badly laid out ``lq``, or ``feats`` of the wrong shape or given without propagation.
        """
        check_rgb_video(lq, "lq")
        b, t, _, h, w = lq.shape
        if self.propagation is None:
            if feats is not None:
                raise InputError("feats given, but this VideoGigaGANNet was built with flow_propagation=False")
        elif feats is None:
            feats = self.propagate(lq)
        elif tuple(feats.shape) != (b, t, 2 * self.propagation_channels, h, w):
            raise InputError(f"feats must be (b, t, 2 * propagation_channels, h, w) = "
                             f"{(b, t, 2 * self.propagation_channels, h, w)} to match lq {tuple(lq.shape)}; "
                             f"got {tuple(feats.shape)}")

        x = rearrange(lq, "b t c h w -> (b t) c h w")
        if feats is not None:
            x = torch.cat([x, rearrange(feats, "b t c h w -> (b t) c h w")], dim=1)
        height = max(-(-h // self.size_multiple) * self.size_multiple, self.min_size)
        width = max(-(-w // self.size_multiple) * self.size_multiple, self.min_size)
        x = _pad_frames(x, height, width)
        style = self.style(x.shape[0])

        x = self.input_conv(x)
        skips = []
        for level in self.encoder:
            x, skip = level(x, style)
            skips.append(skip)
        x = self.middle_block2(self.middle_attn(self.middle_block1(x, style)), style)
        for level in self.decoder:
            x = level(x, skips.pop() if skips else None, style, t)
        residual = self.to_rgb(x)[..., : self.scale * h, : self.scale * w]

        base = bicubic_skip(rearrange(lq, "b t c h w -> (b t) c h w"), self.scale)
        return rearrange(base + residual, "(b t) c h w -> b t c h w", b=b, t=t)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """Super-resolve a batch of clips.

        Args:
            lq: (b, t, 3, h, w) RGB float in [0, 1], any t >= 1, h, w >= 1.

        Returns:
            sr (b, t, 3, scale h, scale w), float, not clamped.

        Raises:
            InputError: if ``lq`` is not a float tensor laid out as (b, t, 3, h, w).
        """
        check_rgb_video(lq, "lq")
        feats = self.propagate(lq) if self.propagation is not None else None
        return self.upsample(lq, feats)
