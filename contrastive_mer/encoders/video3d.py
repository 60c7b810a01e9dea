"""3-D CNN video encoder: torchvision's R(2+1)D-18 over a clip of face crops (the paper's video encoder).

Input: ``(B, T, 3, H, W)`` float frames, the layout the ``frames`` preprocessor produces (the same as for
``timm_frames``); they are permuted to the ``(B, 3, T, H, W)`` layout of ``torchvision.models.video``. The paper
uses 8 frames at 112x112 normalised with the Kinetics mean/std: set the modality's ``preprocess`` to
``{num_frames: 8, size: 112, mean: [0.43216, 0.394666, 0.37645], std: [0.22803, 0.22145, 0.216989]}``.

The classifier ``fc`` is replaced, as in the official code, by ``dropout -> Linear(512, output_dim)``. Weights:
random init, or a local checkpoint (``checkpoint_path``, e.g. torchvision's Kinetics-400 ``r2plus1d_18`` file
downloaded by hand); nothing is downloaded.

Clips of different valid lengths are run in groups of equal length, so padded frames never enter the 3-D
convolutions (with every clip at full length, as in the paper, this is one call; in training, batch norm then
takes its statistics per group, and a group of one clip uses the running statistics). The encoder returns a clip
feature only (no frame sequence: the network downsamples time 8x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.video import r2plus1d_18

from contrastive_mer.encoders.base import EncoderOutput, ModalityEncoder, lone_row_batchnorm
from contrastive_mer.encoders.registry import register_encoder
from contrastive_mer.encoders.vision import load_local_weights

#: Kinetics-400 mean/std used by torchvision's video models (set them as the frames preprocessor's mean/std)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass
class R2Plus1DConfig:
    checkpoint_path: str | None = None
    output_dim: int = 512
    dropout: float = 0.1
    freeze_backbone: bool = False


@register_encoder("r2plus1d", R2Plus1DConfig, input_kind="frames")
class R2Plus1DEncoder(ModalityEncoder):
    """R(2+1)D-18 trunk (global average pooled, 512-d) -> dropout -> Linear to ``output_dim``."""

    def __init__(self, cfg: R2Plus1DConfig):
        super().__init__()
        self.backbone = r2plus1d_18(weights=None)
        trunk_dim = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        if cfg.checkpoint_path:
            load_local_weights(self.backbone, cfg.checkpoint_path)
        if cfg.freeze_backbone:
            self.backbone.requires_grad_(False)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(trunk_dim, cfg.output_dim))
        self.output_dim = cfg.output_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"r2plus1d expects frames (B, T, 3, H, W), got shape {tuple(x.shape)}")
        clips = x.permute(0, 2, 1, 3, 4)  # (B, 3, T, H, W)
        steps = clips.shape[2]
        lens = torch.full((x.shape[0],), steps, dtype=torch.long) if lengths is None else lengths.cpu().clamp(1, steps)
        if bool((lens == steps).all()):
            trunk = self.backbone(clips)
        else:
            groups = [(int(n), (lens == n).nonzero().squeeze(1)) for n in lens.unique()]
            parts = []
            for n, idx in groups:  # a group of one clip meets batch norm in eval mode (see lone_row_batchnorm)
                with lone_row_batchnorm(self.backbone, idx.numel()):
                    parts.append(self.backbone(clips[idx.to(x.device), :, :n]))
            order = torch.cat([idx for _, idx in groups]).to(x.device)
            trunk = torch.empty(x.shape[0], parts[0].shape[1], dtype=parts[0].dtype, device=x.device)
            trunk = trunk.index_copy(0, order, torch.cat(parts))
        return EncoderOutput(self.head(trunk))
