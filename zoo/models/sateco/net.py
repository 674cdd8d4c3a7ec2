"""SATeCo's trained networks: video upscaler (TMSA + PixelShuffle), latent encoder, SFA / TFA adapters, video refiner.

Chen et al., "Learning Spatial Adaptation and Temporal Coherence in Diffusion Models for Video Super-Resolution",
CVPR 2024 (arXiv 2403.17000), Sec. 3 and Fig. 3. There is no official code; every size the paper does not give is a
constructor argument, and the family README lists what the paper says and what we chose.

- :class:`VideoUpscaler` (Fig. 3a): LQ video -> X_u at the target size: a 3x3 input convolution, ``num_blocks``
  temporal mutual self-attention blocks (:class:`TMSABlock`, the block of VRT: Liang et al., "VRT: A Video
  Restoration Transformer", 2022, Sec. 3.2), PixelShuffle x2 x2, an output convolution, plus a bicubic skip of the LQ
  (as VRT adds an interpolated LQ). ``num_blocks=0`` is the paper's PixelShuffle-only ablation.
- :class:`LatentEncoder` (E_z): a convolutional pyramid on the latent code Z of X_u, one feature map per decoder
  resolution of the UNet (G = E_z(Z)).
- :class:`SpatialFeatureAdaptation` (SFA, Eq. 1-2): ``f' = S(g) * norm(f) + M(g)`` with ``M``, ``S`` convolutions of
  the guide.
- :class:`TemporalFeatureAlignment` (TFA, Eq. 3-4): self-attention inside non-overlapping tubelets of ``L x 8 x 8``
  tokens (``L = 6`` frames), then cross-attention from the tubelet (queries) to the same tubelet of the guide (keys,
  values). Clips and frames that are not multiples of the tubelet are zero-padded and the padded tokens are masked
  out as keys (so a border tubelet attends over its real tokens only) and dropped as queries.
- :class:`GuidedAdapter`: SFA then TFA (either can be switched off) and a zero-initialised 1x1 output convolution,
  added to the block's features: a fresh adapter is the identity, so the frozen network is reproduced exactly.
- :class:`DecoderAdapters`: one :class:`GuidedAdapter` per up block of a diffusers decoder (``UNet2DConditionModel``
  or ``AutoencoderKL``'s decoder), installed as forward hooks on the up blocks' outputs: the diffusers modules and
  their state dicts are untouched; without guidance set the hooks pass features through.
- :class:`VideoRefiner` (Fig. 3b, Eq. 5): ``X_H = w X_u + (1 - w) X_d + ResBlock([X_u, X_d])`` with ``w = 0.5``; the
  residual branch's last convolution starts at zero.

Layouts: videos (b, t, c, h, w), RGB in [0, 1] unless a docstring says otherwise; features (b, t, c, h, w).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from diffusers.models.attention_processor import Attention
from einops import rearrange
from timm.layers import Mlp, trunc_normal_
from torch import nn
from torch.nn import functional as F

from zoo.errors import ConfigError, InputError
from zoo.layers.blocks import PixelShufflePack, ResidualBlockNoBN, bicubic_skip

__all__ = ["DecoderAdapters", "GuidedAdapter", "LatentEncoder", "SpatialFeatureAdaptation", "TMSABlock",
           "TemporalFeatureAlignment", "VideoRefiner", "VideoUpscaler", "decoder_output_factors", "pad_to_tubelets"]


def _check_video(x: torch.Tensor, name: str, channels: int | None = None) -> None:
    if x.ndim != 5 or (channels is not None and x.shape[2] != channels):
        want = f"(b, t, {channels}, h, w)" if channels is not None else "(b, t, c, h, w)"
        raise InputError(f"{name} must be {want}; got {tuple(x.shape)}")


def pad_to_tubelets(x: torch.Tensor, window: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Zero-pad video features to whole tubelets and say which positions are real.

    Args:
        x: (b, t, c, h, w).
        window: tubelet size ``(L, wh, ww)`` in frames and pixels.

    Returns:
        ``(padded, valid)``: padded (b, T, c, H, W) with T, H, W the next multiples of the window; ``valid`` (T, H, W)
        bool (True at real positions), or None when nothing was padded.
    """
    wt, wh, ww = window
    t, h, w = x.shape[1], x.shape[3], x.shape[4]
    pt, ph, pw = (-t) % wt, (-h) % wh, (-w) % ww
    if not (pt or ph or pw):
        return x, None
    padded = F.pad(x, (0, pw, 0, ph, 0, 0, 0, pt))
    valid = torch.zeros(t + pt, h + ph, w + pw, dtype=torch.bool, device=x.device)
    valid[:t, :h, :w] = True
    return padded, valid


class TMSABlock(nn.Module):
    """Temporal mutual self-attention (TMSA) block of VRT (Liang et al. 2022, Sec. 3.2, Fig. 3).

    Tokens of a window of 2 frames x ``wh x ww`` pixels: *mutual attention* (frame 1's queries attend to frame 2's
    keys and values, and vice versa) and *self-attention* over all tokens of the window, concatenated along channels
    and projected back; then an MLP; both residual with pre-LayerNorm. A learned position embedding of the window's
    tokens is added to the attention input. With ``shift`` the windows are shifted by half a window (1 frame, wh/2,
    ww/2), as VRT alternates. Frames and sizes that are not multiples of the window are padded by replication and
    cropped after.

    Args:
        dim: feature channels.
        num_heads: attention heads (``dim`` divisible by it).
        window: ``(2, wh, ww)``: mutual attention pairs two frames.
        shift: shift the windows.
        mlp_ratio: hidden width of the MLP over ``dim``.

    Raises:
        ConfigError: a window whose temporal size is not 2, or ``dim`` not divisible by ``num_heads``.
    """

    def __init__(self, dim: int, *, num_heads: int = 4, window: Sequence[int] = (2, 8, 8), shift: bool = False,
                 mlp_ratio: float = 2.0) -> None:
        super().__init__()
        window = tuple(int(v) for v in window)
        if len(window) != 3 or window[0] != 2:
            raise ConfigError(f"TMSA windows pair two frames: window must be (2, wh, ww); got {window}")
        if dim % num_heads:
            raise ConfigError(f"TMSA dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.window = dim, num_heads, window
        self.shift = tuple(v // 2 for v in window) if shift else (0, 0, 0)
        tokens = window[0] * window[1] * window[2]
        self.position = nn.Parameter(torch.zeros(1, tokens, dim))
        trunc_normal_(self.position, std=0.02)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv_self = nn.Linear(dim, 3 * dim)
        self.qkv_mutual = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(2 * dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(rearrange(x, "n k (three h d) -> three n h k d", three=3, h=self.num_heads))

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 2 wh ww, c) window tokens -> (n, 2 wh ww, c)."""
        half = x.shape[1] // 2
        x = x + self.position
        q, k, v = self._heads(self.qkv_self(x))
        self_out = F.scaled_dot_product_attention(q, k, v)
        q, k, v = self._heads(self.qkv_mutual(x))
        # frame 1 attends to frame 2 and frame 2 to frame 1 (VRT Eq. 3)
        mutual = torch.cat([F.scaled_dot_product_attention(q[:, :, :half], k[:, :, half:], v[:, :, half:]),
                            F.scaled_dot_product_attention(q[:, :, half:], k[:, :, :half], v[:, :, :half])], dim=2)
        out = torch.cat([rearrange(mutual, "n h k d -> n k (h d)"), rearrange(self_out, "n h k d -> n k (h d)")],
                        dim=-1)
        return self.proj(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (b, t, c, h, w) -> same shape."""
        _check_video(x, "TMSABlock input", self.dim)
        b, t, _, h, w = x.shape
        wt, wh, ww = self.window
        y = rearrange(self.norm1(rearrange(x, "b t c h w -> b t h w c")), "b t h w c -> b c t h w")
        pt, ph, pw = (-t) % wt, (-h) % wh, (-w) % ww
        if pt or ph or pw:
            y = F.pad(y, (0, pw, 0, ph, 0, pt), mode="replicate")
        y = rearrange(y, "b c t h w -> b t h w c")
        if any(self.shift):
            y = torch.roll(y, shifts=tuple(-s for s in self.shift), dims=(1, 2, 3))
        T, H, W = y.shape[1:4]
        windows = rearrange(y, "b (nt wt) (nh wh) (nw ww) c -> (b nt nh nw) (wt wh ww) c", wt=wt, wh=wh, ww=ww)
        out = rearrange(self._attention(windows), "(b nt nh nw) (wt wh ww) c -> b (nt wt) (nh wh) (nw ww) c",
                        b=b, nt=T // wt, nh=H // wh, nw=W // ww, wt=wt, wh=wh, ww=ww)
        if any(self.shift):
            out = torch.roll(out, shifts=self.shift, dims=(1, 2, 3))
        x = x + rearrange(out[:, :t, :h, :w], "b t h w c -> b t c h w")
        tokens = rearrange(x, "b t c h w -> b t h w c")
        return x + rearrange(self.mlp(self.norm2(tokens)), "b t h w c -> b t c h w")


class VideoUpscaler(nn.Module):
    """SATeCo's video upscaler (Fig. 3a): LQ -> X_u at ``scale`` times the size.

    ``conv_first`` (3x3) -> ``num_blocks`` :class:`TMSABlock` (every second one shifted) -> LayerNorm -> 3x3
    convolution, added to the ``conv_first`` features -> PixelShuffle x2 per factor 2 of ``scale`` (LeakyReLU 0.1
    between) -> 3x3 to RGB, plus ``bicubic_skip(lq)``. ``num_blocks=0``: the PixelShuffle-only ablation (no TMSA).

    Args:
        channels: feature channels.
        num_blocks: TMSA blocks (paper: 2).
        num_heads: attention heads per TMSA block.
        window: TMSA window ``(2, wh, ww)``.
        mlp_ratio: TMSA MLP width ratio.
        scale: upscaling factor, a power of 2.

    Raises:
        ConfigError: ``scale`` not a power of 2, negative ``num_blocks``.
    """

    def __init__(self, *, channels: int = 64, num_blocks: int = 2, num_heads: int = 4,
                 window: Sequence[int] = (2, 8, 8), mlp_ratio: float = 2.0, scale: int = 4) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ConfigError(f"VideoUpscaler scale must be a power of 2; got {scale}")
        if num_blocks < 0:
            raise ConfigError(f"num_blocks must be >= 0; got {num_blocks}")
        self.scale = scale
        self.conv_first = nn.Conv2d(3, channels, 3, 1, 1)
        self.blocks = nn.ModuleList(TMSABlock(channels, num_heads=num_heads, window=window, shift=bool(i % 2),
                                              mlp_ratio=mlp_ratio) for i in range(num_blocks))
        self.norm = nn.LayerNorm(channels) if num_blocks else nn.Identity()
        self.conv_after = nn.Conv2d(channels, channels, 3, 1, 1) if num_blocks else None
        self.upsample = nn.ModuleList(PixelShufflePack(in_channels=channels, out_channels=channels, scale_factor=2)
                                      for _ in range(scale.bit_length() - 1))
        self.conv_last = nn.Conv2d(channels, 3, 3, 1, 1)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """``lq`` (b, t, 3, h, w) [0, 1] -> X_u (b, t, 3, scale h, scale w), not clamped."""
        _check_video(lq, "lq", 3)
        b = lq.shape[0]
        frames = rearrange(lq, "b t c h w -> (b t) c h w")
        feat = self.conv_first(frames)
        if self.blocks:
            x = rearrange(feat, "(b t) c h w -> b t c h w", b=b)
            for block in self.blocks:
                x = block(x)
            x = rearrange(self.norm(rearrange(x, "b t c h w -> b t h w c")), "b t h w c -> (b t) c h w")
            feat = feat + self.conv_after(x)
        for up in self.upsample:
            feat = F.leaky_relu(up(feat), 0.1)
        out = self.conv_last(feat) + bicubic_skip(frames, self.scale)
        return rearrange(out, "(b t) c h w -> b t c h w", b=b)


class LatentEncoder(nn.Module):
    """E_z: the convolutional latent encoder of SATeCo, G = E_z(Z) (Fig. 2).

    Level 0: a 3x3 convolution of Z and ``num_blocks`` residual blocks at the latent resolution; level k > 0: a 3x3
    stride-2 convolution (SiLU) and ``num_blocks`` residual blocks, so level k is at 1/2^k of the latent size
    (``ceil`` like the UNet's own downsampling).

    Args:
        in_channels: latent channels (4 for Stable Diffusion).
        channels: widths per level; level k serves the UNet decoder blocks at 1/2^k.
        num_blocks: residual blocks per level.
    """

    def __init__(self, *, in_channels: int = 4, channels: Sequence[int] = (64, 128, 256), num_blocks: int = 1) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ConfigError("LatentEncoder needs at least one level")
        self.channels = channels
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, 1, 1)
        self.down = nn.ModuleList(nn.Conv2d(channels[k - 1], channels[k], 3, 2, 1) for k in range(1, len(channels)))
        self.levels = nn.ModuleList(nn.Sequential(*(ResidualBlockNoBN(mid_channels=c) for _ in range(num_blocks)))
                                    for c in channels)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        """``z`` (n, in_channels, h, w) -> one map per level, level k (n, channels[k], ceil(h / 2^k), ...)."""
        x = self.levels[0](self.conv_in(z))
        features = [x]
        for down, level in zip(self.down, self.levels[1:]):
            x = level(F.silu(down(x)))
            features.append(x)
        return features


class SpatialFeatureAdaptation(nn.Module):
    """SFA (Eq. 1-2): per-pixel affine modulation of features by a guide, ``f' = S(g) * norm(f) + M(g)``.

    ``M`` and ``S`` are 3x3 convolutions of the guide (resized to the features' size when they differ);
    ``norm`` is a parameter-free GroupNorm (``'group'``, 32 groups or fewer when the channels ask for it) or
    InstanceNorm (``'instance'``): the paper normalises by a mean and standard deviation without saying over what.

    Args:
        channels: feature channels.
        guide_channels: guide channels.
        norm: ``'group'`` or ``'instance'``.
        groups: GroupNorm groups.
        eps: normalisation epsilon.

    Raises:
        ConfigError: unknown ``norm``.
    """

    def __init__(self, channels: int, guide_channels: int, *, norm: str = "group", groups: int = 32,
                 eps: float = 1e-6) -> None:
        super().__init__()
        if norm == "group":
            groups = max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)
            self.norm = nn.GroupNorm(groups, channels, eps=eps, affine=False)
        elif norm == "instance":
            self.norm = nn.GroupNorm(channels, channels, eps=eps, affine=False)
        else:
            raise ConfigError(f"SFA norm must be 'group' or 'instance'; got {norm!r}")
        self.shift = nn.Conv2d(guide_channels, channels, 3, 1, 1)
        self.scale = nn.Conv2d(guide_channels, channels, 3, 1, 1)

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``f`` (n, c, h, w), ``g`` (n, c_g, h', w') -> (n, c, h, w)."""
        if g.shape[-2:] != f.shape[-2:]:
            g = F.interpolate(g, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.scale(g) * self.norm(f) + self.shift(g)


class TemporalFeatureAlignment(nn.Module):
    """TFA (Eq. 3-4): tubelet self-attention, then cross-attention from the tubelet to the guide's same tubelet.

    Features and guide are cut into non-overlapping tubelets of ``window = (L, wh, ww)`` (frames x pixels; paper:
    6 x 8 x 8). In each tubelet: ``x = x + SelfAttn(LN(x + pos))``, then ``x = x + CrossAttn(LN(x), LN(g))`` with the
    guide's tokens of the same tubelet as keys and values. ``pos`` is a learned embedding of the position inside the
    tubelet (``position='learned'``) or nothing (``'none'``). The attention layers are diffusers ``Attention`` modules
    (default processor). Padding: see :func:`pad_to_tubelets`; padded tokens are masked out as keys.

    Args:
        channels: feature channels.
        guide_channels: guide channels.
        head_dim: channels per head (heads = ``channels // head_dim``, at least 1).
        window: tubelet ``(L, wh, ww)``.
        position: ``'learned'`` or ``'none'``.
        max_tubelets: tubelets per attention call: frames are processed in bands of whole tubelet rows holding at
            most this many tubelets (at least one row), which bounds the memory of large frames; the result does not
            depend on it.

    Raises:
        ConfigError: bad window or position kind.
    """

    def __init__(self, channels: int, guide_channels: int, *, head_dim: int = 64, window: Sequence[int] = (6, 8, 8),
                 position: str = "learned", max_tubelets: int = 2048) -> None:
        super().__init__()
        window = tuple(int(v) for v in window)
        if len(window) != 3 or min(window) < 1:
            raise ConfigError(f"TFA window must be (frames, height, width) of positive sizes; got {window}")
        if position not in ("learned", "none"):
            raise ConfigError(f"TFA position must be 'learned' or 'none'; got {position!r}")
        heads = max(1, channels // head_dim)
        dim_head = channels // heads
        self.window, self.max_tubelets = window, max_tubelets
        self.position = None
        if position == "learned":
            self.position = nn.Parameter(torch.zeros(window[0] * window[1] * window[2], channels))
            trunc_normal_(self.position, std=0.02)
        self.norm_self = nn.LayerNorm(channels)
        self.self_attn = Attention(query_dim=channels, heads=heads, dim_head=dim_head, bias=True)
        self.norm_cross = nn.LayerNorm(channels)
        self.norm_guide = nn.LayerNorm(guide_channels)
        self.cross_attn = Attention(query_dim=channels, cross_attention_dim=guide_channels, heads=heads,
                                    dim_head=dim_head, bias=True)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        wt, wh, ww = self.window
        return rearrange(x, "b (nt wt) c (nh wh) (nw ww) -> (b nt nh nw) (wt wh ww) c", wt=wt, wh=wh, ww=ww)

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``f`` (b, t, c, h, w), ``g`` (b, t, c_g, h, w) -> (b, t, c, h, w).

        Raises:
            InputError: guide and features of different batch, frames or size.
        """
        _check_video(f, "TFA features")
        _check_video(g, "TFA guide")
        if (g.shape[0], g.shape[1], *g.shape[3:]) != (f.shape[0], f.shape[1], *f.shape[3:]):
            raise InputError(f"TFA guide {tuple(g.shape)} does not match the features {tuple(f.shape)}")
        b, t, _, h, w = f.shape
        wt, wh, ww = self.window
        tubelets_per_row = b * -(-t // wt) * -(-w // ww)
        band = max(1, self.max_tubelets // tubelets_per_row) * wh  # rows of tubelets per attention call
        out = torch.empty_like(f)
        for y0 in range(0, h, band):
            y1 = min(h, y0 + band)
            out[..., y0:y1, :] = self._band(f[..., y0:y1, :], g[..., y0:y1, :])
        return out

    def _band(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """TFA on a band of whole tubelet rows (the last band may end inside a tubelet row)."""
        b, t, _, h, w = f.shape
        wt, wh, ww = self.window
        f_pad, valid = pad_to_tubelets(f, self.window)
        g_pad, _ = pad_to_tubelets(g, self.window)
        T, H, W = f_pad.shape[1], f_pad.shape[3], f_pad.shape[4]
        x, guide = self._tokens(f_pad), self._tokens(g_pad)
        mask = None
        if valid is not None:
            keep = repeat_valid(valid, b, self.window)  # (n, k) bool
            mask = torch.zeros(keep.shape, dtype=x.dtype, device=x.device).masked_fill(~keep, float("-inf"))
            mask = mask[:, None, :]
        out = rearrange(self._attend(x, guide, mask), "(b nt nh nw) (wt wh ww) c -> b (nt wt) c (nh wh) (nw ww)", b=b,
                        nt=T // wt, nh=H // wh, nw=W // ww, wt=wt, wh=wh, ww=ww)
        return out[:, :t, :, :h, :w]

    def _attend(self, x: torch.Tensor, guide: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = x + self.position if self.position is not None else x
        x = x + self.self_attn(self.norm_self(q), attention_mask=mask)
        return x + self.cross_attn(self.norm_cross(x), encoder_hidden_states=self.norm_guide(guide),
                                   attention_mask=mask)


def repeat_valid(valid: torch.Tensor, batch: int, window: Sequence[int]) -> torch.Tensor:
    """Per-tubelet key mask (batch * tubelets, L wh ww) bool of a (T, H, W) ``valid`` map, in :class:`TemporalFeatureAlignment`'s
    tubelet order."""
    wt, wh, ww = window
    tubes = rearrange(valid, "(nt wt) (nh wh) (nw ww) -> (nt nh nw) (wt wh ww)", wt=wt, wh=wh, ww=ww)
    return tubes.repeat(batch, 1)


class GuidedAdapter(nn.Module):
    """SFA + TFA on one decoder block's output, residual through a zero-initialised 1x1 convolution.

    ``out = f + Z(TFA(SFA(f, g), g))`` per frame and tubelet (``Z`` is a 1x1 convolution whose weight and bias start
    at zero, ControlNet's "zero convolution"), so a fresh adapter returns ``f`` exactly. ``use_sfa=False`` feeds ``f``
    to TFA; ``use_tfa=False`` skips TFA (the ablations).

    Args:
        channels: the block's output channels; guide_channels: the guide's.
        use_sfa, use_tfa: the two modules (at least one).
        norm: SFA normalisation; head_dim, window, position: TFA options.

    Raises:
        ConfigError: both modules off.
    """

    def __init__(self, channels: int, guide_channels: int, *, use_sfa: bool = True, use_tfa: bool = True,
                 norm: str = "group", head_dim: int = 64, window: Sequence[int] = (6, 8, 8),
                 position: str = "learned") -> None:
        super().__init__()
        if not (use_sfa or use_tfa):
            raise ConfigError("an adapter needs SFA, TFA or both (to have no adapters, do not build them)")
        self.sfa = SpatialFeatureAdaptation(channels, guide_channels, norm=norm) if use_sfa else None
        self.tfa = (TemporalFeatureAlignment(channels, guide_channels, head_dim=head_dim, window=window,
                                             position=position) if use_tfa else None)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``f`` (b, t, c, h, w) and ``g`` (b, t, c_g, h', w') -> (b, t, c, h, w) (``g`` resized to h, w if needed)."""
        b = f.shape[0]
        frames = rearrange(f, "b t c h w -> (b t) c h w")
        guide = rearrange(g, "b t c h w -> (b t) c h w")
        if guide.shape[-2:] != frames.shape[-2:]:
            guide = F.interpolate(guide, size=frames.shape[-2:], mode="bilinear", align_corners=False)
        x = self.sfa(frames, guide) if self.sfa is not None else frames
        if self.tfa is not None:
            x = rearrange(self.tfa(rearrange(x, "(b t) c h w -> b t c h w", b=b),
                                   rearrange(guide, "(b t) c h w -> b t c h w", b=b)), "b t c h w -> (b t) c h w")
        return f + rearrange(self.out(x), "(b t) c h w -> b t c h w", b=b)


def decoder_output_factors(num_up_blocks: int) -> list[int]:
    """Downscale factor (relative to the decoder's output) of each up block's output in diffusers decoders.

    Every up block but the last ends with a x2 upsampler, so up block ``j`` of ``n`` outputs at
    ``1 / 2^max(n - 2 - j, 0)`` (Stable Diffusion's UNet, 4 blocks: 4, 2, 1, 1 relative to the latent; its VAE decoder:
    4, 2, 1, 1 relative to the image).
    """
    return [2 ** max(num_up_blocks - 2 - j, 0) for j in range(num_up_blocks)]


class DecoderAdapters(nn.Module):
    """One :class:`GuidedAdapter` per up block of a diffusers decoder, applied by forward hooks on the blocks.

    :meth:`attach` registers a forward hook on each up block (``unet.up_blocks`` or ``vae.decoder.up_blocks``) that
    replaces the block's output ``(b t, c, h, w)`` by the adapter's while guidance is set (:meth:`guidance` /
    :meth:`set_guidance`: one guide (b, t, c_g, h_j, w_j) per block and the frame count), and passes it through
    unchanged otherwise. The diffusers modules, their code and their state-dict keys stay as they are.

    Args:
        channels: output channels of each up block.
        guide_channels: channels of each block's guide.
        **adapter: :class:`GuidedAdapter` options.
    """

    def __init__(self, channels: Sequence[int], guide_channels: Sequence[int], **adapter: object) -> None:
        super().__init__()
        if len(channels) != len(guide_channels):
            raise ConfigError(f"{len(channels)} blocks but {len(guide_channels)} guides")
        self.adapters = nn.ModuleList(GuidedAdapter(c, g, **adapter) for c, g in zip(channels, guide_channels))
        self._guides: list[torch.Tensor] | None = None
        self._num_frames = 1
        self._handles: list[object] = []

    def attach(self, blocks: nn.ModuleList) -> None:
        """Hook the adapters onto ``blocks`` (one per adapter; replaces earlier hooks).

        Raises:
            ConfigError: a different number of blocks.
        """
        if len(blocks) != len(self.adapters):
            raise ConfigError(f"{len(self.adapters)} adapters for {len(blocks)} up blocks")
        self.detach()
        self._handles = [block.register_forward_hook(self._hook(j)) for j, block in enumerate(blocks)]

    def detach(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def set_guidance(self, guides: Sequence[torch.Tensor] | None, num_frames: int = 1) -> None:
        """Guide the next decoder calls with ``guides`` (one (b, t, c_g, h, w) per block; ``t = num_frames``); None:
        pass-through. Stays set until changed (training leaves it set for the backward pass of checkpointed blocks)."""
        if guides is not None and len(guides) != len(self.adapters):
            raise ConfigError(f"{len(guides)} guides for {len(self.adapters)} adapters")
        self._guides = None if guides is None else list(guides)
        self._num_frames = int(num_frames)

    @contextlib.contextmanager
    def guidance(self, guides: Sequence[torch.Tensor] | None, num_frames: int) -> Iterator[None]:
        """:meth:`set_guidance` for a ``with`` block, then back to pass-through."""
        self.set_guidance(guides, num_frames)
        try:
            yield
        finally:
            self.set_guidance(None)

    def _hook(self, j: int):  # noqa: ANN202 - a forward hook
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            if self._guides is None:
                return output
            f = rearrange(output, "(b t) c h w -> b t c h w", t=self._num_frames)
            guide = self._guides[j]
            if guide.shape[0] != f.shape[0]:  # classifier-free guidance doubles the batch
                if f.shape[0] % guide.shape[0]:
                    raise InputError(f"guide batch {guide.shape[0]} does not divide the feature batch {f.shape[0]}")
                guide = guide.repeat(f.shape[0] // guide.shape[0], 1, 1, 1, 1)
            out = self.adapters[j](f, guide.to(f.dtype))
            return rearrange(out, "b t c h w -> (b t) c h w")

        return hook


class VideoRefiner(nn.Module):
    """SATeCo's video refiner (Fig. 3b, Eq. 5): ``X_H = w X_u + (1 - w) X_d + ResBlock([X_u, X_d])``.

    ``ResBlock``: a 3x3 convolution of the concatenated frames (6 channels) to ``channels``, LeakyReLU 0.1,
    ``num_blocks`` residual blocks, a 3x3 convolution to RGB that starts at zero (so a fresh refiner is the blend).
    Frame by frame.

    Args:
        weight: ``w`` (paper 0.5; 0 gives the best perceptual scores, 1 keeps the upscaler's output).
        channels: residual branch width.
        num_blocks: residual blocks.

    Raises:
        ConfigError: ``weight`` outside [0, 1].
    """

    def __init__(self, *, weight: float = 0.5, channels: int = 64, num_blocks: int = 2) -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"refiner weight w must be in [0, 1]; got {weight}")
        self.weight = float(weight)
        self.conv_in = nn.Conv2d(6, channels, 3, 1, 1)
        self.blocks = nn.Sequential(*(ResidualBlockNoBN(mid_channels=channels) for _ in range(num_blocks)))
        self.conv_out = nn.Conv2d(channels, 3, 3, 1, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x_u: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """``x_u``, ``x_d`` (b, t, 3, H, W) [0, 1] -> X_H (b, t, 3, H, W), not clamped.

        Raises:
            InputError: different shapes.
        """
        if x_u.shape != x_d.shape:
            raise InputError(f"refiner inputs differ: X_u {tuple(x_u.shape)}, X_d {tuple(x_d.shape)}")
        b = x_u.shape[0]
        pair = rearrange(torch.cat([x_u, x_d], dim=2), "b t c h w -> (b t) c h w")
        residual = self.conv_out(self.blocks(F.leaky_relu(self.conv_in(pair), 0.1)))
        blend = self.weight * x_u + (1.0 - self.weight) * x_d
        return blend + rearrange(residual, "(b t) c h w -> b t c h w", b=b)
