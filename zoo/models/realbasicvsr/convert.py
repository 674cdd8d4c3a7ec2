"""Convert the official RealBasicVSR checkpoint (mmediting 0.x format) to :class:`RealBasicVSRNet` weights.

The released ``RealBasicVSR_x4.pth`` (ckkelvinchan/RealBasicVSR) is a checkpoint of mmediting 0.x's
``RealBasicVSR`` model (``mmedit/models/restorers/real_basicvsr.py``, a ``RealESRGAN`` subclass), saved by
``mmcv.runner.save_checkpoint``::

    {'meta': {...},                                   # versions, iteration, config text (may be absent)
     'state_dict': {'generator.<key>': Tensor,        # RealBasicVSRNet weights (last training step)
                    'generator_ema.<key>': Tensor,    # EMA copy (decay 0.999); used at test time
                    'discriminator.<key>': Tensor,    # UNetDiscriminatorWithSpectralNorm
                    'perceptual_loss.vgg.*': Tensor,  # VGG19 of the perceptual loss
                    'step_counter': Tensor(1)}}

``<key>`` is a key of the official ``RealBasicVSRNet.state_dict()`` (``image_cleaning.0.main.0.weight``,
``basicvsr.spynet.basic_module.0.basic_module.0.conv.weight``, ``basicvsr.backward_resblocks.main.2.0.conv1
.weight``, ``basicvsr.upsample1.upsample_conv.weight``, ...). :data:`OFFICIAL_KEYS` renames them (strict
:class:`zoo.weights.KeyMap` rules); :func:`official_key_map` lists every one of them with its name in our net; the
conversion fails with :class:`WeightsError` on any missing, unexpected or mis-shaped key. Official test code uses
``generator_ema`` (``is_use_ema=True``), hence the default.

:func:`load_realbasicvsr` is the family's loader (``zoo.load_pretrained('realbasicvsr', path)``): this project's
Lightning checkpoints, the official file, or a bare state dict of our net.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from zoo.errors import ConfigError, WeightsError
from zoo.layers.discriminators import UNetDiscriminatorSN
from zoo.layers.flow import SPYNET_KEYS
from zoo.models.realbasicvsr.net import RealBasicVSRNet
from zoo.weights import (
    KeyMap,
    check_state_dict,
    is_lightning_checkpoint,
    lightning_generator_state,
    load_state,
    net_kwargs_from_hparams,
    read_checkpoint,
)

#: Prefixes of the generator weights inside the official model's state dict.
EMA_PREFIX = "generator_ema."
GENERATOR_PREFIX = "generator."
DISCRIMINATOR_PREFIX = "discriminator."
#: First key component of a bare official generator state dict.
_OFFICIAL_ROOTS = ("image_cleaning.", "basicvsr.")
_PARAMS = ("weight", "bias")


_P = r"(weight|bias)"
#: Official ``RealBasicVSRNet`` keys (without ``generator*.``) -> :class:`RealBasicVSRNet` keys. Residual-block
#: stacks (``ResidualBlocksWithInputConv``: ``main.0`` input conv, ``main.2.<k>`` blocks) keep their block index.
OFFICIAL_KEYS = KeyMap(
    rules=(
        (r"image_cleaning\.0\.main\.0\." + _P, r"cleaning.features.input_conv.\1"),
        (r"image_cleaning\.0\.main\.2\.(\d+)\.(conv[12])\." + _P, r"cleaning.features.blocks.\1.\2.\3"),
        (r"image_cleaning\.1\." + _P, r"cleaning.to_rgb.\1"),
        (r"basicvsr\.(backward|forward)_resblocks\.main\.0\." + _P, r"\1_branch.input_conv.\2"),
        (r"basicvsr\.(backward|forward)_resblocks\.main\.2\.(\d+)\.(conv[12])\." + _P,
         r"\1_branch.blocks.\2.\3.\4"),
        (r"basicvsr\.(fusion|conv_hr|conv_last)\." + _P, r"\1.\2"),
        (r"basicvsr\.upsample([12])\.upsample_conv\." + _P, r"upsample\1.conv.\2"),
    ),
    strict=True,
    name="RealBasicVSR (mmediting 0.x)",
) + SPYNET_KEYS.prefixed("basicvsr.spynet.", "spynet.")


def official_key_names(*, num_cleaning_blocks: int = 20, num_propagation_blocks: int = 20) -> list[str]:
    """Every key of the official ``RealBasicVSRNet.state_dict()`` with these block counts (official order)."""

    def resblocks(prefix: str, blocks: int) -> list[str]:
        keys = [f"{prefix}.main.0.{p}" for p in _PARAMS]
        return keys + [f"{prefix}.main.2.{k}.{conv}.{p}" for k in range(blocks) for conv in ("conv1", "conv2")
                       for p in _PARAMS]

    keys = resblocks("image_cleaning.0", num_cleaning_blocks) + [f"image_cleaning.1.{p}" for p in _PARAMS]
    keys += ["basicvsr.spynet.mean", "basicvsr.spynet.std"]
    keys += [f"basicvsr.spynet.basic_module.{level}.basic_module.{k}.conv.{p}" for level in range(6)
             for k in range(5) for p in _PARAMS]
    keys += resblocks("basicvsr.backward_resblocks", num_propagation_blocks)
    keys += resblocks("basicvsr.forward_resblocks", num_propagation_blocks)
    for name in ("fusion", "upsample1.upsample_conv", "upsample2.upsample_conv", "conv_hr", "conv_last"):
        keys += [f"basicvsr.{name}.{p}" for p in _PARAMS]
    return keys


def official_key_map(*, num_cleaning_blocks: int = 20, num_propagation_blocks: int = 20) -> dict[str, str]:
    """Every key of the official ``RealBasicVSRNet.state_dict()`` mapped to the key of ours (by :data:`OFFICIAL_KEYS`).

    Args:
        num_cleaning_blocks: residual blocks of the cleaning module.
        num_propagation_blocks: residual blocks per propagation branch.

    Returns:
        Dict official key (without ``generator*.`` prefix) -> :class:`RealBasicVSRNet` key; a bijection onto
        ``RealBasicVSRNet(...).state_dict()`` keys (320 entries with the defaults).
    """
    return {key: OFFICIAL_KEYS.rename(key) for key in official_key_names(
        num_cleaning_blocks=num_cleaning_blocks, num_propagation_blocks=num_propagation_blocks)}


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Number of residual blocks ``<prefix><k>.conv1.weight`` present (max index + 1)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.conv1\.weight$")
    indices = [int(m.group(1)) for key in state if (m := pattern.match(key))]
    return max(indices) + 1 if indices else 0


def infer_net_kwargs(state: Mapping[str, torch.Tensor], *, source: str = "state dict") -> dict[str, int]:
    """Read ``mid_channels``, ``num_cleaning_blocks`` and ``num_propagation_blocks`` from weight shapes.

    Works on an official generator state dict (``image_cleaning.*`` / ``basicvsr.*``) or one of ours.

    Args:
        state: generator state dict without prefix.
        source: name of the file, for error messages.

    Returns:
        Constructor kwargs of :class:`RealBasicVSRNet` that determine the weight layout.

    Raises:
        WeightsError: if the input-conv weight of the cleaning module is absent.
    """
    official = any(key.startswith(_OFFICIAL_ROOTS) for key in state)
    if official:
        first, cleaning, propagation = ("image_cleaning.0.main.0.weight", "image_cleaning.0.main.2.",
                                        "basicvsr.backward_resblocks.main.2.")
    else:
        first, cleaning, propagation = ("cleaning.features.input_conv.weight", "cleaning.features.blocks.",
                                        "backward_branch.blocks.")
    if first not in state or not isinstance(state[first], torch.Tensor) or state[first].ndim != 4:
        raise WeightsError(f"{source}: no RealBasicVSR generator weights (key {first!r} missing)")
    return {
        "mid_channels": int(state[first].shape[0]),
        "num_cleaning_blocks": _count_blocks(state, cleaning),
        "num_propagation_blocks": _count_blocks(state, propagation),
    }


def is_official_checkpoint(ckpt: object) -> bool:
    """True if ``ckpt`` looks like an mmediting RealBasicVSR checkpoint or a bare official generator state."""
    if not isinstance(ckpt, Mapping):
        return False
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, Mapping):
        return False
    keys = [k.removeprefix("module.") for k in state if isinstance(k, str)]
    return any(k.startswith((EMA_PREFIX, GENERATOR_PREFIX) + _OFFICIAL_ROOTS) for k in keys)


def _official_state(ckpt: object, source: str) -> dict[str, object]:
    """The flat state dict of an official checkpoint (``ckpt['state_dict']`` or ``ckpt``), ``module.`` removed."""
    if not is_official_checkpoint(ckpt):
        top = sorted(map(str, ckpt))[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        inner = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
        prefixes = sorted({str(k).split(".")[0] for k in inner})[:8] if isinstance(inner, Mapping) else None
        raise WeightsError(
            f"{source} is not an mmediting RealBasicVSR checkpoint: expected a dict with 'state_dict' holding "
            f"'generator_ema.*' / 'generator.*' keys, or a bare RealBasicVSRNet state dict "
            f"('image_cleaning.*', 'basicvsr.*'); found top-level {top}"
            + (f", state_dict key prefixes {prefixes}" if prefixes is not None else ""))
    state = ckpt.get("state_dict", ckpt)
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def extract_official_generator(ckpt: object, *, use_ema: bool = True,
                               source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The official generator state dict (official key names, no prefix) held by ``ckpt``.

    Args:
        ckpt: loaded official checkpoint (see module docstring) or a bare official generator state dict.
        use_ema: take ``generator_ema.*`` (True, official test-time choice) or ``generator.*``. Ignored for
            a bare state dict.
        source: file name for error messages.

    Raises:
        WeightsError: not an official checkpoint, or the requested generator copy is absent.
    """
    state = _official_state(ckpt, source)
    if any(k.startswith((EMA_PREFIX, GENERATOR_PREFIX)) for k in state):
        prefix = EMA_PREFIX if use_ema else GENERATOR_PREFIX
        generator = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if not generator:
            other = "use_ema=False ('generator.*')" if use_ema else "use_ema=True ('generator_ema.*')"
            raise WeightsError(f"{source} has no '{prefix}*' weights; it may be loaded with {other}")
    else:
        generator = dict(state)
    bad = [k for k, v in generator.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{source}: generator entries that are not tensors: {bad[:5]}")
    return generator


def convert_official_checkpoint(ckpt: object, *, use_ema: bool = True, net: RealBasicVSRNet | None = None,
                                source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Convert an official RealBasicVSR checkpoint to a :class:`RealBasicVSRNet` state dict.

    Args:
        ckpt: the object loaded from ``RealBasicVSR_x4.pth`` (``{'meta', 'state_dict'}``), its
            ``state_dict``, or a bare official ``RealBasicVSRNet.state_dict()``.
        use_ema: use the EMA generator (``generator_ema.*``, default, what official testing uses) or the
            raw generator (``generator.*``).
        net: the net the weights are meant for (its keys and shapes are checked); by default a net built
            from the sizes found in the checkpoint (:func:`infer_net_kwargs`).
        source: file name for error messages.

    Returns:
        State dict with our key names (tensors shared with ``ckpt``, not copied), ready for
        ``net.load_state_dict``.

    Raises:
        WeightsError: if ``ckpt`` is not an official RealBasicVSR checkpoint, or if any official key is
            missing, unexpected or of the wrong shape for the net.
    """
    generator = extract_official_generator(ckpt, use_ema=use_ema, source=source)
    kwargs = infer_net_kwargs(generator, source=source)
    expected = set(official_key_names(num_cleaning_blocks=kwargs["num_cleaning_blocks"],
                                      num_propagation_blocks=kwargs["num_propagation_blocks"]))
    unexpected = sorted(set(generator) - expected)
    missing = sorted(expected - set(generator))
    if unexpected or missing:
        raise WeightsError(f"{source}: official generator keys do not match RealBasicVSRNet{kwargs}: "
                           f"{len(missing)} missing {missing[:8]}, {len(unexpected)} unexpected {unexpected[:8]}")
    converted = OFFICIAL_KEYS.apply(generator, source=source)
    if net is None:
        with torch.device("meta"):
            net = RealBasicVSRNet(**kwargs)
    check_state_dict(converted, net, source=source)
    return converted


def to_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of the conversion: our :class:`RealBasicVSRNet` state dict -> official key names (no prefix).

    Raises:
        WeightsError: if a key of ``state_dict`` has no official counterpart or one is missing.
    """
    kwargs = infer_net_kwargs(state_dict)
    inverse = {ours: official for official, ours in official_key_map(
        num_cleaning_blocks=kwargs["num_cleaning_blocks"],
        num_propagation_blocks=kwargs["num_propagation_blocks"]).items()}
    unexpected = sorted(set(state_dict) - set(inverse))
    missing = sorted(set(inverse) - set(state_dict))
    if unexpected or missing:
        raise WeightsError(f"state dict does not match RealBasicVSRNet{kwargs}: missing {missing[:8]}, "
                           f"unexpected {unexpected[:8]}")
    return {inverse[k]: v for k, v in state_dict.items()}


def convert_official_discriminator(ckpt: object, *, net: UNetDiscriminatorSN | None = None,
                                   source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Extract the ``discriminator.*`` weights of an official checkpoint for :class:`UNetDiscriminatorSN`.

    The parameter names are identical (``conv_0`` .. ``conv_9``, spectral-norm ``weight_orig``/``weight_u``/
    ``weight_v``), so only the prefix is removed; keys and shapes are checked.

    Args:
        ckpt: the loaded official checkpoint (``{'state_dict': {'discriminator.*': ...}}``).
        net: discriminator to check against; default built from the shapes of ``conv_0``.
        source: file name for error messages.

    Raises:
        WeightsError: no discriminator weights, or keys/shapes that do not match.
    """
    state = _official_state(ckpt, source)
    disc = {k.removeprefix(DISCRIMINATOR_PREFIX): v for k, v in state.items() if k.startswith(DISCRIMINATOR_PREFIX)}
    first = disc.get("conv_0.weight")
    if not isinstance(first, torch.Tensor) or first.ndim != 4:
        raise WeightsError(f"{source} has no '{DISCRIMINATOR_PREFIX}*' (UNetDiscriminatorWithSpectralNorm) weights")
    if net is None:
        with torch.device("meta"):
            net = UNetDiscriminatorSN(in_channels=int(first.shape[1]), mid_channels=int(first.shape[0]))
    check_state_dict(disc, net, source=source)
    return disc


def _check_overrides(overrides: Mapping[str, object]) -> None:
    accepted = inspect.signature(RealBasicVSRNet).parameters
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for family 'realbasicvsr'; accepted: {sorted(accepted)} and "
                          "use_ema")


def load_realbasicvsr(path: str | Path, **overrides: object) -> nn.Module:
    """:class:`RealBasicVSRNet` from a local file, in eval mode on the CPU.

    Args:
        path: a vsrzoo Lightning checkpoint (``state_dict`` with ``net_g_ema.*`` / ``net_g.*``, generator constructor
            arguments in ``hyper_parameters['net']``), the official mmediting ``RealBasicVSR_x4.pth`` (converted by
            :func:`convert_official_checkpoint`), or a bare ``RealBasicVSRNet.state_dict()`` file.
        **overrides: constructor arguments of the net on top of those recorded (e.g. ``dynamic_refine_thres=5``),
            plus ``use_ema`` (default True: the EMA generator when present). A Lightning checkpoint's
            ``dynamic_refine_thres`` is its system's ``eval_dynamic_refine_thres`` (its validation setting), not the
            training value.

    Raises:
        ConfigError: an unknown override.
        WeightsError: a folder, missing or foreign file, or weights that do not match.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"realbasicvsr weights path is not a file: {path} is a folder; expected a vsrzoo Lightning "
                           f".ckpt, the official RealBasicVSR_x4.pth or a RealBasicVSRNet state dict file")
    source = str(path)
    use_ema = bool(overrides.pop("use_ema", True))
    _check_overrides(overrides)
    ckpt = read_checkpoint(path, family="realbasicvsr")
    recorded: dict[str, object] = {}
    if is_lightning_checkpoint(ckpt):
        recorded = net_kwargs_from_hparams(ckpt, RealBasicVSRNet, source=source)
        # the system trains with one cleaning pass and evaluates with eval_dynamic_refine_thres: inference uses the
        # evaluation setting the checkpoint records
        eval_thres = (ckpt.get("hyper_parameters") or {}).get("eval_dynamic_refine_thres")
        if eval_thres is not None:
            recorded["dynamic_refine_thres"] = float(eval_thres)
        state = lightning_generator_state(ckpt, use_ema=use_ema)
    elif is_official_checkpoint(ckpt):
        state = convert_official_checkpoint(ckpt, use_ema=use_ema, source=source)
    elif isinstance(ckpt, Mapping) and "cleaning.features.input_conv.weight" in ckpt.get("state_dict", ckpt):
        state = dict(ckpt.get("state_dict", ckpt))
    else:
        top = sorted(map(str, ckpt))[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise WeightsError(f"{source} is not a RealBasicVSR checkpoint (expected a vsrzoo Lightning checkpoint, "
                           f"the official mmediting RealBasicVSR_x4.pth or a RealBasicVSRNet state dict); "
                           f"found {top}")
    # weight layout from the weights; other options from the recorded config, then the overrides
    recorded.pop("spynet_pretrained", None)  # SPyNet weights are part of the checkpoint
    net = RealBasicVSRNet(**{**recorded, **infer_net_kwargs(state, source=source), **overrides})
    return load_state(net, state, source=source).eval()
