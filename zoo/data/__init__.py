"""Data: video I/O (folders of frames, video files), degradations, clip datasets and the datamodule.

Video tensors are ``(t, 3, h, w)`` per clip and ``(b, t, 3, h, w)`` per batch, RGB, float32 in [0, 1].

The names below are imported on first use (PEP 562), so that ``zoo.data.video_io`` (all that ``vsrzoo upscale``
needs) does not import Lightning through the datamodule.
"""
from importlib import import_module

_HOMES = {
    "VSRDataModule": "datamodule",
    "EvalClipDataset": "datasets",
    "PredictClipDataset": "datasets",
    "TrainClipDataset": "datasets",
    "discover_clips": "datasets",
    "stable_seed": "datasets",
    "BicubicDegradation": "degradations",
    "RealBasicVSRDegradation": "degradations",
    "RealESRGANDegradation": "degradations",
    "bicubic_downsample": "degradations",
    "bicubic_upsample": "degradations",
    "matlab_imresize": "degradations",
    "video_compress": "degradations",
    "IMAGE_EXTENSIONS": "video_io",
    "VIDEO_EXTENSIONS": "video_io",
    "VideoSource": "video_io",
    "VideoWriter": "video_io",
    "list_clips": "video_io",
    "list_frame_files": "video_io",
    "open_video": "video_io",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
