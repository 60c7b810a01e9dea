"""Label-free standardisation of preprocessed inputs: per group (speaker CMVN) or per utterance.

``data.normalize`` maps a modality to a mode:

* a group name such as ``speaker``: every channel (log-mel band, feature dimension) is standardised with the
  mean and standard deviation of all frames / vectors of the clips of the same group. This removes what
  identifies a speaker (pitch range, loudness, a face's resting action units) and keeps how each clip departs
  from it. **Assumption**: at test time the speaker's other clips are available, unlabelled (their statistics
  come from them, not from labels). A group with fewer than ``min_clips`` clips, or a clip without the group,
  falls back to the ``utterance`` mode where the input has a time axis and to the statistics of all clips
  otherwise.
* ``utterance``: every channel standardised over the clip's own frames (inputs with a time axis only). Needs
  nothing but the clip itself: the fallback when a speaker's other clips are not available.
* ``none``: the input as preprocessed.

Statistics are accumulated in float64 over the preprocessed tensors: for a log-mel ``(n_mels, T)`` one
observation per frame and band, for a vector sequence ``(T, D)`` one per frame, for a vector ``(D,)`` one per
clip. Channels with a standard deviation under ``eps`` are only centred.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import torch

from contrastive_mer.data.transforms import LogMel, LogMelStats, OpenSmile, Preprocessor, Vector

UTTERANCE = "utterance"
NONE = "none"


def channels_last(prep: Preprocessor, tensor: torch.Tensor) -> torch.Tensor:
    """The observations of one preprocessed input as rows ``(n_obs, channels)``."""
    if isinstance(prep, LogMel):
        return tensor.T
    if isinstance(prep, (Vector, OpenSmile, LogMelStats)):
        return tensor if prep.has_time else tensor[None]
    raise ValueError(f"{type(prep).__name__} inputs cannot be standardised (only log-mel, vector and openSMILE "
                     "inputs)")


def has_time_axis(prep: Preprocessor) -> bool:
    """True when the input has frames to standardise over (utterance mode is possible)."""
    return isinstance(prep, LogMel) or (isinstance(prep, (Vector, OpenSmile)) and prep.has_time)


def standardise(prep: Preprocessor, tensor: torch.Tensor, mean: np.ndarray, std: np.ndarray,
                eps: float) -> torch.Tensor:
    """``(x - mean) / std`` per channel, channels whose std <= eps only centred; same shape as ``tensor``."""
    m = torch.as_tensor(mean, dtype=torch.float32)
    s = torch.as_tensor(np.where(std > eps, std, 1.0), dtype=torch.float32)
    if isinstance(prep, LogMel):
        return (tensor - m[:, None]) / s[:, None]
    return (tensor - m) / s


@dataclass
class _Moments:
    """Running count, sum and sum of squares per channel (float64)."""

    count: int = 0
    clips: int = 0
    total: np.ndarray | None = None
    squares: np.ndarray | None = None

    def add(self, rows: np.ndarray) -> None:
        rows = rows.astype(np.float64)
        if self.total is None:
            self.total, self.squares = np.zeros(rows.shape[1]), np.zeros(rows.shape[1])
        self.total += rows.sum(0)
        self.squares += (rows ** 2).sum(0)
        self.count += len(rows)
        self.clips += 1

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.total is not None and self.squares is not None
        mean = self.total / self.count
        var = np.maximum(self.squares / self.count - mean ** 2, 0.0)
        return mean, np.sqrt(var)


@dataclass
class GroupNormalizer:
    """Fits per-group statistics on a dataset's prepared samples, then standardises samples with them.

    ``modes``: modality -> ``utterance``, ``none`` or a group name (see the module docstring).
    """

    modes: Mapping[str, str]
    preprocessors: Mapping[str, Preprocessor]
    min_clips: int = 2
    eps: float = 1e-5
    _stats: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict, repr=False)
    _global: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    fitted: bool = False

    def __post_init__(self) -> None:
        for m, mode in self.modes.items():
            if m not in self.preprocessors:
                raise ValueError(f"data.normalize.{m}: no such modality (have {sorted(self.preprocessors)})")
            prep = self.preprocessors[m]
            if mode == NONE:
                continue
            channels_last(prep, prep.placeholder())  # ValueError for frames / tokens
            if mode == UTTERANCE and not has_time_axis(prep):
                raise ValueError(f"data.normalize.{m}=utterance: a per-clip vector has no frames to standardise "
                                 "over; use a group name such as speaker, or none")
        self.active = {m: mode for m, mode in self.modes.items() if mode != NONE}

    @property
    def needs_fit(self) -> bool:
        return any(mode != UTTERANCE for mode in self.active.values())

    def fit(self, samples: Iterable[tuple[dict[str, torch.Tensor], Mapping[str, str]]]) -> GroupNormalizer:
        """Accumulate statistics from ``(tensors, groups)`` pairs (no labels are read)."""
        moments: dict[str, dict[str, _Moments]] = {m: {} for m in self.active}
        overall: dict[str, _Moments] = {m: _Moments() for m in self.active}
        for tensors, groups in samples:
            for m, mode in self.active.items():
                if m not in tensors:
                    continue
                rows = channels_last(self.preprocessors[m], tensors[m]).numpy()
                overall[m].add(rows)
                if mode != UTTERANCE and groups.get(mode) is not None:
                    moments[m].setdefault(str(groups[mode]), _Moments()).add(rows)
        self._stats = {m: {g: mo.mean_std() for g, mo in per.items() if mo.clips >= self.min_clips}
                       for m, per in moments.items()}
        self._global = {m: mo.mean_std() for m, mo in overall.items() if mo.count}
        self.fitted = True
        return self

    def group_statistics(self, modality: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{group: (mean, std)}`` fitted for ``modality`` (groups with at least ``min_clips`` clips)."""
        return dict(self._stats.get(modality, {}))

    def __call__(self, tensors: Mapping[str, torch.Tensor], groups: Mapping[str, str]) -> dict[str, torch.Tensor]:
        """A standardised copy of ``tensors`` (modalities without a mode are passed through)."""
        if self.needs_fit and not self.fitted:
            raise RuntimeError("GroupNormalizer.fit must run before the normalizer is applied")
        out = dict(tensors)
        for m, mode in self.active.items():
            if m not in tensors:
                continue
            prep, x = self.preprocessors[m], tensors[m]
            stats = None
            if mode != UTTERANCE and groups.get(mode) is not None:
                stats = self._stats.get(m, {}).get(str(groups[mode]))
            if stats is None and (mode == UTTERANCE or has_time_axis(prep)):
                rows = channels_last(prep, x).double().numpy()
                stats = (rows.mean(0), rows.std(0))
            if stats is None:
                stats = self._global.get(m)
            if stats is not None:
                out[m] = standardise(prep, x, *stats, eps=self.eps)
        return out


def zscore_by_group(X: np.ndarray, groups: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Standardise each column of ``X`` within each group (float32 out); constant columns become 0.

    The probe-time counterpart of :class:`GroupNormalizer` for stored features: a group's statistics come from
    its own rows only, so no row of another group (e.g. a training speaker) enters a test speaker's numbers.
    """
    X = np.asarray(X, dtype=np.float64)
    out = np.zeros_like(X)
    groups = np.asarray(groups)
    for g in np.unique(groups):
        rows = groups == g
        mean, std = X[rows].mean(0), X[rows].std(0)
        out[rows] = (X[rows] - mean) / np.where(std > eps, std, 1.0)
        out[np.ix_(rows, std <= eps)] = 0.0
    return out.astype(np.float32)

