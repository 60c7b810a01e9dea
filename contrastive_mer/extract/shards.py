"""Sharded extraction: one extraction split over N processes (e.g. ``torchrun`` ranks), each writing a store.

Shard ``I`` of ``N`` holds the records whose position in **id order** is ``I`` modulo ``N`` (round-robin, so
clips that are slow to decode, often listed together, spread over the shards; sorting by id first makes the split
independent of the adapter's listing order, which may differ between machines). Each shard is an ordinary
resumable store ``<out stem>.shard-I-of-N<suffix>``; :func:`contrastive_mer.store.merge.merge_shards` joins
them into one store ordered by id. Labels and groups are described from *all* records, so every shard has the
same schema even when a shard lacks some label value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from contrastive_mer.data.datasets.base import ClipRecord
from contrastive_mer.distributed import launched_rank, launched_world, local_rank
from contrastive_mer.store.merge import shard_store_path

__all__ = ["resolve_shard", "shard_records", "shard_store_path", "shard_attrs", "local_rank_device"]


def resolve_shard(index: int | str | None, count: int | None,
                  environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``(index, count)`` of this process's shard, or None for an unsharded extraction.

    ``index="auto"`` reads ``RANK`` and ``WORLD_SIZE`` (set by ``torchrun``; read by
    :func:`contrastive_mer.distributed.launched_rank` / :func:`~contrastive_mer.distributed.launched_world`, so
    an empty one counts as unset); ``count``, when also given, must equal ``WORLD_SIZE``. An integer index
    needs ``count`` and must lie in ``[0, count)``.
    """
    if index is None:
        if count not in (None, 1):
            raise ValueError(f"--num-shards {count} needs --shard-index (an integer or 'auto')")
        return None
    if isinstance(index, str) and index.strip().lower() == "auto":
        rank, world = launched_rank(environ), launched_world(environ)
        if rank is None or world is None:
            missing = [k for k, v in (("RANK", rank), ("WORLD_SIZE", world)) if v is None]
            raise ValueError(f"--shard-index auto reads RANK and WORLD_SIZE (set by torchrun), but "
                             f"{' and '.join(missing)} is not set; pass --shard-index I --num-shards N instead")
        if count is not None and count != world:
            raise ValueError(f"--num-shards {count} differs from WORLD_SIZE={world}; leave --num-shards out "
                             "with --shard-index auto")
        index, count = rank, world
    else:
        try:
            index = int(index)
        except (TypeError, ValueError):
            raise ValueError(f"--shard-index must be an integer or 'auto', got {index!r}") from None
        if count is None:
            raise ValueError(f"--shard-index {index} needs --num-shards N")
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in [0, {count}) (num_shards={count})")
    return index, count


def shard_records(records: Sequence[ClipRecord], index: int, count: int) -> list[ClipRecord]:
    """The records of shard ``index`` of ``count``: positions ``index, index + count, ...`` in id order.

    Raises on a duplicate id (the shards could not be merged by id).
    """
    ordered = sorted(records, key=lambda r: r.id)
    for a, b in zip(ordered, ordered[1:]):
        if a.id == b.id:
            raise ValueError(f"duplicate clip id {a.id!r} in the dataset: sharding needs unique ids")
    return ordered[index::count]


def shard_attrs(index: int, count: int) -> dict[str, int]:
    """Root attributes that identify a shard store (removed again by the merge)."""
    return {"shard_index": int(index), "num_shards": int(count)}


def shard_output(out: str | Path, shard: tuple[int, int] | None) -> Path:
    """The store a process writes: ``out`` itself, or its shard path."""
    return Path(out) if shard is None else shard_store_path(out, *shard)


def local_rank_device(environ: Mapping[str, str] | None = None) -> str | None:
    """``cuda:<LOCAL_RANK>`` under a launcher that sets ``LOCAL_RANK`` when CUDA is available, else None."""
    import torch

    local = local_rank(environ)
    if local is None or not torch.cuda.is_available():
        return None
    return f"cuda:{local % torch.cuda.device_count()}"
