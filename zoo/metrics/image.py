"""Full-reference image metrics over video tensors: PSNR and SSIM, in BasicSR's evaluation convention.

Convention (BasicSR ``basicsr/metrics/psnr_ssim.py`` ``calculate_psnr`` / ``calculate_ssim``, which is what
VSR papers report on REDS4 / Vid4):

1. frames are first turned into 8-bit images the way BasicSR's ``tensor2img`` does: ``round(clamp(x, 0, 1) * 255)``
   (so a metric computed here equals one computed on the PNG files the model would write);
2. ``crop_border`` pixels are removed on every side (VSR papers use the scale, e.g. 4, or 0);
3. optionally the luma channel is taken: ITU-R BT.601 "studio swing" Y of MATLAB's ``rgb2ycbcr``,
   ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1] and Y in [16, 235] (not rounded, as in
   BasicSR's ``to_y_channel``);
4. the metric is computed per frame in float64 on the [0, 255] scale and averaged over the frames of each clip.
"""
from __future__ import annotations

import cv2
import torch
import torch.nn.functional as F
from einops import rearrange

from zoo.errors import InputError

#: BT.601 luma weights for [0, 1] RGB giving Y on the [0, 255] scale (MATLAB ``rgb2ycbcr``, BasicSR ``rgb2ycbcr``).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0
#: SSIM window (Wang et al., TIP 2004, Sec. III-C): 11x11 Gaussian, sigma 1.5; constants K1 = 0.01, K2 = 0.03, L = 255.
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def check_video(x: torch.Tensor, name: str) -> None:
    """Raise :class:`InputError` unless ``x`` is a float video tensor ``(b, t, c, h, w)``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a video tensor (b, t, c, h, w) in [0, 1], got {shape}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}")


def _check_pair(sr: torch.Tensor, gt: torch.Tensor, crop_border: int) -> None:
    check_video(sr, "sr")
    check_video(gt, "gt")
    if sr.shape != gt.shape:
        raise InputError(f"sr and gt must have the same shape (b, t, c, h, w), got {tuple(sr.shape)} and {tuple(gt.shape)}")
    if crop_border < 0 or 2 * crop_border >= min(sr.shape[-2:]):
        raise InputError(f"crop_border={crop_border} leaves no pixel of frames {sr.shape[-2]}x{sr.shape[-1]}")


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round a [0, 1] tensor to 8-bit levels, returned as float64 on the [0, 255] scale (BasicSR ``tensor2img``)."""
    return torch.round(x.detach().to(torch.float64).clamp(0, 1) * 255.0)


def rgb_to_y(x255: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB frames on the [0, 255] scale.

    Args:
        x255: ``(..., 3, h, w)`` RGB on the [0, 255] scale.

    Returns:
        ``(..., 1, h, w)`` Y in [16, 235] (MATLAB ``rgb2ycbcr``; ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for
        R, G, B in [0, 1]).
    """
    if x255.shape[-3] != 3:
        raise InputError(f"the Y channel needs RGB frames (3 channels), got {x255.shape[-3]} channels")
    weights = torch.tensor(_Y_WEIGHTS, dtype=x255.dtype, device=x255.device) / 255.0
    y = torch.einsum("...chw,c->...hw", x255, weights) + _Y_OFFSET
    return y.unsqueeze(-3)


def _prepare(x: torch.Tensor, crop_border: int, y_channel: bool) -> torch.Tensor:
    x = quantize(x)
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    return rgb_to_y(x) if y_channel else x


def psnr(sr: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Peak signal-to-noise ratio per clip, in dB (BasicSR ``calculate_psnr`` applied per frame).

    ``PSNR = 10 log10(255^2 / MSE)`` on 8-bit-rounded frames (see the module docstring), per frame, then averaged
    over the ``t`` frames. A frame identical to its reference has MSE 0 and PSNR ``inf`` (BasicSR's convention,
    not capped), so a clip with such a frame averages to ``inf``.

    Args:
        sr: ``(b, t, c, h, w)`` float in [0, 1] (values outside are clamped).
        gt: same shape as ``sr``.
        crop_border: pixels removed on each side before computing.
        y_channel: compute on BT.601 Y instead of all RGB channels (needs ``c == 3``).

    Returns:
        ``(b,)`` float64, dB.

    Raises:
        InputError: shapes differ, are not 5-D, or ``crop_border`` removes the whole frame.
    """
    _check_pair(sr, gt, crop_border)
    a = _prepare(sr, crop_border, y_channel)
    b = _prepare(gt, crop_border, y_channel)
    mse = (a - b).pow(2).mean(dim=(-3, -2, -1))  # (b, t)
    per_frame = 10.0 * torch.log10(255.0**2 / mse)  # mse == 0 gives +inf
    return per_frame.mean(dim=1)


def _window_mean(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``x`` (n, 1, h, w) filtered with the 11x11 window in "valid" mode, as two 1-D passes (the window is the
    outer product of ``kernel`` (11,) with itself; same result to float64 rounding, 5x fewer operations)."""
    return F.conv2d(F.conv2d(x, kernel.view(1, 1, -1, 1)), kernel.view(1, 1, 1, -1))


def ssim(sr: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Structural similarity per clip (Wang et al., TIP 2004), as BasicSR ``calculate_ssim`` computes it.

    Per frame and per channel: local statistics with an 11x11 Gaussian window (sigma 1.5) in "valid" mode (no
    padding: the SSIM map is ``(h - 10) x (w - 10)``), ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``,
    population (not sample) covariances; the map is averaged, then channels, then frames. Equal to
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=255)`` on the same 8-bit frames.

    Args:
        sr: ``(b, t, c, h, w)`` float in [0, 1] (values outside are clamped); frames at least 11x11 after cropping.
        gt: same shape as ``sr``.
        crop_border: pixels removed on each side before computing.
        y_channel: compute on BT.601 Y instead of all RGB channels (needs ``c == 3``).

    Returns:
        ``(b,)`` float64 in [-1, 1].

    Raises:
        InputError: shapes differ, are not 5-D, or the cropped frames are smaller than the 11x11 window.
    """
    _check_pair(sr, gt, crop_border)
    a = _prepare(sr, crop_border, y_channel)
    b = _prepare(gt, crop_border, y_channel)
    if min(a.shape[-2:]) < _SSIM_WINDOW:
        raise InputError(f"SSIM needs frames of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} after cropping, got {tuple(a.shape[-2:])}")
    batch, frames, channels = a.shape[:3]
    kernel = torch.from_numpy(cv2.getGaussianKernel(_SSIM_WINDOW, _SSIM_SIGMA)[:, 0]).to(a)
    a = rearrange(a, "b t c h w -> (b t c) 1 h w")
    b = rearrange(b, "b t c h w -> (b t c) 1 h w")
    mu_a, mu_b = _window_mean(a, kernel), _window_mean(b, kernel)
    var_a = _window_mean(a * a, kernel) - mu_a**2
    var_b = _window_mean(b * b, kernel) - mu_b**2
    cov = _window_mean(a * b, kernel) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    )
    per_plane = ssim_map.mean(dim=(-3, -2, -1))
    per_plane = rearrange(per_plane, "(b t c) -> b t c", b=batch, t=frames, c=channels)
    return per_plane.mean(dim=(1, 2))
