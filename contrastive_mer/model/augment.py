"""Training-only augmentation of batched inputs: SpecAugment-style masking of log-mel spectrograms.

Park et al. (2019): ``freq_masks`` bands of up to ``freq_width`` mel bins and ``time_masks`` spans of up to
``time_width`` frames are set to the spectrogram's mean, independently for every clip (torchaudio's
``mask_along_axis_iid``). Applied by :class:`~contrastive_mer.model.module.PairwiseContrastiveModule` to training
batches only; validation, extraction and probes see the inputs as they are.
"""

from __future__ import annotations

import torch

from contrastive_mer.config import ConfigError, SpecAugmentConfig, container_dict

__all__ = ["SpecAugmentConfig", "check_augment", "spec_augment"]


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


def check_augment(node: object, kind: str, key: str) -> None:
    """``model.modalities.<m>.augment`` (``key``) for a modality whose input kind is ``kind``: counts >= 0, and
    masking only on log-mel inputs. ConfigError names the key."""
    try:
        augment = SpecAugmentConfig(**container_dict(node, key))
    except ValueError as err:
        raise ConfigError(f"{key.rsplit('.augment', 1)[0]}.{err}") from None
    if augment.active and kind != "logmel":
        raise ConfigError(f"{key}: SpecAugment masks log-mel inputs only")
