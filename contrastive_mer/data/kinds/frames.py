"""``frames``: uint8 video frames ``(T, H, W, 3)`` -> normalised float frames ``(T', 3, size, size)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from contrastive_mer.data.kinds.base import INPUT_KINDS, InputKind, mean_std_over_time
from contrastive_mer.data.transforms import Preprocessor


@dataclass
class FramesConfig:
    num_frames: int = 8
    size: int = 112
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class Frames(Preprocessor):
    """uint8 frames ``(T, H, W, 3)`` -> normalised float ``(T', 3, size, size)``, ``T'`` <= ``num_frames``
    sampled uniformly."""

    kind = "frames"

    def __init__(self, cfg: FramesConfig):
        self.cfg = cfg
        self.mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.std).view(1, 3, 1, 1)

    def __call__(self, raw: Any) -> torch.Tensor:
        frames = torch.as_tensor(np.asarray(raw))
        if frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"video must be frames (T, H, W, 3), got shape {tuple(frames.shape)}")
        if frames.shape[0] > self.cfg.num_frames:
            keep = torch.linspace(0, frames.shape[0] - 1, self.cfg.num_frames).round().long()
            frames = frames[keep]
        x = frames.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-2:] != (self.cfg.size, self.cfg.size):
            x = F.interpolate(x, size=(self.cfg.size, self.cfg.size), mode="bilinear", align_corners=False,
                              antialias=True)
        return (x - self.mean) / self.std

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(1, 3, self.cfg.size, self.cfg.size)


def frame_grid(frames: torch.Tensor, grid: int = 8) -> np.ndarray:
    """``(T, 3, H, W)`` -> every frame pooled to ``grid x grid``; mean and std over time ``(2 * 3 grid^2,)``."""
    return mean_std_over_time(F.adaptive_avg_pool2d(frames, grid).flatten(1), 0)


class FramesKind(InputKind):
    """Not standardised (the preprocessor normalises pixels); windowed only when ``modality_frames`` names the
    modality (a few frames spread over the clip already); baseline: a pooled grid's statistics over time."""

    name = "frames"
    config_cls = FramesConfig
    preprocessor_cls = Frames

    def window_length(self, prep: Preprocessor, frames: int, named: int | None) -> int:
        return int(named or 0)

    def baseline(self, prep: Preprocessor, tensor: torch.Tensor) -> np.ndarray:
        return frame_grid(tensor)

    def decode_path(self, prep: Preprocessor, path: Path) -> Any:
        from contrastive_mer.data.media import load_video

        cfg = prep.cfg  # type: ignore[attr-defined]
        return load_video(path, num_frames=cfg.num_frames, size=cfg.size)


KIND = INPUT_KINDS.register("frames", FramesKind())
