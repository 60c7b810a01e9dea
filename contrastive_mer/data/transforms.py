"""Per-modality preprocessing (runs in DataLoader workers) and padding collation.

A preprocessor turns one raw sample input (waveform, frames, text, vector) into a tensor and knows how to pad a
list of them into a batch. Which preprocessor a modality gets follows from its encoder's input kind:
``logmel`` (waveform -> log-mel), ``frames`` (uint8 frames -> normalised float frames), ``tokens`` (text -> ids),
``vector`` (pre-extracted features). A modality may name another preprocessor that produces the encoder's input
kind (``model.modalities.<m>.input``): ``opensmile`` (waveform -> openSMILE functionals or frame-level
descriptors) and ``logmel_stats`` (waveform -> per-band log-mel mean and std) feed vector encoders.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from contrastive_mer.data.mel import check_mel_geometry


class Preprocessor(ABC):
    """Base class: ``__call__(raw) -> Tensor``; ``collate(items) -> (padded, lengths or None)``."""

    #: True when the tensor has a time axis that is padded in batches
    has_time: bool = True
    #: the adapter input this preprocessor reads (None: the modality's own name)
    source: str | None = None

    @abstractmethod
    def __call__(self, raw: Any) -> torch.Tensor:
        """Prepare one raw input."""

    @abstractmethod
    def placeholder(self) -> torch.Tensor:
        """A minimal valid tensor standing in for an absent input."""

    def settings(self) -> dict[str, Any]:
        """What determines the output (used as part of cache keys)."""
        return dict(vars(self.cfg)) if hasattr(self, "cfg") else {}

    def input_samples(self) -> int | None:
        """The most samples of a waveform input this preprocessor reads (its first ones); None: all of them.
        Decoding stops there (:mod:`contrastive_mer.data.decode_window`)."""
        return None

    def collate(self, items: Sequence[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
        filled = [self.placeholder() if t is None else t for t in items]
        if not self.has_time:
            return torch.stack(filled), None
        return pad_time(filled, axis=self.time_axis, value=self.pad_value)

    time_axis: int = 0
    pad_value: float = 0.0


def pad_time(items: Sequence[torch.Tensor], axis: int, value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad tensors along ``axis`` to the longest and stack them; returns ``(batch, lengths)``."""
    lengths = torch.tensor([t.shape[axis] for t in items], dtype=torch.long)
    longest = int(lengths.max())
    padded = []
    for t in items:
        extra = longest - t.shape[axis]
        if extra:
            pad = [0, 0] * (t.dim() - 1 - axis) + [0, extra]
            t = F.pad(t, pad, value=value)
        padded.append(t)
    return torch.stack(padded), lengths


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
        check_mel_geometry(self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max, self.win_length)


class LogMel(Preprocessor):
    """Waveform ``(N,)`` -> log-mel ``(n_mels, T)`` with torchaudio (25 ms window, 10 ms hop by default)."""

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


@dataclass
class FramesConfig:
    num_frames: int = 8
    size: int = 112
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class Frames(Preprocessor):
    """uint8 frames ``(T, H, W, 3)`` -> normalised float ``(T', 3, size, size)``, ``T'`` <= ``num_frames``
    sampled uniformly."""

    def __init__(self, cfg: FramesConfig):
        self.cfg = cfg
        self.mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.std).view(1, 3, 1, 1)

    def __call__(self, raw: Any) -> torch.Tensor:
        frames = torch.as_tensor(np.asarray(raw))
        if frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"video must be frames (T, H, W, 3), got shape {tuple(frames.shape)}")
        if frames.shape[0] > self.cfg.num_frames:
            keep = torch.linspace(0, frames.shape[0] - 1, self.cfg.num_frames).round().long()
            frames = frames[keep]
        x = frames.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-2:] != (self.cfg.size, self.cfg.size):
            x = F.interpolate(x, size=(self.cfg.size, self.cfg.size), mode="bilinear", align_corners=False,
                              antialias=True)
        return (x - self.mean) / self.std

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(1, 3, self.cfg.size, self.cfg.size)


@dataclass
class TokensConfig:
    model_path: str | None = None
    vocab_size: int = 4096
    max_length: int = 64


class Tokens(Preprocessor):
    """Text -> token ids ``(L,)`` with the tokenizer that matches the text encoder."""

    def __init__(self, cfg: TokensConfig):
        from contrastive_mer.encoders.text import build_tokenizer

        self.cfg = cfg
        self.tokenizer = build_tokenizer(cfg.model_path, cfg.vocab_size, cfg.max_length)
        self.pad_value = self.tokenizer.pad_id

    def __call__(self, raw: Any) -> torch.Tensor:
        if not isinstance(raw, str):
            raise ValueError(f"text must be a str, got {type(raw).__name__}")
        return torch.tensor(self.tokenizer.encode(raw), dtype=torch.long)

    def placeholder(self) -> torch.Tensor:
        return torch.tensor(self.tokenizer.encode(""), dtype=torch.long)


@dataclass
class VectorConfig:
    input_dim: int = 35
    sequence: bool = False


class Vector(Preprocessor):
    """Pre-extracted features: ``(D,)`` per clip, or ``(T, D)`` frame sequences (padded in time)."""

    def __init__(self, cfg: VectorConfig):
        self.cfg = cfg
        self.has_time = cfg.sequence

    def __call__(self, raw: Any) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(raw, dtype=np.float32))
        expected = 2 if self.has_time else 1
        if x.dim() != expected or x.shape[-1] != self.cfg.input_dim:
            shape = "(T, D)" if self.has_time else "(D,)"
            raise ValueError(f"feature vector must be {shape} with D={self.cfg.input_dim}, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("feature vector holds NaN or Inf")
        return x

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(1, self.cfg.input_dim) if self.has_time else torch.zeros(self.cfg.input_dim)


@dataclass
class OpenSmileConfig:
    """openSMILE features of the waveform: ``functionals`` (a vector per clip) or ``lld`` (frames, 10 ms)."""

    feature_set: str = "eGeMAPSv02"
    level: str = "functionals"
    sample_rate: int = 16000
    max_seconds: float | None = 8.0
    input_dim: int = 88


class OpenSmile(Preprocessor):
    """Waveform ``(N,)`` -> openSMILE functionals ``(D,)`` or low-level descriptors ``(T, D)``
    (:mod:`contrastive_mer.data.opensmile_features`); feeds encoders that take vectors. The feature set and
    level are part of :meth:`settings`, hence of the disk-cache keys."""

    def __init__(self, cfg: OpenSmileConfig):
        from contrastive_mer.data.opensmile_features import OpenSmileExtractor, feature_dim

        dim = feature_dim(cfg.feature_set, cfg.level)
        if cfg.input_dim != dim:
            raise ValueError(f"openSMILE {cfg.feature_set} {cfg.level} has {dim} values per "
                             f"{'clip' if cfg.level == 'functionals' else 'frame'}; the encoder expects "
                             f"input_dim={cfg.input_dim}")
        self.cfg = cfg
        self.has_time = cfg.level == "lld"
        self.extract = OpenSmileExtractor(cfg.feature_set, cfg.level)

    def settings(self) -> dict[str, Any]:
        return {"kind": "opensmile", **vars(self.cfg)}

    def __call__(self, raw: Any) -> torch.Tensor:
        wave = np.asarray(raw, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"audio must be a mono waveform (N,), got shape {wave.shape}")
        if self.cfg.max_seconds:
            wave = wave[: int(self.cfg.max_seconds * self.cfg.sample_rate)]
        return torch.from_numpy(self.extract(wave, self.cfg.sample_rate))

    def input_samples(self) -> int | None:
        return int(self.cfg.max_seconds * self.cfg.sample_rate) if self.cfg.max_seconds else None

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(1, self.cfg.input_dim) if self.has_time else torch.zeros(self.cfg.input_dim)


@dataclass
class LogMelStatsConfig(LogMelConfig):
    """A log-mel spectrogram pooled to the mean and standard deviation of every band: ``input_dim = 2 n_mels``."""

    input_dim: int = 256


class LogMelStats(Preprocessor):
    """Waveform ``(N,)`` -> ``(2 n_mels,)``: mean and standard deviation over time of every log-mel band (the
    pooled statistics a speech-emotion baseline uses), for vector encoders."""

    has_time = False

    def __init__(self, cfg: LogMelStatsConfig):
        if cfg.input_dim != 2 * cfg.n_mels:
            raise ValueError(f"log-mel statistics of {cfg.n_mels} bands have {2 * cfg.n_mels} values; the encoder "
                             f"expects input_dim={cfg.input_dim}")
        self.cfg = cfg
        self.logmel = LogMel(cfg)

    def settings(self) -> dict[str, Any]:
        return {"kind": "logmel_stats", **vars(self.cfg)}

    def __call__(self, raw: Any) -> torch.Tensor:
        mel = self.logmel(raw)
        return torch.cat([mel.mean(1), mel.std(1, unbiased=False)])

    def input_samples(self) -> int | None:
        return self.logmel.input_samples()

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.cfg.input_dim)


PREPROCESSORS: dict[str, tuple[type, type]] = {
    "logmel": (LogMelConfig, LogMel),
    "frames": (FramesConfig, Frames),
    "tokens": (TokensConfig, Tokens),
    "vector": (VectorConfig, Vector),
    "opensmile": (OpenSmileConfig, OpenSmile),
    "logmel_stats": (LogMelStatsConfig, LogMelStats),
}
#: preprocessor kind -> the encoder input kind its tensors are (a kind not listed produces itself)
PRODUCES = {"opensmile": "vector", "logmel_stats": "vector"}
