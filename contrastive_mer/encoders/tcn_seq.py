"""``tcn_seq``: the paper's temporal convolutional network (``tcn``) over frame sequences of vectors
``(B, T, D_in)`` (a speech backbone's cached layers, ``hf_audio_cached`` with ``sequence: true``; openSMILE
low-level descriptors; COVAREP frames) instead of log-mel spectrograms.

The network is :class:`~contrastive_mer.encoders.audio.TCNAudioEncoder` with ``input_dim`` channels in place of
``n_mels``: the frames are read channel-first ``(B, D_in, T)``, then input gLN over the valid frames, bottleneck,
dilated blocks, per-frame output layer and masked pooling, padding invisible as in ``tcn``. The log-mel-only
options (``db_scale``, SpecAugment) do not apply. Per-clip vectors ``(B, D_in)`` have no time axis to convolve:
they are refused with the setting to change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from contrastive_mer.encoders.audio import TCNAudioEncoder, TCNConfig
from contrastive_mer.encoders.base import EncoderOutput
from contrastive_mer.encoders.registry import register_encoder


@dataclass
class TCNSeqConfig:
    input_dim: int = 768
    bottleneck: int = 128
    hidden: int = 256
    kernel_size: int = 3
    blocks: int = 5
    repeats: int = 2
    output_dim: int = 512
    pooling: str = "mean"
    dropout: float = 0.0
    output_prelu: bool = False


@register_encoder("tcn_seq", TCNSeqConfig, input_kind="vector")
class TCNSeqEncoder(TCNAudioEncoder):
    """``tcn`` over ``(B, T, D_in)`` vector sequences (channels last)."""

    def __init__(self, cfg: TCNSeqConfig):
        super().__init__(TCNConfig(n_mels=cfg.input_dim, bottleneck=cfg.bottleneck, hidden=cfg.hidden,
                                   kernel_size=cfg.kernel_size, blocks=cfg.blocks, repeats=cfg.repeats,
                                   output_dim=cfg.output_dim, pooling=cfg.pooling, dropout=cfg.dropout,
                                   output_prelu=cfg.output_prelu))
        self.input_dim = cfg.input_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        if x.dim() != 3 or x.shape[-1] != self.input_dim:
            hint = " (per-clip vectors: set preprocess.sequence: true for frame sequences)" if x.dim() == 2 else ""
            raise ValueError(f"tcn_seq expects (B, T, {self.input_dim}) vector sequences, got shape "
                             f"{tuple(x.shape)}{hint}")
        return super().forward(x.transpose(1, 2), lengths)
