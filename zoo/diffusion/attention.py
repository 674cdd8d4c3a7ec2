"""Attention of the video diffusion networks through diffusers attention processors.

Every attention layer of the zoo's diffusion networks is a diffusers ``Attention`` module, and what it computes is
its *processor* (diffusers' ``Attention.set_processor``). A family changes the computation of chosen layers by
installing processors, without touching the weights: Upscale-A-Video's temporal attention is
:class:`TemporalAttnProcessor`; DC-VSR's spatial/temporal attention propagation and its detail-suppressing guidance
are processors on named spatial self-attention layers.

- :func:`attention_processors` / :func:`set_attention_processor`: read and set the processors of every ``Attention``
  below a module (any ``nn.Module``, not only diffusers' ``ModelMixin``), by name, by a function of the name and
  layer, or one processor for all; names are ``<module path>.processor`` as in diffusers.
- :func:`temporal_attention`: a diffusers ``Attention`` for self-attention over frames with rotary position
  embedding (RoPE) and a learned T5 relative position bias (:class:`RelativePositionBias`, a sub-module of the
  attention layer, so its weights stay in the state dict when processors are swapped).
- :class:`TemporalAttnProcessor`: that computation (Upscale-A-Video ``models_video/attention.py``
  ``TemporalAttention``).
"""
from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping

import torch
from diffusers.models.attention_processor import Attention
from einops import rearrange, repeat
from torch import nn
from torch.nn import functional as F

from zoo.errors import ConfigError

__all__ = ["RelativePositionBias", "TemporalAttnProcessor", "apply_rotary", "attention_processors",
           "set_attention_processor", "temporal_attention"]

Processor = object
ProcessorChoice = Processor | Mapping[str, Processor] | Callable[[str, Attention], Processor | None]


def attention_processors(module: nn.Module) -> dict[str, Processor]:
    """The processor of every diffusers ``Attention`` below ``module``, keyed ``'<path>.processor'``.

    Args:
        module: any module (a diffusers model, one of the zoo's inflated networks, a block).

    Returns:
        An ordered dict in module order.
    """
    return {f"{name}.processor" if name else "processor": layer.get_processor()
            for name, layer in module.named_modules() if isinstance(layer, Attention)}


def set_attention_processor(module: nn.Module, processor: ProcessorChoice) -> int:
    """Install processors on the diffusers ``Attention`` layers below ``module``.

    Args:
        module: any module.
        processor: one processor for every layer; or a mapping ``'<path>.processor' -> processor`` (every key must
            name a layer; layers not named keep theirs); or a function ``(path, layer) -> processor or None`` (None
            keeps the layer's processor), e.g. ``lambda name, attn: P() if not attn.is_cross_attention else None``.

    Returns:
        How many layers got a new processor.

    Raises:
        ConfigError: a mapping key that names no attention layer.
    """
    layers = {f"{name}.processor" if name else "processor": layer
              for name, layer in module.named_modules() if isinstance(layer, Attention)}
    if isinstance(processor, Mapping):
        unknown = sorted(set(processor) - set(layers))
        if unknown:
            raise ConfigError(f"no attention layer named {unknown[:4]} (of {len(layers)} layers, e.g. "
                              f"{list(layers)[:3]})")
        chosen = dict(processor)
    elif _is_selector(processor):
        chosen = {key: processor(key.removesuffix(".processor"), layer) for key, layer in layers.items()}
    else:
        chosen = {key: processor for key in layers}
    count = 0
    for key, new in chosen.items():
        if new is not None:
            layers[key].set_processor(new)
            count += 1
    return count


def _is_selector(processor: object) -> bool:
    """A plain function, lambda or method choosing processors (a processor object is callable too, but is not one)."""
    return isinstance(processor, (types.FunctionType, types.MethodType))


class RelativePositionBias(nn.Module):
    """Learned attention bias per head from the bucketed distance between query and key positions (T5).

    Bucket of ``n = i - j`` (query ``i``, key ``j``): half of the ``num_buckets`` for ``n >= 0`` and half for
    ``n < 0``; within a half, ``|n| < num_buckets / 4`` gets its own bucket and larger distances share
    logarithmically spaced buckets up to ``max_distance`` (Raffel et al., JMLR 2020, Sec. 2.1; the T5 formula
    used by Upscale-A-Video's ``TemporalAttention`` with 32 buckets and ``max_distance=32``).

    Args:
        num_heads: attention heads.
        num_buckets: even number of buckets.
        max_distance: distance mapped to the last bucket.
    """

    def __init__(self, num_heads: int, *, num_buckets: int = 32, max_distance: int = 32) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def bucket(self, num_frames: int, device: torch.device) -> torch.Tensor:
        """Bucket index (long, (num_frames, num_frames)) of every query/key pair."""
        position = torch.arange(num_frames, device=device)
        distance = position[:, None] - position[None, :]  # i - j
        half = self.num_buckets // 2
        bucket = (distance < 0).long() * half
        distance = distance.abs()
        max_exact = half // 2
        log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(self.max_distance / max_exact)
        large = (max_exact + (log_ratio * (half - max_exact)).long()).clamp(max=half - 1)
        return bucket + torch.where(distance < max_exact, distance, large)

    def forward(self, num_frames: int, device: torch.device) -> torch.Tensor:
        """Bias (num_heads, num_frames, num_frames) added to the attention logits."""
        return rearrange(self.embedding(self.bucket(num_frames, device)), "i j h -> h i j")


def apply_rotary(x: torch.Tensor, dim: int, *, theta: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (RoPE; Su et al., "RoFormer", 2021) along the sequence axis of ``x``.

    Rotates consecutive channel pairs ``(x[2i], x[2i+1])`` of the first ``dim`` channels by the angle
    ``p * theta ** (-2i / dim)`` for the token at position ``p = 0, 1, ...``; the other channels pass unchanged.
    This is the interleaved-pair convention of ``rotary-embedding-torch`` 0.2.x (``RotaryEmbedding(32)`` in
    Upscale-A-Video's ``models_video/unet_video.py``); the frequencies are fixed (no weights).

    Args:
        x: (..., n, d) with ``d >= dim``; positions are ``0 .. n-1``.
        dim: rotated channels (even, >= 2).
        theta: frequency base (10000 as in RoFormer).

    Returns:
        Same shape and dtype as ``x``.

    Raises:
        ConfigError: odd ``dim`` or ``dim > d``.
    """
    if dim < 2 or dim % 2:
        raise ConfigError(f"rotary dim must be even and >= 2; got {dim}")
    if x.shape[-1] < dim:
        raise ConfigError(f"rotary embedding rotates {dim} channels but heads have {x.shape[-1]}")
    inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float32, device=x.device) / dim)
    positions = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)
    angles = repeat(positions[:, None] * inv_freq[None, :], "n k -> n (k r)", r=2).to(x.dtype)
    x_rot, x_pass = x[..., :dim], x[..., dim:]
    pairs = rearrange(x_rot, "... (k r) -> ... k r", r=2)
    rotated_half = rearrange(torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1), "... k r -> ... (k r)")
    return torch.cat((x_rot * angles.cos() + rotated_half * angles.sin(), x_pass), dim=-1)


class TemporalAttnProcessor:
    """Self-attention over frames with RoPE and a relative position bias (a diffusers attention processor).

    ``q, k, v = x W_q, x W_k, x W_v`` per head, RoPE on the first ``rope_dim`` channels of each head of ``q`` and
    ``k``, ``softmax(q k^T / sqrt(head_dim) + bias) v`` (``bias`` from the layer's ``relative_position`` module when
    it has one), then ``to_out``. Upscale-A-Video ``models_video/attention.py`` ``TemporalAttention``.

    Args:
        rope_dim: rotated channels per head (0 or None: no RoPE).
    """

    def __init__(self, rope_dim: int | None = 32) -> None:
        self.rope_dim = rope_dim or None

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 **unused: object) -> torch.Tensor:
        """``hidden_states`` (n, t, dim): one sequence of ``t`` frames per row -> (n, t, dim).

        Raises:
            ConfigError: given ``encoder_hidden_states`` or ``attention_mask`` (temporal self-attention only).
        """
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ConfigError("TemporalAttnProcessor is self-attention over frames: no encoder states or masks")
        q, k, v = (rearrange(proj(hidden_states), "n t (h d) -> n h t d", h=attn.heads)
                   for proj in (attn.to_q, attn.to_k, attn.to_v))
        if self.rope_dim is not None:
            q, k = apply_rotary(q, self.rope_dim), apply_rotary(k, self.rope_dim)
        bias = None
        relative = getattr(attn, "relative_position", None)
        if relative is not None:
            # (1, heads, t, t): a 4-d bias; a 3-d one sends SDPA to its unfused math path on the CPU (torch 2.15)
            bias = rearrange(relative(hidden_states.shape[1], hidden_states.device).to(q.dtype), "h i j -> 1 h i j")
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = attn.to_out[0](rearrange(out, "n h t d -> n t (h d)"))
        return attn.to_out[1](out)


def temporal_attention(dim: int, *, num_heads: int, head_dim: int, rope_dim: int | None = 32,
                       relative_position: bool = True, num_buckets: int = 32, max_distance: int = 32,
                       zero_init: bool = True) -> Attention:
    """A diffusers ``Attention`` layer for self-attention over frames (:class:`TemporalAttnProcessor`).

    Projections ``to_q``/``to_k``/``to_v`` without bias, ``to_out.0`` with bias (zero when ``zero_init``, so the
    residual branch starts at zero); a :class:`RelativePositionBias` as ``relative_position`` when asked.

    Args:
        dim: token channels.
        num_heads: heads; head_dim: channels per head.
        rope_dim: rotated channels per head (<= ``head_dim``; 0 or None: no RoPE).
        relative_position: add the learned relative position bias.
        num_buckets, max_distance: of the relative position bias.
        zero_init: zero the output projection.

    Raises:
        ConfigError: ``rope_dim > head_dim``.
    """
    if rope_dim and rope_dim > head_dim:
        raise ConfigError(f"temporal attention: rope_dim {rope_dim} exceeds head_dim {head_dim}")
    attn = Attention(query_dim=dim, heads=num_heads, dim_head=head_dim, bias=False, out_bias=True,
                     processor=TemporalAttnProcessor(rope_dim))
    if relative_position:
        attn.relative_position = RelativePositionBias(num_heads, num_buckets=num_buckets, max_distance=max_distance)
    if zero_init:
        nn.init.zeros_(attn.to_out[0].weight)
        nn.init.zeros_(attn.to_out[0].bias)
    return attn
