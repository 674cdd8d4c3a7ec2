"""Colour correction of a generated video against a reference: wavelet low-band transfer and AdaIN.

Latent-diffusion upscalers drift in colour (the VAE and the sampler shift low frequencies); both fixes put the
reference's colours back while keeping the generated detail. The reference is the bicubic-upsampled LQ frame.

- **Wavelet** (:func:`wavelet_color_fix`): a 5-level a-trous ("with holes") decomposition with the 3x3 binomial
  kernel ``[1, 2, 1]^T [1, 2, 1] / 16``, dilation ``2^i`` at level ``i`` and replicate padding; the result is the
  output's high band (``x - low_5(x)``) plus the reference's low band ``low_5(ref)``.
- **AdaIN** (:func:`adain_color_fix`): per frame and channel, the output is standardised and given the reference's
  mean and standard deviation (Huang & Belongie, ICCV 2017, Eq. 8; unbiased variance + ``eps`` = 1e-5).

Facts from the official Upscale-A-Video code (sczhou/Upscale-A-Video ``models_video/color_correction.py``, itself
after StableSR's ``colorfix.py``; used in ``inference_upscale_a_video.py`` with ``--color_fix Wavelet|AdaIn`` on
frames in [-1, 1] against ``F.interpolate(lq, scale_factor=4, mode='bicubic')``). The wavelet fix is affine-
equivariant (the kernel sums to 1), so it gives the same result in [0, 1] or [-1, 1]; AdaIN differs between the
two only through ``eps``. Both work on any value range. Shared by the latent-diffusion families.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from zoo.errors import ConfigError, InputError

__all__ = ["COLOR_FIXES", "adain_color_fix", "apply_color_fix", "wavelet_blur", "wavelet_color_fix",
           "wavelet_decomposition"]

#: Names accepted by :func:`apply_color_fix`.
COLOR_FIXES = ("wavelet", "adain", "none")

#: 3x3 binomial (B1-spline) kernel of the a-trous wavelet transform: outer product of [1, 2, 1] / 4.
_BINOMIAL_3X3 = ((0.0625, 0.125, 0.0625), (0.125, 0.25, 0.125), (0.0625, 0.125, 0.0625))


def _check_frames(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a float (n, c, h, w) tensor; got {shape}")


def wavelet_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """One a-trous smoothing: the 3x3 binomial kernel with dilation ``radius``, replicate padding, per channel.

    Args:
        x: (n, c, h, w) float, any range.
        radius: dilation (1, 2, 4, ...), pixels.

    Returns:
        (n, c, h, w), same dtype; a constant image is unchanged (the kernel sums to 1).
    """
    _check_frames(x, "x")
    c = x.shape[1]
    kernel = torch.tensor(_BINOMIAL_3X3, dtype=x.dtype, device=x.device).expand(c, 1, 3, 3)
    padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(padded, kernel, groups=c, dilation=radius)


def wavelet_decomposition(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``x`` into a high band and a low band with ``levels`` a-trous smoothings (dilations 1, 2, ..., 2^(L-1)).

    Args:
        x: (n, c, h, w) float.
        levels: number of smoothing levels (official 5: the low band keeps structures wider than about 60 px).

    Returns:
        ``(high, low)``, each (n, c, h, w), with ``high + low == x`` up to rounding.
    """
    low = x
    for level in range(levels):
        low = wavelet_blur(low, 2**level)
    return x - low, low


def wavelet_color_fix(sr: torch.Tensor, reference: torch.Tensor, *, levels: int = 5) -> torch.Tensor:
    """Keep the high band of ``sr`` and take the low band (colours, shading) of ``reference``.

    Args:
        sr: (n, c, h, w) float, the generated frames.
        reference: (n, c, h, w) float, same shape (e.g. bicubic-upsampled LQ), same value range as ``sr``.
        levels: wavelet levels (official 5).

    Returns:
        (n, c, h, w) ``high(sr) + low(reference)``, not clamped.

    Raises:
        InputError: for tensors of other ranks or different shapes.
    """
    _check_frames(sr, "sr")
    _check_frames(reference, "reference")
    if sr.shape != reference.shape:
        raise InputError(f"sr {tuple(sr.shape)} and reference {tuple(reference.shape)} must have the same shape")
    high, _ = wavelet_decomposition(sr, levels)
    _, low = wavelet_decomposition(reference.to(sr.dtype), levels)
    return high + low


def adain_color_fix(sr: torch.Tensor, reference: torch.Tensor, *, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation: give each frame and channel of ``sr`` the mean and std of ``reference``.

    ``out = (sr - mean(sr)) / std(sr) * std(ref) + mean(ref)`` with statistics over the pixels of each frame and
    channel, ``std = sqrt(unbiased variance + eps)``.

    Args:
        sr: (n, c, h, w) float.
        reference: (n, c, h', w') float (the statistics do not need the same size).
        eps: added to the variances.

    Returns:
        (n, c, h, w), not clamped.

    Raises:
        InputError: for tensors of other ranks or different (n, c).
    """
    _check_frames(sr, "sr")
    _check_frames(reference, "reference")
    if sr.shape[:2] != reference.shape[:2]:
        raise InputError(f"sr {tuple(sr.shape)} and reference {tuple(reference.shape)} must agree in (n, c)")
    reference = reference.to(sr.dtype)
    sr_mean, ref_mean = sr.mean(dim=(2, 3), keepdim=True), reference.mean(dim=(2, 3), keepdim=True)
    sr_std = (sr.var(dim=(2, 3), keepdim=True) + eps).sqrt()
    ref_std = (reference.var(dim=(2, 3), keepdim=True) + eps).sqrt()
    return (sr - sr_mean) / sr_std * ref_std + ref_mean


def apply_color_fix(sr: torch.Tensor, reference: torch.Tensor, method: str) -> torch.Tensor:
    """Colour-correct a video ``sr`` (b, t, c, h, w) against ``reference`` of the same shape, frame by frame.

    Args:
        sr: (b, t, c, h, w) float, any range (the Upscale-A-Video sampler passes [-1, 1]).
        reference: (b, t, c, h, w) float, same shape and range.
        method: ``'wavelet'``, ``'adain'`` or ``'none'`` (returns ``sr``).

    Returns:
        (b, t, c, h, w), not clamped.

    Raises:
        ConfigError: unknown ``method``. InputError: shapes.
    """
    if method not in COLOR_FIXES:
        raise ConfigError(f"color_fix must be one of {COLOR_FIXES}; got {method!r}")
    if method == "none":
        return sr
    if sr.ndim != 5 or reference.shape != sr.shape:
        raise InputError(f"sr and reference must be (b, t, c, h, w) of the same shape; got {tuple(sr.shape)} and "
                         f"{tuple(reference.shape)}")
    b = sr.shape[0]
    frames = rearrange(sr, "b t c h w -> (b t) c h w")
    ref = rearrange(reference, "b t c h w -> (b t) c h w")
    fixed = wavelet_color_fix(frames, ref) if method == "wavelet" else adain_color_fix(frames, ref)
    return rearrange(fixed, "(b t) c h w -> b t c h w", b=b)
