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


def sampler_input(lq: torch.Tensor) -> torch.Tensor:
    """A diffusion sampler's LQ clip, checked and on the CPU: (b, t, 3, h, w) float in [0, 1] -> float32, clamped.

    Raises:
        InputError: not a float (b, t, 3, h, w) tensor, or values outside [0, 1] (by more than 1e-3; the message
            suggests ``(x + 1) / 2`` for [-1, 1] input).
    """
    if not isinstance(lq, torch.Tensor) or lq.ndim != 5 or lq.shape[2] != 3 or not lq.is_floating_point():
        shape = tuple(lq.shape) if isinstance(lq, torch.Tensor) else type(lq).__name__
        raise InputError(f"lq must be a float (b, t, 3, h, w) tensor in [0, 1]; got {shape}")
    lq = lq.detach().to("cpu", torch.float32)
    low, high = float(lq.min()), float(lq.max())
    if low < -1e-3 or high > 1.0 + 1e-3:
        raise InputError(f"lq values must be in [0, 1] (got [{low:.3f}, {high:.3f}]); [-1, 1] input? use (x + 1) / 2")
    return lq.clamp(0.0, 1.0)
