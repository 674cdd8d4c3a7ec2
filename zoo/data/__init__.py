"""Data: video I/O (folders of frames, video files), degradations, clip datasets and the datamodule.

Video tensors are ``(t, 3, h, w)`` per clip and ``(b, t, 3, h, w)`` per batch, RGB, float32 in [0, 1].
"""
from zoo.data.datamodule import VSRDataModule
from zoo.data.datasets import (
    EvalClipDataset,
    PredictClipDataset,
    TrainClipDataset,
    discover_clips,
    stable_seed,
)
from zoo.data.degradations import (
    BicubicDegradation,
    RealBasicVSRDegradation,
    RealESRGANDegradation,
    bicubic_downsample,
    bicubic_upsample,
    matlab_imresize,
    video_compress,
)
from zoo.data.video_io import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoSource,
    VideoWriter,
    list_clips,
    list_frame_files,
    open_video,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "BicubicDegradation",
    "EvalClipDataset",
    "PredictClipDataset",
    "RealBasicVSRDegradation",
    "RealESRGANDegradation",
    "TrainClipDataset",
    "VSRDataModule",
    "VideoSource",
    "VideoWriter",
    "bicubic_downsample",
    "bicubic_upsample",
    "matlab_imresize",
    "discover_clips",
    "list_clips",
    "list_frame_files",
    "open_video",
    "stable_seed",
    "video_compress",
]
