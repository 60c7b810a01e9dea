"""Audio encoders over log-mel spectrograms ``(B, n_mels, T)``.

``tcn``: the paper's temporal convolutional network (Conv-TasNet family): a 1x1 bottleneck, then repeats of
blocks ``1x1 conv -> PReLU -> gLN -> depthwise dilated conv -> PReLU -> gLN -> 1x1 conv`` with residual
connections and dilation doubling per block, then a per-frame linear layer and masked mean pooling.
Options reproduce the official code's details (all off by default): ``db_scale`` (log-mel in dB relative to the
clip's maximum, floored at ``-top_db``, as ``librosa.power_to_db(S, ref=np.max)``; under the input gLN this is an
affine change per clip except for the floor), ``dropout`` (after the bottleneck and on every block's residual
branch; the official 0.1), ``output_prelu`` (PReLU before the output layer; with mean pooling the clip feature
is ``Linear(PReLU(mean_t h))`` as officially, the frame sequence ``Linear(PReLU(h_t))``); the official widths
are ``bottleneck: 64, hidden: 128``.
``cnn``: a small 2-D CNN over the spectrogram, pooled over frequency, then over time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from contrastive_mer.encoders.base import (
    EncoderOutput,
    ModalityEncoder,
    length_mask,
    masked_mean,
    pool,
    temporal_pool,
)
from contrastive_mer.encoders.registry import register_encoder


class MaskedGlobalLayerNorm(nn.Module):
    """Global layer norm (Conv-TasNet's gLN) over channels and valid time steps of ``(B, C, T)``."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        xm = x * m
        count = (m.sum(dim=(1, 2), keepdim=True) * x.shape[1]).clamp(min=1.0)
        mean = xm.sum(dim=(1, 2), keepdim=True) / count
        var = ((xm * x).sum(dim=(1, 2), keepdim=True) / count - mean * mean).clamp(min=0.0)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return (y * self.gamma + self.beta) * m


class TemporalBlock(nn.Module):
    """One Conv-TasNet block with a residual connection; padded steps stay zero."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation: int):
        super().__init__()
        self.expand = nn.Conv1d(channels, hidden, 1)
        self.act1 = nn.PReLU()
        self.norm1 = MaskedGlobalLayerNorm(hidden)
        self.depthwise = nn.Conv1d(hidden, hidden, kernel_size, dilation=dilation,
                                   padding=dilation * (kernel_size - 1) // 2, groups=hidden)
        self.act2 = nn.PReLU()
        self.norm2 = MaskedGlobalLayerNorm(hidden)
        self.project = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, dropout: nn.Module | None = None) -> torch.Tensor:
        y = self.norm1(self.act1(self.expand(x)), mask)
        y = self.norm2(self.act2(self.depthwise(y)), mask)
        residual = self.project(y) * mask.unsqueeze(1).to(x.dtype)
        return x + (residual if dropout is None else dropout(residual))


@dataclass
class TCNConfig:
    n_mels: int = 128
    bottleneck: int = 128
    hidden: int = 256
    kernel_size: int = 3
    blocks: int = 5
    repeats: int = 2
    output_dim: int = 512
    pooling: str = "mean"
    db_scale: bool = False
    top_db: float = 80.0
    dropout: float = 0.0
    output_prelu: bool = False


def db_relative_to_max(x: torch.Tensor, mask: torch.Tensor, top_db: float = 80.0) -> torch.Tensor:
    """Natural-log mel power ``(B, n_mels, T)`` -> dB relative to each clip's maximum over its valid frames,
    floored at ``-top_db``; padded frames become 0."""
    valid = mask.unsqueeze(1)
    peak = x.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
    db = (10.0 / math.log(10.0)) * (x - peak)
    return db.clamp(min=-top_db).masked_fill(~valid, 0.0)


@register_encoder("tcn", TCNConfig, input_kind="logmel")
class TCNAudioEncoder(ModalityEncoder):
    """Temporal convolutional network over log-mel frames (the paper's audio encoder family)."""

    def __init__(self, cfg: TCNConfig):
        super().__init__()
        if cfg.kernel_size % 2 == 0:
            raise ValueError(f"tcn.kernel_size must be odd, got {cfg.kernel_size}")
        if not 0.0 <= cfg.dropout < 1.0 or cfg.top_db <= 0:
            raise ValueError(f"tcn.dropout must be in [0, 1) and tcn.top_db > 0, got {cfg.dropout}, {cfg.top_db}")
        self.db_scale, self.top_db = cfg.db_scale, cfg.top_db
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else None
        self.output_act = nn.PReLU() if cfg.output_prelu else None
        self.input_norm = MaskedGlobalLayerNorm(cfg.n_mels)
        self.bottleneck = nn.Conv1d(cfg.n_mels, cfg.bottleneck, 1)
        self.blocks = nn.ModuleList(
            TemporalBlock(cfg.bottleneck, cfg.hidden, cfg.kernel_size, 2 ** b)
            for _ in range(cfg.repeats) for b in range(cfg.blocks))
        self.frame_proj = nn.Linear(cfg.bottleneck, cfg.output_dim)
        self.pooler = temporal_pool(cfg.pooling, cfg.output_dim)
        self.output_dim = cfg.output_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        batch, _, steps = x.shape
        mask = length_mask(lengths, steps, batch, x.device)
        if self.db_scale:
            x = db_relative_to_max(x, mask, self.top_db)
        h = self.bottleneck(self.input_norm(x, mask)) * mask.unsqueeze(1).to(x.dtype)
        if self.dropout is not None:
            h = self.dropout(h)
        for block in self.blocks:
            h = block(h, mask, self.dropout)
        frames = h.transpose(1, 2)  # (B, T, C)
        lens = mask.sum(1)
        if self.output_act is None:
            seq = self.frame_proj(frames)  # (B, T, D)
            return EncoderOutput(pool(seq, mask, self.pooler), seq, lens)
        seq = self.frame_proj(self.output_act(frames))
        if self.pooler is None:  # the official order: mean over time, PReLU, output layer
            return EncoderOutput(self.frame_proj(self.output_act(masked_mean(frames, mask))), seq, lens)
        return EncoderOutput(pool(seq, mask, self.pooler), seq, lens)


@dataclass
class AudioCNNConfig:
    n_mels: int = 128
    channels: tuple[int, ...] = (32, 64, 128)
    output_dim: int = 512
    pooling: str = "mean"


@register_encoder("audio_cnn", AudioCNNConfig, input_kind="logmel")
class AudioCNNEncoder(ModalityEncoder):
    """A small 2-D CNN over the spectrogram; each stage halves frequency and time."""

    def __init__(self, cfg: AudioCNNConfig):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for ch in cfg.channels:
            layers += [nn.Conv2d(in_ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(), nn.MaxPool2d(2)]
            in_ch = ch
        self.body = nn.Sequential(*layers)
        self.stride = 2 ** len(cfg.channels)
        self.frame_proj = nn.Linear(in_ch, cfg.output_dim)
        self.pooler = temporal_pool(cfg.pooling, cfg.output_dim)
        self.output_dim = cfg.output_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        h = self.body(x.unsqueeze(1)).mean(dim=2)  # (B, C, T')
        steps = h.shape[-1]
        lens = None if lengths is None else (lengths + self.stride - 1) // self.stride
        mask = length_mask(lens, steps, x.shape[0], x.device)
        seq = self.frame_proj(h.transpose(1, 2))
        return EncoderOutput(pool(seq, mask, self.pooler), seq, mask.sum(1))
