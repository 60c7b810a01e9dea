"""``hf_audio_cached``: waveform ``(N,)`` -> a frozen speech backbone's chosen layers, once per clip: the
utterance mean ``(D,)`` or the frame sequence ``(T, D)``, for vector encoders (``mlp``, ``seq_transformer``,
``tcn_seq``).

The backbone is :class:`~contrastive_mer.encoders.hf_audio.HFAudioEncoder` (same loading, preprocessing,
padding and windows), frozen and in eval mode, loaded once per process on first use. With ``data.cache: disk``
the output is computed once and kept: the cache key (:meth:`settings`) holds the model's identity (SHA-256 of its
config, preprocessing and weight files, not its location), the layers and how they are combined, and the
preprocessing (sample rate, clip length, normalisation, windows). Several layers are averaged (``mean``) or
concatenated (``concat``: D = layers x width). The raw-baseline column of ``cmer evaluate`` is the backbone's own
feature (a sequence: mean and std over time), so pretraining is compared with what the backbone alone gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastive_mer.data.kinds.base import (
    INPUT_KINDS,
    InputKind,
    load_waveform,
    vector_baseline,
    vector_from_rows,
    vector_rows,
)
from contrastive_mer.data.transforms import Preprocessor

CACHED_COMBINES = ("mean", "concat")


@dataclass
class HFAudioCachedConfig:
    model_path: str | None = None
    cache_dir: str | None = None
    allow_download: bool = False
    sample_rate: int = 16000
    max_seconds: float | None = 8.0
    layers: Any = -1
    layer_combine: str = "mean"
    sequence: bool = False  # False: the utterance mean (D,); True: the frame sequence (T, D)
    input_dim: int = 768  # D, checked against the backbone (set from the encoder's input_dim)
    window_seconds: float = 20.0
    overlap_seconds: float = 1.0
    normalize: bool | None = None  # None: the feature extractor's do_normalize
    device: str = "cpu"  # where the backbone runs (not part of the cache key)

    def __post_init__(self) -> None:
        from contrastive_mer.encoders.hf_backbone import check_layers

        if self.layer_combine not in CACHED_COMBINES:
            raise ValueError(f"layer_combine must be one of {', '.join(CACHED_COMBINES)} for cached features, got "
                             f"{self.layer_combine!r}")
        check_layers(self.layers, "mean")


class HFAudioCached(Preprocessor):
    """Waveform -> frozen backbone features (utterance mean or frame sequence)."""

    kind = "hf_audio_cached"

    def __init__(self, cfg: HFAudioCachedConfig):
        self.cfg = cfg
        self.has_time = cfg.sequence
        self._encoder: Any = None
        self._settings: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers load their own copy
        return {**self.__dict__, "_encoder": None}

    @property
    def encoder(self) -> Any:
        """The frozen backbone, loaded on first use."""
        if self._encoder is None:
            from contrastive_mer.encoders.hf_audio import HFAudioConfig, HFAudioEncoder
            from contrastive_mer.encoders.hf_backbone import resolve_backbone

            c = self.cfg
            resolve_backbone(c.model_path, allow_download=c.allow_download, cache_dir=c.cache_dir,
                             key="preprocess.model_path")  # a missing model named by this kind's key
            enc = HFAudioEncoder(HFAudioConfig(
                model_path=c.model_path, cache_dir=c.cache_dir, allow_download=c.allow_download,
                sample_rate=c.sample_rate, layers=c.layers, layer_combine="concat", window_seconds=c.window_seconds,
                overlap_seconds=c.overlap_seconds, normalize=c.normalize))
            self._encoder = enc.to(c.device).eval()
        return self._encoder

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """The chosen layers of one waveform ``(N,)`` as a frame sequence ``(T, D)``."""
        enc = self.encoder
        with torch.no_grad():
            layers = enc.layer_sequences(wave[None].to(self.cfg.device))[0].float().cpu()  # (S, T, H)
        if self.cfg.layer_combine == "mean":
            return layers.mean(0)
        return torch.cat(list(layers), dim=-1)

    def __call__(self, raw: Any) -> torch.Tensor:
        wave = torch.as_tensor(np.asarray(raw, dtype=np.float32))
        if wave.dim() != 1:
            raise ValueError(f"audio must be a mono waveform (N,), got shape {tuple(wave.shape)}")
        limit = self.input_samples()
        frames = self.features(wave[:limit] if limit else wave)
        if frames.shape[-1] != self.cfg.input_dim:
            raise ValueError(f"the backbone gives {frames.shape[-1]}-d features but input_dim is "
                             f"{self.cfg.input_dim}: set encoder_args.input_dim: {frames.shape[-1]}")
        return frames if self.cfg.sequence else frames.mean(0)

    def settings(self) -> dict[str, Any]:
        """The cache key: the model's identity (not its location), layers and preprocessing."""
        from contrastive_mer.encoders.hf_backbone import model_identity, resolve_backbone

        if self._settings is not None:
            return dict(self._settings)
        out = {k: v for k, v in vars(self.cfg).items()
               if k not in ("model_path", "cache_dir", "allow_download", "device")}
        out["layers"] = list(out["layers"]) if isinstance(out["layers"], (list, tuple)) else out["layers"]
        if self.cfg.model_path:
            out["model"] = model_identity(resolve_backbone(self.cfg.model_path, allow_download=self.cfg.allow_download,
                                                           cache_dir=self.cfg.cache_dir,
                                                           key="preprocess.model_path"))
        self._settings = out
        return dict(out)

    def input_samples(self) -> int | None:
        return int(self.cfg.max_seconds * self.cfg.sample_rate) if self.cfg.max_seconds else None

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(1, self.cfg.input_dim) if self.has_time else torch.zeros(self.cfg.input_dim)


class HFAudioCachedKind(InputKind):
    """Standardised per dimension (data.normalize); sequences windowed in frames; baseline: the backbone's own
    features; a path is an audio file."""

    name = "hf_audio_cached"
    config_cls = HFAudioCachedConfig
    preprocessor_cls = HFAudioCached
    produces = "vector"
    derived = {"input_dim": "input_dim"}
    standardisable = True
    waveform = True

    def to_rows(self, prep: Preprocessor, tensor: torch.Tensor) -> torch.Tensor:
        return vector_rows(prep, tensor)

    def from_rows(self, prep: Preprocessor, rows: torch.Tensor) -> torch.Tensor:
        return vector_from_rows(prep, rows)

    def baseline(self, prep: Preprocessor, tensor: torch.Tensor) -> np.ndarray:
        return vector_baseline(tensor)

    def decode_path(self, prep: Preprocessor, path: Path) -> Any:
        return load_waveform(prep, path)


KIND = INPUT_KINDS.register("hf_audio_cached", HFAudioCachedKind())
