"""Distributed samplers that give every item to exactly one rank.

``torch.utils.data.DistributedSampler`` pads the dataset by repeating items so that every rank gets the same number:
fine for training, wrong wherever each item must be processed once (``lightning predict`` over a library of videos
writes one output per item: a repeated video would be upscaled and written twice, by two processes, to one path).
Lightning's own ``UnrepeatedDistributedSampler`` (its default for predict) does not repeat, but it asserts that every
rank gets at least one item, so fewer videos than processes stop the run; and with ``use_distributed_sampler=False``
Lightning leaves the loader alone and every rank would do every video.
"""
from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler

__all__ = ["UnpaddedDistributedSampler"]


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank ``r`` of ``n`` gets the indices ``r, r + n, r + 2n, ...`` of the dataset: no padding, no repeats.

    Ranks may get different numbers of items (one more or one fewer), or none when the dataset has fewer items than
    there are ranks. Use it only where the ranks do not run collective operations per item (prediction: Lightning
    does not wrap the model in ``DistributedDataParallel`` outside ``fit``); a DDP training loop whose ranks run
    different numbers of steps would hang.

    A subclass of ``DistributedSampler``, so Lightning keeps it as it is (it replaces only other samplers).

    Args:
        dataset: a sized dataset.
        num_replicas: number of processes (world size).
        rank: this process's global rank, ``0 <= rank < num_replicas``.
        shuffle: visit a permutation seeded by ``seed`` and the epoch (:meth:`set_epoch`) instead of ``0..len-1``;
            every rank draws the same permutation, so the ranks' shares still partition the dataset.
        seed: seed of the permutation.

    Raises:
        ValueError: ``rank`` outside ``[0, num_replicas)`` (raised by ``DistributedSampler``).
    """

    def __init__(self, dataset: Sized, *, num_replicas: int, rank: int, shuffle: bool = False, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.total_size = len(dataset)
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            indices = torch.randperm(self.total_size, generator=generator).tolist()
        else:
            indices = list(range(self.total_size))
        return iter(indices[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
