"""Convert the released Upscale-A-Video weights (and RAFT) to this project's networks.

Released folder (sczhou/Upscale-A-Video, ``pretrained_models/upscale_a_video``; NTU S-Lab License 1.0)::

    unet/unet_video_config.json, unet/unet_video.bin        UNetVideoModel (models_video/unet_video.py)
    vae/vae_3d_config.json, vae/vae_3d.bin                  AutoencoderKLVideo, plain decoder (default)
    vae/vae_video_config.json, vae/vae_video.bin            AutoencoderKLVideo, LQ-conditioned temporal decoder
    propagator/raft-things.pth                              RAFT (princeton-vl/RAFT core/raft.py), DataParallel
    scheduler/, low_res_scheduler/, text_encoder/, tokenizer/   diffusers / transformers formats

The ``.bin`` files are ``state_dict()`` of the official classes, written with diffusers 0.16. Their keys map to ours
by the explicit rules below (:class:`zoo.weights.KeyMap`: first matching rule wins; anything else is kept as is
because the official spatial blocks and the temporal attention use diffusers' names). Every conversion then checks
the result against the target network: missing, unexpected or mis-shaped keys raise
:class:`~zoo.errors.WeightsError`.

UNet (``unet_video.bin`` -> :class:`UpscaleAVideoUNet`):

=============================================================  =====================================================
official                                                       ours
=============================================================  =====================================================
``*.attentions.<j>.resblock_temporal.*``                       ``*.attentions.<j>.temporal_conv.*``
``*.attn_temporal.time_rel_pos_bias.relative_attention_bias``  ``*.attn_temporal.relative_position.embedding``
``down_temp_blocks.<i>.resblocks_3d_temporal.*``               ``down_temporal.<i>.temporal_conv.*``
``down_temp_blocks.<i>.resblocks_3d_spatial.*``                ``down_temporal.<i>.spatial_res.*``
``down_temp_blocks.<i>.shift_conv.*``                          ``down_temporal.<i>.proj_out.*``
``mid_temp_block.*`` / ``up_temp_blocks.<i>.*``                ``mid_temporal.*`` / ``up_temporal.<i>.*`` (same)
``temporal_rotary_emb.freqs``, ``*.rotary_emb.freqs``          dropped after checking they are RoPE's fixed
                                                               frequencies ``10000 ** (-2i / 32)`` (not learned)
=============================================================  =====================================================

VAE (``vae_3d.bin`` / ``vae_video.bin`` -> :class:`UpscaleAVideoVAE`):

=============================================================  =====================================================
``*.mid_block.attentions.0.query|key|value|proj_attn.*``       ``*.mid_block.attentions.0.to_q|to_k|to_v|to_out.0.*``
                                                               (diffusers 0.16 ``AttentionBlock`` -> ``Attention``)
``decoder.*.resnets.<j>.norm_3d|conv_3d.*``                    ``decoder.*.resnets.<j>.temporal.norm|conv.*``
``decoder.condition_in.<j>.norm_3d|conv_3d.*``                 ``decoder.condition_in.<j>.temporal.norm|conv.*``
``decoder.condition_fuse.shared.<j>.*``                        ``decoder.condition_fuse.trunk.<j>.*``
=============================================================  =====================================================

RAFT (``raft-things.pth`` -> torchvision ``raft_large``): :data:`RAFT_KEYS`, strict rules covering all 169 keys.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from zoo.errors import ConfigError, WeightsError
from zoo.weights import KeyMap, check_state_dict, tensor_state

__all__ = [
    "RAFT_KEYS",
    "UNET_KEYS",
    "VAE_KEYS",
    "convert_raft_state_dict",
    "convert_unet_state_dict",
    "convert_vae_state_dict",
    "unet_kwargs_from_official",
    "unet_official_key",
    "vae_kwargs_from_official",
    "vae_official_key",
]

#: RoPE channels of the official temporal attention (``RotaryEmbedding(32)`` in unet_video.py).
OFFICIAL_ROPE_DIM = 32

#: (official part, ours) of the block-level temporal modules (``{down,up}_temp_blocks.i``, ``mid_temp_block``).
_TEMPORAL_PARTS = (("resblocks_3d_temporal", "temporal_conv"), ("resblocks_3d_spatial", "spatial_res"),
                   ("shift_conv", "proj_out"))
#: Official ``UNetVideoModel`` keys -> :class:`~zoo.models.upscale_a_video.net.UpscaleAVideoUNet`.
UNET_KEYS = KeyMap(
    rules=(
        (r"(.*\.attentions\.\d+)\.resblock_temporal\.(.*)", r"\1.temporal_conv.\2"),
        (r"(.*\.attn_temporal)\.time_rel_pos_bias\.relative_attention_bias\.weight",
         r"\1.relative_position.embedding.weight"),
    )
    + tuple((rf"(down|up)_temp_blocks\.(\d+)\.{official}\.(.*)", rf"\1_temporal.\2.{ours}.\3")
            for official, ours in _TEMPORAL_PARTS)
    + tuple((rf"mid_temp_block\.{official}\.(.*)", rf"mid_temporal.{ours}.\1") for official, ours in _TEMPORAL_PARTS),
    drop=(r"temporal_rotary_emb\.freqs", r".*\.rotary_emb\.freqs"),
    name="Upscale-A-Video UNetVideoModel",
)
_UNET_OFFICIAL_ROOTS = ("conv_in.", "time_embedding.", "class_embedding.", "down_blocks.", "mid_block.", "up_blocks.",
                        "conv_norm_out.", "conv_out.", "down_temp_blocks.", "mid_temp_block.", "up_temp_blocks.",
                        "temporal_rotary_emb.")

#: Official ``AutoencoderKLVideo`` keys (``vae_3d.bin`` / ``vae_video.bin``) ->
#: :class:`~zoo.models.upscale_a_video.net.UpscaleAVideoVAE` (diffusers 0.16 ``AttentionBlock`` -> ``Attention``).
VAE_KEYS = KeyMap(
    rules=(
        (r"(.*\.mid_block\.attentions\.\d+)\.query\.(weight|bias)", r"\1.to_q.\2"),
        (r"(.*\.mid_block\.attentions\.\d+)\.key\.(weight|bias)", r"\1.to_k.\2"),
        (r"(.*\.mid_block\.attentions\.\d+)\.value\.(weight|bias)", r"\1.to_v.\2"),
        (r"(.*\.mid_block\.attentions\.\d+)\.proj_attn\.(weight|bias)", r"\1.to_out.0.\2"),
        (r"(decoder\..*)\.norm_3d\.(weight|bias)", r"\1.temporal.norm.\2"),
        (r"(decoder\..*)\.conv_3d\.(weight|bias)", r"\1.temporal.conv.\2"),
        (r"decoder\.condition_fuse\.shared\.(\d+)\.(.*)", r"decoder.condition_fuse.trunk.\1.\2"),
    ),
    name="Upscale-A-Video AutoencoderKLVideo",
)
_VAE_OFFICIAL_ROOTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")


def unet_official_key(key: str) -> str | None:
    """Our :class:`UpscaleAVideoUNet` key for an official ``UNetVideoModel`` key (None: dropped RoPE buffer)."""
    return UNET_KEYS.rename(key)


def vae_official_key(key: str) -> str:
    """Our :class:`UpscaleAVideoVAE` key for an official ``AutoencoderKLVideo`` key."""
    return VAE_KEYS.rename(key)


def _official_tensors(state: object, *, source: str, roots: tuple[str, ...]) -> dict[str, torch.Tensor]:
    state = tensor_state(state, source=source)
    if not any(k.startswith(roots) for k in state):
        raise WeightsError(f"{source} does not look like the expected official weights (first keys: "
                           f"{list(state)[:4]}; expected keys starting with {roots[:4]})")
    return state


def _check_rope_frequencies(state: Mapping[str, torch.Tensor], *, source: str) -> None:
    expected = 1.0 / 10000.0 ** (torch.arange(0, OFFICIAL_ROPE_DIM, 2, dtype=torch.float32) / OFFICIAL_ROPE_DIM)
    for key, value in state.items():
        if UNET_KEYS.is_dropped(key):
            if value.shape != expected.shape or not torch.allclose(value.float(), expected, rtol=1e-3, atol=1e-6):
                raise WeightsError(f"{source}: {key} is not the fixed RoPE frequency table of a {OFFICIAL_ROPE_DIM}-"
                                   f"channel RotaryEmbedding (shape {tuple(value.shape)}); the official temporal "
                                   "attention differs from what this converter knows")


def convert_unet_state_dict(state: Mapping[str, torch.Tensor], net: nn.Module, *,
                            source: str = "unet_video.bin") -> dict[str, torch.Tensor]:
    """Official ``UNetVideoModel`` state dict -> :class:`UpscaleAVideoUNet` state dict.

    Args:
        state: the loaded ``unet_video.bin``.
        net: the target network (its keys and shapes are the reference; may be on the ``meta`` device).
        source: name for messages.

    Returns:
        A state dict with exactly ``net``'s keys and shapes (RoPE frequency buffers dropped).

    Raises:
        WeightsError: not a state dict, RoPE buffers that are not the fixed table, or missing / unexpected /
            mis-shaped keys after renaming.
    """
    state = _official_tensors(state, source=source, roots=_UNET_OFFICIAL_ROOTS)
    _check_rope_frequencies(state, source=source)
    converted = UNET_KEYS.apply(state, source=source)
    check_state_dict(converted, net, source=source)
    return converted


def convert_vae_state_dict(state: Mapping[str, torch.Tensor], net: nn.Module, *,
                           source: str = "vae.bin") -> dict[str, torch.Tensor]:
    """Official ``AutoencoderKLVideo`` state dict (``vae_3d.bin`` / ``vae_video.bin``) -> :class:`UpscaleAVideoVAE`.

    Raises:
        WeightsError: not a state dict, or missing / unexpected / mis-shaped keys after renaming.
    """
    state = _official_tensors(state, source=source, roots=_VAE_OFFICIAL_ROOTS)
    converted = VAE_KEYS.apply(state, source=source)
    check_state_dict(converted, net, source=source)
    return converted


# ---------------------------------------------------------------------------------------------- configs
_BLOCK_2D = {"DownBlock3D": "DownBlock2D", "CrossAttnDownBlock3D": "CrossAttnDownBlock2D",
             "UpBlock3D": "UpBlock2D", "CrossAttnUpBlock3D": "CrossAttnUpBlock2D"}


def unet_kwargs_from_official(config: Mapping[str, object]) -> dict[str, object]:
    """:class:`UpscaleAVideoUNet` keyword arguments for an official ``unet_video_config.json``.

    Raises:
        ConfigError: for official options this implementation does not cover (partial temporal modules,
            temporal transformer attention in the block-level modules, sparse-causal attention, ...).
    """
    def get(key: str, default: object) -> object:
        return config.get(key, default)

    unsupported = {key: get(key, default) for key, default in (
        ("dual_cross_attention", False), ("class_embed_type", None), ("use_first_frame", False),
        ("use_relative_position", False), ("resnet_time_scale_shift", "default"), ("center_input_sample", False),
        ("mid_block_type", "UNetMidBlock3DCrossAttn"),
    ) if get(key, default) != default}
    levels = len(get("block_out_channels", ()))
    # official class defaults: down (0, 1, 2), mid False, up (1, 2, 3); the released json puts them everywhere
    down_idx, mid, up_idx = (sorted(get("down_temporal_idx", (0, 1, 2))), bool(get("mid_temporal", False)),
                             sorted(get("up_temporal_idx", (1, 2, 3))))
    everywhere = down_idx == up_idx == list(range(levels)) and mid
    nowhere = not down_idx and not up_idx and not mid
    if not (everywhere or nowhere):
        unsupported["temporal module levels (down, mid, up)"] = (down_idx, mid, up_idx)
    attention_types = (get("temporal_module_config", None) or {}).get("attention_block_types", ["", ""])
    if any(attention_types):
        unsupported["temporal_module_config.attention_block_types"] = attention_types
    try:
        down = tuple(_BLOCK_2D[name] for name in get("down_block_types", ()))
        up = tuple(_BLOCK_2D[name] for name in get("up_block_types", ()))
    except KeyError as exc:
        raise ConfigError(f"unknown official block type {exc}") from exc
    head_dim = get("attention_head_dim", 8)
    if not isinstance(head_dim, int):
        if len(set(head_dim)) != 1:
            unsupported["attention_head_dim"] = head_dim
        head_dim = head_dim[0]
    if unsupported:
        raise ConfigError(f"official UNet options not supported: {unsupported}")
    only_cross = get("only_cross_attention", False)
    if isinstance(only_cross, bool):
        only_cross = (only_cross,) * levels
    return dict(
        in_channels=get("in_channels", 7), out_channels=get("out_channels", 4),
        block_out_channels=tuple(get("block_out_channels", ())), layers_per_block=get("layers_per_block", 2),
        down_block_types=down, up_block_types=up, only_cross_attention=tuple(only_cross),
        attention_head_dim=head_dim, cross_attention_dim=get("cross_attention_dim", 1024),
        num_class_embeds=get("num_class_embeds", 1000), max_noise_level=get("max_noise_level", 350),
        norm_num_groups=get("norm_num_groups", 32), norm_eps=get("norm_eps", 1e-5),
        use_linear_projection=get("use_linear_projection", True), upcast_attention=get("upcast_attention", False),
        flip_sin_to_cos=get("flip_sin_to_cos", True), freq_shift=get("freq_shift", 0),
        downsample_padding=get("downsample_padding", 1), mid_block_scale_factor=get("mid_block_scale_factor", 1.0),
        act_fn=get("act_fn", "silu"), temporal_modules=everywhere,
        temporal_rope_dim=OFFICIAL_ROPE_DIM, temporal_relative_position=True, norm_over_time=True)


def vae_kwargs_from_official(config: Mapping[str, object]) -> dict[str, object]:
    """:class:`UpscaleAVideoVAE` keyword arguments for an official ``vae_3d_config.json`` / ``vae_video_config.json``.

    ``UpDecoderBlock3D_plus`` up blocks mean 3x3x3 residuals in the decoder's mid and up blocks
    (``temporal_convs``); ``condition_img`` means the LQ-conditioned decoder. The official ``use_temporal_block``
    flag creates no layers (``vae_video.py``) and is ignored.

    Raises:
        ConfigError: for mixed or unknown block types.
    """
    up = tuple(config.get("up_block_types", ()))
    down = tuple(config.get("down_block_types", ()))
    if set(up) not in ({"UpDecoderBlock3D"}, {"UpDecoderBlock3D_plus"}) or set(down) != {"DownEncoderBlock3D"}:
        raise ConfigError(f"official VAE block types not supported: down {down}, up {up}")
    return dict(
        in_channels=config.get("in_channels", 3), out_channels=config.get("out_channels", 3),
        latent_channels=config.get("latent_channels", 4), block_out_channels=tuple(config["block_out_channels"]),
        layers_per_block=config.get("layers_per_block", 2), norm_num_groups=config.get("norm_num_groups", 32),
        act_fn=config.get("act_fn", "silu"), scaling_factor=config.get("scaling_factor", 0.08333),
        lq_condition=bool(config.get("condition_img", False)),
        condition_channels=config.get("condition_channels", 128),
        temporal_convs=up[0] == "UpDecoderBlock3D_plus", norm_over_time=True)


# ---------------------------------------------------------------------------------------------- RAFT
_NORM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_ENCODERS = (("fnet", "feature_encoder"), ("cnet", "context_encoder"))
#: Official RAFT (princeton-vl/RAFT ``core/raft.py``, copied in Upscale-A-Video ``models_video/RAFT``; keys without
#: DataParallel's ``module.``) -> torchvision ``raft_large`` (``torchvision/models/optical_flow/raft.py``): ``fnet``
#: (BasicEncoder, instance norm: no norm parameters) -> ``feature_encoder``, ``cnet`` (batch norm) ->
#: ``context_encoder``, ``update_block`` (BasicMotionEncoder, SepConvGRU, FlowHead, mask head). The official
#: stride-2 blocks store their shortcut norm twice (``norm3`` = ``downsample.1``): ``norm3`` is dropped after
#: :func:`convert_raft_state_dict` checks the copies agree. Strict: any other key is refused.
RAFT_KEYS = KeyMap(
    rules=tuple(rule for official, ours in _ENCODERS for rule in (
        (rf"{official}\.conv1\.(weight|bias)", rf"{ours}.convnormrelu.0.\1"),
        (rf"{official}\.layer([123])\.([01])\.conv([12])\.(weight|bias)", rf"{ours}.layer\1.\2.convnormrelu\3.0.\4"),
        (rf"{official}\.layer([23])\.0\.downsample\.0\.(weight|bias)", rf"{ours}.layer\1.0.downsample.0.\2"),
        (rf"{official}\.conv2\.(weight|bias)", rf"{ours}.conv.\1"),
    )) + (  # only the context encoder has (batch) norm parameters
        (r"cnet\.norm1\." + _NORM, r"context_encoder.convnormrelu.1.\1"),
        (r"cnet\.layer([123])\.([01])\.norm([12])\." + _NORM, r"context_encoder.layer\1.\2.convnormrelu\3.1.\4"),
        (r"cnet\.layer([23])\.0\.downsample\.1\." + _NORM, r"context_encoder.layer\1.0.downsample.1.\2"),
        (r"update_block\.encoder\.convc([12])\.(weight|bias)", r"update_block.motion_encoder.convcorr\1.0.\2"),
        (r"update_block\.encoder\.convf([12])\.(weight|bias)", r"update_block.motion_encoder.convflow\1.0.\2"),
        (r"update_block\.encoder\.conv\.(weight|bias)", r"update_block.motion_encoder.conv.0.\1"),
        (r"update_block\.gru\.conv([zrq])([12])\.(weight|bias)",
         r"update_block.recurrent_block.convgru\2.conv\1.\3"),
        (r"update_block\.flow_head\.conv([12])\.(weight|bias)", r"update_block.flow_head.conv\1.\2"),
        (r"update_block\.mask\.0\.(weight|bias)", r"mask_predictor.convrelu.0.\1"),
        (r"update_block\.mask\.2\.(weight|bias)", r"mask_predictor.conv.\1"),
    ),
    drop=(r"cnet\.layer[23]\.0\.norm3\..*",),
    strict=True,
    name="RAFT-large (small RAFT is not supported)",
)


def convert_raft_state_dict(state: Mapping[str, torch.Tensor], net: nn.Module | None = None, *,
                            source: str = "raft-things.pth") -> dict[str, torch.Tensor]:
    """Official RAFT checkpoint (``module.``-prefixed DataParallel keys, or bare) -> torchvision ``raft_large`` keys.

    Both take images in [-1, 1] and return flow in pixels, channel 0 horizontal; the computation is the same
    (torchvision's port of the original code), checked numerically by the project's parity script.

    Args:
        state: loaded ``raft-things.pth``.
        net: a ``raft_large`` instance to check keys and shapes against (built on the fly when None).
        source: name for messages.

    Raises:
        WeightsError: not a state dict, small-RAFT weights, copies of ``norm3`` that differ from ``downsample.1``,
            or missing / unexpected / mis-shaped keys.
    """
    if not isinstance(state, Mapping) or not state:
        raise WeightsError(f"{source} is not a RAFT state dict (got {type(state).__name__})")
    bare = {(k.removeprefix("module.") if isinstance(k, str) else k): v for k, v in state.items()}
    bare = tensor_state(bare, source=source)
    for key, value in bare.items():
        twin = re.fullmatch(r"(.*\.layer\d\.0)\.norm3\.(.*)", key) if RAFT_KEYS.is_dropped(key) else None
        if twin is not None:
            other = f"{twin.group(1)}.downsample.1.{twin.group(2)}"
            if other not in bare or not torch.equal(bare[other], value):
                raise WeightsError(f"{source}: {key} differs from {other} (they are one module in RAFT)")
    converted = RAFT_KEYS.apply(bare, source=source)
    if net is None:
        from torchvision.models.optical_flow import raft_large

        net = raft_large(weights=None, progress=False)
    check_state_dict(converted, net, source=source)
    return converted
