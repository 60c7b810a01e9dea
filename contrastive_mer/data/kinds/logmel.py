"""``logmel``: waveform ``(N,)`` -> log-mel spectrogram ``(n_mels, T)``, for audio encoders."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastive_mer.data.kinds.base import INPUT_KINDS, InputKind, load_waveform, mean_std_over_time
from contrastive_mer.data.mel import check_mel_geometry
from contrastive_mer.data.transforms import Preprocessor


@dataclass
class LogMelConfig:
    """Log-mel settings; ``win_length`` (None: ``n_fft``) is the analysis window, zero-padded to ``n_fft``.
    Settings that leave a mel filter without an FFT bin are refused (:mod:`~contrastive_mer.data.mel`)."""

    sample_rate: int = 16000
    n_mels: int = 128
    n_fft: int = 400
    hop_length: int = 160
    win_length: int | None = None
    f_min: float = 0.0
    f_max: float | None = None
    max_seconds: float | None = 8.0

    def __post_init__(self) -> None:
        check_mel_geometry(self.sample_rate, self.n_fft, self.n_mels, f_min=self.f_min, f_max=self.f_max,
                           win_length=self.win_length)


class LogMel(Preprocessor):
    """Waveform ``(N,)`` -> log-mel ``(n_mels, T)`` with torchaudio (25 ms window, 10 ms hop by default)."""

    kind = "logmel"
    time_axis = 1

    def __init__(self, cfg: LogMelConfig):
        import torchaudio

        self.cfg = cfg
        with warnings.catch_warnings():  # empty filters: LogMelConfig already said so, with the fix
            warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
                n_mels=cfg.n_mels, f_min=cfg.f_min, f_max=cfg.f_max, power=2.0)

    def __call__(self, raw: Any) -> torch.Tensor:
        wave = torch.as_tensor(np.asarray(raw, dtype=np.float32))
        if wave.dim() != 1:
            raise ValueError(f"audio must be a mono waveform (N,), got shape {tuple(wave.shape)}")
        if self.cfg.max_seconds:
            wave = wave[: int(self.cfg.max_seconds * self.cfg.sample_rate)]
        with torch.no_grad():
            return torch.log(self.mel(wave) + 1e-6)

    def input_samples(self) -> int | None:
        return int(self.cfg.max_seconds * self.cfg.sample_rate) if self.cfg.max_seconds else None

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.cfg.n_mels, 1)


def logmel_stats(logmel: torch.Tensor) -> np.ndarray:
    """``(n_mels, T)`` -> mean and std over time of every band, ``(2 n_mels,)``."""
    return mean_std_over_time(logmel, 1)


class LogMelKind(InputKind):
    """Standardised per band (one observation per frame); windows cut in frames; baseline: band statistics."""

    name = "logmel"
    config_cls = LogMelConfig
    preprocessor_cls = LogMel
    derived = {"n_mels": "n_mels"}
    standardisable = True
    waveform = True

    def to_rows(self, prep: Preprocessor, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.T

    def from_rows(self, prep: Preprocessor, rows: torch.Tensor) -> torch.Tensor:
        return rows.T

    def baseline(self, prep: Preprocessor, tensor: torch.Tensor) -> np.ndarray:
        return logmel_stats(tensor)

    def covers_baselines(self, prep: Preprocessor) -> set[str]:
        return {"logmel_stats"}

    def decode_path(self, prep: Preprocessor, path: Path) -> Any:
        return load_waveform(prep, path)


KIND = INPUT_KINDS.register("logmel", LogMelKind())
