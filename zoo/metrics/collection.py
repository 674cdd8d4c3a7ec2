"""A per-clip metric accumulator for validation, test and benchmark loops."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from zoo.errors import ConfigError, InputError
from zoo.metrics.image import check_video, psnr, ssim
from zoo.metrics.lpips import LPIPSMetric
from zoo.metrics.noref import niqe
from zoo.metrics.temporal import resolve_flow, tlpips, tof, warping_error

#: Metric flag -> key of the result dicts. E*warp's key names where its flow came from and which estimator made it
#: (:func:`ewarp_key`); its value is x1000, the unit VSR tables print ("x10^-3").
RESULT_KEYS = {
    "psnr": "psnr",
    "ssim": "ssim",
    "lpips": "lpips",
    "tof": "tof",
    "tlpips": "tlpips",
    "niqe": "niqe",
}


def ewarp_key(flow_from: str, flow: str) -> str:
    """Result key of E*warp x1e3 with flow and occlusion mask from ``flow_from`` (``'gt'`` or ``'sr'``) estimated by
    ``flow`` (``'raft'``, ``'dis'``, ``'farneback'``): e.g. ``'ewarp_gt_raft'``. Published E*warp figures use flow
    from the GT (RAFT or FlowNet2); numbers with different keys are not comparable."""
    return f"ewarp_{flow_from}_{flow}"
_NEEDS_GT = {"psnr", "ssim", "lpips", "tof", "tlpips"}
_NEEDS_LPIPS = {"lpips", "tlpips"}


class VideoMetrics:
    """Accumulates metrics clip by clip and averages them.

    Each metric is switched on by its flag (result key in brackets):

    - ``psnr`` [psnr], ``ssim`` [ssim]: :mod:`zoo.metrics.image`, with ``crop_border`` and ``y_channel``;
    - ``lpips`` [lpips]: :class:`zoo.metrics.lpips.LPIPSMetric`, AlexNet; skipped when its weights are absent
      (one warning per process);
    - ``warping_error`` [``ewarp_<from>_<flow>``, :func:`ewarp_key`]: :func:`zoo.metrics.temporal.warping_error`
      times 1000, flow and occlusion mask from ``ewarp_flow_from`` (``'gt'``, the default: the GT clip when there
      is one, else the SR clip; ``'sr'``: always the SR clip), estimated by ``flow``;
    - ``tof`` [tof], ``tlpips`` [tlpips]: TecoGAN's temporal metrics (raw, unscaled);
    - ``niqe`` [niqe]: :func:`zoo.metrics.noref.niqe` (frames of at least 96x192 px; slow, off by default).

    Full-reference metrics are skipped for clips given without ``gt``. Each clip is one item of the batch.

    Args:
        psnr, ssim, lpips, warping_error, tof, tlpips, niqe: which metrics to compute.
        crop_border: pixels removed on each side (PSNR, SSIM, E*warp, tOF, NIQE); VSR papers use the scale or 0.
        y_channel: PSNR/SSIM on BT.601 Y (True, the VSR convention) or on RGB.
        flow: flow estimator for E*warp: ``'auto'`` (default: RAFT when its weights are present and the frames are
            at least 128 px, else DIS; :func:`zoo.metrics.temporal.resolve_flow`), ``'raft'``, ``'dis'`` or
            ``'farneback'`` (tOF always uses TecoGAN's Farneback).
        ewarp_flow_from: which clip the E*warp flow and occlusion mask are computed on (``'gt'`` or ``'sr'``).
        lpips_metric: an LPIPS module to use instead of building :class:`LPIPSMetric` (e.g. one already on a GPU).

    Raises:
        ConfigError: bad ``ewarp_flow_from`` or ``flow``, or a negative ``crop_border``.
    """

    def __init__(
        self,
        *,
        psnr: bool = True,
        ssim: bool = True,
        lpips: bool = True,
        warping_error: bool = True,
        tof: bool = False,
        tlpips: bool = False,
        niqe: bool = False,
        crop_border: int = 0,
        y_channel: bool = True,
        flow: str = "auto",
        ewarp_flow_from: str = "gt",
        lpips_metric: LPIPSMetric | None = None,
    ) -> None:
        if ewarp_flow_from not in ("sr", "gt"):
            raise ConfigError(f"ewarp_flow_from must be 'sr' or 'gt', got {ewarp_flow_from!r}")
        if flow not in ("auto", "dis", "farneback", "raft"):
            raise ConfigError(f"flow must be 'auto', 'dis', 'farneback' or 'raft', got {flow!r}")
        if crop_border < 0:
            raise ConfigError(f"crop_border must be >= 0, got {crop_border}")
        flags = {"psnr": psnr, "ssim": ssim, "lpips": lpips, "warping_error": warping_error, "tof": tof,
                 "tlpips": tlpips, "niqe": niqe}
        self.metrics = tuple(name for name, on in flags.items() if on)
        self.crop_border = crop_border
        self.y_channel = y_channel
        self.flow = flow
        self.ewarp_flow_from = ewarp_flow_from
        self.lpips_metric = lpips_metric
        if self.lpips_metric is None and _NEEDS_LPIPS.intersection(self.metrics):
            self.lpips_metric = LPIPSMetric()
        self._clips: list[dict] = []
    def reset(self) -> None:
        """Forget all accumulated clips."""
        self._clips = []

    def _active(self, name: str, has_gt: bool) -> bool:
        if name not in self.metrics or (name in _NEEDS_GT and not has_gt):
            return False
        return name not in _NEEDS_LPIPS or (self.lpips_metric is not None and self.lpips_metric.is_available)

    @torch.no_grad()
    def update(
        self,
        sr: torch.Tensor,
        gt: torch.Tensor | None = None,
        lq: torch.Tensor | None = None,
        key: str | Sequence[str] | None = None,
    ) -> list[dict]:
        """Score a batch of clips and remember the results.

        Args:
            sr: ``(b, t, 3, h, w)`` float in [0, 1].
            gt: optional ``(b, t, 3, h, w)`` ground truth, same shape as ``sr``.
            lq: optional ``(b, t, 3, h', w')`` input; only checked against ``sr``'s batch and frame counts (no
                metric here uses it).
            key: clip names, one per batch item (a single string for ``b == 1``); default ``clip<index>``.

        Returns:
            one dict per clip: ``{'key': str, <result key>: float, ...}``.

        Raises:
            InputError: bad shapes or a wrong number of keys.
        """
        check_video(sr, "sr")
        batch = sr.shape[0]
        if gt is not None:
            check_video(gt, "gt")
            if gt.shape != sr.shape:
                raise InputError(f"sr and gt must have the same shape, got {tuple(sr.shape)} and {tuple(gt.shape)}")
        if lq is not None:
            check_video(lq, "lq")
            if lq.shape[:2] != sr.shape[:2]:
                raise InputError(f"lq and sr must have the same (b, t), got {tuple(lq.shape)} and {tuple(sr.shape)}")
        keys = [key] if isinstance(key, str) else list(key) if key is not None else None
        if keys is None:
            keys = [f"clip{len(self._clips) + i}" for i in range(batch)]
        if len(keys) != batch:
            raise InputError(f"got {len(keys)} keys for a batch of {batch} clips")

        has_gt = gt is not None
        values: dict[str, torch.Tensor] = {}
        if self._active("psnr", has_gt):
            values["psnr"] = psnr(sr, gt, crop_border=self.crop_border, y_channel=self.y_channel)
        if self._active("ssim", has_gt):
            values["ssim"] = ssim(sr, gt, crop_border=self.crop_border, y_channel=self.y_channel)
        if self._active("lpips", has_gt):
            values["lpips"] = self.lpips_metric(sr, gt)
        ewarp_name = None
        if self._active("warping_error", has_gt):
            from_gt = self.ewarp_flow_from == "gt" and has_gt
            flow = resolve_flow(self.flow, height=sr.shape[-2], width=sr.shape[-1])
            ewarp_name = ewarp_key("gt" if from_gt else "sr", flow)
            values[ewarp_name] = 1e3 * warping_error(sr, flow=flow, flow_source=gt if from_gt else None,
                                                     crop_border=self.crop_border)
        if self._active("tof", has_gt):
            values["tof"] = tof(sr, gt, crop_border=self.crop_border)
        if self._active("tlpips", has_gt):
            values["tlpips"] = tlpips(sr, gt, lpips_metric=self.lpips_metric)
        if self._active("niqe", has_gt):
            values["niqe"] = niqe(sr, crop_border=self.crop_border)

        results = []
        for index, name in enumerate(keys):
            clip = {"key": str(name)}
            clip.update({RESULT_KEYS.get(m, m): float(v[index]) for m, v in values.items()})
            results.append(clip)
        self._clips.extend(results)
        return results

    def per_clip(self) -> list[dict]:
        """The per-clip result dicts in update order (copies)."""
        return [dict(clip) for clip in self._clips]

    def compute(self) -> dict[str, float]:
        """Mean of each result key over the clips that have it (a clip with PSNR ``inf`` makes the mean ``inf``)."""
        sums: dict[str, list[float]] = {}
        for clip in self._clips:
            for name, value in clip.items():
                if name != "key":
                    sums.setdefault(name, []).append(value)
        return {name: math.fsum(vals) / len(vals) for name, vals in sums.items()}
