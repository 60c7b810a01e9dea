"""``waveform``: a mono waveform ``(N,)`` at the encoder's sample rate, as it is, for speech backbones
(``hf_audio``); the backbone applies its own feature-extractor normalisation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastive_mer.data.kinds.base import INPUT_KINDS, InputKind, load_waveform
from contrastive_mer.data.transforms import Preprocessor


@dataclass
class WaveformConfig:
    sample_rate: int = 16000
    max_seconds: float | None = 8.0


class Waveform(Preprocessor):
    """Waveform ``(N,)`` -> float32 ``(N,)``, cut at ``max_seconds``; padded with zeros in batches."""

    kind = "waveform"
    time_axis = 0

    def __init__(self, cfg: WaveformConfig):
        self.cfg = cfg

    def __call__(self, raw: Any) -> torch.Tensor:
        wave = torch.as_tensor(np.asarray(raw, dtype=np.float32))
        if wave.dim() != 1:
            raise ValueError(f"audio must be a mono waveform (N,), got shape {tuple(wave.shape)}")
        limit = self.input_samples()
        return wave[:limit] if limit else wave

    def input_samples(self) -> int | None:
        return int(self.cfg.max_seconds * self.cfg.sample_rate) if self.cfg.max_seconds else None

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(1)


class WaveformKind(InputKind):
    """Not standardised (the backbone normalises each clip); windows cut in samples; baseline: none."""

    name = "waveform"
    config_cls = WaveformConfig
    preprocessor_cls = Waveform
    derived = {"sample_rate": "sample_rate"}
    waveform = True

    def baseline(self, prep: Preprocessor, tensor: torch.Tensor) -> np.ndarray:
        """Mean and standard deviation of the samples (a waveform has no feature of its own; the raw-baseline
        column of a backbone is the ``hf_audio_cached`` kind's)."""
        return np.array([float(tensor.mean()), float(tensor.std(unbiased=False))], dtype=np.float32)

    def decode_path(self, prep: Preprocessor, path: Path) -> Any:
        return load_waveform(prep, path)


KIND = INPUT_KINDS.register("waveform", WaveformKind())
