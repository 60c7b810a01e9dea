"""``opensmile``: waveform ``(N,)`` -> openSMILE functionals ``(D,)`` or low-level descriptors ``(T, D)``, for
encoders that take vectors (:mod:`contrastive_mer.data.opensmile_features`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastive_mer.data.kinds.base import (
    INPUT_KINDS,
    load_waveform,
)
from contrastive_mer.data.kinds.vector import VectorKind
from contrastive_mer.data.transforms import Preprocessor


@dataclass
class OpenSmileConfig:
    """openSMILE features of the waveform: ``functionals`` (a vector per clip) or ``lld`` (frames, 10 ms)."""

    feature_set: str = "eGeMAPSv02"
    level: str = "functionals"
    sample_rate: int = 16000
    max_seconds: float | None = 8.0
    input_dim: int = 88


class OpenSmile(Preprocessor):
    """Waveform ``(N,)`` -> openSMILE functionals ``(D,)`` or low-level descriptors ``(T, D)``. The feature set
    and level are part of :meth:`settings`, hence of the disk-cache keys."""

    kind = "opensmile"

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


class OpenSmileKind(VectorKind):
    """Feeds vector encoders; standardised, windowed and baselined like a vector; a path is an audio file."""

    name = "opensmile"
    config_cls = OpenSmileConfig
    preprocessor_cls = OpenSmile
    produces = "vector"
    derived = {"input_dim": "input_dim"}
    standardisable = True
    waveform = True

    def covers_baselines(self, prep: Preprocessor) -> set[str]:
        cfg = prep.cfg  # type: ignore[attr-defined]
        return {"egemaps"} if cfg.level == "functionals" and cfg.feature_set == "eGeMAPSv02" else set()

    def decode_path(self, prep: Preprocessor, path: Path) -> Any:
        return load_waveform(prep, path)


KIND = INPUT_KINDS.register("opensmile", OpenSmileKind())
