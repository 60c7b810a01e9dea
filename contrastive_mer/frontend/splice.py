"""Prompt splicing: a prompt with placeholders (``<audio>``, ``<video>``, ``<fused>``, ...) becomes
``inputs_embeds`` for any causal LM, with the attention mask, position ids and training labels.

Rules:

* The prompt text between placeholders is tokenised piece by piece (``add_special_tokens=False``); the BOS
  token is prepended when ``add_bos`` and the tokenizer has one. A chat template, if wanted, is applied to the
  prompt text by the caller beforehand (then set ``add_bos=False`` if the template writes its own BOS).
* A placeholder expands to the valid soft tokens of its source for that sample: ``counts[i]`` rows. A sample
  lacking the source has count 0 (the placeholder vanishes) or 1 (the learned "missing" token), as the front
  end's ``missing`` setting says; padded projector rows never reach the LLM.
* Targets (training): the target text, then EOS, follow the prompt; ``labels`` hold their token ids, and -100
  on the BOS, the prompt text, the soft tokens and the padding.
* Padding: ``right`` (training) or ``left`` (generation: ``generate`` appends after the last position, so
  it needs left padding). Pad positions hold zero vectors with attention mask 0; ``position_ids`` count only attended
  positions (``cumsum(mask) - 1``, 0 on pads), the convention ``generate`` uses, so left and right padding
  give the same logits at every real position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

IGNORE_INDEX = -100


@dataclass
class SoftTokens:
    """Projected tokens of one source: ``tokens (B, N, H)``, valid ``counts (B,)``, ``present (B,)``."""

    tokens: torch.Tensor
    counts: torch.Tensor
    present: torch.Tensor

    def row(self, i: int) -> torch.Tensor:
        """The ``(counts[i], H)`` tokens of sample ``i`` that enter the LLM."""
        return self.tokens[i, : int(self.counts[i])]

    def zeroed(self) -> "SoftTokens":
        """Same shapes and counts, all-zero vectors (the "no information" baseline)."""
        return SoftTokens(torch.zeros_like(self.tokens), self.counts, self.present)


@dataclass
class SplicedBatch:
    """What a causal LM takes: ``model(**batch.model_inputs())`` or ``model.generate(**batch.model_inputs())``.

    ``spans[i]`` lists ``(source, start, end)`` of every placeholder of sample ``i`` in the padded sequence;
    ``target_spans[i]`` is the ``(start, end)`` of its target tokens (EOS included), when targets were given.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    spans: list[list[tuple[str, int, int]]] = field(default_factory=list)
    target_spans: list[tuple[int, int]] = field(default_factory=list)

    def model_inputs(self, *, with_labels: bool = True) -> dict[str, torch.Tensor]:
        out = {"inputs_embeds": self.inputs_embeds, "attention_mask": self.attention_mask,
               "position_ids": self.position_ids}
        if with_labels and self.labels is not None:
            out["labels"] = self.labels
        return out


class PromptSplicer:
    """Splices soft tokens into tokenised prompts for one LLM.

    Args:
        tokenizer: the LLM's tokenizer (a transformers tokenizer: ``tokenizer(text, add_special_tokens=False)``).
        embeddings: the LLM's input embedding layer (``model.get_input_embeddings()``).
        placeholders: source name -> placeholder text, e.g. ``{"audio": "<audio>", "fused": "<fused>"}``.
        padding_side: default padding side, ``right`` or ``left``.
        add_bos: prepend the tokenizer's BOS token (when it has one).
        add_eos: append EOS after each target.
    """

    def __init__(self, tokenizer: Any, embeddings: nn.Module, placeholders: Mapping[str, str],
                 padding_side: str = "right", *, add_bos: bool = True, add_eos: bool = True):
        if not placeholders:
            raise ValueError("PromptSplicer: no placeholders given")
        _check_side(padding_side)
        self.tokenizer, self.embeddings = tokenizer, embeddings
        self.placeholders = dict(placeholders)
        self.by_text = {text: source for source, text in self.placeholders.items()}
        if len(self.by_text) != len(self.placeholders):
            raise ValueError(f"PromptSplicer: placeholders must be distinct, got {self.placeholders}")
        self.pattern = re.compile("(" + "|".join(re.escape(t) for t in sorted(self.by_text, key=len,
                                                                                 reverse=True)) + ")")
        self.padding_side, self.add_bos, self.add_eos = padding_side, add_bos, add_eos

    def token_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def segments(self, prompt: str) -> list[tuple[str, Any]]:
        """``[("text", ids) | ("soft", source), ...]`` of one prompt (BOS included)."""
        out: list[tuple[str, Any]] = []
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if self.add_bos and bos is not None:
            out.append(("text", [bos]))
        for piece in self.pattern.split(prompt):
            if piece in self.by_text:
                out.append(("soft", self.by_text[piece]))
            elif piece:
                ids = self.token_ids(piece)
                if ids:
                    out.append(("text", ids))
        return out

    def __call__(self, prompts: str | Sequence[str], tokens: Mapping[str, SoftTokens],
                 targets: Sequence[str] | None = None, *, padding_side: str | None = None,
                 ids: Sequence[str] | None = None) -> SplicedBatch:
        """Build the batch. ``prompts``: one prompt for all samples or one per sample; ``tokens``: source ->
        :class:`SoftTokens` with B rows; ``targets``: one target text per sample (training) or None."""
        side = padding_side or self.padding_side
        _check_side(side)
        batch = _batch_size(tokens)
        prompts = [prompts] * batch if isinstance(prompts, str) else list(prompts)
        ids = list(ids) if ids is not None else [f"row {i}" for i in range(batch)]
        if len(prompts) != batch:
            raise ValueError(f"PromptSplicer: {len(prompts)} prompts for a batch of {batch} samples")
        if targets is not None and len(targets) != batch:
            raise ValueError(f"PromptSplicer: {len(targets)} targets for a batch of {batch} samples")
        weight = embedding_weight(self.embeddings)
        device, dtype = weight.device, weight.dtype
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if targets is not None and self.add_eos and eos is None:
            raise ValueError("PromptSplicer: the tokenizer has no EOS token; pass add_eos=False")
        rows, labels, spans, target_spans = [], [], [], []
        for i, prompt in enumerate(prompts):
            parts, lab, span, pos = [], [], [], 0
            for kind, value in self.segments(prompt):
                if kind == "text":
                    parts.append(self.embeddings(torch.tensor(value, device=device)))
                    n = len(value)
                else:
                    if value not in tokens:
                        raise KeyError(f"sample {ids[i]}: prompt placeholder {self.placeholders[value]!r} has no "
                                       f"tokens; sources given: {sorted(tokens)}")
                    soft = tokens[value].row(i).to(device=device, dtype=dtype)
                    parts.append(soft)
                    n = soft.shape[0]
                    span.append((value, pos, pos + n))
                lab += [IGNORE_INDEX] * n
                pos += n
            if targets is not None:
                tid = self.token_ids(targets[i]) + ([eos] if self.add_eos and eos is not None else [])
                if not tid:
                    raise ValueError(f"sample {ids[i]}: empty target")
                parts.append(self.embeddings(torch.tensor(tid, device=device)))
                lab += tid
                target_spans.append((pos, pos + len(tid)))
                pos += len(tid)
            if pos == 0:
                raise ValueError(f"sample {ids[i]}: the spliced prompt is empty")
            rows.append(torch.cat(parts) if parts else weight.new_zeros(0, weight.shape[1]))
            labels.append(lab)
            spans.append(span)
        return _pad(rows, labels, spans, target_spans, side=side, with_labels=targets is not None)


def embedding_weight(embeddings: nn.Module) -> torch.Tensor:
    """The ``(vocab, hidden)`` weight of an LLM's input embedding layer; TypeError if it has none."""
    weight = getattr(embeddings, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(embeddings).__name__} has no weight tensor: not an input embedding layer")
    return weight


def _check_side(side: str) -> None:
    if side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")


def _batch_size(tokens: Mapping[str, SoftTokens]) -> int:
    sizes = {name: t.tokens.shape[0] for name, t in tokens.items()}
    if not sizes:
        raise ValueError("PromptSplicer: no soft tokens given")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"PromptSplicer: sources have different batch sizes {sizes}")
    return next(iter(sizes.values()))


def _pad(rows: list[torch.Tensor], labels: list[list[int]], spans: list[list[tuple[str, int, int]]],
         target_spans: list[tuple[int, int]], *, side: str, with_labels: bool) -> SplicedBatch:
    b, longest = len(rows), max(r.shape[0] for r in rows)
    hidden, device, dtype = rows[0].shape[1], rows[0].device, rows[0].dtype
    embeds = torch.zeros(b, longest, hidden, device=device, dtype=dtype)
    mask = torch.zeros(b, longest, dtype=torch.long, device=device)
    lab = torch.full((b, longest), IGNORE_INDEX, dtype=torch.long, device=device)
    out_spans, out_targets = [], []
    for i, (row, row_labels) in enumerate(zip(rows, labels)):
        n = row.shape[0]
        offset = longest - n if side == "left" else 0
        embeds[i, offset:offset + n] = row
        mask[i, offset:offset + n] = 1
        lab[i, offset:offset + n] = torch.tensor(row_labels, dtype=torch.long, device=device)
        out_spans.append([(s, a + offset, e + offset) for s, a, e in spans[i]])
        if with_labels:
            a, e = target_spans[i]
            out_targets.append((a + offset, e + offset))
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    return SplicedBatch(embeds, mask, positions, lab if with_labels else None, out_spans, out_targets)
