"""A tiny randomly initialised LLaMA- or Qwen2-style causal LM and a word-level tokenizer, built locally.

For tests and the example: nothing is downloaded. :func:`build_word_tokenizer` makes a
``PreTrainedTokenizerFast`` over a fixed word list; :func:`build_tiny_llm` a model from ``LlamaConfig`` or
``Qwen2Config``; :func:`save_tiny_llm` writes both to a folder that ``AutoModelForCausalLM.from_pretrained``
and ``AutoTokenizer.from_pretrained`` read like any local model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import torch

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2ForCausalLM

SPECIAL_TOKENS = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>"}
_WORD = re.compile(r"\w+|[^\w\s]+")


@dataclass
class TinyLLMConfig:
    """Sizes of the tiny LM. ``arch``: ``llama`` or ``qwen2``.

    ``initializer_range`` is the std of the random weights. The transformers default (0.02) makes every logit
    of a random model nearly zero whatever its input (after the final norm, logits are bounded by the tiny
    output rows), so no soft token could move the loss; a larger std gives a random but input-sensitive model.
    """

    arch: str = "llama"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    max_positions: int = 512
    initializer_range: float = 0.5
    seed: int = 0


def words_of(texts: Iterable[str]) -> list[str]:
    """Sorted distinct words/punctuation of ``texts`` (the tokenizer's pre-tokenisation)."""
    return sorted({w for t in texts for w in _WORD.findall(t)})


def build_word_tokenizer(texts: Iterable[str]) -> "PreTrainedTokenizerFast":
    """A word-level tokenizer whose vocabulary is the special tokens plus every word of ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    for w in words_of(texts):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk"]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # \w+|[^\w\s]+, as words_of
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=SPECIAL_TOKENS["pad"],
                                   unk_token=SPECIAL_TOKENS["unk"], bos_token=SPECIAL_TOKENS["bos"],
                                   eos_token=SPECIAL_TOKENS["eos"])


def build_tiny_llm(cfg: TinyLLMConfig, tokenizer: "PreTrainedTokenizerFast") -> LlamaForCausalLM | Qwen2ForCausalLM:
    """A randomly initialised causal LM (seeded) sized by ``cfg`` with the tokenizer's vocabulary."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    config: LlamaConfig | Qwen2Config
    common = dict(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                  num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                  num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=cfg.max_positions,
                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
                  initializer_range=cfg.initializer_range)
    if cfg.arch == "llama":
        config = LlamaConfig(**common)
    elif cfg.arch == "qwen2":
        config = Qwen2Config(**common)
    else:
        raise ValueError(f"tiny LLM: unknown arch {cfg.arch!r}; expected 'llama' or 'qwen2'")
    state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    try:
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def save_tiny_llm(folder: str | Path, cfg: TinyLLMConfig, texts: Iterable[str]) -> Path:
    """Build the tokenizer over ``texts`` and the tiny LM, save both to ``folder`` and return it."""
    folder = Path(folder)
    tokenizer = build_word_tokenizer(texts)
    model = build_tiny_llm(cfg, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # keep AutoTokenizer from swapping in the architecture's own tokenizer class (it would drop the word vocab)
    cfg_file = folder / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_file.write_text(json.dumps(tok_cfg, indent=2), encoding="utf-8")
    return folder


def load_llm(folder: str | Path, dtype: torch.dtype | None = None) -> tuple[Any, object]:
    """``(model, tokenizer)`` from a local folder (``local_files_only``: never downloads). The model is typed
    ``Any``: it is an ``nn.Module`` and a :class:`~contrastive_mer.frontend.front_end.CausalLM` (a transformers
    ``PreTrainedModel`` with ``GenerationMixin``), which no single annotation states.

    A folder whose ``tokenizer_config.json`` declares ``PreTrainedTokenizerFast`` gets exactly that class
    (``AutoTokenizer`` would substitute the architecture's own tokenizer class for some, e.g. Qwen2).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    folder = Path(folder).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"LLM folder {folder} has no config.json (a local transformers model is "
                                "expected; nothing is downloaded)")
    tok_cfg_file = folder / "tokenizer_config.json"
    declared = json.loads(tok_cfg_file.read_text(encoding="utf-8")).get("tokenizer_class") \
        if tok_cfg_file.is_file() else None
    if declared == "PreTrainedTokenizerFast":
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
