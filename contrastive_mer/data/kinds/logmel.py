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

#: ``preprocess.db_ref`` values: natural log (``none``) or dB relative to the clip's maximum (``clip_max``)
DB_REFS = ("none", "clip_max")


def power_to_db_clip_max(power: torch.Tensor, top_db: float = 80.0, amin: float = 1e-10) -> torch.Tensor:
    """Mel power ``(n_mels, T)`` -> dB relative to its maximum over the whole clip, floored at ``-top_db``: the
    values of ``librosa.power_to_db(power, ref=np.max, amin=1e-10, top_db=top_db)``."""
    db = 10.0 * torch.log10(power.clamp(min=amin))
    return (db - db.max()).clamp(min=-top_db)


def logmel_settings(cfg: LogMelConfig) -> dict[str, Any]:
    """The settings that determine a log-mel output (cache keys): the dB options only when they are on, so the
    keys of natural-log caches written before the options existed stay valid."""
    out = dict(vars(cfg))
    if cfg.db_ref == "none":
        out.pop("db_ref")
        out.pop("top_db")
    return out


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
    # none: natural log, log(mel + 1e-6); clip_max: dB relative to the whole clip's maximum, floored at -top_db,
    # computed here, before any windowing (the official librosa.power_to_db(S, ref=np.max))
    db_ref: str = "none"
    top_db: float = 80.0

    def __post_init__(self) -> None:
        if self.db_ref not in DB_REFS:
            raise ValueError(f"db_ref must be one of {', '.join(DB_REFS)}, got {self.db_ref!r}")
        if self.top_db <= 0:
            raise ValueError(f"top_db must be > 0, got {self.top_db}")
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
            power = self.mel(wave)
            if self.cfg.db_ref == "clip_max":
                return power_to_db_clip_max(power, self.cfg.top_db)
            return torch.log(power + 1e-6)

    def settings(self) -> dict[str, Any]:
        return logmel_settings(self.cfg)

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
