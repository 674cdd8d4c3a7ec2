"""Temporal layers and inflation helpers that turn a diffusers image diffusion network into a video network.

Used by Upscale-A-Video (Zhou et al., CVPR 2024) and meant for the other latent-diffusion families (SATeCo,
DC-VSR). Two kinds of pieces:

**Temporal layers** (plain modules with explicit inputs; temporal attention is a diffusers ``Attention`` with
:class:`~zoo.diffusion.attention.TemporalAttnProcessor`, from :func:`~zoo.diffusion.attention.temporal_attention`):

- :class:`TemporalConvBlock`: a residual block of two convolutions over time (kernel ``(k, 1, 1)`` and
  ``(3, 1, 1)``) with GroupNorm + SiLU and an optional timestep embedding; the last convolution starts at zero.
- :class:`Conv3dResidual`: ``x + Conv3d(SiLU(GroupNorm(x)))`` with a 3x3x3 kernel started at zero.
- :class:`SFTLayer`: spatial feature transform (Wang et al., CVPR 2018) of features by a condition,
  ``x + w * (x * scale + shift)``, scale and shift started at zero.

**Inflation wrappers** that take over a diffusers block's sub-modules (so every image-model parameter keeps its
diffusers name) and add temporal layers whose parameter names contain ``temporal``:

- :class:`VideoTransformerBlock` (diffusers ``BasicTransformerBlock`` + temporal attention between the
  cross-attention and the feed-forward),
- :class:`VideoTransformer2D` (diffusers ``Transformer2DModel`` with a temporal convolution block before it),
- :class:`VideoResnetBlock` (diffusers ``ResnetBlock2D`` followed by a :class:`Conv3dResidual`),
- :class:`FrameGroupNorm` and :func:`use_clip_group_norm`: GroupNorm whose statistics span all frames of a clip.

Layouts: diffusers 2D blocks run on frames folded into the batch, ``(b t) c h w``. The wrappers learn ``t`` from
a shared :class:`FrameContext` that the owning network sets for the duration of its forward pass
(``with frames.clip(t): ...``) and unfold to ``b c t h w`` (diffusers' video layout) for the temporal layers.
Every temporal layer is zero-initialised at its output, so a freshly inflated network computes what the image
network computes (exactly frame by frame when GroupNorm statistics stay per frame).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from zoo.diffusion.attention import temporal_attention
from zoo.errors import ConfigError, InputError

__all__ = [
    "Conv3dResidual",
    "FrameContext",
    "FrameGroupNorm",
    "SFTLayer",
    "TemporalConvBlock",
    "VideoResnetBlock",
    "VideoTransformer2D",
    "VideoTransformerBlock",
    "replace_modules",
    "use_clip_group_norm",
]


# ----------------------------------------------------------------------------------------------- frame context
class FrameContext:
    """The number of frames ``t`` of the clip a network is processing, shared by its inflated layers.

    A network creates one context, hands it to every wrapper that works on folded ``(b t) c h w`` tensors, and
    sets it around its forward pass::

        with self.frames.clip(num_frames):
            ...  # wrappers read self.frames.num_frames

    Contexts nest (the previous value is restored on exit). Not a module: it holds no tensors.
    """

    def __init__(self) -> None:
        self._num_frames: int | None = None

    @property
    def num_frames(self) -> int:
        """Frames of the current clip.

        Raises:
            RuntimeError: when read outside :meth:`clip` (a programming error, not a user error).
        """
        if self._num_frames is None:
            raise RuntimeError("an inflated video layer was called outside FrameContext.clip(num_frames); call "
                               "the owning video network, not its sub-modules")
        return self._num_frames

    @contextlib.contextmanager
    def clip(self, num_frames: int) -> Iterator[None]:
        """Set the number of frames (``>= 1``) for the duration of a ``with`` block."""
        if num_frames < 1:
            raise InputError(f"a clip needs at least one frame; got num_frames={num_frames}")
        previous, self._num_frames = self._num_frames, int(num_frames)
        try:
            yield
        finally:
            self._num_frames = previous


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics span all frames of a clip, for inputs with frames folded into the batch.

    Input ``(b t) c h w`` is unfolded to ``b c t h w`` and normalised over ``(c / groups, t, h, w)``: what
    ``nn.GroupNorm`` computes on 5D video tensors, which is how Upscale-A-Video's 3D blocks normalise
    (``models_video/resnet.py``: GroupNorm applied to ``b c t h w``). Parameters (``weight``, ``bias``) are
    those of ``nn.GroupNorm``, so state dicts are unchanged. A 5D input is normalised as is.

    Args:
        num_groups, num_channels, eps, affine: as ``nn.GroupNorm``.
        frames: the owning network's :class:`FrameContext`.
    """

    def __init__(self, num_groups: int, num_channels: int, *, frames: FrameContext, eps: float = 1e-5,
                 affine: bool = True) -> None:
        super().__init__(num_groups, num_channels, eps=eps, affine=affine)
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x``: (b t, c, h, w) folded frames, or (b, c, t, h, w) -> same shape."""
        if x.ndim == 5:
            return super().forward(x)
        video = rearrange(x, "(b t) c h w -> b c t h w", t=self.frames.num_frames)
        return rearrange(super().forward(video), "b c t h w -> (b t) c h w")


def use_clip_group_norm(norm: nn.GroupNorm, frames: FrameContext) -> FrameGroupNorm:
    """A :class:`FrameGroupNorm` that takes over ``norm``'s parameters (same tensors, same names)."""
    clip_norm = FrameGroupNorm(norm.num_groups, norm.num_channels, frames=frames, eps=norm.eps, affine=norm.affine)
    if norm.affine:
        clip_norm.weight = norm.weight
        clip_norm.bias = norm.bias
    return clip_norm


def replace_modules(root: nn.Module, match: Callable[[str, nn.Module], bool],
                    build: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every sub-module of ``root`` for which ``match(qualified_name, module)`` holds by ``build(module)``.

    The replacement takes the same attribute (or ``ModuleList`` slot), so parameter names below it are those
    ``build`` gives. Sub-modules of a replaced module are not visited again. ``root`` itself is never replaced.

    Returns:
        The number of modules replaced.
    """
    count = 0
    for name, child in list(root.named_children()):
        if match(name, child):
            setattr(root, name, build(child))
            count += 1
        else:
            count += replace_modules(child, match, build)
    return count


# ----------------------------------------------------------------------------------------------- temporal layers
class TemporalConvBlock(nn.Module):
    """Residual block of two convolutions over time on video features ``b c t h w``.

    ``y = Conv_t2(SiLU(GN(Conv_t1(SiLU(GN(x))) + W temb)))``, output ``x + y``; ``Conv_t1`` has kernel
    ``(kernel_size, 1, 1)``, ``Conv_t2`` kernel ``(3, 1, 1)`` (zero padding in time). With ``zero_init`` ``Conv_t2``
    starts at zero (the block is the identity). Upscale-A-Video: ``models_video/resnet.py`` ``ResnetBlock3DCNN``
    (kernel 3 before each spatial transformer, kernel 5 with timestep embedding in the block-level temporal
    modules). Parameter names ``norm1, conv1, time_emb_proj, norm2, conv2`` follow that class.

    Args:
        channels: feature channels.
        kernel_size: odd temporal kernel of the first convolution.
        temb_channels: timestep-embedding channels (None: no embedding).
        num_groups: GroupNorm groups (statistics over ``c / groups, t, h, w``).
        eps: GroupNorm epsilon.
        zero_init: zero the second convolution.
    """

    def __init__(self, channels: int, *, kernel_size: int = 3, temb_channels: int | None = None,
                 num_groups: int = 32, eps: float = 1e-6, zero_init: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ConfigError(f"TemporalConvBlock kernel_size must be odd; got {kernel_size}")
        self.norm1 = nn.GroupNorm(num_groups, channels, eps=eps)
        self.conv1 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0))
        self.time_emb_proj = nn.Linear(temb_channels, channels) if temb_channels is not None else None
        self.norm2 = nn.GroupNorm(num_groups, channels, eps=eps)
        self.conv2 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        if zero_init:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (b, c, t, h, w), ``temb`` (b, temb_channels) or None -> (b, c, t, h, w)."""
        y = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None and temb is not None:
            y = y + rearrange(self.time_emb_proj(F.silu(temb)), "b c -> b c 1 1 1")
        y = self.conv2(F.silu(self.norm2(y)))
        return x + y


class Conv3dResidual(nn.Module):
    """``(x + Conv3d(SiLU(GroupNorm(x)))) / output_scale_factor`` on video features ``b c t h w``.

    Kernel ``kernel_size`` (default 3x3x3, zero padding); with ``zero_init`` the convolution starts at zero.
    Upscale-A-Video: the ``norm_3d`` / ``conv_3d`` tail of ``ResnetBlock3D_plus`` (``models_video/resnet.py``) in
    the temporal VAE decoder.

    Args:
        channels: feature channels.
        kernel_size: (kt, kh, kw), odd.
        num_groups, eps: GroupNorm.
        output_scale_factor: divisor of the sum (1 in the VAE).
        zero_init: zero the convolution.
    """

    def __init__(self, channels: int, *, kernel_size: tuple[int, int, int] = (3, 3, 3), num_groups: int = 32,
                 eps: float = 1e-6, output_scale_factor: float = 1.0, zero_init: bool = True) -> None:
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm = nn.GroupNorm(num_groups, channels, eps=eps)
        self.conv = nn.Conv3d(channels, channels, kernel_size, padding=tuple(k // 2 for k in kernel_size))
        if zero_init:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (b, c, t, h, w) -> same shape."""
        return (x + self.conv(F.silu(self.norm(x)))) / self.output_scale_factor


class SFTLayer(nn.Module):
    """Spatial feature transform of features ``x`` by a condition ``cond`` (Wang et al., CVPR 2018).

    ``f = trunk(concat(cond, x))`` (two diffusers ``ResnetBlock2D``), ``scale = Conv3x3(f)``,
    ``shift = Conv3x3(f)``, output ``x + weight * (x * scale + shift)``. With ``zero_init`` the scale and shift
    convolutions start at zero (the layer is the identity). Upscale-A-Video: ``Fuse_sft_block``
    (``models_video/resnet.py``), conditioning the VAE decoder on the LQ frames.

    Args:
        cond_channels: channels of ``cond``.
        channels: channels of ``x``.
        num_groups, eps: GroupNorm of the trunk.
        zero_init: zero the scale and shift convolutions.
    """

    def __init__(self, cond_channels: int, channels: int, *, num_groups: int = 32, eps: float = 1e-6,
                 zero_init: bool = True) -> None:
        super().__init__()
        self.trunk = nn.ModuleList([
            ResnetBlock2D(in_channels=cond_channels + channels, out_channels=channels, temb_channels=None,
                          groups=num_groups, eps=eps),
            ResnetBlock2D(in_channels=channels, out_channels=channels, temb_channels=None, groups=num_groups,
                          eps=eps),
        ])
        self.scale = nn.Conv2d(channels, channels, 3, padding=1)
        self.shift = nn.Conv2d(channels, channels, 3, padding=1)
        if zero_init:
            for conv in (self.scale, self.shift):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        """``x`` (n, channels, h, w), ``cond`` (n, cond_channels, h, w) -> (n, channels, h, w).

        ``weight`` scales the transform (0: ``x`` unchanged; Upscale-A-Video's ``w_lr``, default 1).
        """
        f = torch.cat([cond, x], dim=1)
        for block in self.trunk:
            f = block(f, None)
        return x + weight * (x * self.scale(f) + self.shift(f))


# ----------------------------------------------------------------------------------------------- inflation wrappers
class VideoTransformerBlock(nn.Module):
    """diffusers ``BasicTransformerBlock`` (``layer_norm`` type) with temporal self-attention added.

    Order (Upscale-A-Video ``models_video/attention.py`` ``BasicTransformerBlock``)::

        x = x + attn1(norm1(x))                 # self-attention, or cross-attention if only_cross_attention
        x = x + attn2(norm2(x), text)           # cross-attention (when the block has one)
        x = x + attn_temporal(norm_temporal(x)) # over frames, per spatial token     <- new
        x = x + ff(norm3(x))

    Takes over ``block``'s sub-modules (their parameter names are unchanged); new parameters are under
    ``norm_temporal`` and ``attn_temporal``. Tokens arrive as ``(b t) n c`` (frames folded into the batch).

    Args:
        block: the image block (its modules are reused, not copied).
        frames: the owning network's :class:`FrameContext`.
        rope_dim, relative_position, zero_init: of :func:`~zoo.diffusion.attention.temporal_attention` (heads and
            head size are the block's).

    Raises:
        ConfigError: for block variants other than plain ``layer_norm`` blocks (ada-norm, GLIGEN, positional
            embeddings, chunked feed-forward).
    """

    def __init__(self, block: BasicTransformerBlock, *, frames: FrameContext, rope_dim: int | None = 32,
                 relative_position: bool = True, zero_init: bool = True) -> None:
        super().__init__()
        if (block.norm_type != "layer_norm" or block.pos_embed is not None or hasattr(block, "fuser")
                or block._chunk_size is not None):
            raise ConfigError(f"VideoTransformerBlock supports plain layer_norm BasicTransformerBlocks only; got "
                              f"norm_type={block.norm_type!r}, pos_embed={block.pos_embed is not None}")
        self.frames = frames
        self.only_cross_attention = block.only_cross_attention
        self.norm1, self.attn1 = block.norm1, block.attn1
        self.norm2, self.attn2 = block.norm2, block.attn2
        self.norm_temporal = nn.LayerNorm(block.dim)
        self.attn_temporal = temporal_attention(block.dim, num_heads=block.num_attention_heads,
                                                head_dim=block.attention_head_dim, rope_dim=rope_dim,
                                                relative_position=relative_position, zero_init=zero_init)
        self.norm3, self.ff = block.norm3, block.ff

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden_states`` ((b t), n, c) spatial tokens; ``encoder_hidden_states`` ((b t), m, d) text tokens.

        Returns:
            ((b t), n, c).
        """
        x = hidden_states
        x = x + self.attn1(self.norm1(x), encoder_hidden_states=encoder_hidden_states if self.only_cross_attention
                           else None)
        if self.attn2 is not None:
            x = x + self.attn2(self.norm2(x), encoder_hidden_states=encoder_hidden_states)
        tokens = rearrange(x, "(b t) n c -> (b n) t c", t=self.frames.num_frames)
        tokens = tokens + self.attn_temporal(self.norm_temporal(tokens))
        x = rearrange(tokens, "(b n) t c -> (b t) n c", n=x.shape[1])
        return x + self.ff(self.norm3(x))


class VideoTransformer2D(nn.Module):
    """diffusers ``Transformer2DModel`` (continuous input) preceded by a :class:`TemporalConvBlock`.

    ``x = temporal_conv(x)`` (kernel 3 over time, no timestep embedding), then the usual
    ``x + proj_out(blocks(proj_in(norm(x))))`` with every block a :class:`VideoTransformerBlock`.
    Upscale-A-Video: ``models_video/attention.py`` ``Transformer3DModel`` (``resblock_temporal`` first).

    Takes over the transformer's sub-modules (names unchanged); new parameters are under ``temporal_conv`` and
    the blocks' ``*_temporal``. Called by diffusers' down/mid/up blocks like the transformer it replaces:
    ``attn(x, encoder_hidden_states=..., return_dict=False)[0]``.

    Args:
        transformer: the image transformer (continuous input, no patches, GroupNorm input norm).
        frames: the owning network's :class:`FrameContext`.
        rope_dim, relative_position: of the temporal attention.
        zero_init: zero-initialise the temporal layers' outputs.

    Raises:
        ConfigError: for patched or discrete-input transformers.
    """

    def __init__(self, transformer: Transformer2DModel, *, frames: FrameContext, rope_dim: int | None = 32,
                 relative_position: bool = True, zero_init: bool = True) -> None:
        super().__init__()
        if not transformer.is_input_continuous:
            raise ConfigError("VideoTransformer2D supports continuous-input Transformer2DModel only")
        self.frames = frames
        self.use_linear_projection = transformer.use_linear_projection
        channels = transformer.in_channels
        self.temporal_conv = TemporalConvBlock(channels, kernel_size=3, num_groups=transformer.norm.num_groups,
                                               eps=1e-6, zero_init=zero_init)
        self.norm, self.proj_in, self.proj_out = transformer.norm, transformer.proj_in, transformer.proj_out
        self.transformer_blocks = nn.ModuleList(
            VideoTransformerBlock(block, frames=frames, rope_dim=rope_dim, relative_position=relative_position,
                                  zero_init=zero_init) for block in transformer.transformer_blocks)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
                return_dict: bool = False, **unused: object) -> tuple[torch.Tensor]:
        """``hidden_states`` ((b t), c, h, w); ``encoder_hidden_states`` ((b t), m, d) -> ``(((b t), c, h, w),)``.

        Raises:
            ConfigError: if an attention mask is passed (not supported).
        """
        if attention_mask is not None or encoder_attention_mask is not None:
            raise ConfigError("VideoTransformer2D does not support attention masks")
        t = self.frames.num_frames
        x = rearrange(hidden_states, "(b t) c h w -> b c t h w", t=t)
        x = rearrange(self.temporal_conv(x), "b c t h w -> (b t) c h w")
        _, _, height, width = x.shape
        residual = x
        y = self.norm(x)
        if self.use_linear_projection:
            y = self.proj_in(rearrange(y, "n c h w -> n (h w) c"))
        else:
            y = rearrange(self.proj_in(y), "n c h w -> n (h w) c")
        for block in self.transformer_blocks:
            y = block(y, encoder_hidden_states=encoder_hidden_states)
        if self.use_linear_projection:
            y = rearrange(self.proj_out(y), "n (h w) c -> n c h w", h=height, w=width)
        else:
            y = self.proj_out(rearrange(y, "n (h w) c -> n c h w", h=height, w=width))
        return (y + residual,)


class VideoResnetBlock(nn.Module):
    """diffusers ``ResnetBlock2D`` followed by a :class:`Conv3dResidual` over ``(t, h, w)``.

    Spatial part as diffusers (``default`` timestep-embedding mode, or ``group`` as in VAE decoders; no
    up/down-sampling)::

        y = conv2(dropout(act(norm2(conv1(act(norm1(x))) + W temb))))
        x = (shortcut(x) + y) / output_scale_factor
        x = temporal(x)                                               <- new, zero at initialisation

    Upscale-A-Video: ``ResnetBlock3D_plus`` (``models_video/resnet.py``) of the temporal VAE decoder. Takes over
    ``resnet``'s sub-modules (names unchanged); new parameters are under ``temporal``. Input ``(b t) c h w``.

    Args:
        resnet: the image block.
        frames: the owning network's :class:`FrameContext`.
        zero_init: zero the 3D convolution.

    Raises:
        ConfigError: for up/down-sampling blocks or ``scale_shift`` timestep embeddings.
    """

    def __init__(self, resnet: ResnetBlock2D, *, frames: FrameContext, zero_init: bool = True) -> None:
        super().__init__()
        if resnet.up or resnet.down or resnet.time_embedding_norm not in ("default", "group") or resnet.skip_time_act:
            raise ConfigError("VideoResnetBlock supports plain ResnetBlock2D blocks (no up/down, default "
                              "time embedding) only")
        self.frames = frames
        self.output_scale_factor = resnet.output_scale_factor
        self.nonlinearity = resnet.nonlinearity
        self.norm1, self.conv1, self.time_emb_proj = resnet.norm1, resnet.conv1, resnet.time_emb_proj
        self.norm2, self.dropout, self.conv2 = resnet.norm2, resnet.dropout, resnet.conv2
        self.conv_shortcut = resnet.conv_shortcut
        self.temporal = Conv3dResidual(resnet.out_channels, num_groups=resnet.norm2.num_groups, eps=resnet.norm2.eps,
                                       output_scale_factor=resnet.output_scale_factor, zero_init=zero_init)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ((b t), c_in, h, w), ``temb`` ((b t), temb_channels) or None -> ((b t), c_out, h, w)."""
        y = self.conv1(self.nonlinearity(self.norm1(x)))
        if self.time_emb_proj is not None and temb is not None:
            y = y + rearrange(self.time_emb_proj(self.nonlinearity(temb)), "n c -> n c 1 1")
        y = self.conv2(self.dropout(self.nonlinearity(self.norm2(y))))
        shortcut = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        out = (shortcut + y) / self.output_scale_factor
        video = rearrange(out, "(b t) c h w -> b c t h w", t=self.frames.num_frames)
        return rearrange(self.temporal(video), "b c t h w -> (b t) c h w")
