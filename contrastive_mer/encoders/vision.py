"""Video encoder: a timm image backbone applied to every frame, then temporal pooling.

Any timm model name works (``resnet18``, ``resnet10t``, ``efficientnet_b0``, ``vit_tiny_patch16_224`` ...), with
extra constructor arguments in ``model_kwargs`` (e.g. ``channels`` for a thin ResNet). Pretrained weights are
loaded only from a local file (``checkpoint_path``); nothing is downloaded. Input: ``(B, T, 3, H, W)`` float
frames normalised by the preprocessor, and ``lengths`` = number of valid frames per clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import timm
import torch
from torch import nn

from contrastive_mer.encoders.base import EncoderOutput, ModalityEncoder, length_mask, pool, temporal_pool
from contrastive_mer.encoders.registry import register_encoder


@dataclass
class TimmFramesConfig:
    model_name: str = "resnet18"
    checkpoint_path: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    output_dim: int = 512
    pooling: str = "mean"
    freeze_backbone: bool = False
    gradient_checkpointing: bool = False


def load_local_weights(model: nn.Module, path: str) -> None:
    """Load backbone weights from a local ``.pth``/``.safetensors`` file (weights only; classifier keys ignored)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"video encoder checkpoint_path not found: {file}")
    state: Mapping[str, torch.Tensor]
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
        state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else loaded
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if len(usable) == 0:
        raise ValueError(f"{file}: no tensor matches the backbone's parameters (wrong model_name?)")
    model.load_state_dict(usable, strict=False)
    if missing:
        print(f"[video encoder] {file.name}: {len(missing)} backbone tensors not in the checkpoint, left at init")


@register_encoder("timm_frames", TimmFramesConfig, input_kind="frames")
class TimmFrameEncoder(ModalityEncoder):
    """Per-frame timm backbone -> linear -> temporal pooling (mean or attention)."""

    def __init__(self, cfg: TimmFramesConfig):
        super().__init__()
        self.backbone = timm.create_model(cfg.model_name, pretrained=False, num_classes=0, **cfg.model_kwargs)
        if cfg.checkpoint_path:
            load_local_weights(self.backbone, cfg.checkpoint_path)
        set_grad_checkpointing = getattr(self.backbone, "set_grad_checkpointing", None)
        if cfg.gradient_checkpointing and set_grad_checkpointing is not None:
            set_grad_checkpointing(True)
        if cfg.freeze_backbone:
            self.backbone.requires_grad_(False)
        num_features = self.backbone.num_features  # timm models set it: the width of the pooled features
        if not isinstance(num_features, int):
            raise ValueError(f"timm model {cfg.model_name!r}: num_features is {num_features!r}, not an int")
        self.frame_proj = nn.Linear(num_features, cfg.output_dim)
        self.pooler = temporal_pool(cfg.pooling, cfg.output_dim)
        self.output_dim = cfg.output_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        batch, steps = x.shape[:2]
        frames = self.backbone(x.flatten(0, 1))  # (B*T, F)
        seq = self.frame_proj(frames).view(batch, steps, -1)
        mask = length_mask(lengths, steps, batch, x.device)
        return EncoderOutput(pool(seq, mask, self.pooler), seq, mask.sum(1))
