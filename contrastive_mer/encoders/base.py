"""What every modality encoder returns, and masked pooling shared by the encoders."""

from __future__ import annotations

from dataclasses import dataclass

import torch
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
