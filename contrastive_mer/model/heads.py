"""Projection head: Linear -> ReLU -> Linear (the paper's 512 -> 1024 -> 512). The module that owns the heads
L2-normalises their output once; features for downstream use are taken before the head."""

from __future__ import annotations

import torch
from torch import nn

from contrastive_mer.config import HeadConfig

__all__ = ["HeadConfig", "ProjectionHead"]


class ProjectionHead(nn.Module):
    """Maps an encoder feature ``(B, D)`` to the shared contrastive space ``(B, P)`` (not normalised)."""

    def __init__(self, input_dim: int, cfg: HeadConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_dim, cfg.hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.hidden_dim, cfg.output_dim))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.net(feature)
