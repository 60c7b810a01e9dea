"""Training-only augmentation of batched inputs: SpecAugment-style masking of log-mel spectrograms.

Park et al. (2019): ``freq_masks`` bands of up to ``freq_width`` mel bins and ``time_masks`` spans of up to
``time_width`` frames are set to the spectrogram's mean, independently for every clip (torchaudio's
``mask_along_axis_iid``). Applied by :class:`~contrastive_mer.model.module.PairwiseContrastiveModule` to training
batches only; validation, extraction and probes see the inputs as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SpecAugmentConfig:
    """``model.modalities.<m>.augment`` for log-mel modalities (all zero: off)."""

    freq_masks: int = 0
    freq_width: int = 0
    time_masks: int = 0
    time_width: int = 0

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def active(self) -> bool:
        return (self.freq_masks > 0 and self.freq_width > 0) or (self.time_masks > 0 and self.time_width > 0)


def spec_augment(x: torch.Tensor, cfg: SpecAugmentConfig) -> torch.Tensor:
    """Masked copy of a log-mel batch ``(B, n_mels, T)``; masks are drawn from torch's global generator."""
    if x.dim() != 3:
        raise ValueError(f"spec_augment expects (batch, n_mels, time), got shape {tuple(x.shape)}")
    import torchaudio.functional as AF

    out = x.unsqueeze(1)
    value = float(x.mean())
    for _ in range(cfg.freq_masks if cfg.freq_width > 0 else 0):
        out = AF.mask_along_axis_iid(out, min(cfg.freq_width, x.shape[1]), value, axis=2)
    for _ in range(cfg.time_masks if cfg.time_width > 0 else 0):
        out = AF.mask_along_axis_iid(out, min(cfg.time_width, x.shape[2]), value, axis=3)
    return out.squeeze(1)
