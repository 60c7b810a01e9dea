"""The input-kind contract: everything the library needs to know about one kind of preprocessed input.

A kind is one :class:`InputKind` instance registered in :data:`INPUT_KINDS` by the module that defines its
preprocessor (the table lives here, not in the package ``__init__``, so that a kind module never imports its
package back). The data path, normalisation, two-window batches, raw baselines and the
front end ask the kind object; none of them names a kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from contrastive_mer.data.transforms import Preprocessor
from contrastive_mer.registry import Registry


class InputKind:
    """One input kind. Subclass it, set the class attributes, override what differs, register an instance.

    Class attributes:
        name: the kind's name (``model.modalities.<m>.input``; written into saved configs: never rename).
        config_cls: the preprocessor's settings dataclass (``model.modalities.<m>.preprocess``).
        preprocessor_cls: the :class:`Preprocessor` built from a ``config_cls`` instance.
        produces: the encoder input kind its tensors are (None: the kind's own name).
        derived: encoder argument -> preprocessor setting it determines (e.g. ``{"n_mels": "n_mels"}``).
        standardisable: whether ``data.normalize`` may standardise it (:meth:`to_rows` / :meth:`from_rows`).
        text_input: whether a ``str`` is the input itself, not a file path (:meth:`decode_path`).
        waveform: whether it reads a mono waveform (``cfg.sample_rate`` and ``cfg.max_seconds`` set).
    """

    name: ClassVar[str]
    config_cls: ClassVar[type]
    preprocessor_cls: ClassVar[type]  # a Preprocessor subclass built as cls(cfg)
    produces: ClassVar[str | None] = None
    derived: ClassVar[Mapping[str, str]] = {}
    standardisable: ClassVar[bool] = False
    text_input: ClassVar[bool] = False
    waveform: ClassVar[bool] = False

    @property
    def encoder_kind(self) -> str:
        """The encoder input kind this kind feeds."""
        return self.produces or self.name

    def build(self, cfg: Any, source: str | None = None) -> Preprocessor:
        """The preprocessor for settings ``cfg`` (a ``config_cls`` instance), reading adapter input ``source``."""
        prep: Preprocessor = self.preprocessor_cls(cfg)
        prep.kind = self.name
        prep.source = source
        return prep

    # ------------------------------------------------------------------ normalisation (data.normalize)
    def to_rows(self, prep: Preprocessor, tensor: torch.Tensor) -> torch.Tensor:
        """The observations of one input as rows ``(n_obs, channels)``; ValueError when not standardisable."""
        raise ValueError(f"{self.name} inputs cannot be standardised (only {', '.join(standardisable_names())} "
                         "inputs can)")

    def from_rows(self, prep: Preprocessor, rows: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_rows`: rows back in the input's own layout."""
        raise ValueError(f"{self.name} inputs cannot be standardised")

    def has_frames(self, prep: Preprocessor) -> bool:
        """True when the input has frames to standardise over (``utterance`` mode is possible)."""
        return self.standardisable and prep.has_time

    # ------------------------------------------------------------------ two-window batches (data.two_window)
    def window_length(self, prep: Preprocessor, frames: int, named: int | None) -> int:
        """Window length in the input's own frames: ``named`` (``modality_frames``) or ``frames``; 0 (whole
        input) for inputs without a time axis."""
        if not prep.has_time:
            return 0
        return int(frames if named is None else named)

    # ------------------------------------------------------------------ raw baselines (evaluation/baselines.py)
    def baseline(self, prep: Preprocessor, tensor: torch.Tensor) -> np.ndarray:
        """The fixed, untrained raw-baseline feature ``(D,)`` of one preprocessed input."""
        raise TypeError(f"no raw baseline for {self.name} inputs")

    def covers_baselines(self, prep: Preprocessor) -> set[str]:
        """Names of the standard audio baselines (``egemaps``, ``logmel_stats``) this input already is."""
        return set()

    # ------------------------------------------------------------------ front end (frontend/sources.py)
    def decode_path(self, prep: Preprocessor, path: Path) -> Any:
        """The raw input decoded from a file, with settings that match ``prep``."""
        raise ValueError(f"{path}: a file path is not a valid {self.name} input (pass the input itself)")


def load_waveform(prep: Preprocessor, path: Path) -> np.ndarray:
    """A mono waveform at the preprocessor's sample rate, no longer than it reads (waveform kinds)."""
    from contrastive_mer.data.media import load_audio

    cfg = prep.cfg  # type: ignore[attr-defined]
    return load_audio(path, cfg.sample_rate, cfg.max_seconds)


def mean_std_over_time(tensor: torch.Tensor, axis: int) -> np.ndarray:
    """Mean and population standard deviation along ``axis``, side by side."""
    return torch.cat([tensor.mean(axis), tensor.std(axis, unbiased=False)]).numpy()


def vector_rows(prep: Preprocessor, tensor: torch.Tensor) -> torch.Tensor:
    """``(T, D)`` as it is, ``(D,)`` as one row."""
    return tensor if prep.has_time else tensor[None]


def vector_from_rows(prep: Preprocessor, rows: torch.Tensor) -> torch.Tensor:
    return rows if prep.has_time else rows[0]


def vector_baseline(tensor: torch.Tensor) -> np.ndarray:
    """A vector as it is; a frame sequence ``(T, D)`` as mean and std over time."""
    return mean_std_over_time(tensor, 0) if tensor.dim() == 2 else tensor.numpy()


#: kind name -> :class:`InputKind` (filled by importing :mod:`contrastive_mer.data.kinds`)
INPUT_KINDS: Registry[InputKind] = Registry("input kind")


def standardisable_names() -> list[str]:
    """The registered kinds ``data.normalize`` can standardise."""
    return [n for n, k in INPUT_KINDS.items() if k.standardisable]
