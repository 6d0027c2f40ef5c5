"""How samples become batches. The data module takes one of these strategies by dependency injection.

``ShapeBuckets`` serves the autoencoder: every batch holds samples of one (frames, height, width), so
nothing is ever padded. ``PackedRows`` serves the DiT: samples of any shapes whose tokens first-fit into a
fixed number of rows (NaViT's Patch n' Pack). A strategy builds the epoch's batch sampler from the planned
samples and names the collate function that turns them into a batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import numpy as np
from torch.utils.data import Sampler

from videodiff.data.datasets import ClipPlanner, SampleRequest, collate_same_shape, collate_video_list
from videodiff.data.manifest import ManifestEntry
from videodiff.packing.pack import first_fit


class _EpochPlanSampler(Sampler[list[SampleRequest]]):
    """Plans every sample of an epoch from ``(seed, epoch)`` and groups the plans into batches.

    Random sizes change per epoch but every rank and every resume sees the same ones. With several ranks,
    each takes every ``num_replicas``-th batch; the batch list is padded by wrapping so all ranks run the
    same number of steps. ``resume_at`` makes the next pass over an epoch start after the batches a
    killed run had already trained on, so a resumed run sees the rest of the epoch in the same order.
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        planner: ClipPlanner,
        shuffle: bool,
        seed: int = 0,
        randomise: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.entries, self.planner = entries, planner
        self.shuffle, self.seed, self.randomise = shuffle, seed, randomise
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        # Where the epoch comes from when iteration starts (the data module gives the trainer's). Lightning's
        # set_epoch reaches a DataLoader's sampler and its batch_sampler.sampler, never the batch sampler
        # itself, so without this every epoch would replay epoch 0's order and sizes.
        self.epoch_source: Callable[[], int] | None = None
        self._cached: tuple[int, list[list[SampleRequest]]] | None = None
        self._length: int | None = None
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Make the next iteration continue ``epoch`` after this rank's first ``batches_done`` batches.

        A finished epoch continues as the start of the next one. The next iteration is the resumed one
        whatever ``epoch_source`` says: after a checkpoint taken on an epoch's last batch, Lightning's epoch
        counter still names the finished epoch when it draws the first batch of the next.
        """
        if batches_done < 0:
            raise ValueError(f"batches_done must be >= 0, got {batches_done}")
        self.set_epoch(epoch)
        if batches_done >= len(self):
            epoch, batches_done = epoch + 1, 0
        self.epoch, self._resume = epoch, (epoch, batches_done)

    def plan(self, epoch: int) -> list[list[SampleRequest]]:
        """Every sample of ``epoch`` once, grouped into batches (across ranks)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.entries)) if self.shuffle else np.arange(len(self.entries))
        plan_rng = rng if self.randomise or self.shuffle else None
        requests = [self.planner.plan(int(i), self.entries[int(i)], plan_rng) for i in order]
        batches = self.group(requests)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def batches(self) -> list[list[SampleRequest]]:
        """This epoch's batches, across ranks (computed once per epoch: ``len()`` and ``iter()`` agree).

        Every epoch has as many batches as epoch 0. Random sizes and shuffled packing give each epoch a
        slightly different count, but Lightning fixes an epoch's length when it first sizes the loader (and
        a resumed run's bookkeeping relies on it): a longer epoch leaves out its last batches (shuffled, so
        a random few, seen again in other epochs), a shorter one repeats its first.
        """
        if self._cached is None or self._cached[0] != self.epoch:
            if self._length is None:
                self._length = len(self.plan(0))
            batches = self.plan(self.epoch)
            if batches and len(batches) != self._length:
                batches = (batches * (self._length // len(batches) + 1))[: self._length]
            self._cached = (self.epoch, batches)
        return self._cached[1]

    def group(self, requests: list[SampleRequest]) -> list[list[SampleRequest]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[SampleRequest]]:
        resume, self._resume = self._resume, None
        if resume is not None:
            self.epoch = resume[0]
        elif self.epoch_source is not None:
            self.epoch = self.epoch_source()
        batches = self.batches()
        if self.num_replicas > 1 and batches:
            total = -(-len(batches) // self.num_replicas) * self.num_replicas
            batches = (batches * (total // len(batches) + 1))[:total]
            batches = batches[self.rank :: self.num_replicas]
        if resume is not None:
            batches = batches[resume[1] :]
        return iter(batches)

    def __len__(self) -> int:
        return -(-len(self.batches()) // self.num_replicas)


class ShapeBucketSampler(_EpochPlanSampler):
    """Yields lists of :class:`SampleRequest` of one shape, at most ``batch_size`` each; every sample once."""

    def __init__(
        self, entries, planner, batch_size: int, shuffle: bool, seed=0, randomise=False, num_replicas=1, rank=0
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(entries, planner, shuffle, seed, randomise, num_replicas, rank)
        self.max_batch = batch_size

    def group(self, requests: list[SampleRequest]) -> list[list[SampleRequest]]:
        buckets: dict[tuple[int, int, int], list[SampleRequest]] = defaultdict(list)
        for request in requests:
            buckets[request.plan.shape].append(request)
        return [
            bucket[k : k + self.max_batch]
            for _, bucket in sorted(buckets.items())
            for k in range(0, len(bucket), self.max_batch)
        ]


class TokenBudgetSampler(_EpochPlanSampler):
    """Yields lists of samples whose token sequences first-fit into ``rows`` rows of ``max_tokens``.

    Batches fill greedily in (shuffled) order with a look-ahead: a sample that does not fit is passed over,
    and later ones may still fill the gap, until ``lookahead`` samples in a row did not fit. Membership is
    checked with the same first-fit (``packing.pack.first_fit``) that later packs the latents, so a batch
    formed here always fits.
    """

    def __init__(
        self,
        entries,
        planner,
        max_tokens: int,
        rows: int,
        shuffle: bool,
        seed=0,
        randomise=False,
        num_replicas=1,
        rank=0,
        lookahead: int = 32,
    ):
        if max_tokens < 1 or rows < 1:
            raise ValueError(f"max_tokens and rows must be >= 1, got {max_tokens}, {rows}")
        super().__init__(entries, planner, shuffle, seed, randomise, num_replicas, rank)
        self.max_tokens, self.rows, self.lookahead = max_tokens, rows, lookahead

    def tokens(self, request: SampleRequest) -> int:
        return self.planner.tokens(request.plan.shape)

    def group(self, requests: list[SampleRequest]) -> list[list[SampleRequest]]:
        for request in requests:
            if self.tokens(request) > self.max_tokens:
                raise ValueError(
                    f"{self.entries[request.index].path}: planned at {request.plan.shape} it has "
                    f"{self.tokens(request)} tokens, more than a row's max_tokens={self.max_tokens}; "
                    "set sampling.token_budget <= max_tokens"
                )
        remaining, batches = list(requests), []
        while remaining:
            batch, lengths, j, misses = [], [], 0, 0
            while j < len(remaining) and misses < self.lookahead:
                n = self.tokens(remaining[j])
                if len(first_fit(lengths + [n], self.max_tokens)) <= self.rows:
                    batch.append(remaining.pop(j))
                    lengths.append(n)
                else:
                    j, misses = j + 1, misses + 1
            batches.append(batch)
        return batches


class Batching(ABC):
    """A batching strategy: which planned samples go together, and how they are collated."""

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
        randomise = train and planner.random_size
        return self.make_sampler(
            entries, planner, shuffle=train, seed=seed, randomise=randomise, num_replicas=num_replicas, rank=rank
        )

    @abstractmethod
    def make_sampler(self, entries: Sequence[ManifestEntry], planner: ClipPlanner, **common) -> Sampler:
        """The strategy's sampler; ``common`` holds shuffle, seed, randomise, num_replicas and rank."""

    @property
    @abstractmethod
    def collate_fn(self) -> Callable:
        """Turns a list of samples (some possibly ``SkippedSample``) into one batch."""

    def latent_collate_fn(self) -> Callable:
        """The collate function for cached latents (the data module's ``latents`` source)."""
        return self.collate_fn


class PackedRows(Batching):
    """Batches for the DiT: samples of any shapes whose tokens fit ``rows`` rows of ``max_tokens``.

    The collated batch is a :class:`~videodiff.data.datasets.VideoListBatch` (unpadded videos); the DiT
    module encodes each video and packs the latents with ``packing.pack.pack``.

    Args:
        max_tokens: row length L (tokens).
        rows: rows per batch R.
        lookahead: how many non-fitting samples a batch passes over before it closes.
    """

    def __init__(self, max_tokens: int = 1024, rows: int = 2, lookahead: int = 32):
        if max_tokens < 1 or rows < 1:
            raise ValueError(f"PackedRows: max_tokens and rows must be >= 1, got {max_tokens}, {rows}")
        self.max_tokens, self.rows, self.lookahead = max_tokens, rows, lookahead

    def make_sampler(self, entries, planner, **common) -> Sampler:
        return TokenBudgetSampler(entries, planner, self.max_tokens, self.rows, lookahead=self.lookahead, **common)

    @property
    def collate_fn(self) -> Callable:
        return partial(collate_video_list, max_tokens=self.max_tokens, rows=self.rows)

    def latent_collate_fn(self) -> Callable:
        return partial(collate_video_list, latent=True, max_tokens=self.max_tokens, rows=self.rows)


class ShapeBuckets(Batching):
    """Batches of one shape, at most ``batch_size`` samples each (for the autoencoder).

    Args:
        batch_size: most samples per batch; a bucket's last batch may be smaller, none is padded.
    """

    def __init__(self, batch_size: int = 4):
        if batch_size < 1:
            raise ValueError(f"ShapeBuckets: batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def make_sampler(self, entries, planner, **common) -> Sampler:
        return ShapeBucketSampler(entries, planner, self.batch_size, **common)

    @property
    def collate_fn(self) -> Callable:
        return collate_same_shape
