"""The LightningDataModule shared by every VSR family.

Batches: ``{'lq': (b, t, 3, h, w), 'gt': (b, t, 3, h * scale, w * scale), 'key': list[str]}``, float32 in
[0, 1]; predict batches have no ``'gt'``. Training LQ is synthesized on the fly from GT
(:class:`~zoo.data.degradations.RealBasicVSRDegradation` by default, or bicubic); validation / test LQ is
reproducible (seeded per clip) or read from paired folders. See :mod:`zoo.data.datasets`.

Resuming (``lightning fit ... --ckpt_path last``) continues the training stream exactly where the checkpoint left
it: item ``j`` of the stream is a fixed function of the run's data seed and ``j`` (:class:`TrainSampler`), and the
seed and the position (epoch, batches done) are saved in every checkpoint through the datamodule's
``state_dict`` / ``load_state_dict`` hooks. Under DDP each rank walks its own items of the stream (rank ``r`` of
``w`` takes items ``r, r + w, r + 2w, ...``), and evaluation clips are split over the ranks without repeats.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from zoo.data.datasets import EvalClipDataset, PredictClipDataset, TrainClipDataset
from zoo.data.degradations import BicubicDegradation, RealBasicVSRDegradation, RealESRGANDegradation
from zoo.data.samplers import UnpaddedDistributedSampler
from zoo.errors import ConfigError

__all__ = ["ResumableDataLoader", "TrainSampler", "VSRDataModule"]


class ResumableDataLoader(DataLoader):
    """The training DataLoader: a plain :class:`~torch.utils.data.DataLoader` that tells Lightning it resumes
    mid-epoch (Lightning otherwise warns that a resumed run is unreliable). Its position is not its own state: it is
    saved and restored by :meth:`VSRDataModule.state_dict` / :meth:`VSRDataModule.load_state_dict` and given to its
    :class:`TrainSampler` (counting from the trainer's finished batches, which Lightning's one-batch prefetching
    would make off by one in a loader-side counter)."""

    def state_dict(self) -> dict[str, Any]:
        """Empty: see the class docstring."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to load: see the class docstring."""


class TrainSampler(DistributedSampler):
    """Indices of the training stream of one rank, resumable mid-epoch.

    Epoch ``e`` of rank ``r`` (of ``num_replicas``) yields stream indices ``e * num_replicas * num_samples + i *
    num_replicas + r`` for positions ``i = start, ..., num_samples - 1``; with
    :class:`~zoo.data.datasets.TrainClipDataset` (item ``j`` is a fixed function of the seed and ``j``) the whole
    training stream is a function of the seed, the epoch and the position, on any number of workers. ``start``
    (the first position of the epoch being resumed) applies to epoch :attr:`epoch` only; :meth:`set_epoch` with
    another epoch (Lightning calls it at every epoch start) starts that epoch at position 0.

    It subclasses :class:`~torch.utils.data.distributed.DistributedSampler` so that Lightning keeps it under DDP
    (Lightning replaces or wraps any other sampler) but draws nothing at random. ``len()`` is the whole epoch's
    ``num_samples`` even when resuming at ``start > 0`` (Lightning counts the epoch's batches from it).

    Args:
        dataset: the training dataset (only used by the base class).
        num_samples: samples per epoch on this rank.
        num_replicas: world size; rank: this process's global rank.
        epoch: the epoch :attr:`start` refers to; start: first position of that epoch.

    Raises:
        ValueError: ``num_samples < 1``, ``start`` outside ``[0, num_samples]`` or a rank outside the world.
    """

    def __init__(self, dataset: Dataset, *, num_samples: int, num_replicas: int = 1, rank: int = 0, epoch: int = 0,
                 start: int = 0) -> None:
        if num_samples < 1 or not 0 <= start <= num_samples or not 0 <= rank < num_replicas:
            raise ValueError(f"bad TrainSampler: num_samples={num_samples}, start={start}, rank={rank} of "
                             f"{num_replicas}")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=True)
        self.num_samples, self.total_size = num_samples, num_samples * num_replicas
        self.epoch, self.start = epoch, start

    def set_epoch(self, epoch: int) -> None:
        """Lightning's per-epoch call: a new epoch starts at position 0; the resumed epoch keeps its start."""
        if epoch != self.epoch:
            self.epoch, self.start = epoch, 0

    def __iter__(self) -> Iterator[int]:
        base = self.epoch * self.total_size + self.rank
        return iter(range(base + self.start * self.num_replicas, base + self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


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
        samples_per_epoch: training samples per epoch (random windows; independent of the number of clips), over
            all ranks together (each of ``w`` DDP ranks takes ``samples_per_epoch // w``).
        use_flip: random horizontal / vertical flips and transposes in training.

    Checkpoint state (:meth:`state_dict`): the training stream's seed (drawn once per run from the global torch RNG,
    i.e. from ``seed_everything``), the epoch and the number of batches done in it.

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
        self.train_seed: int | None = None  # drawn on first use, or restored by load_state_dict
        self._resume_at: tuple[int, int] = (0, 0)  # (epoch, batches done in it) of a restored checkpoint

    # --------------------------------------------------------------------------------------------- setup
    def _eval_set(self, paths: list[str], mode: str, lq_paths: list[str] | None, what: str) -> EvalClipDataset:
        return EvalClipDataset(paths=paths, scale=self.scale, degradation=mode, lq_paths=lq_paths,
                               seed=self.val_seed, synthetic=self.degradation, num_frames=self.val_num_frames,
                               max_size=self.val_max_size, what=what)

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
            self.val_set = self._eval_set(self.val_paths, self.val_degradation, self.val_lq_paths, "validation")
        if stage == "validate" and not self.val_paths:
            raise ConfigError("validate needs val_paths")
        if stage in ("test", None) and (self.test_paths or stage == "test"):
            if not self.test_paths:
                raise ConfigError("test needs test_paths")
            if self.test_set is None:
                self.test_set = self._eval_set(self.test_paths, self.test_degradation, self.test_lq_paths, "test")
        if stage in ("predict", None) and (self.predict_paths or stage == "predict"):
            if not self.predict_paths:
                raise ConfigError("predict needs predict_paths")
            if self.predict_set is None:
                self.predict_set = PredictClipDataset(paths=self.predict_paths, num_frames=self.predict_num_frames)

    # ------------------------------------------------------------------------------------------- loaders
    def _world(self) -> tuple[int, int]:
        """``(global rank, world size)`` of the attached trainer; ``(0, 1)`` without one."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset, *, batch_size: int, sampler: torch.utils.data.Sampler | None = None,
                drop_last: bool = False, seed: int = 0, loader: type[DataLoader] = DataLoader) -> DataLoader:
        # the loader's own generator seeds the workers, so creating an iterator never draws from the global RNG
        generator = torch.Generator().manual_seed(seed)
        return loader(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                      drop_last=drop_last, generator=generator, persistent_workers=self.num_workers > 0,
                      pin_memory=False)

    def _eval_loader(self, dataset) -> DataLoader:
        """Batch size 1 and, under DDP, each clip on exactly one rank (no repeated clips padding the split)."""
        rank, world = self._world()
        sampler = None
        if world > 1 and len(dataset) >= world:
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        return self._loader(dataset, batch_size=1, sampler=sampler, seed=self.val_seed)

    def train_dataloader(self) -> DataLoader:
        """Training loader: ``samples_per_epoch // (batch_size * world_size)`` batches per epoch and rank, drawn by a
        :class:`TrainSampler` from the stream of seed :attr:`train_seed` (from the checkpoint when resuming, else
        drawn now from the global torch RNG, which ``seed_everything`` seeds).

        Raises:
            ConfigError: fewer samples per epoch than ``batch_size`` times the number of ranks.
        """
        if self.train_set is None:
            self.setup("fit")
        if self.train_seed is None:
            self.train_seed = int(torch.randint(0, 2**62, (1,)))
        self.train_set.seed = self.train_seed
        rank, world = self._world()
        num_batches = self.samples_per_epoch // (self.batch_size * world)
        if num_batches < 1:
            raise ConfigError(f"samples_per_epoch ({self.samples_per_epoch}) must be at least batch_size "
                              f"({self.batch_size}) times the number of ranks ({world})")
        epoch, done = self._resume_at
        if done >= num_batches:  # saved at the end of an epoch
            epoch, done = epoch + 1, 0
        sampler = TrainSampler(self.train_set, num_samples=num_batches * self.batch_size, num_replicas=world,
                               rank=rank, epoch=epoch, start=done * self.batch_size)
        return self._loader(self.train_set, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                            seed=self.train_seed + rank, loader=ResumableDataLoader)

    # ---------------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue the training stream: ``{'train_seed', 'epoch', 'batches'}`` (batches
        whose training step finished in that epoch, as Lightning counts them; Lightning resumes at the next one)."""
        epoch, done = self._resume_at
        trainer = self.trainer
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            epoch, done = trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"train_seed": self.train_seed, "epoch": int(epoch), "batches": int(done)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (called by Lightning before the loaders are built when resuming)."""
        if state_dict.get("train_seed") is not None:
            self.train_seed = int(state_dict["train_seed"])
        self._resume_at = (int(state_dict.get("epoch", 0)), int(state_dict.get("batches", 0)))

    def val_dataloader(self) -> DataLoader | list:
        """Validation loader (batch size 1, whole clips); an empty list when there are no ``val_paths``."""
        if self.val_set is None:
            if not self.val_paths:
                return []
            self.setup("validate")
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        """Test loader (batch size 1, whole clips)."""
        if self.test_set is None:
            self.setup("test")
        return self._eval_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        """Prediction loader: batches ``{'lq': (1, t, 3, h, w), 'key': [str]}``.

        With several processes (e.g. ``--trainer.strategy=ddp --trainer.devices=2``) every clip goes to exactly one
        rank, rank ``r`` of ``n`` getting clips ``r, r + n, ...`` (:class:`~zoo.data.samplers.UnpaddedDistributedSampler`:
        no clip repeated to even out the ranks, a rank may get none), whatever ``use_distributed_sampler`` says.
        """
        if self.predict_set is None:
            self.setup("predict")
        rank, world = self._world()
        sampler = None
        if world > 1:
            sampler = UnpaddedDistributedSampler(self.predict_set, num_replicas=world, rank=rank)
            if len(sampler) == 0:  # fewer clips than processes: this rank has nothing to do (no collective per batch)
                self.allow_zero_length_dataloader_with_multiple_devices = True
        return self._loader(self.predict_set, batch_size=1, sampler=sampler, seed=self.val_seed)
