"""No-reference metrics for clips without ground truth (e.g. VideoLQ or the real demo clips).

NIQE (Mittal et al., "Making a 'Completely Blind' Image Quality Analyzer", IEEE SPL 2013) through BasicSR's
``basicsr.metrics.niqe.calculate_niqe`` (basicsr 1.4.2: MATLAB-style Y, rounding and bicubic downscaling; its
docstring reports 5.7296 on baboon.png, as the official MATLAB release), with the pristine-model parameters
shipped inside basicsr. Lower is better.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from einops import rearrange

from zoo.errors import InputError
from zoo.metrics.image import check_video, quantize

#: NIQE patch size (the official recommendation); the covariance fit needs at least two patches.
NIQE_BLOCK = 96


@torch.no_grad()
def niqe(sr: torch.Tensor, *, crop_border: int = 0) -> torch.Tensor:
    """NIQE per clip, averaged over frames (lower is better).

    Each frame is rounded to 8 bits, converted to MATLAB BT.601 Y (BasicSR ``convert_to='y'``), cropped by
    ``crop_border`` and scored on non-overlapping 96x96 patches.

    Args:
        sr: ``(b, t, 3, h, w)`` float in [0, 1]; after cropping the frame must hold at least two whole 96x96 patches
            (e.g. 96x192 or 192x96).
        crop_border: pixels removed on each side of every frame.

    Returns:
        ``(b,)`` float64. A frame on which NIQE is undefined (a flat or nearly flat frame, whose patch-feature
        covariance is singular, so basicsr's fit raises ``LinAlgError``) scores NaN, with one warning that counts
        such frames, and so does its clip: a mean over the remaining frames would rank the clip on other frames
        than its neighbours'.

    Raises:
        InputError: bad shape or frames too small for NIQE.
    """
    check_video(sr, "sr")
    if sr.shape[2] != 3:
        raise InputError(f"NIQE needs RGB frames, got {sr.shape[2]} channels")
    h, w = sr.shape[-2] - 2 * crop_border, sr.shape[-1] - 2 * crop_border
    if (h // NIQE_BLOCK) * (w // NIQE_BLOCK) < 2:
        raise InputError(f"NIQE needs frames holding two {NIQE_BLOCK}x{NIQE_BLOCK} patches (at least 96x192) after "
                         f"crop_border={crop_border}, got {sr.shape[-2]}x{sr.shape[-1]}")
    from basicsr.metrics.niqe import calculate_niqe  # basicsr is heavy to import: only when NIQE is asked for

    batch = sr.shape[0]
    frames = rearrange(quantize(sr), "b t c h w -> (b t) h w c").cpu().numpy()
    scores = []
    for img in frames:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)  # numpy's empty-slice notes on flat patches
                score = float(calculate_niqe(np.ascontiguousarray(img[..., ::-1]), crop_border,  # BasicSR: BGR
                                             input_order="HWC", convert_to="y"))
        except np.linalg.LinAlgError:
            score = float("nan")
        scores.append(score if math.isfinite(score) else float("nan"))
    undefined = sum(1 for score in scores if math.isnan(score))
    if undefined:
        warnings.warn(f"NIQE is undefined on {undefined} of {len(scores)} frames (flat frames: singular feature "
                      "covariance); their clips score NaN", RuntimeWarning, stacklevel=3)
    return rearrange(torch.tensor(scores, dtype=torch.float64), "(b t) -> b t", b=batch).mean(dim=1)
