"""The online probe's validation rows across DDP ranks: gather every rank's share, merge it into one set.

Each rank encodes its own share of the validation clips (Lightning's ``DistributedSampler`` pads the shares
with repeated clips so that they have equal length). :func:`gather_rows` collects every rank's
:class:`ProbeRows` on every rank (``torch.distributed.all_gather_object``; a single process returns its own),
:func:`merge_rows` keeps each clip id once and sorts the rows by clip id, so that one process and several
ranks probe the same rows in the same order, and :func:`broadcast_scores` hands rank 0's scores to every rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch.distributed as dist

T = TypeVar("T")


@dataclass(eq=False)
class ProbeRows:
    """One rank's (or the merged) probe rows: clip ids, per-modality features ``(N, D)`` and present masks
    ``(N,)``, labels ``(N, ...)`` and groups, row ``i`` of each belonging to clip ``ids[i]``."""

    ids: list[str] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray = field(default_factory=lambda: np.empty(0))
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray) -> ProbeRows:
        """The rows at ``index``, in that order."""
        return ProbeRows([self.ids[i] for i in index], {m: v[index] for m, v in self.features.items()},
                         {m: v[index] for m, v in self.present.items()}, self.labels[index],
                         [self.groups[i] for i in index])


def merge_rows(pieces: Sequence[ProbeRows], max_clips: int | None = None) -> ProbeRows:
    """The rows of all ``pieces`` (in rank order) with each clip id once (its first occurrence: the copy on the
    lowest rank), sorted by clip id and cut to the first ``max_clips``. Empty pieces are skipped; the others
    must hold the same modalities (ValueError otherwise)."""
    pieces = [p for p in pieces if len(p)]
    if not pieces:
        return ProbeRows()
    modalities = sorted(pieces[0].features)
    for rank, p in enumerate(pieces):
        if sorted(p.features) != modalities or sorted(p.present) != modalities:
            raise ValueError(f"probe rows of piece {rank} hold modalities {sorted(p.features)}, "
                             f"piece 0 holds {modalities}")
    ids = [i for p in pieces for i in p.ids]
    first: dict[str, int] = {}
    for row, sid in enumerate(ids):
        first.setdefault(sid, row)
    keep = np.asarray([first[sid] for sid in sorted(first)], dtype=np.int64)[:max_clips]
    merged = ProbeRows(ids, {m: np.concatenate([p.features[m] for p in pieces]) for m in modalities},
                       {m: np.concatenate([p.present[m] for p in pieces]) for m in modalities},
                       np.concatenate([p.labels for p in pieces]), [g for p in pieces for g in p.groups])
    return merged.take(keep)


def world_size() -> int:
    """The number of processes of the default ``torch.distributed`` group (1 when it is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_rows(rows: ProbeRows) -> list[ProbeRows]:
    """Every rank's ``rows`` in rank order, on every rank (a collective: all ranks must call it);
    ``[rows]`` in a single process."""
    if world_size() == 1:
        return [rows]
    out: list[ProbeRows | None] = [None] * world_size()
    dist.all_gather_object(out, rows)
    return [r if r is not None else ProbeRows() for r in out]


def broadcast_scores(scores: T) -> T:
    """Rank 0's ``scores`` on every rank (a collective: all ranks must call it); unchanged in a single process."""
    if world_size() == 1:
        return scores
    box: list[T | None] = [scores]
    dist.broadcast_object_list(box, src=0)
    assert box[0] is not None
    return box[0]
