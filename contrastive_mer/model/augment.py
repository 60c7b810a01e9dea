"""Training-only augmentation of batched inputs: SpecAugment-style masking of log-mel spectrograms, and
SCARF-style corruption plus Gaussian noise for vector inputs.

Park et al. (2019): ``freq_masks`` bands of up to ``freq_width`` mel bins and ``time_masks`` spans of up to
``time_width`` frames are set to the spectrogram's mean, independently for every clip (torchaudio's
``mask_along_axis_iid``). Applied by :class:`~contrastive_mer.model.module.PairwiseContrastiveModule` to training
batches only; validation, extraction and probes see the inputs as they are.

SCARF (Bahri et al., ICLR 2022): each input value of a clip is, with probability ``corrupt``, replaced by the value
at the same position of a clip drawn at random from the batch (the empirical marginal of that feature), so the two
modalities of a pair still agree on most of what they hold while no single feature can be memorised.
"""

from __future__ import annotations

import torch

from contrastive_mer.config import ConfigError, InputAugmentConfig, SpecAugmentConfig, container_dict

__all__ = ["InputAugmentConfig", "SpecAugmentConfig", "check_augment", "check_input_augment", "input_augment",
           "spec_augment"]


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


def input_augment(x: torch.Tensor, present: torch.Tensor, cfg: InputAugmentConfig,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupted copy of a float batch ``(B, ...)``: SCARF replacement of a ``cfg.corrupt`` fraction of values by
    the same position of a random clip among the ``present`` ones, then Gaussian noise of sd ``cfg.noise``. Rows
    of absent clips stay as they are (zeros); draws come from ``generator`` (torch's global one when None)."""
    if not torch.is_floating_point(x):
        raise ValueError(f"input_augment needs float inputs, got {x.dtype}")
    donors = torch.nonzero(present, as_tuple=False).flatten()
    out = x
    if cfg.corrupt > 0 and donors.numel() >= 2:
        mask = torch.rand(x.shape, generator=generator, device=x.device) < cfg.corrupt
        index = donors.to(x.device)[torch.randint(donors.numel(), x.shape, generator=generator, device=x.device)]
        out = torch.where(mask, x.gather(0, index), out)
    if cfg.noise > 0:
        out = out + cfg.noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    keep = present.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
    return torch.where(keep, out, x)


def check_input_augment(node: object, kind: str, key: str) -> None:
    """``model.modalities.<m>.input_augment`` (``key``): ``corrupt`` in [0, 1), ``noise`` finite and >= 0, and
    float inputs only (not token ids). ConfigError names the key."""
    try:
        cfg = InputAugmentConfig(**container_dict(node, key))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key.rsplit('.input_augment', 1)[0]}.{err}") from None
    if cfg.active and kind == "tokens":
        raise ConfigError(f"{key}: token ids cannot be corrupted or noised (float inputs only)")
