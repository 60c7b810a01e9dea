"""``tokens``: text -> token ids ``(L,)`` with the tokenizer that matches the text encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from contrastive_mer.data.kinds.base import INPUT_KINDS, InputKind
from contrastive_mer.data.transforms import Preprocessor


@dataclass
class TokensConfig:
    model_path: str | None = None
    vocab_size: int = 4096
    max_length: int = 64


class Tokens(Preprocessor):
    """Text -> token ids ``(L,)`` with the tokenizer that matches the text encoder."""

    kind = "tokens"

    def __init__(self, cfg: TokensConfig):
        from contrastive_mer.encoders.text import build_tokenizer

        self.cfg = cfg
        self.tokenizer = build_tokenizer(cfg.model_path, cfg.vocab_size, cfg.max_length)
        self.pad_value = self.tokenizer.pad_id

    def __call__(self, raw: Any) -> torch.Tensor:
        if not isinstance(raw, str):
            raise ValueError(f"text must be a str, got {type(raw).__name__}")
        return torch.tensor(self.tokenizer.encode(raw), dtype=torch.long)

    def placeholder(self) -> torch.Tensor:
        return torch.tensor(self.tokenizer.encode(""), dtype=torch.long)


def bag_of_tokens(ids: torch.Tensor, buckets: int = 512) -> np.ndarray:
    """Token ids -> normalised counts over ``buckets`` hashed bins (special ids 0-3 ignored)."""
    words = ids[ids > 3] % buckets
    counts = torch.bincount(words, minlength=buckets).float()
    return (counts / counts.sum().clamp(min=1)).numpy()


class TokensKind(InputKind):
    """Not standardised; never windowed (both windows get the whole text); a ``str`` is the text, not a path;
    baseline: a hashed bag of words."""

    name = "tokens"
    config_cls = TokensConfig
    preprocessor_cls = Tokens
    derived = {"model_path": "model_path", "vocab_size": "vocab_size", "max_length": "max_length"}
    text_input = True

    def window_length(self, prep: Preprocessor, frames: int, named: int | None) -> int:
        return 0

    def baseline(self, prep: Preprocessor, tensor: torch.Tensor) -> np.ndarray:
        return bag_of_tokens(tensor)


KIND = INPUT_KINDS.register("tokens", TokensKind())
