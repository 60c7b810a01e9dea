"""Transformer over sequences of pre-extracted vectors ``(B, T, D_in)``: the paper's text encoder (300-d GloVe
word vectors, 6 layers, d_model 300, 5 heads), usable for any frame-vector sequence.

``Linear`` to ``d_model`` (identity when ``input_dim == d_model``) -> sinusoidal positions (Vaswani et al.,
added unscaled, then dropout) -> ``nn.TransformerEncoder`` (post-norm, ReLU, as PyTorch's defaults and the
official code) with padded steps as ``src_key_padding_mask`` -> dropout -> per-step ``Linear`` to ``output_dim``
-> mean over valid steps. The official code averages over every step, padding included; here padding is masked.

``positions: batch_slot`` reproduces a bug of the official code (``models/Encoder.py``, ``PositionalEncoding``):
its table is built for time-first input but is added to batch-first ``(B, T, D)`` input, so row ``b`` of the
batch gets position ``b`` at every step; the transformer then sees no temporal positions, and a clip's encoding
depends on its slot in the batch. Off by default (``positions: time``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from contrastive_mer.encoders.base import EncoderOutput, ModalityEncoder, length_mask, masked_mean
from contrastive_mer.encoders.registry import register_encoder


def sinusoidal_positions(steps: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """``(T, D)`` table: ``sin(t / 10000^(2i/D))`` on even columns, ``cos`` on odd columns."""
    position = torch.arange(steps, dtype=torch.float32, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(steps, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


@dataclass
class SeqTransformerConfig:
    input_dim: int = 300
    d_model: int = 300
    heads: int = 5
    layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    output_dim: int = 512
    # time: sinusoidal positions over the steps (default); batch_slot: the official code's bug, position b added
    # to every step of batch row b (see the module docstring)
    positions: str = "time"


#: ``encoder_args.positions`` values of ``seq_transformer``
POSITION_MODES = ("time", "batch_slot")


@register_encoder("seq_transformer", SeqTransformerConfig, input_kind="vector")
class SeqTransformerEncoder(ModalityEncoder):
    """Vector sequence -> transformer encoder -> masked mean over time -> Linear."""

    def __init__(self, cfg: SeqTransformerConfig):
        super().__init__()
        if cfg.d_model % cfg.heads:
            raise ValueError(f"seq_transformer.d_model ({cfg.d_model}) must be divisible by heads ({cfg.heads})")
        if cfg.positions not in POSITION_MODES:
            raise ValueError(f"seq_transformer.positions must be one of {', '.join(POSITION_MODES)}, "
                             f"got {cfg.positions!r}")
        self.positions = cfg.positions
        self.input_proj = nn.Identity() if cfg.input_dim == cfg.d_model else nn.Linear(cfg.input_dim, cfg.d_model)
        self.position_dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, cfg.dim_feedforward, cfg.dropout,
                                           batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.output_dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.d_model, cfg.output_dim)
        self.input_dim, self.d_model = cfg.input_dim, cfg.d_model
        self.output_dim = cfg.output_dim

    def position_table(self, batch: int, steps: int, device: torch.device | None = None) -> torch.Tensor:
        """What is added to the ``(B, T, d_model)`` input: ``(T, d_model)`` positions over time (``time``), or
        ``(B, 1, d_model)``, row ``b`` the position ``b`` at every step (``batch_slot``, the official bug)."""
        if self.positions == "batch_slot":
            return sinusoidal_positions(batch, self.d_model, device).unsqueeze(1)
        return sinusoidal_positions(steps, self.d_model, device)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        if x.dim() != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(f"seq_transformer expects (B, T, {self.input_dim}) vector sequences, "
                             f"got shape {tuple(x.shape)}")
        batch, steps = x.shape[:2]
        valid = length_mask(lengths, steps, batch, x.device)
        h = self.input_proj(x) + self.position_table(batch, steps, x.device).to(x.dtype)
        h = self.transformer(self.position_dropout(h), src_key_padding_mask=~valid)
        seq = self.out(self.output_dropout(h))
        return EncoderOutput(masked_mean(seq, valid), seq, valid.sum(1))
