"""Raw-input baselines: fixed, untrained features computed from the preprocessed inputs.

What a probe on pretrained features must beat: pooled log-mel statistics (mean and standard deviation of
every mel band over time), downsampled frames (every frame average-pooled to a small grid, mean and standard
deviation over time), a hashed bag of words for text, pre-extracted vectors as they are, and openSMILE
functionals (eGeMAPS) of the audio (:func:`with_audio_baselines`). Each is probed as it is and standardised
within each speaker (:func:`~contrastive_mer.data.normalization.zscore_by_group`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from contrastive_mer.data.dataset import MERDataset, PreparedSample
from contrastive_mer.data.transforms import (
    Frames,
    LogMel,
    LogMelStats,
    OpenSmile,
    OpenSmileConfig,
    Preprocessor,
    Tokens,
    Vector,
)


def logmel_stats(logmel: torch.Tensor) -> np.ndarray:
    """``(n_mels, T)`` -> mean and std over time of every band, ``(2 n_mels,)``."""
    return torch.cat([logmel.mean(1), logmel.std(1, unbiased=False)]).numpy()


def frame_grid(frames: torch.Tensor, grid: int = 8) -> np.ndarray:
    """``(T, 3, H, W)`` -> every frame pooled to ``grid x grid``; mean and std over time ``(2 * 3 grid^2,)``."""
    small = F.adaptive_avg_pool2d(frames, grid).flatten(1)
    return torch.cat([small.mean(0), small.std(0, unbiased=False)]).numpy()


def bag_of_tokens(ids: torch.Tensor, buckets: int = 512) -> np.ndarray:
    """Token ids -> normalised counts over ``buckets`` hashed bins (special ids 0-3 ignored)."""
    words = ids[ids > 3] % buckets
    counts = torch.bincount(words, minlength=buckets).float()
    return (counts / counts.sum().clamp(min=1)).numpy()


def raw_features(prep: Preprocessor, tensor: torch.Tensor) -> np.ndarray:
    """The baseline feature of one preprocessed input."""
    if isinstance(prep, LogMel):
        return logmel_stats(tensor)
    if isinstance(prep, Frames):
        return frame_grid(tensor)
    if isinstance(prep, Tokens):
        return bag_of_tokens(tensor)
    if isinstance(prep, (Vector, OpenSmile, LogMelStats)):
        if tensor.dim() == 2:  # a frame sequence: mean and std over time
            return torch.cat([tensor.mean(0), tensor.std(0, unbiased=False)]).numpy()
        return tensor.numpy()
    raise TypeError(f"no raw baseline for preprocessor {type(prep).__name__}")


@dataclass
class RawFeatures:
    """Per-modality raw features with presence masks, ids, labels and groups (rows in dataset order)."""

    ids: list[str]
    features: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    def concat(self, modalities: Sequence[str] | None = None, fit_rows: np.ndarray | None = None) -> np.ndarray:
        """Modalities side by side, each standardised with the statistics of its present ``fit_rows``
        (default: every row; pass the training rows so that no test row enters the statistics); absent rows 0."""
        parts = []
        fit = np.ones(len(self.ids), dtype=bool) if fit_rows is None else np.asarray(fit_rows)
        for m in modalities or list(self.features):
            x, p = self.features[m], self.present[m]
            rows = p & fit
            mean = x[rows].mean(0) if rows.any() else 0.0
            std = x[rows].std(0) + 1e-6 if rows.any() else 1.0
            parts.append(np.where(p[:, None], (x - mean) / std, 0.0))
        return np.concatenate(parts, axis=1).astype(np.float32)


def with_audio_baselines(preprocessors: dict[str, Preprocessor]) -> dict[str, Preprocessor]:
    """``preprocessors`` plus the standard speech-emotion baselines of the first waveform input that the model
    does not already have: ``egemaps`` (openSMILE eGeMAPSv02 functionals; only when the ``opensmile`` package is
    installed) and ``logmel_stats`` (per-band log-mel mean and std, 64 bands). Unchanged without waveform input."""
    from contrastive_mer.data.transforms import LogMelStats, LogMelStatsConfig

    waveform = (LogMel, OpenSmile, LogMelStats)
    audio = next(((m, p) for m, p in preprocessors.items() if isinstance(p, waveform)), None)
    if audio is None:
        return dict(preprocessors)
    m, prep = audio
    source, rate, seconds = prep.source or m, prep.cfg.sample_rate, prep.cfg.max_seconds
    out = dict(preprocessors)
    has_egemaps = any(isinstance(p, OpenSmile) and p.cfg.level == "functionals" and p.cfg.feature_set == "eGeMAPSv02"
                      for p in preprocessors.values())
    if not has_egemaps and "egemaps" not in out and _opensmile_installed():
        out["egemaps"] = OpenSmile(OpenSmileConfig(sample_rate=rate, max_seconds=seconds))
        out["egemaps"].source = source
    if not any(isinstance(p, (LogMel, LogMelStats)) for p in preprocessors.values()) and "logmel_stats" not in out:
        out["logmel_stats"] = LogMelStats(LogMelStatsConfig(sample_rate=rate, max_seconds=seconds, n_mels=64,
                                                            input_dim=128))
        out["logmel_stats"].source = source
    return out


def _opensmile_installed() -> bool:
    try:
        import opensmile  # noqa: F401
    except ImportError:
        return False
    return True


def compute_raw_features(dataset: MERDataset) -> RawFeatures:
    """Raw baseline features of every usable clip of ``dataset`` (skipped clips are left out)."""
    ids: list[str] = []
    rows: dict[str, list[np.ndarray | None]] = {m: [] for m in dataset.modalities}
    labels: dict[str, list] = {}
    groups: dict[str, list] = {}
    for i in range(len(dataset)):
        item = dataset[i]
        if not isinstance(item, PreparedSample):
            continue
        ids.append(item.id)
        for m, prep in dataset.preprocessors.items():
            rows[m].append(raw_features(prep, item.tensors[m]) if m in item.tensors else None)
        for k, v in item.labels.items():
            labels.setdefault(k, []).append(v)
        for k, v in item.groups.items():
            groups.setdefault(k, []).append(v)
    features, present = {}, {}
    for m, column in rows.items():
        mask = np.array([r is not None for r in column], dtype=bool)
        dim = next((r.shape[0] for r in column if r is not None), 1)
        features[m] = np.stack([r if r is not None else np.zeros(dim, np.float32) for r in column]).astype(np.float32)
        present[m] = mask
    return RawFeatures(ids, features, present,
                       {k: np.asarray(v) for k, v in labels.items() if len(v) == len(ids)},
                       {k: np.asarray(v) for k, v in groups.items() if len(v) == len(ids)})
