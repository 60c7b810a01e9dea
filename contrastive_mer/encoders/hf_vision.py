"""``hf_vision``: a transformers vision tower (CLIP, SigLIP, DINOv2, ViT) applied to every face crop of a clip
``(B, T, 3, H, W)``, its hidden states selected layer by layer, then pooled over time.

Loading as ``hf_audio`` (a local folder or a hub id in the HF cache, ``local_files_only`` unless
``allow_download``); a CLIP or SigLIP folder gives its vision tower only. The frames arrive normalised by the
``frames`` preprocessor (``frames_mean`` / ``frames_std``, its defaults); they are renormalised to the model's
image processor statistics and resized to its image size. Per frame: the class token (``token_pool: cls``) or
the mean of the patch tokens (``mean``; register tokens excluded) of the selected layers (an index into
``hidden_states``, a list or ``"all"``, combined by learned softmax weights, a mean or concatenation). Padded
frames are not run. Frozen (eval mode) by default; ``trainable_layers`` unfreezes the top N blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from contrastive_mer.encoders.base import EncoderOutput, ModalityEncoder, length_mask, pool, temporal_pool
from contrastive_mer.encoders.hf_backbone import (
    LayerMixer,
    check_layers,
    freeze_backbone,
    layer_indices,
    resolve_backbone,
)
from contrastive_mer.encoders.registry import register_encoder

TOKEN_POOLS = ("cls", "mean")
#: model types whose folder holds a vision and a text tower: the vision tower's class
VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}


@dataclass
class HFVisionConfig:
    model_path: str | None = None
    cache_dir: str | None = None
    allow_download: bool = False
    layers: Any = -1
    layer_combine: str = "weighted"
    token_pool: str = "cls"
    output_dim: int | None = None  # None: the backbone's width, no projection
    pooling: str = "mean"
    freeze: bool = True
    trainable_layers: int = 0
    gradient_checkpointing: bool = False
    frames_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # the frames preprocessor's normalisation
    frames_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    frame_batch: int = 64  # frames through the backbone at once

    def __post_init__(self) -> None:
        check_layers(self.layers, self.layer_combine)
        if self.token_pool not in TOKEN_POOLS:
            raise ValueError(f"token_pool must be one of {', '.join(TOKEN_POOLS)}, got {self.token_pool!r}")


def transformer_blocks(model: nn.Module, count: int) -> nn.ModuleList:
    """The model's list of ``count`` transformer blocks (the first ModuleList of that length)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(f"{type(model).__name__}: no list of {count} transformer blocks found")


def _image_stats(folder: Any) -> tuple[list[float], list[float], int | None]:
    import json

    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], None
    spec = json.loads(path.read_text())
    size = spec.get("crop_size") or spec.get("size")
    side = size.get("height", size.get("shortest_edge")) if isinstance(size, dict) else size
    return list(spec.get("image_mean", [0.5] * 3)), list(spec.get("image_std", [0.5] * 3)), side


@register_encoder("hf_vision", HFVisionConfig, input_kind="frames")
class HFVisionEncoder(ModalityEncoder):
    """Per-frame vision tower -> selected layers -> token pooling -> (projection) -> temporal pooling."""

    def __init__(self, cfg: HFVisionConfig):
        super().__init__()
        import transformers
        from transformers import AutoConfig, AutoModel

        folder = resolve_backbone(cfg.model_path, allow_download=cfg.allow_download, cache_dir=cfg.cache_dir)
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        tower = VISION_TOWERS.get(config.model_type)
        model_cls = getattr(transformers, tower) if tower else AutoModel
        self.backbone = model_cls.from_pretrained(str(folder), local_files_only=True)
        vcfg = self.backbone.config
        mean, std, side = _image_stats(folder)
        self.size = int(side or vcfg.image_size)
        self.register_buffer("scale", (torch.tensor(cfg.frames_std) / torch.tensor(std)).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("shift", ((torch.tensor(cfg.frames_mean) - torch.tensor(mean)) / torch.tensor(std))
                             .view(1, 3, 1, 1), persistent=False)
        self.layers = layer_indices(cfg.layers, vcfg.num_hidden_layers + 1, "encoder_args.layers")
        self.skip = 1 + int(getattr(vcfg, "num_register_tokens", 0) or 0)
        self.has_cls = config.model_type != "siglip"  # SigLIP has no class token: token_pool cls is its mean
        self.token_pool, self.frame_batch = cfg.token_pool, cfg.frame_batch
        self.trains = freeze_backbone(self.backbone, list(transformer_blocks(self.backbone, vcfg.num_hidden_layers)),
                                      freeze=cfg.freeze, trainable_layers=cfg.trainable_layers)
        if cfg.gradient_checkpointing:
            enable = getattr(self.backbone, "activation_checkpointing_enable", None)
            (enable or self.backbone.gradient_checkpointing_enable)()
        hidden = int(vcfg.hidden_size)
        self.mixer = LayerMixer(len(self.layers), hidden, cfg.layer_combine)
        self.proj = nn.Linear(self.mixer.output_dim, cfg.output_dim) if cfg.output_dim else None
        self.output_dim = cfg.output_dim or self.mixer.output_dim
        self.pooler = temporal_pool(cfg.pooling, self.output_dim)
        self.backbone.eval()

    def frame_layers(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(F, 3, H, W)`` as the preprocessor gives them -> per frame the selected layers ``(S, F, H)``."""
        scale, shift = self.scale, self.shift
        assert isinstance(scale, torch.Tensor) and isinstance(shift, torch.Tensor)
        x = frames * scale + shift
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        outs = []
        for chunk in x.split(self.frame_batch):
            hidden = self.backbone(pixel_values=chunk, output_hidden_states=True).hidden_states
            stacked = torch.stack([hidden[i] for i in self.layers])  # (S, f, tokens, H)
            if self.token_pool == "cls" and self.has_cls:
                outs.append(stacked[:, :, 0])
            else:
                outs.append(stacked[:, :, self.skip if self.has_cls else 0:].mean(2))
        return torch.cat(outs, dim=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        if self.backbone.training != (self.training and self.trains):
            self.backbone.train(self.training and self.trains)  # a frozen backbone stays in eval mode
        batch, steps = x.shape[:2]
        mask = length_mask(lengths, steps, batch, x.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trains):
            per_frame = self.frame_layers(x[mask])  # valid frames only
        stacked = per_frame.new_zeros(per_frame.shape[0], batch, steps, per_frame.shape[-1])
        stacked[:, mask] = per_frame
        seq = self.mixer(stacked)
        if self.proj is not None:
            seq = self.proj(seq)
        seq = seq * mask.unsqueeze(-1).to(seq.dtype)
        return EncoderOutput(pool(seq, mask, self.pooler), seq, mask.sum(1))
