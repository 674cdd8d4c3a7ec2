"""Clip datasets for training, evaluation and prediction.

Every item is a dict ``{'lq': (t, 3, h, w), 'gt': (t, 3, h * scale, w * scale), 'key': str}`` of float32 in
[0, 1] (prediction items have no ``'gt'``); the default collate stacks them into the batch layout
``(b, t, 3, h, w)``.

* :class:`TrainClipDataset`: random temporal windows, random crops, flips and on-the-fly degradation
  (RealBasicVSR / BasicSR recipe).
* :class:`EvalClipDataset`: whole clips (or their first frames) with LQ made by bicubic x1/scale (BI), by the
  Real-ESRGAN degradation with a seed fixed per clip, or read from a paired LQ folder.
* :class:`PredictClipDataset`: LQ-only real videos.

Clip paths: see :func:`zoo.data.video_io.list_clips` (a clip folder, a folder of clip folders and/or videos,
or a video file).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.degradations import BicubicDegradation, RealBasicVSRDegradation
from zoo.data.video_io import VideoSource, list_clips, open_video
from zoo.errors import ConfigError, InputError

__all__ = [
    "EVAL_DEGRADATIONS",
    "EvalClipDataset",
    "PredictClipDataset",
    "TrainClipDataset",
    "augment_clip",
    "discover_clips",
    "stable_seed",
]

EVAL_DEGRADATIONS = ("synthetic", "bicubic", "paired")
"""How evaluation LQ frames are made: seeded Real-ESRGAN degradation, bicubic x1/scale (BI), or read from disk."""

Degradation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process and Python run (unlike ``hash()``, which is salted per process).

    Args:
        parts: values joined by their ``str()`` (e.g. ``(val_seed, clip_key)``).

    Returns:
        int in [0, 2**63): the first 8 bytes of SHA-256 of ``"\\x1f".join(map(str, parts))``.
    """
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def discover_clips(paths: Sequence[str | Path], *, unique: bool = False,
                   what: str = "input") -> list[tuple[str, VideoSource]]:
    """Open every clip found under ``paths``.

    Args:
        paths: user paths (see :func:`zoo.data.video_io.list_clips`).
        unique: raise when two clips share a key (evaluation reports per clip key).
        what: what the clips are for, named in the messages (``'training'``, ``'val'``, ...).

    Returns:
        ``[(key, VideoSource), ...]`` in the order found.

    Raises:
        InputError: as :func:`list_clips` / :func:`open_video` (a clip that cannot be opened, e.g. frames of mixed
            sizes, is named by key and path: ``"training clip '000' (path): ..."``), a path that does not exist, no
            paths, or duplicate keys with ``unique``.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise InputError(f"no {what} paths given")
    clips: list[tuple[str, VideoSource]] = []
    seen: dict[str, Path] = {}
    for path in paths:
        if not Path(path).expanduser().exists():
            raise InputError(f"{what} path does not exist: {path}")
        for key, clip_path in list_clips(path):
            if unique and key in seen:
                raise InputError(f"two {what} clips are named {key!r}: {seen[key]} and {clip_path}; rename one")
            seen[key] = clip_path
            try:
                source = open_video(clip_path)
            except InputError as err:
                raise InputError(f"{what} clip {key!r} ({clip_path}): {err}") from err
            clips.append((key, source))
    return clips


def augment_clip(gt: torch.Tensor, rng: np.random.Generator, *, use_flip: bool = True,
                 use_transpose: bool = True) -> torch.Tensor:
    """Random horizontal flip, vertical flip and h/w transpose, each with probability 0.5, the same for every
    frame (BasicSR ``basicsr/data/transforms.py`` ``augment`` with hflip and rotation; mmagic ``Flip`` and
    ``RandomTransposeHW``).

    Args:
        gt: ``(t, c, h, w)``; with ``use_transpose`` h must equal w or the output is ``(t, c, w, h)``.
        rng: numpy generator.
        use_flip: enable the horizontal and vertical flips.
        use_transpose: enable the transpose.

    Returns:
        ``(t, c, h, w)`` (or ``(t, c, w, h)`` after a transpose of a non-square clip).
    """
    hflip, vflip, transpose = rng.uniform(size=3) < 0.5
    if use_flip and hflip:
        gt = gt.flip(-1)
    if use_flip and vflip:
        gt = gt.flip(-2)
    if use_transpose and transpose:
        gt = gt.transpose(-1, -2)
    return gt.contiguous()


class TrainClipDataset(Dataset):
    """Random training windows with LQ synthesized on the fly.

    Each item: pick a clip uniformly, a random start, load ``num_frames`` frames (with ``mirror``:
    ``ceil(num_frames / 2)`` frames followed by the same frames reversed, RealBasicVSR's trick that reads about
    half the frames, cut to ``num_frames``), crop a random ``gt_size`` square (the same for all frames), flip /
    transpose, then ``lq = degradation(gt, generator)``.

    Randomness: item ``index`` is a fixed function of ``(seed, index)``: its seed is ``stable_seed(seed, 'train',
    index)`` and all its choices and its degradation derive from it (numpy / torch generators of its own; no global
    RNG, no worker RNG). ``index`` may be any non-negative int, not only ``< len(self)``: the datamodule's sampler
    (:class:`zoo.data.datamodule.TrainSampler`) walks fresh indices every epoch and on every rank, so that the
    training stream is a function of the seed and the sample's position alone, which makes resuming exact.

    Args:
        paths: training clip paths (REDS ``train_sharp``, a folder of videos, ...).
        num_frames: frames per item t.
        gt_size: GT crop size (pixels); LQ crop is ``gt_size / scale``.
        scale: upscaling factor.
        mirror: load half of the frames and mirror them (RealBasicVSR).
        degradation: ``callable(gt (t, 3, H, W), generator) -> lq``; None: ``RealBasicVSRDegradation(scale=scale)``.
        samples_per_epoch: dataset length (items per epoch), independent of the number of clips.
        use_flip, use_transpose: augmentations.
        seed: base seed of the items (the datamodule draws it once per run: :class:`zoo.data.datamodule.VSRDataModule`).

    Raises:
        ConfigError: ``gt_size`` not divisible by ``scale``, non-positive sizes, a degradation of another scale.
        InputError: bad paths; a clip shorter than needed or smaller than ``gt_size`` (the message gives its
            number of frames / size and what is needed).
    """

    def __init__(self, *, paths: Sequence[str | Path], num_frames: int = 30, gt_size: int = 256, scale: int = 4,
                 mirror: bool = True, degradation: Degradation | None = None, samples_per_epoch: int = 1000,
                 use_flip: bool = True, use_transpose: bool = True, seed: int = 0) -> None:
        self.seed = seed
        if num_frames < 1 or gt_size < 1 or scale < 1 or samples_per_epoch < 1:
            raise ConfigError(f"num_frames ({num_frames}), gt_size ({gt_size}), scale ({scale}) and "
                              f"samples_per_epoch ({samples_per_epoch}) must be positive")
        if gt_size % scale:
            raise ConfigError(f"gt_size {gt_size} is not divisible by scale {scale}")
        self.degradation = degradation if degradation is not None else RealBasicVSRDegradation(scale=scale)
        degradation_scale = getattr(self.degradation, "scale", scale)
        if degradation_scale != scale:
            raise ConfigError(f"the degradation has scale {degradation_scale}, the data scale is {scale}")
        self.num_frames, self.gt_size, self.scale, self.mirror = num_frames, gt_size, scale, mirror
        self.samples_per_epoch, self.use_flip, self.use_transpose = samples_per_epoch, use_flip, use_transpose
        self.load_frames = (num_frames + 1) // 2 if mirror else num_frames
        self.clips = discover_clips(paths, what="training")
        for key, source in self.clips:
            try:
                num = source.num_frames  # video files: counted by decoding once, which also checks the frame sizes
            except InputError as err:
                raise InputError(f"training clip {key!r} ({source.path}): {err}") from err
            if num < self.load_frames:
                how = (f" (num_frames={num_frames} with mirror loads {self.load_frames})" if mirror
                       else f" (num_frames={num_frames})")
                raise InputError(f"training clip {key!r} ({source.path}) has {num} frames; "
                                 f"{self.load_frames} are needed{how}")
            if min(source.height, source.width) < gt_size:
                raise InputError(f"training clip {key!r} ({source.path}) is {source.width}x{source.height}, smaller "
                                 f"than gt_size {gt_size} (data gt_size: at most {min(source.height, source.width)} "
                                 f"for this clip)")

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        """Item ``index`` (any int >= 0) of the stream of base seed :attr:`seed`: ``sample(stable_seed(seed, 'train',
        index))``."""
        return self.sample(stable_seed(self.seed, "train", int(index)))

    def sample(self, seed: int) -> dict[str, torch.Tensor | str]:
        """Build the item of a given seed (the same seed gives the same item).

        Returns:
            ``{'lq': (t, 3, gt_size/scale, gt_size/scale), 'gt': (t, 3, gt_size, gt_size), 'key': 'clip/start'}``.
        """
        rng = np.random.default_rng(seed)
        key, source = self.clips[int(rng.integers(len(self.clips)))]
        start = int(rng.integers(source.num_frames - self.load_frames + 1))
        top = int(rng.integers(source.height - self.gt_size + 1))
        left = int(rng.integers(source.width - self.gt_size + 1))
        frames = source.read(start, start + self.load_frames)
        gt = frames[:, :, top:top + self.gt_size, left:left + self.gt_size]
        gt = augment_clip(gt, rng, use_flip=self.use_flip, use_transpose=self.use_transpose)
        if self.mirror:
            gt = torch.cat([gt, gt.flip(0)])[: self.num_frames]
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        lq = self.degradation(gt, generator)
        return {"lq": lq.contiguous(), "gt": gt.contiguous(), "key": f"{key}/{start:08d}"}


def _center_crop_box(height: int, width: int, max_size: int | None, scale: int) -> tuple[int, int, int, int]:
    """Box (top, left, h, w) on the LQ grid of a GT of size ``height x width``: sides at most ``max_size / scale``."""
    lq_h, lq_w = height // scale, width // scale
    if max_size is not None:
        limit = max(1, max_size // scale)
        crop_h, crop_w = min(lq_h, limit), min(lq_w, limit)
    else:
        crop_h, crop_w = lq_h, lq_w
    return (lq_h - crop_h) // 2, (lq_w - crop_w) // 2, crop_h, crop_w


class EvalClipDataset(Dataset):
    """Whole evaluation clips with reproducible LQ frames.

    GT frames are cropped at the bottom/right to a multiple of ``scale`` (BasicSR ``mod_crop``), optionally
    limited to their first ``num_frames`` frames and centre-cropped to at most ``max_size`` pixels per side
    (a multiple of ``scale``) for quick CPU validation. LQ frames:

    * ``'synthetic'``: the ``synthetic`` degradation (:class:`RealBasicVSRDegradation` by default) driven by a
      generator seeded with
      ``stable_seed(seed, key)``: every model and every run sees identical LQ frames (same crop settings);
    * ``'bicubic'``: the BI protocol (:func:`zoo.data.degradations.bicubic_downsample`);
    * ``'paired'``: read from ``lq_paths`` (clips matched by name; LQ frame size times ``scale`` must equal
      the GT size after mod-crop).

    Args:
        paths: GT clip paths.
        scale: upscaling factor.
        degradation: one of :data:`EVAL_DEGRADATIONS`.
        lq_paths: LQ clip paths for ``'paired'``.
        seed: base seed of the ``'synthetic'`` LQ.
        synthetic: the degradation used for ``'synthetic'``, ``callable(gt, generator) -> lq`` (None:
            :class:`RealBasicVSRDegradation` with ``scale``).
        num_frames: use only the first frames of each clip (None: all).
        max_size: centre-crop GT to at most this many pixels per side (None: no crop).

    Raises:
        ConfigError: unknown degradation, ``'paired'`` without ``lq_paths``, bad sizes.
        InputError: bad paths, duplicate clip names, missing LQ clip, LQ size or frame count not matching.
    """

    def __init__(self, *, paths: Sequence[str | Path], scale: int = 4, degradation: str = "synthetic",
                 lq_paths: Sequence[str | Path] | None = None, seed: int = 0,
                 synthetic: Degradation | None = None, num_frames: int | None = None,
                 max_size: int | None = None, what: str = "evaluation") -> None:
        if degradation not in EVAL_DEGRADATIONS:
            raise ConfigError(f"unknown evaluation degradation {degradation!r}; expected one of {EVAL_DEGRADATIONS}")
        if num_frames is not None and num_frames < 1:
            raise ConfigError(f"num_frames must be positive or None, got {num_frames}")
        if max_size is not None and max_size < scale:
            raise ConfigError(f"max_size {max_size} must be at least the scale {scale}")
        self.scale, self.mode, self.seed = scale, degradation, seed
        self.num_frames, self.max_size = num_frames, max_size
        self.synthetic = synthetic if synthetic is not None else RealBasicVSRDegradation(scale=scale)
        synthetic_scale = getattr(self.synthetic, "scale", scale)
        if degradation == "synthetic" and synthetic_scale != scale:
            raise ConfigError(f"the degradation has scale {synthetic_scale}, the data scale is {scale}")
        self.bicubic = BicubicDegradation(scale=scale)
        self.what = what
        self.clips = discover_clips(paths, unique=True, what=what)
        self.lq_clips: dict[str, VideoSource] = {}
        if degradation == "paired":
            if not lq_paths:
                raise ConfigError("degradation 'paired' needs lq_paths (folders of LQ clips named like the GT clips)")
            lq_clips = dict(discover_clips(lq_paths, unique=True, what=f"{what} LQ"))
            for key, source in self.clips:
                if key not in lq_clips:
                    raise InputError(f"no LQ clip named {key!r} in {[str(p) for p in lq_paths]} for GT {source.path}")
                lq = lq_clips[key]
                if (lq.height, lq.width) != (source.height // scale, source.width // scale):
                    raise InputError(f"LQ clip {lq.path} is {lq.width}x{lq.height}; with scale {scale} the GT "
                                     f"{source.path} ({source.width}x{source.height}) needs "
                                     f"{source.width // scale}x{source.height // scale}")
                if lq.num_frames != source.num_frames:
                    raise InputError(f"LQ clip {lq.path} has {lq.num_frames} frames, GT {source.path} has "
                                     f"{source.num_frames}")
                self.lq_clips[key] = lq

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        key, source = self.clips[index]
        stop = None if self.num_frames is None else min(self.num_frames, source.num_frames)
        top, left, crop_h, crop_w = _center_crop_box(source.height, source.width, self.max_size, self.scale)
        s = self.scale
        try:  # video files: frames of another size are found while decoding
            gt = source.read(0, stop)[:, :, top * s:(top + crop_h) * s, left * s:(left + crop_w) * s].contiguous()
            if self.mode == "paired":
                lq = self.lq_clips[key].read(0, stop)[:, :, top:top + crop_h, left:left + crop_w].contiguous()
        except InputError as err:
            raise InputError(f"{self.what} clip {key!r} ({source.path}): {err}") from err
        if self.mode == "bicubic":
            lq = self.bicubic(gt)
        elif self.mode != "paired":
            generator = torch.Generator().manual_seed(stable_seed(self.seed, key))
            lq = self.synthetic(gt, generator)
        return {"lq": lq, "gt": gt, "key": key}


class PredictClipDataset(Dataset):
    """LQ-only clips (real videos) for prediction: items ``{'lq': (t, 3, h, w), 'key': str}``.

    The whole clip (or its first ``num_frames`` frames) is read into memory when its item is loaded: ``t * h * w * 12``
    bytes of float32 LQ, and the system's prediction holds the SR clip, ``scale**2`` times more (x4, 640x360,
    100 frames: 0.28 GB LQ, 4.4 GB SR; one clip per process at a time). Fine for a library of short clips; for long
    videos use ``vsrzoo upscale`` / ``zoo.inference.upscale_video``, which stream (memory independent of length), or
    bound ``num_frames``. Clips are only opened here (first frame decoded), not read.

    Args:
        paths: LQ clip paths (folders of frames or video files).
        num_frames: use only the first frames of each clip (None: all).

    Raises:
        InputError: bad paths, duplicate clip names.
    """

    def __init__(self, *, paths: Sequence[str | Path], num_frames: int | None = None) -> None:
        if num_frames is not None and num_frames < 1:
            raise ConfigError(f"num_frames must be positive or None, got {num_frames}")
        self.num_frames = num_frames
        self.clips = discover_clips(paths, unique=True)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        key, source = self.clips[index]
        return {"lq": source.read(0, self.num_frames), "key": key}
