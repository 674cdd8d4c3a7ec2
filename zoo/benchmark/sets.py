"""Evaluation sets of a benchmark suite: GT crops and LQ clips, with the synthetic LQ cached as PNG frames.

Synthetic sets (``bicubic``, ``realbasicvsr``) take the GT clips through :class:`zoo.data.EvalClipDataset`, the same
class the datamodule uses for validation and test, with the set's ``num_frames``, ``max_size`` (GT centre crop)
and ``seed``. So the ``realbasicvsr`` LQ of a clip (:class:`zoo.data.RealBasicVSRDegradation`, RealBasicVSR's
official training degradation) is the datamodule's default validation LQ for ``val_seed = seed`` and
the same clip key and crop (the degradation is driven by ``stable_seed(seed, key)``), and the ``bicubic`` LQ is
the BI protocol's (:func:`zoo.data.bicubic_downsample`, 8-bit).

LQ cache. The LQ frames of every synthetic clip are written once as 8-bit PNG (``00000000.png``, ...) under::

    <cache_dir>/<set name>/<protocol>-x<scale>[-seed<seed>]-f<num_frames|all>-c<max_size|full>-<hash>/<clip key>/

where ``<hash>`` covers every setting that changes the LQ (the degradation's parameters included), plus a
``lq.json`` manifest written last (frame names and SHA-256). A folder whose manifest is present and whose files
match it is reused as is (never rewritten); anything else is rebuilt, atomically (written to a temporary folder,
then renamed). The LQ is stored rounded to 8-bit levels (the BI LQ already is; RealBasicVSR's LQ is whenever its
last operation is the video compression, and is rounded here otherwise, as any LQ video file would be); every entry
and every later run reads the same files. LQ-only sets (``lq``: real low-quality clips without GT)
are read from their files directly (decoding is deterministic) and centre-cropped to ``max_size``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from zoo.benchmark.suite import EvalSet, Suite
from zoo.errors import ConfigError, InputError

__all__ = ["Clip", "cache_tag", "lq_cache_dir", "iter_clips", "load_clips"]

#: Version of the cache layout; part of the hash, so a layout change never reuses old files.
_CACHE_VERSION = 1
_MANIFEST = "lq.json"


@dataclass
class Clip:
    """One evaluation clip, ready for an upscaler.

    Attributes:
        key: clip name (folder name or video file stem).
        lq: ``(1, t, 3, h, w)`` float32 in [0, 1] on 8-bit levels.
        gt: ``(1, t, 3, scale h, scale w)`` float32 in [0, 1], or None for LQ-only sets.
        source: the clip's path (GT for synthetic sets, LQ for ``lq`` sets).
        lq_dir: folder of the cached LQ PNG frames (None for LQ-only sets).
    """

    key: str
    lq: torch.Tensor
    gt: torch.Tensor | None
    source: Path
    lq_dir: Path | None = None

    @property
    def num_frames(self) -> int:
        """Number of frames t."""
        return int(self.lq.shape[1])


def _degradation_description(eval_set: EvalSet, scale: int) -> dict:
    """The complete configuration of the set's degradation (:func:`zoo.data.degradations.degradation_config`)."""
    from zoo.data.degradations import BicubicDegradation, RealBasicVSRDegradation, degradation_config

    if eval_set.protocol == "realbasicvsr":
        return degradation_config(RealBasicVSRDegradation(scale=scale))
    return degradation_config(BicubicDegradation(scale=scale))


def cache_tag(eval_set: EvalSet, scale: int) -> str:
    """Name of the cache folder of a synthetic set's settings (see the module docstring).

    Raises:
        ConfigError: for an LQ-only set (nothing is cached).
    """
    if not eval_set.has_gt:
        raise ConfigError(f"set {eval_set.name!r} ({eval_set.protocol}) has no synthetic LQ to cache")
    settings = {"version": _CACHE_VERSION, "protocol": eval_set.protocol, "scale": scale,
                "seed": eval_set.seed if eval_set.protocol == "realbasicvsr" else None,
                "num_frames": eval_set.num_frames, "max_size": eval_set.max_size,
                "degradation": _degradation_description(eval_set, scale)}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    seed = f"-seed{eval_set.seed}" if eval_set.protocol == "realbasicvsr" else ""
    return (f"{eval_set.protocol}-x{scale}{seed}-f{eval_set.num_frames or 'all'}-c{eval_set.max_size or 'full'}"
            f"-{digest}")


def lq_cache_dir(cache_dir: str | Path, eval_set: EvalSet, key: str, scale: int) -> Path:
    """Folder holding the cached LQ frames of clip ``key`` of ``eval_set``."""
    return Path(cache_dir) / eval_set.name / cache_tag(eval_set, scale) / key


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_is_complete(folder: Path) -> bool:
    """True if ``folder/lq.json`` exists and every frame it lists exists with the recorded SHA-256."""
    manifest = folder / _MANIFEST
    if not manifest.is_file():
        return False
    try:
        meta = json.loads(manifest.read_text())
        files = meta["files"]
    except (ValueError, KeyError, TypeError):
        return False
    if not files or len(files) != meta.get("num_frames"):
        return False
    return all((folder / name).is_file() and _sha256(folder / name) == digest for name, digest in files.items())


def _write_cache(folder: Path, lq: torch.Tensor, meta: dict) -> None:
    """Write ``lq`` (t, 3, h, w) on 8-bit levels as PNG frames + manifest into ``folder``, atomically."""
    from PIL import Image

    frames = rearrange(lq, "t c h w -> t h w c").mul(255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        files = {}
        for index, frame in enumerate(frames):
            name = f"{index:08d}.png"
            Image.fromarray(np.ascontiguousarray(frame)).save(tmp / name, format="PNG")
            files[name] = _sha256(tmp / name)
        meta = dict(meta, num_frames=len(files), files=files)
        (tmp / _MANIFEST).write_text(json.dumps(meta, indent=1, sort_keys=True))
        if folder.exists():  # an incomplete earlier attempt
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _read_frames(folder: Path) -> torch.Tensor:
    from zoo.data.video_io import open_video

    return open_video(folder).read()


def _center_crop(lq: torch.Tensor, max_size: int | None) -> torch.Tensor:
    """Centre crop of ``(t, c, h, w)`` to at most ``max_size`` pixels per side."""
    if max_size is None:
        return lq
    h, w = lq.shape[-2:]
    crop_h, crop_w = min(h, max_size), min(w, max_size)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return lq[..., top:top + crop_h, left:left + crop_w].contiguous()


def _check_runnable(eval_set: EvalSet) -> None:
    if eval_set.missing:
        raise InputError(f"set {eval_set.name!r} cannot run: {eval_set.missing}")


def iter_clips(eval_set: EvalSet, *, scale: int = 4, cache_dir: str | Path = ".cache/benchmark_lq",
               progress: bool = False) -> Iterator[Clip]:
    """Yield the clips of a set, making (or reusing) the cached LQ frames of synthetic sets.

    Args:
        eval_set: the set.
        scale: upscaling factor (GT size / LQ size).
        cache_dir: root of the LQ cache.
        progress: print one line per clip whose LQ is synthesized.

    Yields:
        :class:`Clip` items in the order of the set's paths (clips sorted naturally within a folder).

    Raises:
        InputError: a set whose data is missing, unreadable clips, duplicate clip names, clips too short or small.
        ConfigError: inconsistent set options.
    """
    from zoo.data.datasets import EvalClipDataset, PredictClipDataset, stable_seed

    _check_runnable(eval_set)
    if not eval_set.has_gt:
        dataset = PredictClipDataset(paths=list(eval_set.paths), num_frames=eval_set.num_frames)
        for index in range(len(dataset)):
            item = dataset[index]
            source = dataset.clips[index][1].path
            lq = _center_crop(item["lq"], eval_set.max_size)
            yield Clip(key=item["key"], lq=rearrange(lq, "t c h w -> 1 t c h w"), gt=None, source=Path(source))
        return

    common = dict(paths=list(eval_set.paths), scale=scale, num_frames=eval_set.num_frames,
                  max_size=eval_set.max_size)
    gt_dataset = EvalClipDataset(degradation="bicubic", **common)
    lq_dataset = (EvalClipDataset(degradation="synthetic", seed=eval_set.seed, **common)
                  if eval_set.protocol == "realbasicvsr" else gt_dataset)
    tag = cache_tag(eval_set, scale)
    for index, (key, source) in enumerate(gt_dataset.clips):
        folder = Path(cache_dir) / eval_set.name / tag / key
        item = gt_dataset[index]  # GT crop (and a cheap bicubic LQ)
        if not _cache_is_complete(folder):
            if progress:
                print(f"  making {eval_set.protocol} LQ of {eval_set.name}/{key} -> {folder}", flush=True)
            lq = item["lq"] if lq_dataset is gt_dataset else lq_dataset[index]["lq"]
            meta = {"set": eval_set.name, "protocol": eval_set.protocol, "key": key, "scale": scale,
                    "seed": eval_set.seed, "clip_seed": stable_seed(eval_set.seed, key)
                    if eval_set.protocol == "realbasicvsr" else None, "num_frames_setting": eval_set.num_frames,
                    "max_size": eval_set.max_size, "source": str(source.path),
                    "gt_size": list(item["gt"].shape[-2:][::-1]), "cache_tag": tag}
            _write_cache(folder, lq, meta)
        lq = _read_frames(folder)
        gt = item["gt"]
        if lq.shape[0] != gt.shape[0] or lq.shape[-2] * scale != gt.shape[-2] or lq.shape[-1] * scale != gt.shape[-1]:
            raise InputError(f"cached LQ {folder} ({tuple(lq.shape)}) does not fit GT {tuple(gt.shape)} at x{scale}; "
                             f"delete the folder to rebuild it")
        yield Clip(key=key, lq=rearrange(lq, "t c h w -> 1 t c h w"), gt=rearrange(gt, "t c h w -> 1 t c h w"),
                   source=Path(source.path), lq_dir=folder)


def load_clips(eval_set: EvalSet, suite: Suite | None = None, *, scale: int | None = None,
               cache_dir: str | Path | None = None, progress: bool = False) -> list[Clip]:
    """All clips of a set as a list (see :func:`iter_clips`); ``scale`` and ``cache_dir`` default to the suite's."""
    scale = scale if scale is not None else (suite.scale if suite is not None else 4)
    cache_dir = cache_dir if cache_dir is not None else (suite.cache_dir if suite is not None
                                                         else ".cache/benchmark_lq")
    return list(iter_clips(eval_set, scale=scale, cache_dir=cache_dir, progress=progress))
