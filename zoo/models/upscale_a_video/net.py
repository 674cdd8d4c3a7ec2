"""Upscale-A-Video networks: the video UNet and the temporal VAE, built on diffusers' image blocks.

Zhou et al., "Upscale-A-Video: Temporal-Consistent Diffusion Model for Real-World Video Super-Resolution",
CVPR 2024 (arXiv 2312.06640); official inference code sczhou/Upscale-A-Video (``models_video/``).

**UNet** (:class:`UpscaleAVideoUNet`, paper Sec. 3.1 "local consistency"): the Stable Diffusion x4 upscaler UNet
(diffusers ``UNet2DConditionModel``: 4 latent + 3 LQ RGB input channels, block channels 256/512/512/1024,
cross-attention to 1024-d text tokens, ``noise_level`` as a 1000-class embedding added to the timestep embedding)
inflated to video. New layers (official ``models_video/unet_video.py``, ``attention.py``, ``temporal_module.py``):

- before every spatial transformer, a temporal convolution block (kernel 3 over time);
- inside every transformer block, temporal self-attention with RoPE + relative position bias, between the
  cross-attention and the feed-forward;
- after every down block, the mid block and every up block, a block-level :class:`TemporalModule` (temporal
  convolution block with kernel 5 and timestep embedding, a 2D residual block, zero 1x1 output convolution).

**VAE** (:class:`UpscaleAVideoVAE`, Sec. 3.1 "finetuning temporal VAE-decoder"): the SD x4 upscaler VAE
(diffusers ``AutoencoderKL``, latent 4 channels at 1/4 resolution, ``scaling_factor`` 0.08333). Its decoder
optionally gets an SFT layer conditioned on the LQ frames after ``conv_in`` and a 3x3x3 convolution residual
after every mid/up residual block (official ``autoencoder_kl_cond_video.py``, ``vae_video.py``).

Every new layer starts at zero at its output, so a freshly inflated network reproduces the image network. One
official detail matters here: the 3D blocks apply GroupNorm to ``b c t h w`` tensors, i.e. the statistics of the
residual blocks' norms (and of ``conv_norm_out``) span the whole clip. ``norm_over_time=True`` (default, needed
for the released weights) does the same; the fresh network then equals the image network run with clip-wide
GroupNorm statistics (exactly the image network frame by frame only for ``t = 1`` or ``norm_over_time=False``).
Spatial-transformer and VAE attention norms stay per frame, as in the official code.

Layouts: public tensors are ``(b, t, c, h, w)`` in the diffusion model's value space (latents as the sampler
keeps them; images and LQ frames in [-1, 1], as diffusers VAEs expect). Inside, frames are folded into the
batch, ``(b t) c h w``, for diffusers' 2D blocks and unfolded to ``b c t h w`` for temporal layers.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from einops import rearrange, repeat
from torch import nn
from torch.utils.checkpoint import checkpoint

from zoo.errors import ConfigError, InputError, WeightsError
from zoo.diffusion.inflation import (
    FrameContext,
    SFTLayer,
    TemporalConvBlock,
    VideoResnetBlock,
    VideoTransformer2D,
    replace_modules,
    use_clip_group_norm,
)

__all__ = ["NoTemporalModule", "TemporalDecoder", "TemporalModule", "UpscaleAVideoComponents", "UpscaleAVideoUNet",
           "UpscaleAVideoVAE", "is_new_parameter"]

#: Substrings of the parameter names of layers that the image networks do not have (inflation / conditioning).
NEW_PARAMETER_MARKERS = ("temporal", "condition_in", "condition_fuse")


def is_new_parameter(name: str) -> bool:
    """True for parameters added by the video inflation (not in the SD x4 image UNet / VAE)."""
    return any(marker in name for marker in NEW_PARAMETER_MARKERS)


def _use_clip_norms_in_resnets(root: nn.Module, frames: FrameContext) -> None:
    """Make ``norm1``/``norm2`` of every ``ResnetBlock2D`` / ``VideoResnetBlock`` below ``root`` clip-wide."""
    for module in list(root.modules()):
        if isinstance(module, (ResnetBlock2D, VideoResnetBlock)):
            module.norm1 = use_clip_group_norm(module.norm1, frames)
            module.norm2 = use_clip_group_norm(module.norm2, frames)


def _load_image_weights(net: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load image-network weights into ``net``: every key of ``net`` not in ``state`` must be a new layer's.

    Raises:
        WeightsError: on missing image weights, unexpected keys or mis-shaped tensors.
    """
    own = net.state_dict()
    missing = sorted(k for k in set(own) - set(state) if not is_new_parameter(k))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise WeightsError(f"{source} does not match {type(net).__name__}: {len(missing)} missing {missing[:8]}, "
                           f"{len(unexpected)} unexpected {unexpected[:8]}, {len(mismatched)} mis-shaped "
                           f"{mismatched[:8]}")
    net.load_state_dict(state, strict=False)


def _check_video(x: torch.Tensor, name: str, channels: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[2] != channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a (b, t, {channels}, h, w) tensor; got {shape}")


# ================================================================================================= UNet
class TemporalModule(nn.Module):
    """Block-level temporal module of the Upscale-A-Video UNet, residual: ``x + proj_out(g(x))``.

    ``g = spatial_res o temporal_conv``: a :class:`~zoo.diffusion.inflation.TemporalConvBlock` (kernel 5 over
    time, timestep embedding) then a diffusers ``ResnetBlock2D`` (3x3, timestep embedding, clip-wide GroupNorm
    when ``norm_over_time``); ``proj_out`` is a 1x1 convolution started at zero. Official
    ``models_video/temporal_module.py`` ``TemporalModule3D`` with ``attention_block_types=('', '')`` (no attention,
    as in the released ``unet_video_config.json``).

    Args:
        channels: feature channels.
        temb_channels: timestep-embedding channels.
        frames: the owning network's frame context.
        num_groups, eps: GroupNorm (official: 32, 1e-6).
        norm_over_time: clip-wide GroupNorm in the 2D residual block.
        zero_init: zero ``proj_out`` (identity at initialisation).
    """

    def __init__(self, channels: int, *, temb_channels: int, frames: FrameContext, num_groups: int = 32,
                 eps: float = 1e-6, norm_over_time: bool = True, zero_init: bool = True) -> None:
        super().__init__()
        self.frames = frames
        self.temporal_conv = TemporalConvBlock(channels, kernel_size=5, temb_channels=temb_channels,
                                               num_groups=num_groups, eps=eps, zero_init=False)
        self.spatial_res = ResnetBlock2D(in_channels=channels, out_channels=channels, temb_channels=temb_channels,
                                         groups=num_groups, eps=eps)
        if norm_over_time:
            _use_clip_norms_in_resnets(self.spatial_res, frames)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        if zero_init:
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """``x`` ((b t), c, h, w) folded frames, ``temb`` (b, temb_channels) -> ((b t), c, h, w)."""
        t = self.frames.num_frames
        y = self.temporal_conv(rearrange(x, "(b t) c h w -> b c t h w", t=t), temb)
        y = self.spatial_res(rearrange(y, "b c t h w -> (b t) c h w"), repeat(temb, "b d -> (b t) d", t=t))
        return x + self.proj_out(y)


class NoTemporalModule(nn.Module):
    """Stand-in for :class:`TemporalModule` when ``temporal_modules=False``: returns ``x`` unchanged."""

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return x


class UpscaleAVideoUNet(nn.Module):
    """The Upscale-A-Video denoising UNet: diffusers' SD x4 upscaler UNet inflated to video.

    The keyword arguments are the configuration; defaults are the released model's
    (``configs/unet_video_config.json`` = SD x4 upscaler ``unet/config.json`` + temporal layers everywhere).
    Block types use diffusers' 2D names. Image-model parameters keep their diffusers ``UNet2DConditionModel``
    names; new parameters contain ``temporal`` (``down_temporal.*``, ``mid_temporal.*``, ``up_temporal.*``,
    ``*.temporal_conv.*``, ``*.attn_temporal.*``, ``*.norm_temporal.*``).

    Args:
        in_channels: latent + LQ channels (4 + 3).
        out_channels: predicted channels (4; v-prediction for the released weights).
        block_out_channels: channels per resolution level.
        layers_per_block: residual blocks per down block (up blocks have one more).
        down_block_types, up_block_types: diffusers block names (``DownBlock2D``, ``CrossAttnDownBlock2D``, ...).
        only_cross_attention: per down level, whether the transformers' first attention attends to the text
            instead of the image tokens (reversed for the up levels).
        attention_head_dim: number of attention heads (diffusers' legacy name; head size = channels / heads).
        cross_attention_dim: text-token channels (1024: OpenCLIP ViT-H text encoder).
        num_class_embeds: size of the ``noise_level`` embedding table (1000).
        max_noise_level: largest accepted ``noise_level`` (350, official pipeline).
        norm_num_groups, norm_eps: GroupNorm of the image blocks.
        use_linear_projection: linear (not 1x1 conv) transformer in/out projections.
        upcast_attention, flip_sin_to_cos, freq_shift, downsample_padding, mid_block_scale_factor, act_fn: as
            diffusers ``UNet2DConditionModel``.
        temporal_modules: add the block-level :class:`TemporalModule` after every down/mid/up block.
        temporal_rope_dim: RoPE channels per head of the temporal attention (official 32; <= head size).
        temporal_relative_position: learned relative position bias in the temporal attention (official: yes).
        norm_over_time: residual-block GroupNorm statistics over the whole clip (official behaviour).
        zero_init: zero-initialise the outputs of the temporal layers.

    Attributes:
        gradient_checkpointing: set True to recompute each down/mid/up block (with its temporal module) in the
            backward pass instead of storing its activations (training memory).

    Raises:
        ConfigError: for inconsistent block settings (from diffusers) or unsupported transformer variants.
    """

    def __init__(
        self,
        *,
        in_channels: int = 7,
        out_channels: int = 4,
        block_out_channels: tuple[int, ...] = (256, 512, 512, 1024),
        layers_per_block: int = 2,
        down_block_types: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                             "CrossAttnDownBlock2D"),
        up_block_types: tuple[str, ...] = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                           "UpBlock2D"),
        only_cross_attention: tuple[bool, ...] = (True, True, True, False),
        attention_head_dim: int = 8,
        cross_attention_dim: int = 1024,
        num_class_embeds: int = 1000,
        max_noise_level: int = 350,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        use_linear_projection: bool = True,
        upcast_attention: bool = False,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1.0,
        act_fn: str = "silu",
        temporal_modules: bool = True,
        temporal_rope_dim: int = 32,
        temporal_relative_position: bool = True,
        norm_over_time: bool = True,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        try:
            image_unet = UNet2DConditionModel(
                in_channels=in_channels, out_channels=out_channels, block_out_channels=tuple(block_out_channels),
                layers_per_block=layers_per_block, down_block_types=tuple(down_block_types),
                up_block_types=tuple(up_block_types), only_cross_attention=list(only_cross_attention),
                attention_head_dim=attention_head_dim, cross_attention_dim=cross_attention_dim,
                num_class_embeds=num_class_embeds, norm_num_groups=norm_num_groups, norm_eps=norm_eps,
                use_linear_projection=use_linear_projection, upcast_attention=upcast_attention,
                flip_sin_to_cos=flip_sin_to_cos, freq_shift=freq_shift, downsample_padding=downsample_padding,
                mid_block_scale_factor=mid_block_scale_factor, act_fn=act_fn)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid UpscaleAVideoUNet configuration: {exc}") from exc
        self.max_noise_level = max_noise_level
        self.num_upsamplers = len(block_out_channels) - 1
        self.gradient_checkpointing = False
        self.frames = FrameContext()
        frames = self.frames

        # image-model modules, taken over with their diffusers names
        self.conv_in = image_unet.conv_in
        self.time_proj = image_unet.time_proj
        self.time_embedding = image_unet.time_embedding
        self.class_embedding = image_unet.class_embedding
        self.down_blocks = image_unet.down_blocks
        self.mid_block = image_unet.mid_block
        self.up_blocks = image_unet.up_blocks
        self.conv_norm_out = image_unet.conv_norm_out
        self.conv_act = image_unet.conv_act
        self.conv_out = image_unet.conv_out
        del image_unet

        # inflation: clip-wide norms, temporal conv + attention in every spatial transformer
        if norm_over_time:
            _use_clip_norms_in_resnets(self, frames)
            self.conv_norm_out = use_clip_group_norm(self.conv_norm_out, frames)
        replace_modules(
            self, lambda name, module: isinstance(module, Transformer2DModel),
            functools.partial(VideoTransformer2D, frames=frames, rope_dim=temporal_rope_dim,
                              relative_position=temporal_relative_position, zero_init=zero_init))

        # block-level temporal modules
        temb_channels = block_out_channels[0] * 4

        def temporal_module(channels: int) -> nn.Module:
            if not temporal_modules:
                return NoTemporalModule()
            return TemporalModule(channels, temb_channels=temb_channels, frames=frames,
                                  norm_over_time=norm_over_time, zero_init=zero_init)

        self.down_temporal = nn.ModuleList(temporal_module(c) for c in block_out_channels)
        self.mid_temporal = temporal_module(block_out_channels[-1])
        self.up_temporal = nn.ModuleList(temporal_module(c) for c in reversed(block_out_channels))

    @classmethod
    def from_image_unet(cls, image_unet: UNet2DConditionModel, **temporal: object) -> UpscaleAVideoUNet:
        """Inflate a diffusers image UNet (e.g. the SD x4 upscaler's): same weights, new temporal layers at zero.

        Args:
            image_unet: a ``UNet2DConditionModel`` with the SD x4 upscaler's architecture family.
            **temporal: temporal options of :class:`UpscaleAVideoUNet` (``temporal_modules``, ``norm_over_time``,
                ``temporal_rope_dim``, ...).

        Raises:
            ConfigError: for image-UNet options this class does not cover.
            WeightsError: if the image weights do not fit.
        """
        config = image_unet.config
        unsupported = {key: config.get(key) for key, default in (
            ("class_embed_type", None), ("addition_embed_type", None), ("time_embedding_type", "positional"),
            ("resnet_time_scale_shift", "default"), ("center_input_sample", False), ("dual_cross_attention", False),
            ("encoder_hid_dim", None), ("num_attention_heads", None), ("mid_block_type", "UNetMidBlock2DCrossAttn"),
        ) if config.get(key, default) != default}
        if unsupported:
            raise ConfigError(f"image UNet options not supported by UpscaleAVideoUNet: {unsupported}")
        head_dim = config.attention_head_dim
        if not isinstance(head_dim, int):
            if len(set(head_dim)) != 1:
                raise ConfigError(f"per-level attention_head_dim {head_dim} is not supported")
            head_dim = head_dim[0]
        only_cross = config.only_cross_attention
        if isinstance(only_cross, bool):
            only_cross = (only_cross,) * len(config.down_block_types)
        net = cls(in_channels=config.in_channels, out_channels=config.out_channels,
                  block_out_channels=tuple(config.block_out_channels), layers_per_block=config.layers_per_block,
                  down_block_types=tuple(config.down_block_types), up_block_types=tuple(config.up_block_types),
                  only_cross_attention=tuple(only_cross), attention_head_dim=head_dim,
                  cross_attention_dim=config.cross_attention_dim, num_class_embeds=config.num_class_embeds,
                  norm_num_groups=config.norm_num_groups, norm_eps=config.norm_eps,
                  use_linear_projection=config.use_linear_projection, upcast_attention=config.upcast_attention,
                  flip_sin_to_cos=config.flip_sin_to_cos, freq_shift=config.freq_shift,
                  downsample_padding=config.downsample_padding,
                  mid_block_scale_factor=config.mid_block_scale_factor, act_fn=config.act_fn, **temporal)
        _load_image_weights(net, image_unet.state_dict(), source="image UNet")
        return net

    def temporal_parameters(self) -> list[nn.Parameter]:
        """Parameters of the temporal layers (the ones Upscale-A-Video trains; the image layers stay frozen)."""
        return [p for name, p in self.named_parameters() if is_new_parameter(name)]

    def _embed(self, timestep: torch.Tensor | float | int, noise_level: torch.Tensor | int, batch: int,
               dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Timestep + noise-level embedding (b, 4 * block_out_channels[0])."""
        timesteps = torch.as_tensor(timestep, device=device)
        if timesteps.ndim == 0 or timesteps.numel() == 1:
            timesteps = timesteps.reshape(1).expand(batch)
        if timesteps.shape != (batch,):
            raise InputError(f"timestep must be a scalar or have shape ({batch},); got {tuple(timesteps.shape)}")
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype))
        if self.class_embedding is not None:
            levels = torch.as_tensor(noise_level, device=device)
            if levels.is_floating_point() and not torch.equal(levels, levels.round()):
                raise InputError(f"noise_level must be integer-valued; got {levels.tolist()}")
            levels = levels.long()
            if levels.ndim == 0 or levels.numel() == 1:
                levels = levels.reshape(1).expand(batch)
            if levels.shape != (batch,):
                raise InputError(f"noise_level must be a scalar or have shape ({batch},); got {tuple(levels.shape)}")
            if (levels < 0).any() or (levels > self.max_noise_level).any():
                raise InputError(f"noise_level must be in [0, {self.max_noise_level}]; got {levels.tolist()}")
            emb = emb + self.class_embedding(levels).to(dtype)
        return emb

    def _run(self, fn: Callable[..., Any], *args: torch.Tensor) -> Any:
        """Call ``fn(*args)``; with ``gradient_checkpointing`` (and grad enabled) through activation checkpointing,
        the recomputation re-entering the frame context (it runs during backward, outside ``forward``)."""
        if not (self.gradient_checkpointing and torch.is_grad_enabled()):
            return fn(*args)
        num_frames = self.frames.num_frames

        def recompute(*inner: torch.Tensor) -> Any:
            with self.frames.clip(num_frames):
                return fn(*inner)

        return checkpoint(recompute, *args, use_reentrant=False)

    def _down(self, i: int, x: torch.Tensor, *, frame_emb: torch.Tensor, emb: torch.Tensor,
              text: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Down block ``i`` + its temporal module: (output, *skip features), all ((b t), c, h, w)."""
        block = self.down_blocks[i]
        if getattr(block, "has_cross_attention", False):
            x, res = block(x, temb=frame_emb, encoder_hidden_states=text)
        else:
            x, res = block(x, temb=frame_emb)
        return (self.down_temporal[i](x, emb), *res)

    def _middle(self, x: torch.Tensor, *, frame_emb: torch.Tensor, emb: torch.Tensor,
                text: torch.Tensor) -> torch.Tensor:
        return self.mid_temporal(self.mid_block(x, frame_emb, encoder_hidden_states=text), emb)

    def _up(self, i: int, x: torch.Tensor, *res: torch.Tensor, size: torch.Size | None, frame_emb: torch.Tensor,
            emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Up block ``i`` (consuming skip features ``res``) + its temporal module."""
        block = self.up_blocks[i]
        if getattr(block, "has_cross_attention", False):
            x = block(x, res_hidden_states_tuple=res, temb=frame_emb, encoder_hidden_states=text,
                      upsample_size=size)
        else:
            x = block(x, res_hidden_states_tuple=res, temb=frame_emb, upsample_size=size)
        return self.up_temporal[i](x, emb)

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | float | int,
        lq: torch.Tensor,
        noise_level: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
    ) -> torch.Tensor:
        """Predict the model output (v for the released weights) for a clip.

        Args:
            latents: (b, t, 4, h, w) noisy latents (scaled by the VAE ``scaling_factor``).
            timestep: diffusion step, a scalar or (b,), in [0, 1000).
            lq: (b, t, 3, h, w) LQ frames in [-1, 1] at latent resolution, after noise augmentation at
                ``noise_level`` (``low_res_scheduler.add_noise``).
            noise_level: (b,) or scalar integer in [0, ``max_noise_level``], the augmentation level.
            encoder_hidden_states: (b, n, cross_attention_dim) text tokens.

        Returns:
            (b, t, out_channels, h, w).

        Raises:
            InputError: for wrong shapes or an out-of-range ``noise_level``.
        """
        _check_video(latents, "latents", self.conv_in.in_channels - 3)
        _check_video(lq, "lq", 3)
        if lq.shape[:2] != latents.shape[:2] or lq.shape[-2:] != latents.shape[-2:]:
            raise InputError(f"lq {tuple(lq.shape)} must match latents {tuple(latents.shape)} in b, t, h, w")
        b, t = latents.shape[:2]
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != b:
            raise InputError(f"encoder_hidden_states must be (b={b}, n, d); got {tuple(encoder_hidden_states.shape)}")
        dtype = self.conv_in.weight.dtype
        emb = self._embed(timestep, noise_level, b, dtype, latents.device)
        frame_emb = repeat(emb, "b d -> (b t) d", t=t)
        text = repeat(encoder_hidden_states.to(dtype), "b n d -> (b t) n d", t=t)
        x = rearrange(torch.cat([latents, lq], dim=2).to(dtype), "b t c h w -> (b t) c h w")
        forward_upsample_size = any(s % 2 ** self.num_upsamplers for s in x.shape[-2:])

        cond = dict(frame_emb=frame_emb, emb=emb, text=text)
        with self.frames.clip(t):
            x = self.conv_in(x)
            skips: tuple[torch.Tensor, ...] = (x,)
            for i in range(len(self.down_blocks)):
                x, *res = self._run(functools.partial(self._down, i, **cond), x)
                skips += tuple(res)
            x = self._run(functools.partial(self._middle, **cond), x)
            for i, block in enumerate(self.up_blocks):
                res = skips[-len(block.resnets):]
                skips = skips[:-len(block.resnets)]
                size = skips[-1].shape[2:] if forward_upsample_size and i < len(self.up_blocks) - 1 else None
                x = self._run(functools.partial(self._up, i, size=size, **cond), x, *res)
            x = self.conv_out(self.conv_act(self.conv_norm_out(x)))
        return rearrange(x, "(b t) c h w -> b t c h w", t=t)


# ================================================================================================= VAE
class TemporalDecoder(nn.Module):
    """The SD x4 VAE decoder with optional LQ conditioning (SFT) and temporal 3x3x3 convolution residuals.

    ``z -> conv_in -> [SFT(z_feat, condition_in(lq))] -> mid_block -> up_blocks -> norm, SiLU, conv_out``.

    - ``condition_in``: two residual blocks (3 -> ``condition_channels``, first with 3 GroupNorm groups) each with a
      3x3x3 convolution residual, at latent resolution;
    - ``condition_fuse``: :class:`~zoo.diffusion.inflation.SFTLayer`, applied after ``conv_in``;
    - with ``temporal_convs`` every residual block of ``mid_block`` and ``up_blocks`` is a
      :class:`~zoo.diffusion.inflation.VideoResnetBlock`.

    Official: ``models_video/vae_video.py`` ``Decoder`` with ``UpDecoderBlock3D_plus`` / ``condition_img``.
    Takes over the modules of a diffusers ``Decoder`` (names unchanged).

    Args:
        decoder: a diffusers ``diffusers.models.autoencoders.vae.Decoder`` (GroupNorm output norm).
        frames: the owning network's frame context.
        lq_condition: add ``condition_in`` + ``condition_fuse``.
        condition_channels: channels of the LQ condition features (official 128).
        temporal_convs: add the 3x3x3 residuals to the mid/up residual blocks.
        zero_init: zero-initialise the new layers' outputs.
    """

    def __init__(self, decoder: nn.Module, *, frames: FrameContext, lq_condition: bool, condition_channels: int,
                 temporal_convs: bool, zero_init: bool = True) -> None:
        super().__init__()
        self.frames = frames
        self.conv_in = decoder.conv_in
        self.mid_block, self.up_blocks = decoder.mid_block, decoder.up_blocks
        self.conv_norm_out, self.conv_act, self.conv_out = decoder.conv_norm_out, decoder.conv_act, decoder.conv_out
        channels = self.conv_in.out_channels
        groups = self.conv_norm_out.num_groups
        self.condition_in = self.condition_fuse = None
        if lq_condition:
            self.condition_in = nn.ModuleList(
                VideoResnetBlock(ResnetBlock2D(in_channels=c_in, out_channels=condition_channels, temb_channels=None,
                                               groups=g, groups_out=groups, eps=1e-6),
                                 frames=frames, zero_init=zero_init)
                for c_in, g in ((3, 3), (condition_channels, groups)))
            self.condition_fuse = SFTLayer(condition_channels, channels, num_groups=groups, eps=1e-6,
                                           zero_init=zero_init)
        if temporal_convs:
            for part in (self.mid_block, self.up_blocks):
                replace_modules(part, lambda name, module: isinstance(module, ResnetBlock2D),
                                functools.partial(VideoResnetBlock, frames=frames, zero_init=zero_init))

    def forward(self, z: torch.Tensor, lq: torch.Tensor | None = None, lq_weight: float = 1.0) -> torch.Tensor:
        """``z`` ((b t), latent, h, w) after ``post_quant_conv``; ``lq`` ((b t), 3, h, w) in [-1, 1] or None.

        Returns:
            ((b t), out_channels, 4h, 4w) for the x4 VAE.
        """
        x = self.conv_in(z)
        if self.condition_fuse is not None:
            if lq is None:
                raise InputError("this VAE decoder is conditioned on the LQ frames: pass lq")
            cond = lq
            for block in self.condition_in:
                cond = block(cond)
            x = self.condition_fuse(x, cond, lq_weight)
        x = self.mid_block(x)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


class UpscaleAVideoVAE(nn.Module):
    """The Upscale-A-Video VAE: SD x4 upscaler encoder + :class:`TemporalDecoder`.

    Defaults are the released ``vae/vae_video_config.json`` (LQ-conditioned temporal decoder); with
    ``lq_condition=False, temporal_convs=False`` it is ``vae/vae_3d_config.json`` (the image VAE with clip-wide
    GroupNorm). Image parameters keep the diffusers ``AutoencoderKL`` names; new ones are under
    ``decoder.condition_in``, ``decoder.condition_fuse`` and ``*.temporal.*``.

    Args:
        in_channels, out_channels: image channels (3).
        latent_channels: 4.
        block_out_channels: encoder channels per level (decoder reversed); (128, 256, 512) downsamples by 4.
        layers_per_block: encoder residual blocks per level (decoder has one more).
        norm_num_groups: GroupNorm groups.
        act_fn: activation.
        scaling_factor: latents are ``scaling_factor * z`` in diffusion space (0.08333 for SD x4).
        lq_condition: condition the decoder on the LQ frames (SFT).
        condition_channels: LQ condition feature channels.
        temporal_convs: 3x3x3 residuals in the decoder's mid/up residual blocks.
        norm_over_time: clip-wide GroupNorm in residual blocks and output norms (official behaviour).
        zero_init: zero-initialise the new layers' outputs.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        latent_channels: int = 4,
        block_out_channels: tuple[int, ...] = (128, 256, 512),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        scaling_factor: float = 0.08333,
        lq_condition: bool = True,
        condition_channels: int = 128,
        temporal_convs: bool = True,
        norm_over_time: bool = True,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        levels = len(block_out_channels)
        try:
            image_vae = AutoencoderKL(in_channels=in_channels, out_channels=out_channels,
                                      down_block_types=("DownEncoderBlock2D",) * levels,
                                      up_block_types=("UpDecoderBlock2D",) * levels,
                                      block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
                                      act_fn=act_fn, latent_channels=latent_channels, norm_num_groups=norm_num_groups,
                                      scaling_factor=scaling_factor)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid UpscaleAVideoVAE configuration: {exc}") from exc
        self.scaling_factor = scaling_factor
        self.downscale = 2 ** (levels - 1)
        self.frames = FrameContext()
        self.encoder = image_vae.encoder
        self.quant_conv, self.post_quant_conv = image_vae.quant_conv, image_vae.post_quant_conv
        self.decoder = TemporalDecoder(image_vae.decoder, frames=self.frames, lq_condition=lq_condition,
                                       condition_channels=condition_channels, temporal_convs=temporal_convs,
                                       zero_init=zero_init)
        del image_vae
        if norm_over_time:
            _use_clip_norms_in_resnets(self, self.frames)
            for part in (self.encoder, self.decoder):
                part.conv_norm_out = use_clip_group_norm(part.conv_norm_out, self.frames)

    @classmethod
    def from_image_vae(cls, image_vae: AutoencoderKL, **video: object) -> UpscaleAVideoVAE:
        """Build from a diffusers ``AutoencoderKL`` (e.g. the SD x4 upscaler's): same weights, new layers at zero.

        Args:
            image_vae: the image VAE (``DownEncoderBlock2D`` / ``UpDecoderBlock2D`` blocks, no quant/post-quant
                variants).
            **video: ``lq_condition``, ``condition_channels``, ``temporal_convs``, ``norm_over_time``, ``zero_init``.

        Raises:
            ConfigError: for other VAE variants; WeightsError if the weights do not fit.
        """
        config = image_vae.config
        levels = len(config.block_out_channels)
        if (tuple(config.down_block_types) != ("DownEncoderBlock2D",) * levels
                or tuple(config.up_block_types) != ("UpDecoderBlock2D",) * levels
                or not config.get("use_quant_conv", True) or not config.get("use_post_quant_conv", True)
                or not config.get("mid_block_add_attention", True)):
            raise ConfigError(f"image VAE variant not supported by UpscaleAVideoVAE: {dict(config)}")
        scaling_factor = config.get("scaling_factor", 0.08333)
        net = cls(in_channels=config.in_channels, out_channels=config.out_channels,
                  latent_channels=config.latent_channels, block_out_channels=tuple(config.block_out_channels),
                  layers_per_block=config.layers_per_block, norm_num_groups=config.norm_num_groups,
                  act_fn=config.act_fn, scaling_factor=scaling_factor, **video)
        _load_image_weights(net, image_vae.state_dict(), source="image VAE")
        return net

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters of the layers the image VAE does not have (LQ condition, temporal convolutions)."""
        return [p for name, p in self.named_parameters() if is_new_parameter(name)]

    def encode(self, video: torch.Tensor, *, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode frames to diffusion-space latents.

        Args:
            video: (b, t, 3, H, W) in [-1, 1], H and W multiples of ``downscale`` (4).
            sample: draw from the posterior (``mean + std * noise``) instead of taking its mean.
            generator: for the posterior sample.

        Returns:
            (b, t, latent_channels, H / 4, W / 4), multiplied by ``scaling_factor``.
        """
        _check_video(video, "video", self.encoder.conv_in.in_channels)
        if video.shape[-1] % self.downscale or video.shape[-2] % self.downscale:
            raise InputError(f"video height and width must be multiples of {self.downscale}; got "
                             f"{tuple(video.shape[-2:])}")
        t = video.shape[1]
        with self.frames.clip(t):
            moments = self.quant_conv(self.encoder(rearrange(video, "b t c h w -> (b t) c h w")))
        mean, logvar = moments.chunk(2, dim=1)
        z = mean
        if sample:
            std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
            z = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return rearrange(z * self.scaling_factor, "(b t) c h w -> b t c h w", t=t)

    def decode(self, latents: torch.Tensor, lq: torch.Tensor | None = None, *, lq_weight: float = 1.0) -> torch.Tensor:
        """Decode diffusion-space latents to frames.

        Args:
            latents: (b, t, latent_channels, h, w), scaled by ``scaling_factor``.
            lq: (b, t, 3, h, w) LQ frames in [-1, 1] at latent resolution (clean, not noise-augmented); required
                by an LQ-conditioned decoder, ignored otherwise.
            lq_weight: strength of the LQ feature transform (official ``w_lr``, 1).

        Returns:
            (b, t, 3, 4h, 4w) in about [-1, 1] (not clamped).
        """
        _check_video(latents, "latents", self.post_quant_conv.in_channels)
        b, t = latents.shape[:2]
        folded_lq = None
        if self.decoder.condition_fuse is not None:
            if lq is None:
                raise InputError("this VAE decoder is conditioned on the LQ frames: pass lq (b, t, 3, h, w)")
            _check_video(lq, "lq", 3)
            if lq.shape[:2] != (b, t) or lq.shape[-2:] != latents.shape[-2:]:
                raise InputError(f"lq {tuple(lq.shape)} must match latents {tuple(latents.shape)} in b, t, h, w")
            folded_lq = rearrange(lq, "b t c h w -> (b t) c h w")
        z = rearrange(latents / self.scaling_factor, "b t c h w -> (b t) c h w")
        with self.frames.clip(t):
            x = self.decoder(self.post_quant_conv(z), folded_lq, lq_weight)
        return rearrange(x, "(b t) c h w -> b t c h w", t=t)


# ================================================================================================= bundle
class UpscaleAVideoComponents(nn.Module):
    """Everything Upscale-A-Video's sampler needs, as one module (what ``load_upscale_a_video`` returns).

    Modules: ``unet`` (:class:`UpscaleAVideoUNet`), ``vae`` (:class:`UpscaleAVideoVAE`), ``text_encoder``
    (transformers ``CLIPTextModel`` or None), ``flow_net`` (torchvision ``raft_large`` for latent propagation, or
    None). Plain attributes: ``tokenizer`` (``CLIPTokenizer`` or None), ``scheduler`` (diffusers DDIM, or None),
    ``low_res_scheduler`` (diffusers DDPM that noise-augments the LQ input, or None).
    """

    def __init__(self, *, unet: UpscaleAVideoUNet, vae: UpscaleAVideoVAE, text_encoder: nn.Module | None = None,
                 tokenizer: object | None = None, scheduler: object | None = None,
                 low_res_scheduler: object | None = None, flow_net: nn.Module | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.flow_net = flow_net
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.low_res_scheduler = low_res_scheduler
