"""Loading VideoGigaGAN generators from local files (there is no official release: only this project's checkpoints).

:func:`load_videogigagan` is the family's loader (``spec.py``; ``zoo.load_pretrained('videogigagan', path)``).
It accepts

- a checkpoint written by :class:`zoo.models.videogigagan.system.VideoGigaGAN` (``lightning fit --config
  zoo/videogigagan.yaml``): the EMA generator ``net_g_ema.module.*`` (a ``torch.optim.swa_utils.AveragedModel``)
  when present, else ``net_g.*``; the constructor arguments from ``hyper_parameters['net']``
  (``{'class_path', 'init_args'}``, written by :func:`zoo.config.describe_module`);
- a bare ``VideoGigaGANNet.state_dict()`` (optionally under ``'state_dict'``): the constructor arguments are then the
  defaults plus what the keys show (``flow_propagation``, ``temporal_attention``, ``propagation_channels``,
  ``base_channels``) plus ``overrides``. ``blurpool`` and ``hf_shuttle`` have no parameters and cannot be read from
  the weights: pass them as overrides when they differ from the defaults (both True).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from zoo.config import build_module
from zoo.errors import WeightsError
from zoo.models.videogigagan.net import VideoGigaGANNet
from zoo.weights import (
    check_state_dict,
    is_lightning_checkpoint,
    lightning_generator_state,
    net_kwargs_from_hparams,
    read_checkpoint,
)

__all__ = ["load_videogigagan"]

_NET_CLASS_PATH = f"{VideoGigaGANNet.__module__}.{VideoGigaGANNet.__qualname__}"
#: A key every VideoGigaGANNet state dict has (the U-Net's input convolution).
_MARKER_KEY = "input_conv.weight"


def _bare_state(ckpt: object) -> dict[str, torch.Tensor] | None:
    """The state dict if ``ckpt`` is a bare VideoGigaGANNet state dict (or one under ``'state_dict'``), else None."""
    if not isinstance(ckpt, Mapping):
        return None
    state = ckpt.get("state_dict", ckpt)
    if isinstance(state, Mapping) and _MARKER_KEY in state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return dict(state)
    return None


def _kwargs_from_keys(state: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """Constructor arguments that a bare state dict determines (module docstring)."""
    kwargs: dict[str, object] = {
        "flow_propagation": any(k.startswith("propagation.") for k in state),
        "temporal_attention": any(".temporal_attn." in k or ".temporal_conv." in k for k in state),
        "base_channels": int(state[_MARKER_KEY].shape[0]),
    }
    if kwargs["flow_propagation"]:
        kwargs["propagation_channels"] = (int(state[_MARKER_KEY].shape[1]) - 3) // 2
    return kwargs


def load_videogigagan(path: str | Path, **overrides: object) -> nn.Module:
    """Build a :class:`VideoGigaGANNet` from a local file, in eval mode on the CPU.

    Args:
        path: a vsrzoo Lightning ``.ckpt`` of :class:`~zoo.models.videogigagan.system.VideoGigaGAN`, or a bare
            ``VideoGigaGANNet.state_dict()`` saved with ``torch.save``.
        **overrides: constructor arguments of :class:`VideoGigaGANNet` applied on top of the recorded ones (e.g.
            ``hf_shuttle=False`` for a bare state dict); plus ``use_ema`` (default True: the EMA generator when the
            checkpoint has one; False: the raw ``net_g``). ``spynet_pretrained`` is always None: SPyNet's weights are
            part of the checkpoint.

    Returns:
        The net (``nn.Module``, ``VideoGigaGANNet``) in eval mode on the CPU; ``net.scale`` is its upscaling factor.

    Raises:
        WeightsError: missing path, not a PyTorch file, a checkpoint of another family or kind, or weights that do not
            match the architecture (missing / unexpected / mis-shaped keys are listed).
        ConfigError: an override that is not a constructor argument of :class:`VideoGigaGANNet`.

    Note:
        Lightning checkpoints with pickled Python objects are loaded with ``weights_only=False`` after a warning
        (:func:`zoo.weights.read_checkpoint`); only load files you trust.
    """
    use_ema = bool(overrides.pop("use_ema", True))
    source = str(path)
    ckpt = read_checkpoint(path, family="videogigagan")
    if is_lightning_checkpoint(ckpt):
        recorded = net_kwargs_from_hparams(ckpt, VideoGigaGANNet, source=source)
        state = lightning_generator_state(ckpt, use_ema=use_ema)
        if _MARKER_KEY not in state:
            raise WeightsError(f"{source} is a vsrzoo checkpoint but its generator is not a VideoGigaGANNet "
                               f"(no '{_MARKER_KEY}'; keys start {sorted(state)[:4]})")
    else:
        state = _bare_state(ckpt)
        if state is None:
            top = sorted(map(str, ckpt))[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
            raise WeightsError(f"{source} is not a VideoGigaGAN checkpoint (expected a vsrzoo Lightning checkpoint of "
                               f"zoo.models.videogigagan.system.VideoGigaGAN or a VideoGigaGANNet state dict); "
                               f"found {top}")
        recorded = _kwargs_from_keys(state)
    recorded["spynet_pretrained"] = None  # SPyNet's weights come with the checkpoint
    net = build_module({"class_path": _NET_CLASS_PATH, "init_args": recorded}, **overrides)
    check_state_dict(state, net, source=source)
    net.load_state_dict(state)
    return net.eval()
