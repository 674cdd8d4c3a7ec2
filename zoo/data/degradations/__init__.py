"""Degradations that turn GT clips into LQ clips: RealBasicVSR's official training degradation
(:class:`RealBasicVSRDegradation`, the default everywhere), the zoo's batched torch variant in Real-ESRGAN's order
with RealBasicVSR's per-clip drift and video compression (:class:`RealESRGANDegradation`), and the classic bicubic
x4 (BI) protocol (:func:`bicubic_downsample`: MATLAB ``imresize``, :func:`matlab_imresize`) and its bicubic
baseline (:func:`bicubic_upsample`).

Modules: ``kernels`` (blur kernels, drift), ``ops`` (batched operators), ``compression`` (PyAV video codec
round trip), ``pipeline`` (the torch variant, BI), ``realbasicvsr`` (the official pipeline).
"""
from zoo.data.degradations.compression import VIDEO_CODECS, encode_decode, video_compress
from zoo.data.degradations.kernels import KERNEL_TYPES, KernelParams, KernelSteps
from zoo.data.degradations.ops import bicubic_downsample, bicubic_upsample, matlab_imresize, usm_sharp
from zoo.data.degradations.pipeline import (
    BicubicDegradation,
    DegradationParams,
    RealESRGANDegradation,
    StageParams,
    degradation_config,
)
from zoo.data.degradations.realbasicvsr import OFFICIAL_TABLE, OPERATIONS, RealBasicVSRDegradation

__all__ = [
    "KERNEL_TYPES",
    "OFFICIAL_TABLE",
    "OPERATIONS",
    "VIDEO_CODECS",
    "BicubicDegradation",
    "DegradationParams",
    "KernelParams",
    "KernelSteps",
    "RealBasicVSRDegradation",
    "RealESRGANDegradation",
    "StageParams",
    "bicubic_downsample",
    "bicubic_upsample",
    "degradation_config",
    "encode_decode",
    "matlab_imresize",
    "usm_sharp",
    "video_compress",
]
