"""Projection head: Linear -> ReLU -> Linear (the paper's 512 -> 1024 -> 512). The module that owns the heads
L2-normalises their output once; features for downstream use are taken before the head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class HeadConfig:
    hidden_dim: int = 1024
    output_dim: int = 512


class ProjectionHead(nn.Module):
    """Maps an encoder feature ``(B, D)`` to the shared contrastive space ``(B, P)`` (not normalised)."""

    def __init__(self, input_dim: int, cfg: HeadConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_dim, cfg.hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.hidden_dim, cfg.output_dim))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.net(feature)
