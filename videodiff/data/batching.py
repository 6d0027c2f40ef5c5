"""How samples become batches. The data module takes one of these strategies by dependency injection.

``ShapeBuckets`` serves the autoencoder: every batch holds samples of one (frames, height, width), so
nothing is ever padded. The DiT's patch-packing strategy plugs in at the same seam: a strategy builds the
epoch's batch sampler from the planned samples and names the collate function that turns them into a batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from videodiff.data.datasets import ClipPlanner, SampleRequest, collate_same_shape
from videodiff.data.manifest import ManifestEntry


class ShapeBucketSampler(Sampler[list[SampleRequest]]):
    """Yields lists of :class:`SampleRequest` of one shape; every sample exactly once per epoch.

    Plans are drawn afresh each epoch (``set_epoch``) from ``(seed, epoch)``, so random sizes change per
    epoch but every rank and every resume sees the same ones. With several ranks, each takes every
    ``num_replicas``-th batch; the batch list is padded by wrapping so all ranks run the same number of steps.
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        planner: ClipPlanner,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        randomise: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.entries, self.planner = entries, planner
        self.max_batch, self.shuffle, self.seed, self.randomise = batch_size, shuffle, seed, randomise
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._cached: tuple[int, list[list[SampleRequest]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[SampleRequest]]:
        """All batches of this epoch, across ranks (computed once per epoch: ``len()`` and ``iter()`` agree)."""
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self._plan_epoch())
        return self._cached[1]

    def _plan_epoch(self) -> list[list[SampleRequest]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.entries)) if self.shuffle else np.arange(len(self.entries))
        plan_rng = rng if self.randomise or self.shuffle else None
        buckets: dict[tuple[int, int, int], list[SampleRequest]] = defaultdict(list)
        for i in order:
            request = self.planner.plan(int(i), self.entries[int(i)], plan_rng)
            buckets[request.plan.shape].append(request)
        batches = [
            bucket[k : k + self.max_batch]
            for _, bucket in sorted(buckets.items())
            for k in range(0, len(bucket), self.max_batch)
        ]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[SampleRequest]]:
        batches = self.batches()
        if self.num_replicas > 1 and batches:
            total = -(-len(batches) // self.num_replicas) * self.num_replicas
            batches = (batches * (total // len(batches) + 1))[:total]
            batches = batches[self.rank :: self.num_replicas]
        return iter(batches)

    def __len__(self) -> int:
        return -(-len(self.batches()) // self.num_replicas)


class Batching(ABC):
    """A batching strategy: which planned samples go together, and how they are collated."""

    @abstractmethod
    def sampler(
        self,
        entries: Sequence[ManifestEntry],
        planner: ClipPlanner,
        train: bool,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> Sampler:
        """A batch sampler yielding lists of ``SampleRequest``; shards itself across ``num_replicas``."""

    @property
    @abstractmethod
    def collate_fn(self) -> Callable:
        """Turns a list of samples (some possibly ``SkippedSample``) into one batch."""


class ShapeBuckets(Batching):
    """Batches of one shape, at most ``batch_size`` samples each (for the autoencoder).

    Args:
        batch_size: most samples per batch; a bucket's last batch may be smaller, none is padded.
    """

    def __init__(self, batch_size: int = 4):
        if batch_size < 1:
            raise ValueError(f"ShapeBuckets: batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def sampler(
        self,
        entries: Sequence[ManifestEntry],
        planner: ClipPlanner,
        train: bool,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> Sampler:
        return ShapeBucketSampler(
            entries,
            planner,
            self.batch_size,
            shuffle=train,
            seed=seed,
            randomise=train and planner.sampling.random_size,
            num_replicas=num_replicas,
            rank=rank,
        )

    @property
    def collate_fn(self) -> Callable:
        return collate_same_shape
