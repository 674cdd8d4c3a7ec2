"""Temporal-consistency metrics: flow warping error E*warp, tOF and tLPIPS.

Optical flow comes from one of three estimators, none of which downloads anything:

- ``'dis'`` (default for E*warp): OpenCV DIS (Kroeger et al., ECCV 2016), preset MEDIUM, on 8-bit grayscale;
  weight-free and fast on CPU.
- ``'farneback'`` (default for tOF): OpenCV Farneback with the parameters of TecoGAN's ``metrics.py``
  (``pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2``) on 8-bit grayscale.
- ``'raft'``: torchvision ``raft_large`` (Teed & Deng, ECCV 2020) with the weights file
  ``$TORCH_HOME/hub/checkpoints/raft_large_C_T_SKHT_V2-ff5fadd5.pth`` (torchvision's
  ``Raft_Large_Weights.C_T_SKHT_V2``), read locally only; frames must be at least 128x128.

Flow convention: ``estimate_flow(x, y)`` returns ``flow`` in pixels, ``(n, 2, h, w)`` with channel 0 = horizontal
(x) and 1 = vertical (y) displacement, such that ``x(p) ~ y(p + flow(p))``; hence ``flow_warp(y, flow)`` aligns
``y`` to ``x``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from zoo.catalogue import RAFT_LARGE
from zoo.errors import InputError, WeightsError
from zoo.metrics.image import check_video, quantize

FlowMethod = Literal["dis", "farneback", "raft"]
#: File name of torchvision's RAFT-large weights (``Raft_Large_Weights.C_T_SKHT_V2``).
RAFT_FILE = RAFT_LARGE.filename  # raft_large_C_T_SKHT_V2-ff5fadd5.pth
_RAFT_MIN_SIZE = 128
_raft_cache: dict[str, torch.nn.Module] = {}

# Occlusion test of Lai et al. (fast_blind_video_consistency, utils.py ``detect_occlusion``), which follows
# Ruder et al. (GCPR 2016, "Artistic style transfer for videos", Sec. 3.2):
#   forward-backward: |F_fw + F_bw(p + F_fw)|^2 > 0.01 (|F_fw|^2 + |F_bw(p + F_fw)|^2) + 0.5
#   motion boundary:  |grad F_fw|^2 > 0.01 |F_fw|^2 + 0.002
_FB_RELATIVE, _FB_ABSOLUTE = 0.01, 0.5
_MB_RELATIVE, _MB_ABSOLUTE = 0.01, 0.002


def raft_weights_path() -> Path:
    """Where RAFT-large weights are looked for: ``$TORCH_HOME/hub/checkpoints/raft_large_C_T_SKHT_V2-ff5fadd5.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RAFT_FILE


def resolve_flow(method: str, *, height: int | None = None, width: int | None = None) -> str:
    """The flow estimator a metric really uses: ``'auto'`` is ``'raft'`` when torchvision's RAFT-large weights are
    at :func:`raft_weights_path` (and the frames, when given, are at least 128 px on each side), else ``'dis'``.

    Raises:
        InputError: an unknown method.
    """
    if method not in ("auto", "dis", "farneback", "raft"):
        raise InputError(f"unknown flow method {method!r}; expected 'auto', 'dis', 'farneback' or 'raft'")
    if method != "auto":
        return method
    big_enough = height is None or width is None or min(height, width) >= _RAFT_MIN_SIZE
    return "raft" if raft_weights_path().is_file() and big_enough else "dis"


def _to_gray_uint8(frames: torch.Tensor) -> np.ndarray:
    """``(n, 3, h, w)`` [0, 1] -> ``(n, h, w)`` uint8 grayscale (8-bit rounding, then OpenCV's BT.601 RGB2GRAY)."""
    rgb = rearrange(quantize(frames), "n c h w -> n h w c").cpu().numpy().astype(np.uint8)
    return np.stack([cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY) for img in rgb])


def _raft_model(device: torch.device) -> torch.nn.Module:
    path = raft_weights_path()
    if not path.is_file():
        raise WeightsError(f"flow='raft' needs torchvision's RAFT-large weights '{RAFT_FILE}' at {path}: "
                           f"`{RAFT_LARGE.download_command}` fetches them (set TORCH_HOME to use another folder), "
                           f"or use flow='dis'. Nothing is downloaded at run time.")
    key = f"{path}:{device}"
    if key not in _raft_cache:
        from torchvision.models.optical_flow import raft_large

        model = raft_large(weights=None, progress=False)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as err:  # noqa: BLE001 - any failure here is a wrong file
            raise WeightsError(f"{path} is not a torchvision RAFT-large state dict: {err}") from err
        _raft_cache[key] = model.eval().to(device)
    return _raft_cache[key]


@torch.no_grad()
def _raft_flow(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h < _RAFT_MIN_SIZE or w < _RAFT_MIN_SIZE:
        raise InputError(f"flow='raft' needs frames of at least {_RAFT_MIN_SIZE}x{_RAFT_MIN_SIZE}, got {h}x{w}; use flow='dis'")
    model = _raft_model(x.device)
    pad_h, pad_w = (-h) % 8, (-w) % 8  # RAFT works on 1/8 resolution feature maps
    x = F.pad(x.float() * 2 - 1, (0, pad_w, 0, pad_h), mode="replicate")
    y = F.pad(y.float() * 2 - 1, (0, pad_w, 0, pad_h), mode="replicate")
    return model(x, y)[-1][..., :h, :w]


def estimate_flow(x: torch.Tensor, y: torch.Tensor, *, method: FlowMethod = "dis") -> torch.Tensor:
    """Optical flow from ``x`` to ``y``.

    Args:
        x: ``(n, 3, h, w)`` RGB float in [0, 1].
        y: same shape as ``x``.
        method: ``'dis'``, ``'farneback'`` or ``'raft'`` (see the module docstring).

    Returns:
        ``(n, 2, h, w)`` float32 flow in pixels on ``x``'s device, ``x(p) ~ y(p + flow(p))``.

    Raises:
        InputError: bad shapes, unknown method, frames too small for RAFT.
        WeightsError: ``method='raft'`` without the RAFT weights file.
    """
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"flow needs two (n, 3, h, w) tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if method == "raft":
        return _raft_flow(x, y).float()
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        compute = dis.calc
    elif method == "farneback":
        def compute(a: np.ndarray, b: np.ndarray, init: None) -> np.ndarray:
            return cv2.calcOpticalFlowFarneback(a, b, init, 0.5, 3, 15, 3, 5, 1.2, 0)
    else:
        raise InputError(f"unknown flow method {method!r}; expected 'dis', 'farneback' or 'raft'")
    gray_x, gray_y = _to_gray_uint8(x), _to_gray_uint8(y)
    flows = np.stack([compute(a, b, None) for a, b in zip(gray_x, gray_y)])  # (n, h, w, 2)
    return rearrange(torch.from_numpy(flows), "n h w two -> n two h w").to(x.device)


def _flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    from zoo.layers.flow import flow_warp  # bilinear grid_sample, zeros outside the frame, align_corners=True

    return flow_warp(x, flow.to(x.dtype))


def valid_mask(flow_fw: torch.Tensor, flow_bw: torch.Tensor) -> torch.Tensor:
    """Non-occlusion mask of frame ``t`` for the forward flow ``t -> t+1`` (Lai et al. ECCV 2018 protocol).

    A pixel is invalid (occluded) when the forward-backward check fails, when it lies on a motion boundary
    (thresholds above, from fast_blind_video_consistency ``utils.detect_occlusion``), or when its forward flow
    points outside frame ``t+1`` (the official code clamps such samples to the border; counting them as
    occluded keeps border replication out of the error).

    Args:
        flow_fw: ``(n, 2, h, w)`` flow ``t -> t+1`` in pixels.
        flow_bw: ``(n, 2, h, w)`` flow ``t+1 -> t`` in pixels.

    Returns:
        ``(n, 1, h, w)`` float, 1 where the pixel is visible in both frames.
    """
    flow_fw, flow_bw = flow_fw.double(), flow_bw.double()
    h, w = flow_fw.shape[-2:]
    bw_at_fw = _flow_warp(flow_bw, flow_fw)
    fb_mag = (flow_fw + bw_at_fw).pow(2).sum(dim=1, keepdim=True)
    fw_mag = flow_fw.pow(2).sum(dim=1, keepdim=True)
    bw_mag = bw_at_fw.pow(2).sum(dim=1, keepdim=True)
    fb_fail = fb_mag > _FB_RELATIVE * (fw_mag + bw_mag) + _FB_ABSOLUTE
    du = F.pad(flow_fw[..., :, :-1] - flow_fw[..., :, 1:], (0, 1, 0, 0))
    dv = F.pad(flow_fw[..., :-1, :] - flow_fw[..., 1:, :], (0, 0, 0, 1))
    grad_mag = (du.pow(2) + dv.pow(2)).sum(dim=1, keepdim=True)
    boundary = grad_mag > _MB_RELATIVE * fw_mag + _MB_ABSOLUTE
    xs = torch.arange(w, dtype=flow_fw.dtype, device=flow_fw.device).view(1, 1, 1, w)
    ys = torch.arange(h, dtype=flow_fw.dtype, device=flow_fw.device).view(1, 1, h, 1)
    tx, ty = xs + flow_fw[:, :1], ys + flow_fw[:, 1:]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    return (~(fb_fail | boundary | outside)).to(flow_fw.dtype)


def _check_clip(x: torch.Tensor, name: str, crop_border: int) -> torch.Tensor:
    check_video(x, name)
    if x.shape[1] < 2:
        raise InputError(f"temporal metrics need at least 2 frames, {name} has {x.shape[1]}")
    if x.shape[2] != 3:
        raise InputError(f"temporal metrics need RGB frames, {name} has {x.shape[2]} channels")
    if crop_border < 0 or 2 * crop_border >= min(x.shape[-2:]):
        raise InputError(f"crop_border={crop_border} leaves no pixel of frames {x.shape[-2]}x{x.shape[-1]}")
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    return x


def _pairs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b, t, c, h, w)`` -> frames ``0..t-2`` and ``1..t-1`` as ``((b (t-1)), c, h, w)``."""
    return (rearrange(x[:, :-1], "b t c h w -> (b t) c h w"), rearrange(x[:, 1:], "b t c h w -> (b t) c h w"))


@torch.no_grad()
def warping_error(
    sr: torch.Tensor,
    *,
    flow: FlowMethod = "dis",
    flow_source: torch.Tensor | None = None,
    crop_border: int = 0,
) -> torch.Tensor:
    """Flow warping error E_warp (Lai et al., ECCV 2018, "Learning Blind Video Temporal Consistency", evaluation).

    ``E_warp = 1/(T-1) sum_{t=1}^{T-1} [ sum_p M_t(p) ||V_t(p) - warp(V_{t+1}, F_{t->t+1})(p)||^2 /
    (C sum_p M_t(p)) ]``: the forward flow ``F_{t->t+1}`` warps frame ``t+1`` back onto frame ``t`` (bilinear); the
    squared error is averaged over channels and over the non-occluded pixels ``M_t`` (:func:`valid_mask`), then
    over the ``T-1`` frame pairs. This follows the official ``evaluate_WarpError.py`` /
    ``compute_flow_occlusion.py`` of phoenix104104/fast_blind_video_consistency (which divides by the sum of
    the 3-channel mask). A pair whose mask is empty contributes 0, as in the official code.

    Conventions chosen here (document them with any figure): values are on the [0, 1] scale after 8-bit
    rounding of the frames; the result is raw (papers print ``E*warp (x10^-3)``, i.e. this value times 1000);
    flow and mask come from ``flow_source`` when given (the official scripts compute them on the *input* video,
    ``data/test/input``; for VSR pass ``gt``), otherwise from ``sr`` itself (needs no GT; the default). Figures
    computed with different flow estimators or flow sources are not comparable.

    Args:
        sr: ``(b, t, 3, h, w)`` float in [0, 1], ``t >= 2``.
        flow: flow estimator (module docstring).
        flow_source: optional ``(b, t, 3, h, w)`` clip the flow and occlusion mask are computed on.
        crop_border: pixels removed on each side of every frame first.

    Returns:
        ``(b,)`` float64, raw E_warp (0 for a static clip).

    Raises:
        InputError: bad shapes or fewer than 2 frames; WeightsError: ``flow='raft'`` without weights.
    """
    sr = _check_clip(sr, "sr", crop_border)
    source = sr if flow_source is None else _check_clip(flow_source, "flow_source", crop_border)
    if source.shape != sr.shape:
        raise InputError(f"flow_source must have the shape of sr, got {tuple(source.shape)} and {tuple(sr.shape)}")
    batch = sr.shape[0]
    src_t, src_next = _pairs(source)
    flow_fw = estimate_flow(src_t, src_next, method=flow)
    flow_bw = estimate_flow(src_next, src_t, method=flow)
    mask = valid_mask(flow_fw, flow_bw)  # (n, 1, h, w)
    frames = quantize(sr) / 255.0
    cur, nxt = _pairs(frames)
    warped = _flow_warp(nxt, flow_fw.to(nxt.device))
    mask = mask.to(cur.device)
    sq_err = ((cur - warped).pow(2) * mask).sum(dim=(1, 2, 3))
    count = mask.sum(dim=(1, 2, 3)) * cur.shape[1]
    per_pair = torch.where(count > 0, sq_err / count.clamp_min(1), torch.zeros_like(sq_err))
    return rearrange(per_pair, "(b t) -> b t", b=batch).mean(dim=1)


@torch.no_grad()
def tof(sr: torch.Tensor, gt: torch.Tensor, *, flow: FlowMethod = "farneback", crop_border: int = 0) -> torch.Tensor:
    """tOF (Chu et al., "Learning Temporal Coherence via Self-Supervision for GAN-based Video Generation"
    (TecoGAN), ACM TOG 2020; thunil/TecoGAN ``metrics.py``).

    ``tOF = 1/(T-1) sum_t mean_p || OF(sr_{t-1}, sr_t)(p) - OF(gt_{t-1}, gt_t)(p) ||_2``: the per-pixel Euclidean
    norm of the difference between the motion of the output and the motion of the ground truth, in pixels.
    TecoGAN's script uses Farneback flow (the default here), drops the first and last 2 frames and crops a border
    to a multiple of 32 px; here all frames are used and ``crop_border`` is explicit. Raw value, unscaled (tables
    in the field often print tOF x10: check the scale of any figure you compare with).

    Args:
        sr: ``(b, t, 3, h, w)`` float in [0, 1], ``t >= 2``.
        gt: same shape as ``sr``.
        flow: flow estimator.
        crop_border: pixels removed on each side of the flow fields.

    Returns:
        ``(b,)`` float64, pixels.
    """
    _check_clip(sr, "sr", 0)
    _check_clip(gt, "gt", 0)
    if sr.shape != gt.shape:
        raise InputError(f"sr and gt must have the same shape, got {tuple(sr.shape)} and {tuple(gt.shape)}")
    if crop_border < 0 or 2 * crop_border >= min(sr.shape[-2:]):
        raise InputError(f"crop_border={crop_border} leaves no pixel of frames {sr.shape[-2]}x{sr.shape[-1]}")
    batch = sr.shape[0]
    flow_sr = estimate_flow(*_pairs(sr), method=flow).double()
    flow_gt = estimate_flow(*_pairs(gt), method=flow).double().to(flow_sr.device)
    diff = (flow_sr - flow_gt).pow(2).sum(dim=1).sqrt()  # (n, h, w)
    if crop_border:
        diff = diff[:, crop_border:-crop_border, crop_border:-crop_border]
    return rearrange(diff.mean(dim=(1, 2)), "(b t) -> b t", b=batch).mean(dim=1)


@torch.no_grad()
def tlpips(sr: torch.Tensor, gt: torch.Tensor, *, lpips_metric: torch.nn.Module) -> torch.Tensor:
    """tLPIPS / tLP (TecoGAN, ACM TOG 2020; thunil/TecoGAN ``metrics.py``).

    ``tLP = 1/(T-1) sum_t | LPIPS(sr_{t-1}, sr_t) - LPIPS(gt_{t-1}, gt_t) |``: how far the perceptual change
    between consecutive output frames is from that of the ground truth. Raw value, unscaled (TecoGAN's script
    prints tLP x100). TecoGAN also drops the first and last 2 frames; here all frames are used.

    Args:
        sr: ``(b, t, 3, h, w)`` float in [0, 1], ``t >= 2``.
        gt: same shape as ``sr``.
        lpips_metric: a :class:`zoo.metrics.lpips.LPIPSMetric` (its ``pairwise`` method is used).

    Returns:
        ``(b,)`` float32.

    Raises:
        WeightsError: the LPIPS metric is unavailable.
    """
    _check_clip(sr, "sr", 0)
    _check_clip(gt, "gt", 0)
    if sr.shape != gt.shape:
        raise InputError(f"sr and gt must have the same shape, got {tuple(sr.shape)} and {tuple(gt.shape)}")
    batch = sr.shape[0]
    dist_sr = lpips_metric.pairwise(*_pairs(sr))
    dist_gt = lpips_metric.pairwise(*_pairs(gt))
    return rearrange((dist_sr - dist_gt).abs(), "(b t) -> b t", b=batch).mean(dim=1)
