"""Input checks shared by the networks' public entry points: fail loudly, with a message that names the expected layout."""
from __future__ import annotations

import torch

from zoo.errors import InputError


def check_rgb_video(x: torch.Tensor, name: str) -> None:
    """Raise :class:`zoo.errors.InputError` unless ``x`` is a non-empty float tensor laid out as (b, t, 3, h, w).

    Args:
        x: the tensor to check; expected RGB video batch, float, values in [0, 1] (not checked: costly).
        name: how the message refers to it (e.g. ``'lq'``).
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor (b, t, 3, h, w); got {type(x).__name__}")
    if x.ndim != 5:
        raise InputError(f"{name} must be a video batch (b, t, 3, h, w) in [0, 1]; got shape {tuple(x.shape)} "
                         f"(ndim {x.ndim})")
    if x.shape[2] != 3:
        raise InputError(f"{name} must be RGB (b, t, 3, h, w); got {x.shape[2]} channels in shape {tuple(x.shape)}")
    if min(x.shape) < 1:
        raise InputError(f"{name} must not be empty; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a float tensor in [0, 1]; got dtype {x.dtype}")
