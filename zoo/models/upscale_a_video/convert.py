"""Convert the released Upscale-A-Video weights (and RAFT) to this project's networks.

Released folder (sczhou/Upscale-A-Video, ``pretrained_models/upscale_a_video``; NTU S-Lab License 1.0)::

    unet/unet_video_config.json, unet/unet_video.bin        UNetVideoModel (models_video/unet_video.py)
    vae/vae_3d_config.json, vae/vae_3d.bin                  AutoencoderKLVideo, plain decoder (default)
    vae/vae_video_config.json, vae/vae_video.bin            AutoencoderKLVideo, LQ-conditioned temporal decoder
    propagator/raft-things.pth                              RAFT (princeton-vl/RAFT core/raft.py), DataParallel
    scheduler/, low_res_scheduler/, text_encoder/, tokenizer/   diffusers / transformers formats

The ``.bin`` files are ``state_dict()`` of the official classes, written with diffusers 0.16. Their keys map to ours
by the explicit rules below (first matching rule wins; anything else is kept as is because the official spatial
blocks use diffusers' names). Every conversion then checks the result against the target network: missing,
unexpected or mis-shaped keys raise :class:`~zoo.errors.WeightsError`.

UNet (``unet_video.bin`` -> :class:`UpscaleAVideoUNet`):

=============================================================  =====================================================
official                                                       ours
=============================================================  =====================================================
``*.attentions.<j>.resblock_temporal.*``                       ``*.attentions.<j>.temporal_conv.*``
``*.attn_temporal.to_out.0.*``                                 ``*.attn_temporal.to_out.*``
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

RAFT (``raft-things.pth`` -> torchvision ``raft_large``): :func:`raft_key_map`, an explicit table of all 169 keys.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from zoo.errors import ConfigError, WeightsError
from zoo.hub import check_state_dict

__all__ = [
    "convert_raft_state_dict",
    "convert_unet_state_dict",
    "convert_vae_state_dict",
    "raft_key_map",
    "read_official_config",
    "unet_kwargs_from_official",
    "unet_official_key",
    "vae_kwargs_from_official",
    "vae_official_key",
]

#: RoPE channels of the official temporal attention (``RotaryEmbedding(32)`` in unet_video.py).
OFFICIAL_ROPE_DIM = 32

_UNET_RULES: tuple[tuple[str, str], ...] = (
    (r"^(.*\.attentions\.\d+)\.resblock_temporal\.(.*)$", r"\1.temporal_conv.\2"),
    (r"^(.*\.attn_temporal)\.to_out\.0\.(weight|bias)$", r"\1.to_out.\2"),
    (r"^(.*\.attn_temporal)\.time_rel_pos_bias\.relative_attention_bias\.weight$",
     r"\1.relative_position.embedding.weight"),
    (r"^down_temp_blocks\.(\d+)\.resblocks_3d_temporal\.(.*)$", r"down_temporal.\1.temporal_conv.\2"),
    (r"^down_temp_blocks\.(\d+)\.resblocks_3d_spatial\.(.*)$", r"down_temporal.\1.spatial_res.\2"),
    (r"^down_temp_blocks\.(\d+)\.shift_conv\.(.*)$", r"down_temporal.\1.proj_out.\2"),
    (r"^mid_temp_block\.resblocks_3d_temporal\.(.*)$", r"mid_temporal.temporal_conv.\1"),
    (r"^mid_temp_block\.resblocks_3d_spatial\.(.*)$", r"mid_temporal.spatial_res.\1"),
    (r"^mid_temp_block\.shift_conv\.(.*)$", r"mid_temporal.proj_out.\1"),
    (r"^up_temp_blocks\.(\d+)\.resblocks_3d_temporal\.(.*)$", r"up_temporal.\1.temporal_conv.\2"),
    (r"^up_temp_blocks\.(\d+)\.resblocks_3d_spatial\.(.*)$", r"up_temporal.\1.spatial_res.\2"),
    (r"^up_temp_blocks\.(\d+)\.shift_conv\.(.*)$", r"up_temporal.\1.proj_out.\2"),
)
_UNET_DROPPED = re.compile(r"^(temporal_rotary_emb|.*\.rotary_emb)\.freqs$")
_UNET_OFFICIAL_ROOTS = ("conv_in.", "time_embedding.", "class_embedding.", "down_blocks.", "mid_block.", "up_blocks.",
                        "conv_norm_out.", "conv_out.", "down_temp_blocks.", "mid_temp_block.", "up_temp_blocks.",
                        "temporal_rotary_emb.")

_VAE_RULES: tuple[tuple[str, str], ...] = (
    (r"^(.*\.mid_block\.attentions\.\d+)\.query\.(weight|bias)$", r"\1.to_q.\2"),
    (r"^(.*\.mid_block\.attentions\.\d+)\.key\.(weight|bias)$", r"\1.to_k.\2"),
    (r"^(.*\.mid_block\.attentions\.\d+)\.value\.(weight|bias)$", r"\1.to_v.\2"),
    (r"^(.*\.mid_block\.attentions\.\d+)\.proj_attn\.(weight|bias)$", r"\1.to_out.0.\2"),
    (r"^(decoder\..*)\.norm_3d\.(weight|bias)$", r"\1.temporal.norm.\2"),
    (r"^(decoder\..*)\.conv_3d\.(weight|bias)$", r"\1.temporal.conv.\2"),
    (r"^decoder\.condition_fuse\.shared\.(\d+)\.(.*)$", r"decoder.condition_fuse.trunk.\1.\2"),
)
_VAE_OFFICIAL_ROOTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")


def _apply_rules(key: str, rules: tuple[tuple[str, str], ...]) -> str:
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return key


def unet_official_key(key: str) -> str | None:
    """Our :class:`UpscaleAVideoUNet` key for an official ``UNetVideoModel`` key (None: dropped RoPE buffer)."""
    if _UNET_DROPPED.match(key):
        return None
    return _apply_rules(key, _UNET_RULES)


def vae_official_key(key: str) -> str:
    """Our :class:`UpscaleAVideoVAE` key for an official ``AutoencoderKLVideo`` key."""
    return _apply_rules(key, _VAE_RULES)


def _tensor_state(state: object, *, source: str, roots: tuple[str, ...]) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping) or not state:
        raise WeightsError(f"{source} is not a state dict (got {type(state).__name__})")
    if isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{source}: entries that are not tensors: {bad[:5]}")
    if not any(k.startswith(roots) for k in state):
        raise WeightsError(f"{source} does not look like the expected official weights (first keys: "
                           f"{list(state)[:4]}; expected keys starting with {roots[:4]})")
    return dict(state)


def _rename(state: Mapping[str, torch.Tensor], rename, *, source: str) -> dict[str, torch.Tensor]:  # noqa: ANN001
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = rename(key)
        if new is None:
            continue
        if new in out:
            raise WeightsError(f"{source}: two official keys map to {new!r}")
        out[new] = value
    return out


def _check_rope_frequencies(state: Mapping[str, torch.Tensor], *, source: str) -> None:
    expected = 1.0 / 10000.0 ** (torch.arange(0, OFFICIAL_ROPE_DIM, 2, dtype=torch.float32) / OFFICIAL_ROPE_DIM)
    for key, value in state.items():
        if _UNET_DROPPED.match(key):
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
    state = _tensor_state(state, source=source, roots=_UNET_OFFICIAL_ROOTS)
    _check_rope_frequencies(state, source=source)
    converted = _rename(state, unet_official_key, source=source)
    check_state_dict(converted, net, source=source)
    return converted


def convert_vae_state_dict(state: Mapping[str, torch.Tensor], net: nn.Module, *,
                           source: str = "vae.bin") -> dict[str, torch.Tensor]:
    """Official ``AutoencoderKLVideo`` state dict (``vae_3d.bin`` / ``vae_video.bin``) -> :class:`UpscaleAVideoVAE`.

    Raises:
        WeightsError: not a state dict, or missing / unexpected / mis-shaped keys after renaming.
    """
    state = _tensor_state(state, source=source, roots=_VAE_OFFICIAL_ROOTS)
    converted = _rename(state, vae_official_key, source=source)
    check_state_dict(converted, net, source=source)
    return converted


# ---------------------------------------------------------------------------------------------- configs
def read_official_config(path: str | Path) -> dict:
    """Read an official json config.

    Raises:
        WeightsError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"config file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read config {path}: {exc}") from exc


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
def _raft_encoder_map(official: str, ours: str, *, batch_norm: bool) -> dict[str, str]:
    """Keys of an official RAFT ``BasicEncoder`` -> torchvision ``FeatureEncoder`` (BatchNorm if ``batch_norm``)."""
    norm_params = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked") if batch_norm else ()
    key_map = {f"{official}.conv1.{p}": f"{ours}.convnormrelu.0.{p}" for p in ("weight", "bias")}
    key_map.update({f"{official}.norm1.{p}": f"{ours}.convnormrelu.1.{p}" for p in norm_params})
    for layer in (1, 2, 3):
        for block in (0, 1):
            src, dst = f"{official}.layer{layer}.{block}", f"{ours}.layer{layer}.{block}"
            for i in (1, 2):
                key_map.update({f"{src}.conv{i}.{p}": f"{dst}.convnormrelu{i}.0.{p}" for p in ("weight", "bias")})
                key_map.update({f"{src}.norm{i}.{p}": f"{dst}.convnormrelu{i}.1.{p}" for p in norm_params})
            if layer > 1 and block == 0:  # stride-2 block: 1x1 conv + norm shortcut
                key_map.update({f"{src}.downsample.0.{p}": f"{dst}.downsample.0.{p}" for p in ("weight", "bias")})
                key_map.update({f"{src}.downsample.1.{p}": f"{dst}.downsample.1.{p}" for p in norm_params})
    key_map.update({f"{official}.conv2.{p}": f"{ours}.conv.{p}" for p in ("weight", "bias")})
    return key_map


def raft_key_map() -> dict[str, str]:
    """Every key of an official RAFT (large) state dict, without ``module.``, -> torchvision ``raft_large`` key.

    Official: princeton-vl/RAFT ``core/raft.py`` (copied in Upscale-A-Video ``models_video/RAFT``): ``fnet``
    (BasicEncoder, instance norm: no norm parameters), ``cnet`` (BasicEncoder, batch norm), ``update_block``
    (BasicMotionEncoder ``encoder``, SepConvGRU ``gru``, FlowHead, ``mask`` Sequential(conv, ReLU, conv)).
    torchvision: ``torchvision/models/optical_flow/raft.py`` ``raft_large``. The official stride-2 blocks'
    ``norm3.*`` is the same module as ``downsample.1.*`` (stored twice); :func:`convert_raft_state_dict` checks the
    copies agree and keeps one.

    Returns:
        Dict of 169 entries (a bijection onto ``raft_large().state_dict()`` keys).
    """
    key_map = _raft_encoder_map("fnet", "feature_encoder", batch_norm=False)
    key_map.update(_raft_encoder_map("cnet", "context_encoder", batch_norm=True))
    pairs = {
        "update_block.encoder.convc1": "update_block.motion_encoder.convcorr1.0",
        "update_block.encoder.convc2": "update_block.motion_encoder.convcorr2.0",
        "update_block.encoder.convf1": "update_block.motion_encoder.convflow1.0",
        "update_block.encoder.convf2": "update_block.motion_encoder.convflow2.0",
        "update_block.encoder.conv": "update_block.motion_encoder.conv.0",
        "update_block.gru.convz1": "update_block.recurrent_block.convgru1.convz",
        "update_block.gru.convr1": "update_block.recurrent_block.convgru1.convr",
        "update_block.gru.convq1": "update_block.recurrent_block.convgru1.convq",
        "update_block.gru.convz2": "update_block.recurrent_block.convgru2.convz",
        "update_block.gru.convr2": "update_block.recurrent_block.convgru2.convr",
        "update_block.gru.convq2": "update_block.recurrent_block.convgru2.convq",
        "update_block.flow_head.conv1": "update_block.flow_head.conv1",
        "update_block.flow_head.conv2": "update_block.flow_head.conv2",
        "update_block.mask.0": "mask_predictor.convrelu.0",
        "update_block.mask.2": "mask_predictor.conv",
    }
    for official, ours in pairs.items():
        key_map.update({f"{official}.{p}": f"{ours}.{p}" for p in ("weight", "bias")})
    return key_map


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
    key_map = raft_key_map()
    converted: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in bare.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{source}: {key!r} is not a tensor")
        if key in key_map:
            converted[key_map[key]] = value
            continue
        norm3 = re.match(r"^(.*\.layer\d\.0)\.norm3\.(.*)$", key) if isinstance(key, str) else None
        if norm3 is not None:
            twin = f"{norm3.group(1)}.downsample.1.{norm3.group(2)}"
            if twin not in bare or not torch.equal(bare[twin], value):
                raise WeightsError(f"{source}: {key} differs from {twin} (they are one module in RAFT)")
            continue
        unexpected.append(key)
    if unexpected:
        raise WeightsError(f"{source}: {len(unexpected)} keys that are not RAFT-large weights, e.g. {unexpected[:6]}"
                           " (small RAFT is not supported)")
    if net is None:
        from torchvision.models.optical_flow import raft_large

        net = raft_large(weights=None, progress=False)
    check_state_dict(converted, net, source=source)
    return converted
