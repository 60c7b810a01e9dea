"""Cross-process helpers for the contrastive loss: gather with gradient, world size and rank.

Ranks may hold batches of different sizes (clips dropped as undecodable, an uneven last batch): pass the
per-rank row counts from :func:`gather_sizes` and the gathers pad to the largest, exchange, and strip the padding.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather_sizes(size: int, device: torch.device | str = "cpu") -> list[int]:
    """Every rank's ``size`` (e.g. its number of rows), in rank order; ``[size]`` without a process group."""
    if not is_distributed():
        return [size]
    local = torch.tensor([size], dtype=torch.long, device=device)
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return torch.cat(parts).tolist()


def _pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    if tensor.shape[0] == rows:
        return tensor
    pad = tensor.new_zeros((rows - tensor.shape[0], *tensor.shape[1:]))
    return torch.cat([tensor, pad], dim=0)


def _strip(parts: Sequence[torch.Tensor], sizes: Sequence[int] | None) -> torch.Tensor:
    if sizes is None or len(set(sizes)) == 1:
        return torch.cat(list(parts), dim=0)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)], dim=0)


def _check_sizes(tensor: torch.Tensor, sizes: Sequence[int] | None) -> int:
    if sizes is None:
        return tensor.shape[0]
    if len(sizes) != dist.get_world_size() or sizes[dist.get_rank()] != tensor.shape[0]:
        raise ValueError(f"sizes {list(sizes)} do not match world size {dist.get_world_size()} and this rank's "
                         f"{tensor.shape[0]} rows")
    return max(sizes)


def gather_with_grad(tensor: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, keeping the autograd graph.

    The backward pass sums the incoming gradients of every rank's copy into the local slice
    (``torch.distributed.nn.functional.all_gather``), so a loss computed on the gathered tensor back-propagates
    into the local encoder exactly. ``sizes`` (from :func:`gather_sizes`) allows different row counts per rank;
    without it every rank must pass the same shape. Without a process group it is the identity.

    Every rank must use the result in its loss graph, or none may: the backward is a collective too.
    """
    if not is_distributed():
        return tensor
    from torch.distributed.nn.functional import all_gather

    rows = _check_sizes(tensor, sizes)
    return _strip(all_gather(_pad_rows(tensor, rows)), sizes)


def gather_no_grad(tensor: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (no gradient; for masks and ids); ``sizes`` as in
    :func:`gather_with_grad`."""
    if not is_distributed():
        return tensor
    rows = _check_sizes(tensor, sizes)
    padded = _pad_rows(tensor, rows).contiguous()
    parts = [torch.empty_like(padded) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, padded)
    return _strip(parts, sizes)
