"""Raw-input baselines: fixed, untrained features computed from the preprocessed inputs.

What a probe on pretrained features must beat: each input kind's ``baseline`` (:mod:`contrastive_mer.data.kinds`:
pooled log-mel statistics, a frame grid's mean and std over time, a hashed bag of words, vectors as they are) and
the standard audio baselines (:func:`with_audio_baselines`: openSMILE eGeMAPS functionals, log-mel statistics).
Each is probed as it is and standardised within each speaker
(:func:`~contrastive_mer.data.normalization.zscore_by_group`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from contrastive_mer.data.dataset import MERDataset, PreparedSample
from contrastive_mer.data.kinds import INPUT_KINDS, kind_of
from contrastive_mer.data.normalization import standardise_present
from contrastive_mer.data.transforms import Preprocessor


def raw_features(prep: Preprocessor, tensor: torch.Tensor) -> np.ndarray:
    """The baseline feature of one preprocessed input (its kind's ``baseline``)."""
    return kind_of(prep).baseline(prep, tensor)


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
        parts = [standardise_present(self.features[m], self.present[m], fit_rows)
                 for m in modalities or list(self.features)]
        return np.concatenate(parts, axis=1).astype(np.float32)


def with_audio_baselines(preprocessors: dict[str, Preprocessor]) -> dict[str, Preprocessor]:
    """``preprocessors`` plus the standard speech-emotion baselines of the first waveform input that the model
    does not already have: ``egemaps`` (openSMILE eGeMAPSv02 functionals; only when the ``opensmile`` package is
    installed) and ``logmel_stats`` (per-band log-mel mean and std, 64 bands). Unchanged without waveform input."""
    audio = next(((m, p) for m, p in preprocessors.items() if kind_of(p).waveform), None)
    if audio is None:
        return dict(preprocessors)
    m, prep = audio
    source, rate, seconds = prep.source or m, prep.cfg.sample_rate, prep.cfg.max_seconds  # type: ignore[attr-defined]
    out = dict(preprocessors)
    covered = set().union(*(kind_of(p).covers_baselines(p) for p in preprocessors.values()))
    if "egemaps" not in covered and "egemaps" not in out and _opensmile_installed():
        smile = INPUT_KINDS.get("opensmile")
        out["egemaps"] = smile.build(smile.config_cls(sample_rate=rate, max_seconds=seconds), source)
    if "logmel_stats" not in covered and "logmel_stats" not in out:
        stats = INPUT_KINDS.get("logmel_stats")
        out["logmel_stats"] = stats.build(stats.config_cls(sample_rate=rate, max_seconds=seconds, n_mels=64,
                                                           input_dim=128), source)
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
