"""Degradations that turn GT clips into LQ clips: Real-ESRGAN's second-order pipeline with RealBasicVSR's
per-clip drifting parameters and video compression (:class:`RealESRGANDegradation`), and the classic bicubic
x4 (BI) protocol (:func:`bicubic_downsample`).

Modules: ``kernels`` (blur kernels, drift), ``ops`` (batched operators), ``compression`` (PyAV video codec
round trip), ``pipeline`` (the full degradation).
"""
from zoo.data.degradations.compression import VIDEO_CODECS, video_compress
from zoo.data.degradations.kernels import KERNEL_TYPES, KernelParams, KernelSteps
from zoo.data.degradations.ops import bicubic_downsample, usm_sharp
from zoo.data.degradations.pipeline import (
    BicubicDegradation,
    DegradationParams,
    RealESRGANDegradation,
    StageParams,
)

__all__ = [
    "KERNEL_TYPES",
    "VIDEO_CODECS",
    "BicubicDegradation",
    "DegradationParams",
    "KernelParams",
    "KernelSteps",
    "RealESRGANDegradation",
    "StageParams",
    "bicubic_downsample",
    "usm_sharp",
    "video_compress",
]
