"""``hf_audio``: a transformers speech model (wav2vec 2.0, HuBERT, WavLM, Data2VecAudio, Whisper's encoder) over
waveforms ``(B, N)`` at the model's sample rate, its hidden states selected layer by layer.

Loading: ``model_path`` is a local folder or a hub id in the Hugging Face cache (``local_files_only`` unless
``allow_download``; :mod:`~contrastive_mer.encoders.hf_backbone`). Preprocessing is the model's own feature
extractor's: zero-mean unit-variance per clip when its ``do_normalize`` is set (wav2vec 2.0 family), Whisper's
log-mel padded to 30 s. Padding follows the architecture: an attention mask where the model takes one;
group-norm wav2vec 2.0 configs (``feat_extract_norm == "group"``, whose first convolution normalises over the
whole input) and data2vec-audio (stacked positional convolutions that carry padding into the last frames) see no
padding: clips of equal length run together, others alone (``padding: per_clip`` runs every
clip alone); Whisper pads every clip to 30 s itself, and only the frames of the clip are kept.
Clips longer than ``window_seconds`` run in windows overlapping by ``overlap_seconds`` (bounded memory), the
frames of each overlap taken from the window whose centre is nearer; ``frame_rate`` (Hz) is recorded.
Layers: ``layers`` indexes ``hidden_states`` (0: the input of the first transformer layer, -1: the last layer),
a list, or ``"all"``; several are combined by learned softmax weights (SUPERB), a mean or concatenation.
The backbone is frozen (and in eval mode) by default; ``trainable_layers`` unfreezes the top N transformer layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
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

PADDINGS = ("auto", "per_clip")
#: architectures whose attention mask does not make padding invisible: data2vec-audio's stacked positional
#: convolutions carry the padded frames into the last valid ones (zeroed only before the first convolution)
UNMASKABLE = ("data2vec-audio",)
WHISPER_SECONDS = 30.0


@dataclass
class HFAudioConfig:
    model_path: str | None = None
    cache_dir: str | None = None
    allow_download: bool = False
    sample_rate: int = 16000
    layers: Any = -1
    layer_combine: str = "weighted"
    output_dim: int | None = None  # None: the backbone's width, no projection
    pooling: str = "mean"
    freeze: bool = True
    trainable_layers: int = 0
    gradient_checkpointing: bool = False
    padding: str = "auto"
    window_seconds: float = 20.0
    overlap_seconds: float = 1.0
    normalize: bool | None = None  # None: the feature extractor's do_normalize (wav2vec 2.0 family)

    def __post_init__(self) -> None:
        check_layers(self.layers, self.layer_combine)
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")
        if not 0 <= self.overlap_seconds < self.window_seconds:
            raise ValueError(f"need 0 <= overlap_seconds < window_seconds, got {self.overlap_seconds}, "
                             f"{self.window_seconds}")


def _feature_extractor(folder: Any, config: Any) -> Any:
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    if (folder / "preprocessor_config.json").is_file():
        return AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    if config.model_type == "whisper":
        return WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return Wav2Vec2FeatureExtractor(do_normalize=True,
                                    return_attention_mask=getattr(config, "feat_extract_norm", "layer") != "group")


def normalise_clip(wave: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over one clip (the wav2vec 2.0 feature extractor's ``do_normalize``)."""
    return (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)


def window_starts(samples: int, window: int, hop: int) -> list[int]:
    """Starts of windows of ``window`` samples every ``hop`` samples until one reaches the end."""
    starts = [0]
    while starts[-1] + window < samples:
        starts.append(starts[-1] + hop)
    return starts


@register_encoder("hf_audio", HFAudioConfig, input_kind="waveform")
class HFAudioEncoder(ModalityEncoder):
    """Speech backbone -> selected hidden states -> (projection) -> pooling; input waveforms ``(B, N)``."""

    def __init__(self, cfg: HFAudioConfig):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        folder = resolve_backbone(cfg.model_path, allow_download=cfg.allow_download, cache_dir=cfg.cache_dir)
        self.folder = folder
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        self.whisper = config.model_type == "whisper"
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        self.backbone = model.get_encoder() if self.whisper else model
        self.extractor = _feature_extractor(folder, config)
        rate = int(self.extractor.sampling_rate)
        if rate != cfg.sample_rate:
            raise ValueError(f"encoder_args.sample_rate is {cfg.sample_rate} but {folder} expects {rate} Hz: set "
                             f"sample_rate: {rate}")
        self.sample_rate = rate
        self.normalize = bool(getattr(self.extractor, "do_normalize", False)) if cfg.normalize is None \
            else cfg.normalize
        self.group_norm = getattr(config, "feat_extract_norm", "layer") == "group" \
            or config.model_type in UNMASKABLE
        self.per_clip = cfg.padding == "per_clip"
        self.stride = 320 if self.whisper else int(np.prod(config.conv_stride))
        self.frame_rate = rate / self.stride
        self.min_samples = self._min_samples()
        window = cfg.window_seconds if not self.whisper else min(cfg.window_seconds, WHISPER_SECONDS)
        self.window = int(window * rate) // self.stride * self.stride
        self.overlap = int(math.ceil(cfg.overlap_seconds * rate / self.stride)) * self.stride
        if self.overlap < self.min_samples or self.overlap >= self.window:
            raise ValueError(f"overlap_seconds must cover the receptive field of the convolutions "
                             f"({self.min_samples / rate:.3f} s) and stay below window_seconds ({window} s)")
        count = config.num_hidden_layers + 1 if not self.whisper else config.encoder_layers + 1
        self.layers = layer_indices(cfg.layers, count, "encoder_args.layers")
        self.hidden = int(config.d_model if self.whisper else config.hidden_size)
        blocks = self.backbone.layers if self.whisper else self.backbone.encoder.layers
        tail = [getattr(self.backbone, "layer_norm")] if self.whisper else []
        self.trains = freeze_backbone(self.backbone, blocks, freeze=cfg.freeze,
                                      trainable_layers=cfg.trainable_layers, tail=tail)
        if self.trains:  # deterministic shapes: no layer drop, no time masking inside the backbone
            for name in ("layerdrop", "encoder_layerdrop"):
                if hasattr(config, name):
                    setattr(self.backbone.config, name, 0.0)
            if hasattr(self.backbone.config, "apply_spec_augment"):
                self.backbone.config.apply_spec_augment = False
        if cfg.gradient_checkpointing:
            enable = getattr(self.backbone, "activation_checkpointing_enable", None)
            (enable or self.backbone.gradient_checkpointing_enable)()
        self.mixer = LayerMixer(len(self.layers), self.hidden, cfg.layer_combine)
        width = self.mixer.output_dim
        self.proj = nn.Linear(width, cfg.output_dim) if cfg.output_dim else None
        self.output_dim = cfg.output_dim or width
        self.pooler = temporal_pool(cfg.pooling, self.output_dim)
        self.backbone.eval()

    # ------------------------------------------------------------------ frames
    def frames(self, samples: int) -> int:
        """Frames the backbone gives for a clip of ``samples`` samples."""
        if self.whisper:
            return -(-samples // self.stride)
        return int(self.backbone._get_feat_extract_output_lengths(torch.tensor(samples)))

    def _min_samples(self) -> int:
        n = self.stride
        while self.frames(n) < 1:
            n += self.stride
        return n

    # ------------------------------------------------------------------ running the backbone
    def _hidden(self, batch: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Selected hidden states ``(S, B, T, H)`` of a batch of (normalised) waveforms."""
        if self.whisper:
            feats = self.extractor([w.detach().cpu().float().numpy() for w in batch], sampling_rate=self.sample_rate,
                                   return_tensors="pt")["input_features"]
            out = self.backbone(feats.to(batch.device, self.backbone.dtype), output_hidden_states=True)
        else:
            out = self.backbone(batch, attention_mask=None if mask is None else mask.long(),
                                output_hidden_states=True)
        return torch.stack([out.hidden_states[i] for i in self.layers])

    def _run(self, waves: list[torch.Tensor]) -> list[torch.Tensor]:
        """Clips of at most one window -> their selected hidden states ``(S, T_i, H)``, batched as the
        architecture allows."""
        out: list[torch.Tensor | None] = [None] * len(waves)
        if self.whisper or not (self.group_norm or self.per_clip):
            groups = [list(range(len(waves)))]
        elif self.per_clip:
            groups = [[i] for i in range(len(waves))]
        else:  # group norm: equal lengths together, no padding
            by_len: dict[int, list[int]] = {}
            for i, w in enumerate(waves):
                by_len.setdefault(int(w.shape[0]), []).append(i)
            groups = list(by_len.values())
        for group in groups:
            lens = torch.tensor([int(waves[i].shape[0]) for i in group])
            longest = int(lens.max())
            batch = torch.stack([nn.functional.pad(waves[i], (0, longest - int(waves[i].shape[0]))) for i in group])
            mask = None
            if not self.whisper and bool((lens != longest).any()):
                mask = length_mask(lens, longest, len(group), batch.device)
            hidden = self._hidden(batch, mask)
            for row, i in enumerate(group):
                out[i] = hidden[:, row, : self.frames(int(lens[row]))]
        return [h for h in out if h is not None]

    def _windowed(self, wave: torch.Tensor) -> torch.Tensor:
        """A clip longer than one window: windows one at a time, frames of each overlap from the window whose
        centre is nearer."""
        total = self.frames(int(wave.shape[0]))
        starts = window_starts(int(wave.shape[0]), self.window, self.window - self.overlap)
        half = self.overlap // self.stride // 2
        pieces = []
        for k, start in enumerate(starts):
            hidden = self._run([wave[start: start + self.window]])[0]
            first = start // self.stride
            lo = 0 if k == 0 else first + half
            hi = total if k == len(starts) - 1 else starts[k + 1] // self.stride + half
            pieces.append(hidden[:, lo - first: hi - first])
        return torch.cat(pieces, dim=1)

    def layer_sequences(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per clip its selected hidden states ``(S, T_i, H)`` (before layer mixing), the model's preprocessing
        and padding rule applied; what the cached-features input kind stores."""
        lengths = torch.full((x.shape[0],), x.shape[1]) if lengths is None else lengths
        if self.backbone.training != (self.training and self.trains):
            self.backbone.train(self.training and self.trains)  # a frozen backbone stays in eval mode
        waves = []
        for row, n in zip(x, lengths.tolist()):
            w = row[: max(int(n), 1)].float()
            w = normalise_clip(w) if self.normalize else w
            if w.shape[0] < self.min_samples:  # too short for one frame: zero-padded to the receptive field
                w = nn.functional.pad(w, (0, self.min_samples - w.shape[0]))
            waves.append(w)
        out: list[torch.Tensor | None] = [None] * len(waves)
        short = [i for i, w in enumerate(waves) if w.shape[0] <= self.window]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trains):
            for i, h in zip(short, self._run([waves[i] for i in short]) if short else []):
                out[i] = h
            for i, w in enumerate(waves):
                if out[i] is None:
                    out[i] = self._windowed(w)
        return [h for h in out if h is not None]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        per_clip = self.layer_sequences(x, lengths)
        lens = torch.tensor([h.shape[1] for h in per_clip], device=x.device)
        longest = int(lens.max())
        stacked = torch.stack([nn.functional.pad(h, (0, 0, 0, longest - h.shape[1])) for h in per_clip], dim=1)
        seq = self.mixer(stacked)
        if self.proj is not None:
            seq = self.proj(seq)
        mask = length_mask(lens, longest, x.shape[0], x.device)
        seq = seq * mask.unsqueeze(-1).to(seq.dtype)
        return EncoderOutput(pool(seq, mask, self.pooler), seq, lens)
