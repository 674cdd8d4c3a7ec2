"""Video quality metrics over ``(b, t, c, h, w)`` tensors in [0, 1].

- :mod:`zoo.metrics.image`: PSNR, SSIM (BasicSR / MATLAB convention, optional BT.601 Y, border crop).
- :mod:`zoo.metrics.lpips`: LPIPS (AlexNet) from local weights only.
- :mod:`zoo.metrics.temporal`: E*warp (Lai et al. 2018), tOF and tLPIPS (TecoGAN).
- :mod:`zoo.metrics.noref`: NIQE via BasicSR.
- :mod:`zoo.metrics.collection`: :class:`VideoMetrics`, a per-clip accumulator.
"""
from zoo.metrics.collection import VideoMetrics
from zoo.metrics.image import psnr, ssim
from zoo.metrics.lpips import LPIPSMetric
from zoo.metrics.noref import niqe
from zoo.metrics.temporal import estimate_flow, tlpips, tof, warping_error

__all__ = ["VideoMetrics", "psnr", "ssim", "LPIPSMetric", "niqe", "estimate_flow", "warping_error", "tof", "tlpips"]
