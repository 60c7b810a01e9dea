"""Cross-process helpers shared by every stage: the launcher's rank variables, and for the contrastive loss
gather with gradient, world size and rank.

**The launcher's environment** (``torchrun`` and Lightning's launchers set ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``NODE_RANK``) is read here only, by :func:`launched_rank`, :func:`launched_world`,
:func:`local_rank`, :func:`node_rank` and :func:`is_launched_rank`, with one rule: an unset or empty (or
all-blank) variable is "not set" (None); any other value must be a non-negative integer (``WORLD_SIZE`` a
positive one), else :class:`LaunchEnvError` names the variable and its value. These readers import no torch
(``cmer <sub> --help`` stays torch-free); torch is imported by the gathers when they run.

Ranks may hold batches of different sizes (clips dropped as undecodable, an uneven last batch): pass the
per-rank row counts from :func:`gather_sizes` and the gathers pad to the largest, exchange, and strip the padding.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    import torch

#: the launcher variables that mark a process other than the first when one of them is above 0
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK")


class LaunchEnvError(ValueError):
    """A launcher variable (``RANK``, ``WORLD_SIZE``, ...) holds something other than a valid integer."""


def env_int(name: str, environ: Mapping[str, str] | None = None, minimum: int = 0) -> int | None:
    """The integer in environment variable ``name``; None when unset or blank. Raises :class:`LaunchEnvError`
    (naming the variable) for a value that is not an integer or lies below ``minimum``.

    >>> env_int("RANK", {"RANK": " 3 "}), env_int("RANK", {"RANK": ""}), env_int("RANK", {})
    (3, None, None)
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise LaunchEnvError(f"environment variable {name}={raw!r} is not an integer") from None
    if value < minimum:
        raise LaunchEnvError(f"environment variable {name}={raw!r} is below {minimum}")
    return value


def launched_rank(environ: Mapping[str, str] | None = None) -> int | None:
    """The global rank the launcher gave this process (``RANK``), or None outside a launcher."""
    return env_int("RANK", environ)


def launched_world(environ: Mapping[str, str] | None = None) -> int | None:
    """The number of processes the launcher started (``WORLD_SIZE``, at least 1), or None outside a launcher."""
    return env_int("WORLD_SIZE", environ, minimum=1)


def local_rank(environ: Mapping[str, str] | None = None) -> int | None:
    """This process's rank on its node (``LOCAL_RANK``), or None outside a launcher."""
    return env_int("LOCAL_RANK", environ)


def node_rank(environ: Mapping[str, str] | None = None) -> int | None:
    """This node's rank (``NODE_RANK``), or None outside a launcher."""
    return env_int("NODE_RANK", environ)


def is_launched_rank(environ: Mapping[str, str] | None = None) -> bool:
    """True in a launched process other than the first (``RANK``, ``LOCAL_RANK`` or ``NODE_RANK`` above 0):
    those leave shared folders to rank 0.

    >>> is_launched_rank({}), is_launched_rank({"RANK": "0", "LOCAL_RANK": ""}), is_launched_rank({"NODE_RANK": "1"})
    (False, False, True)
    """
    return any((env_int(k, environ) or 0) > 0 for k in RANK_VARIABLES)


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if is_distributed() else 0


def gather_sizes(size: int, device: torch.device | str = "cpu") -> list[int]:
    """Every rank's ``size`` (e.g. its number of rows), in rank order; ``[size]`` without a process group."""
    import torch
    import torch.distributed as dist

    if not is_distributed():
        return [size]
    local = torch.tensor([size], dtype=torch.long, device=device)
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return torch.cat(parts).tolist()


def _pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    import torch

    if tensor.shape[0] == rows:
        return tensor
    pad = tensor.new_zeros((rows - tensor.shape[0], *tensor.shape[1:]))
    return torch.cat([tensor, pad], dim=0)


def _strip(parts: Sequence[torch.Tensor], sizes: Sequence[int] | None) -> torch.Tensor:
    import torch

    if sizes is None or len(set(sizes)) == 1:
        return torch.cat(list(parts), dim=0)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)], dim=0)


def _check_sizes(tensor: torch.Tensor, sizes: Sequence[int] | None) -> int:
    import torch.distributed as dist

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
    import torch
    import torch.distributed as dist

    if not is_distributed():
        return tensor
    rows = _check_sizes(tensor, sizes)
    padded = _pad_rows(tensor, rows).contiguous()
    parts = [torch.empty_like(padded) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, padded)
    return _strip(parts, sizes)
