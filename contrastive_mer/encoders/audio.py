"""Audio encoders over log-mel spectrograms ``(B, n_mels, T)``.

``tcn``: the paper's temporal convolutional network (Conv-TasNet family): a 1x1 bottleneck, then repeats of
blocks ``1x1 conv -> PReLU -> gLN -> depthwise dilated conv -> PReLU -> gLN -> 1x1 conv`` with residual
connections and dilation doubling per block, then a per-frame linear layer and masked mean pooling.
``cnn``: a small 2-D CNN over the spectrogram, pooled over frequency, then over time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from contrastive_mer.encoders.base import EncoderOutput, ModalityEncoder, length_mask, pool, temporal_pool
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

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.norm1(self.act1(self.expand(x)), mask)
        y = self.norm2(self.act2(self.depthwise(y)), mask)
        return x + self.project(y) * mask.unsqueeze(1).to(x.dtype)


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


@register_encoder("tcn", TCNConfig, input_kind="logmel")
class TCNAudioEncoder(ModalityEncoder):
    """Temporal convolutional network over log-mel frames (the paper's audio encoder family)."""

    def __init__(self, cfg: TCNConfig):
        super().__init__()
        if cfg.kernel_size % 2 == 0:
            raise ValueError(f"tcn.kernel_size must be odd, got {cfg.kernel_size}")
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
        h = self.bottleneck(self.input_norm(x, mask)) * mask.unsqueeze(1).to(x.dtype)
        for block in self.blocks:
            h = block(h, mask)
        seq = self.frame_proj(h.transpose(1, 2))  # (B, T, D)
        lens = mask.sum(1)
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
