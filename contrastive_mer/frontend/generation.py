"""Free-text answers for every instruction row (what ``cmer frontend-generate`` does): soft tokens from a feature
store, prompts through the chat template, batched greedy decoding with left padding and a KV cache, written to
``answers.jsonl`` (resumable) and to MER2025's layout (``answers.csv``: ``name,answer``, one row per clip).

``variant`` picks what the LLM sees in place of each clip's tokens: ``real`` (its own), ``zeros`` (zeroed
tokens, same counts) or ``shuffled`` (the tokens of another clip, by a fixed permutation of the store): the
baselines a score report sets the real answers against.
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from contrastive_mer.frontend.front_end import FrontEnd
from contrastive_mer.frontend.instructions import InstructionError, InstructionRow, render_prompt, template_writes_bos
from contrastive_mer.frontend.sources import StoreSources
from contrastive_mer.frontend.splice import SplicedBatch

VARIANTS = ("real", "zeros", "shuffled")


@torch.no_grad()
def greedy_decode(llm: Any, spliced: SplicedBatch, *, max_new_tokens: int, eos_token_id: int | None,
                  pad_token_id: int = 0) -> list[list[int]]:
    """Greedy decoding of a left-padded spliced batch with the KV cache: one forward over the prompts, then one
    token per step. Returns each row's new token ids, up to and including its EOS."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    mask = spliced.attention_mask
    if bool((mask[:, -1] == 0).any()):
        raise ValueError("greedy_decode needs a left-padded batch (padding_side='left')")
    key = _cache_argument(llm)
    out = llm(inputs_embeds=spliced.inputs_embeds, attention_mask=mask, position_ids=spliced.position_ids,
              use_cache=True)
    past, nxt = _cache_of(out), out.logits[:, -1].argmax(-1)
    last = spliced.position_ids[:, -1]
    done = torch.zeros_like(nxt, dtype=torch.bool)
    steps: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        steps.append(torch.where(done, torch.full_like(nxt, pad_token_id), nxt))
        if eos_token_id is not None:
            done = done | (nxt == eos_token_id)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        last = last + 1
        out = llm(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None], use_cache=True,
                  **{key: past})
        past, nxt = _cache_of(out), out.logits[:, -1].argmax(-1)
    ids = torch.stack(steps, 1).tolist()
    result = []
    for row in ids:
        cut = row.index(eos_token_id) + 1 if eos_token_id is not None and eos_token_id in row else len(row)
        result.append(row[:cut])
    return result


def _cache_argument(llm: Any) -> str:
    """``cache`` (transformers >= 5.x) or ``past_key_values`` (older models and remote code)."""
    return "cache" if "cache" in inspect.signature(llm.forward).parameters else "past_key_values"


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@dataclass
class GenerateSettings:
    """Decoding and prompting settings of :func:`generate_answers`."""

    batch_size: int = 8
    max_new_tokens: int = 32
    chat: bool = True
    system: str | None = None
    variant: str = "real"
    seed: int = 0
    overwrite: bool = False


def _done_ids(path: Path) -> list[dict[str, Any]]:
    """Rows already written (a half-written last line, from a killed run, is dropped and the file rewritten)."""
    if not path.is_file():
        return []
    good, lines = [], path.read_text(encoding="utf-8").splitlines()
    for line in lines:
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if len(good) != len(lines):
        path.write_text("".join(json.dumps(r) + "\n" for r in good), encoding="utf-8")
    return good


def generate_answers(front: FrontEnd, llm: Any, tokenizer: Any, store: Any, *, rows: Sequence[InstructionRow],
                     out_dir: str | Path, settings: GenerateSettings | None = None,
                     progress: Callable[[int, int], None] | None = None) -> tuple[Path, Path]:
    """Answer every row, appending to ``<out_dir>/answers.jsonl`` (rows already there are skipped unless
    ``overwrite``), then write ``<out_dir>/answers.csv``. Returns both paths."""
    s = settings or GenerateSettings()
    if s.variant not in VARIANTS:
        raise InstructionError(f"variant must be one of {', '.join(VARIANTS)}, got {s.variant!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "answers.jsonl"
    if s.overwrite and path.exists():
        path.unlink()
    written = _done_ids(path)
    done = {str(r["id"]) for r in written}
    sources = StoreSources(store, front.modalities, front.config.level, fused=front.config.fused,
                           fusion_mode=front.config.fusion_mode)
    index = {str(i): n for n, i in enumerate(store.ids)}
    missing = [r.id for r in rows if r.clip not in index]
    if missing:
        raise InstructionError(f"{len(missing)} instruction rows refer to clips not in {store.path}, e.g. row "
                               f"{missing[0]!r}")
    donors = random.Random(s.seed).sample(range(len(store)), len(store))
    placeholders = [front.config.placeholder(src) for src in front.source_dims]
    splicer = front.splicer(tokenizer, llm, padding_side="left",
                            add_bos=not (s.chat and template_writes_bos(tokenizer)))
    device = next(llm.parameters()).device
    front.to(device).eval()
    pending = [r for r in rows if r.id not in done]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with path.open("a", encoding="utf-8") as f:
        for start in range(0, len(pending), s.batch_size):
            chunk = pending[start:start + s.batch_size]
            store_rows = [index[r.clip] for r in chunk]
            if s.variant == "shuffled":
                store_rows = [donors[i] for i in store_rows]
            with torch.no_grad():
                tokens = front(sources(store_rows).to(device))
            if s.variant == "zeros":
                tokens = {k: t.zeroed() for k, t in tokens.items()}
            prompts = [render_prompt(r, tokenizer, placeholders, chat=s.chat, system=s.system) for r in chunk]
            spliced = splicer(prompts, tokens, ids=[r.id for r in chunk])
            new = greedy_decode(llm, spliced, max_new_tokens=s.max_new_tokens, eos_token_id=eos, pad_token_id=pad)
            for r, ids in zip(chunk, new):
                record = {"id": r.id, "clip": r.clip, "prompt": r.prompt or r.chat()[-1]["content"],
                          "answer": tokenizer.decode(ids, skip_special_tokens=True).strip(),
                          "tokens_generated": len(ids), "variant": s.variant}
                f.write(json.dumps(record) + "\n")
                written.append(record)
            f.flush()
            os.fsync(f.fileno())
            if progress is not None:
                progress(len(written), len(rows))
    return path, write_mer_csv(out / "answers.csv", written)


def write_mer_csv(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    """MER2025's layout: ``name,answer``, one row per clip (its first answer), sorted by name."""
    path = Path(path)
    first: dict[str, str] = {}
    for r in records:
        first.setdefault(str(r.get("clip", r["id"])), str(r["answer"]))
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "answer"])
        for name in sorted(first):
            writer.writerow([name, first[name]])
    tmp.replace(path)
    return path
