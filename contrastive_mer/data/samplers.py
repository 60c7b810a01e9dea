"""Batch samplers for contrastive pretraining.

:class:`GroupBatchSampler` builds every batch from ``groups_per_batch`` groups (e.g. speakers). With one speaker
per batch, speaker identity cannot tell a clip from its in-batch negatives, so the pairwise loss must rely on
what varies within a speaker (the expressed emotion) - a cheap way to make representations speaker-invariant.
It also shards batches across distributed ranks (every rank gets the same number of batches).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class GroupBatchSampler(Sampler[list[int]]):
    """Yields lists of indices; each batch draws from ``groups_per_batch`` groups.

    Per epoch (``set_epoch``), each group's indices are shuffled, groups are shuffled and taken
    ``groups_per_batch`` at a time, their indices interleaved and cut into batches of ``batch_size``; batches are
    then shuffled and, under DDP, dealt round-robin to ranks (truncated to a multiple of the world size).
    """

    def __init__(self, groups: Sequence[str], batch_size: int, groups_per_batch: int = 1, *, drop_last: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 for contrastive batches, got {batch_size}")
        members: dict[str, list[int]] = defaultdict(list)
        for i, g in enumerate(groups):
            members[str(g)].append(i)
        self.members = [np.asarray(v) for _, v in sorted(members.items())]
        if groups_per_batch < 1 or groups_per_batch > len(self.members):
            raise ValueError(f"groups_per_batch={groups_per_batch} but there are {len(self.members)} groups")
        self.batch_size = batch_size
        self.groups_per_batch = groups_per_batch
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.members))
        batches: list[list[int]] = []
        for start in range(0, len(order), self.groups_per_batch):
            chosen = [rng.permutation(self.members[g]) for g in order[start:start + self.groups_per_batch]]
            # interleave the chosen groups so each batch mixes them evenly
            longest = max(len(c) for c in chosen)
            pool = [int(c[i]) for i in range(longest) for c in chosen if i < len(c)]
            for b in range(0, len(pool), self.batch_size):
                batch = pool[b:b + self.batch_size]
                if len(batch) == self.batch_size or (not self.drop_last and len(batch) >= 2):
                    batches.append(batch)
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        usable = len(batches) - len(batches) % self.world_size
        yield from batches[self.rank:usable:self.world_size]

    def __len__(self) -> int:
        return len(self._all_batches()) // self.world_size
