"""The LightningDataModule shared by every VSR family.

Batches: ``{'lq': (b, t, 3, h, w), 'gt': (b, t, 3, h * scale, w * scale), 'key': list[str]}``, float32 in
[0, 1]; predict batches have no ``'gt'``. Training LQ is synthesized on the fly from GT
(:class:`~zoo.data.degradations.RealBasicVSRDegradation` by default, or bicubic); validation / test LQ is
reproducible (seeded per clip) or read from paired folders. See :mod:`zoo.data.datasets`.
"""
from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from zoo.data.datasets import EvalClipDataset, PredictClipDataset, TrainClipDataset
from zoo.data.degradations import BicubicDegradation, RealBasicVSRDegradation, RealESRGANDegradation
from zoo.data.samplers import UnpaddedDistributedSampler
from zoo.errors import ConfigError

__all__ = ["VSRDataModule"]


class VSRDataModule(L.LightningDataModule):
    """Video super-resolution data: training windows, evaluation clips, prediction clips.

    Args:
        train_paths: training GT clips (clip folders, folders of clip folders, or videos).
        val_paths: validation GT clips.
        test_paths: test GT clips.
        predict_paths: LQ-only clips (real videos) for ``predict``.
        val_lq_paths: LQ clips for ``val_degradation='paired'`` (clip names as in ``val_paths``).
        test_lq_paths: LQ clips for ``test_degradation='paired'``.
        scale: upscaling factor.
        num_frames: training frames per sample t (RealBasicVSR: 30).
        mirror: load ``ceil(num_frames / 2)`` frames and append them reversed (RealBasicVSR: 15 -> 30).
        gt_size: training GT crop, pixels (LQ crop = ``gt_size / scale``; RealBasicVSR: 256 -> 64).
        train_degradation: ``'synthetic'`` (LQ synthesized by ``degradation``) or ``'bicubic'`` (BI training).
        val_degradation: ``'synthetic'`` (``degradation`` seeded per clip by ``val_seed``), ``'bicubic'`` or
            ``'paired'``.
        test_degradation: as ``val_degradation`` for test; None: the same as ``val_degradation``.
        val_seed: base seed of the evaluation degradation (with the clip name, via a stable hash).
        val_num_frames: evaluate only the first frames of each clip (None: all); also used for test.
        val_max_size: centre-crop evaluation GT to at most this many pixels per side (multiple of ``scale``);
            also used for test. None: full frames.
        predict_num_frames: predict only the first frames of each clip (None: all).
        batch_size: training batch size (evaluation and prediction use 1: clips differ in size and length).
        num_workers: DataLoader worker processes.
        degradation: the real-world degradation of training and ``'synthetic'`` evaluation; None:
            :class:`RealBasicVSRDegradation` (RealBasicVSR's official pipeline) with ``scale``;
            :class:`RealESRGANDegradation` is the zoo's torch variant (Real-ESRGAN's order).
        samples_per_epoch: training samples per epoch (random windows; independent of the number of clips).
        use_flip: random horizontal / vertical flips and transposes in training.

    Raises:
        ConfigError: inconsistent options (checked here and in :meth:`setup`).
        zoo.errors.InputError: bad data (raised by :meth:`setup`).
    """

    def __init__(
        self,
        *,
        train_paths: list[str] | None = None,
        val_paths: list[str] | None = None,
        test_paths: list[str] | None = None,
        predict_paths: list[str] | None = None,
        val_lq_paths: list[str] | None = None,
        test_lq_paths: list[str] | None = None,
        scale: int = 4,
        num_frames: int = 30,
        mirror: bool = True,
        gt_size: int = 256,
        train_degradation: Literal["synthetic", "bicubic"] = "synthetic",
        val_degradation: Literal["synthetic", "bicubic", "paired"] = "synthetic",
        test_degradation: Literal["synthetic", "bicubic", "paired"] | None = None,
        val_seed: int = 0,
        val_num_frames: int | None = None,
        val_max_size: int | None = None,
        predict_num_frames: int | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        degradation: RealBasicVSRDegradation | RealESRGANDegradation | None = None,
        samples_per_epoch: int = 1000,
        use_flip: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["degradation"])
        if scale < 1 or num_frames < 1 or gt_size < 1 or batch_size < 1 or num_workers < 0:
            raise ConfigError("scale, num_frames, gt_size and batch_size must be positive, num_workers >= 0; got "
                              f"{scale}, {num_frames}, {gt_size}, {batch_size}, {num_workers}")
        if gt_size % scale:
            raise ConfigError(f"gt_size {gt_size} is not divisible by scale {scale}")
        if samples_per_epoch < batch_size:
            raise ConfigError(f"samples_per_epoch ({samples_per_epoch}) must be at least batch_size ({batch_size})")
        if train_degradation not in ("synthetic", "bicubic"):
            raise ConfigError(f"train_degradation must be 'synthetic' or 'bicubic', got {train_degradation!r}")
        test_degradation = test_degradation or val_degradation
        for name, mode, paths, lq_paths in (("val", val_degradation, val_paths, val_lq_paths),
                                            ("test", test_degradation, test_paths, test_lq_paths)):
            if mode not in ("synthetic", "bicubic", "paired"):
                raise ConfigError(f"{name}_degradation must be 'synthetic', 'bicubic' or 'paired', got {mode!r}")
            if mode == "paired" and paths and not lq_paths:
                raise ConfigError(f"{name}_degradation='paired' needs {name}_lq_paths")
        if degradation is not None and degradation.scale != scale:
            raise ConfigError(f"degradation.scale ({degradation.scale}) differs from scale ({scale})")
        self.train_paths, self.val_paths, self.test_paths = train_paths, val_paths, test_paths
        self.predict_paths, self.val_lq_paths, self.test_lq_paths = predict_paths, val_lq_paths, test_lq_paths
        self.scale, self.num_frames, self.mirror, self.gt_size = scale, num_frames, mirror, gt_size
        self.train_degradation, self.val_degradation = train_degradation, val_degradation
        self.test_degradation = test_degradation
        self.val_seed, self.val_num_frames, self.val_max_size = val_seed, val_num_frames, val_max_size
        self.predict_num_frames = predict_num_frames
        self.batch_size, self.num_workers = batch_size, num_workers
        self.degradation = degradation if degradation is not None else RealBasicVSRDegradation(scale=scale)
        self.samples_per_epoch, self.use_flip = samples_per_epoch, use_flip
        self.train_set: TrainClipDataset | None = None
        self.val_set: EvalClipDataset | None = None
        self.test_set: EvalClipDataset | None = None
        self.predict_set: PredictClipDataset | None = None

    # --------------------------------------------------------------------------------------------- setup
    def _eval_set(self, paths: list[str], mode: str, lq_paths: list[str] | None) -> EvalClipDataset:
        return EvalClipDataset(paths=paths, scale=self.scale, degradation=mode, lq_paths=lq_paths,
                               seed=self.val_seed, synthetic=self.degradation, num_frames=self.val_num_frames,
                               max_size=self.val_max_size)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of a stage ('fit', 'validate', 'test', 'predict'; None: all that have paths).

        Raises:
            ConfigError: the stage's paths are missing.
            zoo.errors.InputError: bad data.
        """
        if stage in ("fit", None) and (self.train_paths or stage == "fit"):
            if not self.train_paths:
                raise ConfigError("fit needs train_paths")
            if self.train_set is None:
                train_degradation = (self.degradation if self.train_degradation == "synthetic"
                                     else BicubicDegradation(scale=self.scale))
                self.train_set = TrainClipDataset(
                    paths=self.train_paths, num_frames=self.num_frames, gt_size=self.gt_size, scale=self.scale,
                    mirror=self.mirror, degradation=train_degradation, samples_per_epoch=self.samples_per_epoch,
                    use_flip=self.use_flip, use_transpose=self.use_flip)
        if stage in ("fit", "validate", None) and self.val_paths and self.val_set is None:
            self.val_set = self._eval_set(self.val_paths, self.val_degradation, self.val_lq_paths)
        if stage == "validate" and not self.val_paths:
            raise ConfigError("validate needs val_paths")
        if stage in ("test", None) and (self.test_paths or stage == "test"):
            if not self.test_paths:
                raise ConfigError("test needs test_paths")
            if self.test_set is None:
                self.test_set = self._eval_set(self.test_paths, self.test_degradation, self.test_lq_paths)
        if stage in ("predict", None) and (self.predict_paths or stage == "predict"):
            if not self.predict_paths:
                raise ConfigError("predict needs predict_paths")
            if self.predict_set is None:
                self.predict_set = PredictClipDataset(paths=self.predict_paths, num_frames=self.predict_num_frames)

    # ------------------------------------------------------------------------------------------- loaders
    def _loader(self, dataset, *, batch_size: int, shuffle: bool, drop_last: bool = False,
                generator: torch.Generator | None = None) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=drop_last, generator=generator, persistent_workers=self.num_workers > 0,
                          pin_memory=False)

    def train_dataloader(self) -> DataLoader:
        """Training loader: ``samples_per_epoch // batch_size`` batches of random windows.

        The loader's generator is seeded from the global torch RNG (set by ``seed_everything``); PyTorch seeds
        each worker's torch RNG from it, and every sample draws its seed from that RNG.
        """
        if self.train_set is None:
            self.setup("fit")
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        return self._loader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                            generator=generator)

    def val_dataloader(self) -> DataLoader | list:
        """Validation loader (batch size 1, whole clips); an empty list when there are no ``val_paths``."""
        if self.val_set is None:
            if not self.val_paths:
                return []
            self.setup("validate")
        return self._loader(self.val_set, batch_size=1, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test loader (batch size 1, whole clips)."""
        if self.test_set is None:
            self.setup("test")
        return self._loader(self.test_set, batch_size=1, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Prediction loader: batches ``{'lq': (1, t, 3, h, w), 'key': [str]}``.

        With several processes (e.g. ``--trainer.strategy=ddp --trainer.devices=2``) every clip goes to exactly one
        rank, rank ``r`` of ``n`` getting clips ``r, r + n, ...`` (:class:`~zoo.data.samplers.UnpaddedDistributedSampler`:
        no clip repeated to even out the ranks, a rank may get none), whatever ``use_distributed_sampler`` says.
        """
        if self.predict_set is None:
            self.setup("predict")
        trainer = self.trainer
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = UnpaddedDistributedSampler(self.predict_set, num_replicas=trainer.world_size,
                                                 rank=trainer.global_rank)
            if len(sampler) == 0:  # fewer clips than processes: this rank has nothing to do (no collective per batch)
                self.allow_zero_length_dataloader_with_multiple_devices = True
        return DataLoader(self.predict_set, batch_size=1, shuffle=False, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=False, pin_memory=False)
