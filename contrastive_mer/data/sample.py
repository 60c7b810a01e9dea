"""The unit of data that flows from dataset adapters to the model.

A :class:`Sample` is what every dataset adapter yields: one clip, with whatever modalities it has.
A :class:`Batch` is what the collate function builds from a list of prepared samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

LabelValue = int | float | list[float]


@dataclass
class Sample:
    """One clip.

    Attributes:
        id: unique identifier of the clip inside its corpus.
        inputs: modality name -> raw input. Audio: float32 waveform ``(N,)`` at the configured sample
            rate; video: uint8 frames ``(T, H, W, 3)``; text: ``str``; vector: float32 ``(D,)`` or
            frame sequence ``(T, D)``. A missing modality is simply absent from the dict.
        labels: label name -> value (e.g. ``{"emotion": 3, "intensity": 1}``); never read by pretraining.
        groups: group name -> value (e.g. ``{"speaker": "actor01"}``), used for group-disjoint splits.
        meta: free-form provenance (source files, ...), never used by the model.
    """

    id: str
    inputs: dict[str, Any]
    labels: dict[str, LabelValue] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        ids: the sample ids, in batch order.
        inputs: modality -> padded tensor ``(B, ...)``; rows of absent samples are zeros.
        lengths: modality -> ``(B,)`` int64 valid length along the padded time axis (only for
            modalities with a time axis).
        present: modality -> ``(B,)`` bool, False where the sample lacks that modality.
        labels: label name -> ``(B,)`` tensor (int64 for categorical, float32 otherwise).
        groups: group name -> list of B strings.
        skipped: samples dropped from this batch because they could not be decoded
            (dicts with ``id``, ``path``, ``reason``); consumers record them in the skip report.
    """

    ids: list[str]
    inputs: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> "Batch":
        """Move every tensor to ``device``."""

        def move(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.to(device, non_blocking=non_blocking) for k, v in d.items()}

        return Batch(self.ids, move(self.inputs), move(self.lengths), move(self.present),
                     move(self.labels), self.groups, self.skipped)
