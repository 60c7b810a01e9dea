"""``logmel_stats``: waveform ``(N,)`` -> ``(2 n_mels,)``, the mean and standard deviation over time of every
log-mel band (the pooled statistics a speech-emotion baseline uses), for vector encoders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from contrastive_mer.data.kinds.base import (
    INPUT_KINDS,
    load_waveform,
)
from contrastive_mer.data.kinds.logmel import LogMel, LogMelConfig, logmel_settings
from contrastive_mer.data.kinds.vector import VectorKind
from contrastive_mer.data.transforms import Preprocessor


@dataclass
class LogMelStatsConfig(LogMelConfig):
    """A log-mel spectrogram pooled to the mean and standard deviation of every band: ``input_dim = 2 n_mels``."""

    input_dim: int = 256


class LogMelStats(Preprocessor):
    """Waveform ``(N,)`` -> ``(2 n_mels,)``: mean and standard deviation over time of every log-mel band."""

    kind = "logmel_stats"
    has_time = False

    def __init__(self, cfg: LogMelStatsConfig):
        if cfg.input_dim != 2 * cfg.n_mels:
            raise ValueError(f"log-mel statistics of {cfg.n_mels} bands have {2 * cfg.n_mels} values; the encoder "
                             f"expects input_dim={cfg.input_dim}")
        self.cfg = cfg
        self.logmel = LogMel(cfg)

    def settings(self) -> dict[str, Any]:
        return {"kind": "logmel_stats", **logmel_settings(self.cfg)}

    def __call__(self, raw: Any) -> torch.Tensor:
        mel = self.logmel(raw)
        return torch.cat([mel.mean(1), mel.std(1, unbiased=False)])

    def input_samples(self) -> int | None:
        return self.logmel.input_samples()

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.cfg.input_dim)


class LogMelStatsKind(VectorKind):
    """Feeds vector encoders; one vector per clip (standardised per dimension over clips, never windowed);
    baseline: itself; a path is an audio file."""

    name = "logmel_stats"
    config_cls = LogMelStatsConfig
    preprocessor_cls = LogMelStats
    produces = "vector"
    derived = {"input_dim": "input_dim"}
    standardisable = True
    waveform = True

    def covers_baselines(self, prep: Preprocessor) -> set[str]:
        return {"logmel_stats"}

    def decode_path(self, prep: Preprocessor, path: Path) -> Any:
        return load_waveform(prep, path)


KIND = INPUT_KINDS.register("logmel_stats", LogMelStatsKind())
