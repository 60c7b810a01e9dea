"""``vector``: pre-extracted features, ``(D,)`` per clip or ``(T, D)`` frame sequences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from contrastive_mer.data.kinds.base import INPUT_KINDS, InputKind, vector_baseline, vector_from_rows, vector_rows
from contrastive_mer.data.transforms import Preprocessor


@dataclass
class VectorConfig:
    input_dim: int = 35
    sequence: bool = False


class Vector(Preprocessor):
    """Pre-extracted features: ``(D,)`` per clip, or ``(T, D)`` frame sequences (padded in time)."""

    kind = "vector"

    def __init__(self, cfg: VectorConfig):
        self.cfg = cfg
        self.has_time = cfg.sequence

    def __call__(self, raw: Any) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(raw, dtype=np.float32))
        expected = 2 if self.has_time else 1
        if x.dim() != expected or x.shape[-1] != self.cfg.input_dim:
            shape = "(T, D)" if self.has_time else "(D,)"
            raise ValueError(f"feature vector must be {shape} with D={self.cfg.input_dim}, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("feature vector holds NaN or Inf")
        return x

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(1, self.cfg.input_dim) if self.has_time else torch.zeros(self.cfg.input_dim)


class VectorKind(InputKind):
    """Standardised per dimension (one observation per frame, or per clip); sequences windowed in frames;
    baseline: the vector itself (a sequence: mean and std over time); a path is a ``.npy`` file."""

    name = "vector"
    config_cls: ClassVar[type] = VectorConfig
    preprocessor_cls: ClassVar[type] = Vector
    derived = {"input_dim": "input_dim"}
    standardisable = True

    def to_rows(self, prep: Preprocessor, tensor: torch.Tensor) -> torch.Tensor:
        return vector_rows(prep, tensor)

    def from_rows(self, prep: Preprocessor, rows: torch.Tensor) -> torch.Tensor:
        return vector_from_rows(prep, rows)

    def baseline(self, prep: Preprocessor, tensor: torch.Tensor) -> np.ndarray:
        return vector_baseline(tensor)

    def decode_path(self, prep: Preprocessor, path: Path) -> Any:
        from contrastive_mer.data.safe_files import load_npy

        return load_npy(path)  # header checked against the file size before anything is allocated


KIND = INPUT_KINDS.register("vector", VectorKind())
