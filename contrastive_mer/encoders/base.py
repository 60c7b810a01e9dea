"""What every modality encoder returns, and masked pooling shared by the encoders."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class EncoderOutput:
    """Output of a modality encoder.

    Attributes:
        feature: ``(B, D)`` clip-level feature, before any projection head (what probes and fusion use).
        sequence: ``(B, T, D)`` frame-level features, when the encoder has a time axis.
        sequence_lengths: ``(B,)`` valid length of each row of ``sequence``.
    """

    feature: torch.Tensor
    sequence: torch.Tensor | None = None
    sequence_lengths: torch.Tensor | None = None


class ModalityEncoder(nn.Module):
    """Base class: subclasses define ``forward(x, lengths=None) -> EncoderOutput`` and set ``output_dim`` (D)."""

    output_dim: int


def length_mask(lengths: torch.Tensor | None, max_len: int, batch: int, device: torch.device) -> torch.Tensor:
    """``(B, T)`` bool mask, True on valid steps; all True when ``lengths`` is None."""
    if lengths is None:
        return torch.ones(batch, max_len, dtype=torch.bool, device=device)
    steps = torch.arange(max_len, device=device)
    return steps.unsqueeze(0) < lengths.to(device).clamp(min=1).unsqueeze(1)


def masked_mean(sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(B, T, D)`` over the valid steps of ``mask`` ``(B, T)``."""
    weights = mask.to(sequence.dtype).unsqueeze(-1)
    return (sequence * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class AttentionPool(nn.Module):
    """Learned attention pooling over time: softmax over valid steps of a linear score."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(sequence).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        return (sequence * weights).sum(1)


def temporal_pool(kind: str, dim: int) -> nn.Module | None:
    """``mean`` (no parameters, returns None) or ``attention``."""
    if kind == "mean":
        return None
    if kind == "attention":
        return AttentionPool(dim)
    raise ValueError(f"unknown temporal pooling {kind!r}; expected 'mean' or 'attention'")


def pool(sequence: torch.Tensor, mask: torch.Tensor, pooler: nn.Module | None) -> torch.Tensor:
    """Pool ``(B, T, D)`` over valid steps with ``pooler`` (mean when None)."""
    return masked_mean(sequence, mask) if pooler is None else pooler(sequence, mask)


def _batch_statistics_work(norm: nn.modules.batchnorm._BatchNorm) -> bool:
    """True for a synchronised batch norm inside a multi-process group (it pools rows over the ranks)."""
    return isinstance(norm, nn.SyncBatchNorm) and dist.is_available() and dist.is_initialized() \
        and dist.get_world_size() > 1


@contextmanager
def lone_row_batchnorm(encoder: nn.Module, rows: int) -> Iterator[None]:
    """Run ``encoder`` on ``rows`` < 2 rows with its batch-norm layers in eval mode (running statistics).

    Batch norm in training mode cannot normalise one row (``Expected more than 1 value per channel``) and its
    statistics over one clip would be noise: a lone present clip of a modality (or the placeholder row of a
    batch where none is present) is normalised with the running statistics instead, which it does not update.
    Its affine parameters still take part in the graph (DDP). Synchronised batch norm under DDP is left as it
    is (it pools the rows of every rank, and every rank must join its collective). Other layers keep their mode.
    """
    if not encoder.training or rows >= 2:
        yield
        return
    switched = [m for m in encoder.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and not _batch_statistics_work(m)]
    for m in switched:
        m.eval()
    try:
        yield
    finally:
        for m in switched:
            m.train()
