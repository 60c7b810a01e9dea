"""Encoder for pre-extracted features: per-clip vectors ``(B, D_in)`` (e.g. facial action units) or frame
sequences ``(B, T, D_in)`` (COVAREP, FACET, GloVe), through an MLP applied per frame and masked mean pooling."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from contrastive_mer.encoders.base import EncoderOutput, ModalityEncoder, length_mask, pool, temporal_pool
from contrastive_mer.encoders.registry import register_encoder


@dataclass
class MLPConfig:
    input_dim: int = 35
    hidden_dims: tuple[int, ...] = (256,)
    output_dim: int = 512
    dropout: float = 0.0
    input_norm: bool = True
    pooling: str = "mean"


@register_encoder("mlp", MLPConfig, input_kind="vector")
class MLPEncoder(ModalityEncoder):
    """LayerNorm (optional) -> [Linear -> ReLU -> Dropout]* -> Linear."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.LayerNorm(cfg.input_dim)] if cfg.input_norm else []
        width = cfg.input_dim
        for hidden in cfg.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = hidden
        layers.append(nn.Linear(width, cfg.output_dim))
        self.net = nn.Sequential(*layers)
        self.pooler = temporal_pool(cfg.pooling, cfg.output_dim)
        self.input_dim = cfg.input_dim
        self.output_dim = cfg.output_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"mlp encoder expects input_dim={self.input_dim}, got features of size {x.shape[-1]}")
        if x.dim() == 2:
            return EncoderOutput(self.net(x))
        seq = self.net(x)
        mask = length_mask(lengths, x.shape[1], x.shape[0], x.device)
        return EncoderOutput(pool(seq, mask, self.pooler), seq, mask.sum(1))
