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

Statistics are accumulated in float64 over the preprocessed tensors, one observation per row of the input kind's
``to_rows`` (:mod:`contrastive_mer.data.kinds`): for a log-mel ``(n_mels, T)`` one per frame and band, for a
vector sequence ``(T, D)`` one per frame, for a vector ``(D,)`` one per clip.

**The one standardiser** (:func:`standardise`), used by every z-score in the library (inputs here, stored
features by group, raw baselines, the linear and MLP probes, the RAVDESS action units): ``(x - mean) / std``
per column with the population standard deviation; a column whose standard deviation is at most ``eps``
(:data:`EPS` unless a caller passes another) is constant and becomes 0, so rounding noise is never scaled up and
a constant column carries nothing into a probe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, TypeVar

import numpy as np
import torch

from contrastive_mer.data.kinds import kind_of, standardisable_names
from contrastive_mer.data.transforms import Preprocessor

UTTERANCE = "utterance"
NONE = "none"
#: a column whose standard deviation is at most this is constant (see the module docstring)
EPS = 1e-6

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def standardise(x: ArrayT, mean: np.ndarray | torch.Tensor | float, std: np.ndarray | torch.Tensor | float,
                eps: float = EPS) -> ArrayT:
    """``(x - mean) / std`` per column (last axis); columns with ``std <= eps`` become 0. A tensor stays a
    tensor of its dtype and device; an array comes back in float64 (or ``x``'s wider dtype)."""
    if isinstance(x, torch.Tensor):
        s = torch.as_tensor(std, device=x.device)
        keep = s > eps
        m = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
        safe = torch.where(keep, s, torch.ones_like(s)).to(x.dtype)
        return torch.where(keep, (x - m) / safe, torch.zeros((), dtype=x.dtype, device=x.device))
    std_a = np.asarray(std)
    keep = std_a > eps
    return np.where(keep, (x - mean) / np.where(keep, std_a, 1.0), 0.0)


def moments(x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and population standard deviation (float64) over ``rows`` (a mask; default all rows); no
    row at all gives mean 0 and std 1 (standardising is then the identity)."""
    x = np.asarray(x, dtype=np.float64)
    if rows is not None:
        x = x[np.asarray(rows)]
    if not len(x):
        return np.zeros(x.shape[1:]), np.ones(x.shape[1:])
    return x.mean(0), x.std(0)


def standardise_present(x: np.ndarray, present: np.ndarray, fit_rows: np.ndarray | None = None) -> np.ndarray:
    """``x`` standardised with the statistics of its present ``fit_rows`` (default: every present row); absent
    rows 0; float32."""
    present = np.asarray(present, dtype=bool)
    rows = present if fit_rows is None else present & np.asarray(fit_rows, dtype=bool)
    mean, std = moments(x, rows)
    return np.where(present[:, None], standardise(x, mean, std), 0.0).astype(np.float32)


def channels_last(prep: Preprocessor, tensor: torch.Tensor) -> torch.Tensor:
    """The observations of one preprocessed input as rows ``(n_obs, channels)`` (its kind's ``to_rows``)."""
    return kind_of(prep).to_rows(prep, tensor)


def has_time_axis(prep: Preprocessor) -> bool:
    """True when the input has frames to standardise over (utterance mode is possible)."""
    return kind_of(prep).has_frames(prep)


def standardise_input(prep: Preprocessor, tensor: torch.Tensor, mean: np.ndarray, std: np.ndarray,
                      *, eps: float = EPS) -> torch.Tensor:
    """One preprocessed input standardised per channel (:func:`standardise` on its kind's rows); same shape."""
    kind = kind_of(prep)
    return kind.from_rows(prep, standardise(kind.to_rows(prep, tensor), mean, std, eps))


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
    eps: float = EPS
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
            if not kind_of(prep).standardisable:
                raise ValueError(f"data.normalize.{m}: {prep.kind} inputs cannot be standardised (only "
                                 f"{', '.join(standardisable_names())} inputs can)")
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
                stats = moments(channels_last(prep, x).numpy())
            if stats is None:
                stats = self._global.get(m)
            if stats is not None:
                out[m] = standardise_input(prep, x, *stats, eps=self.eps)
        return out


def zscore_by_group(X: np.ndarray, groups: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Standardise each column of ``X`` within each group (float32 out; :func:`standardise`'s rule).

    The probe-time counterpart of :class:`GroupNormalizer` for stored features: a group's statistics come from
    its own rows only, so no row of another group (e.g. a training speaker) enters a test speaker's numbers.
    """
    X = np.asarray(X, dtype=np.float64)
    out = np.zeros_like(X)
    groups = np.asarray(groups)
    for g in np.unique(groups):
        rows = groups == g
        out[rows] = standardise(X[rows], *moments(X[rows]), eps=eps)
    return out.astype(np.float32)
