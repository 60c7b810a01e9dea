"""The preprocessor base class (runs in DataLoader workers) and padding collation.

A preprocessor turns one raw sample input (waveform, frames, text, vector) into a tensor and knows how to pad a
list of them into a batch. The preprocessors themselves, one per input kind, live with their kind in
:mod:`contrastive_mer.data.kinds`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch
import torch.nn.functional as F


class Preprocessor(ABC):
    """Base class: ``__call__(raw) -> Tensor``; ``collate(items) -> (padded, lengths or None)``."""

    #: True when the tensor has a time axis that is padded in batches
    has_time: bool = True
    #: the adapter input this preprocessor reads (None: the modality's own name)
    source: str | None = None
    #: the registered input kind (:mod:`contrastive_mer.data.kinds`) that owns this preprocessor
    kind: str = ""

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
