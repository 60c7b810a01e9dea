"""Batched greedy generation: left-padded batches give the same tokens as one-by-one decoding and as a naive
loop without the KV cache (tiny random LLaMA and Qwen2 built from configs); answers.jsonl resumes after a kill
and MER2025's CSV has one row per clip."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from contrastive_mer.frontend.config import FrontEndConfig
from contrastive_mer.frontend.front_end import FrontEnd
from contrastive_mer.frontend.generation import GenerateSettings, generate_answers, greedy_decode
from contrastive_mer.frontend.instructions import InstructionRow
from contrastive_mer.frontend.splice import PromptSplicer, SoftTokens
from contrastive_mer.frontend.tiny_llm import TinyLLMConfig, build_tiny_llm
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from tests.fixtures.chat_tokenizers import word_chat_tokenizer

WORDS = ["What emotion does this person express ?", "Say it in words : happy sad angry calm neutral",
         "The person sounds very happy and a bit sad ."]
PROMPTS = ["<audio> What emotion ?", "Say it in words : <audio> What emotion does this person express ?",
           "<audio> person ?"]


def _llm(arch: str):
    tok = word_chat_tokenizer(WORDS)
    llm = build_tiny_llm(TinyLLMConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                                       intermediate_size=64, seed=3), tok)
    return llm, tok


def _naive(llm, embeds: torch.Tensor, n: int, eos: int) -> list[int]:
    """One sample, no padding, no cache: the whole sequence again at every step."""
    out: list[int] = []
    for _ in range(n):
        logits = llm(inputs_embeds=embeds[None]).logits[0, -1]
        nxt = int(logits.argmax())
        out.append(nxt)
        if nxt == eos:
            break
        embeds = torch.cat([embeds, llm.get_input_embeddings()(torch.tensor([nxt]))])
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_left_padded_batch_equals_one_by_one(arch: str) -> None:
    llm, tok = _llm(arch)
    splicer = PromptSplicer(tok, llm.get_input_embeddings(), {"audio": "<audio>"}, "left")
    g = torch.Generator().manual_seed(1)
    soft = SoftTokens(torch.randn(3, 4, 32, generator=g), torch.tensor([4, 1, 2]), torch.ones(3, dtype=torch.bool))
    with torch.no_grad():
        batch = splicer(PROMPTS, {"audio": soft})
        assert int(batch.attention_mask.sum(1).min()) < batch.attention_mask.shape[1]  # really padded
        together = greedy_decode(llm, batch, max_new_tokens=8, eos_token_id=tok.eos_token_id)
        for i in range(3):
            one = SoftTokens(soft.tokens[i:i + 1], soft.counts[i:i + 1], soft.present[i:i + 1])
            single = splicer(PROMPTS[i], {"audio": one})
            alone = greedy_decode(llm, single, max_new_tokens=8, eos_token_id=tok.eos_token_id)[0]
            assert together[i] == alone
            assert alone == _naive(llm, single.inputs_embeds[0], 8, tok.eos_token_id)
    assert len({tuple(t) for t in together}) > 1  # the tokens matter: not one answer for all


def _store(path, n: int = 5):
    rng = np.random.default_rng(0)
    with FeatureStoreWriter(path, ["audio"], {"audio": 6}, None, labels={"emotion": ["happy", "sad"]},
                            attrs={"checkpoint_sha256": "abc"}, fsync=False) as w:
        w.append([f"clip{i}" for i in range(n)], {"emotion": np.arange(n) % 2}, {},
                 {"audio": rng.normal(size=(n, 6)).astype(np.float32)}, projections={},
                 present={"audio": np.ones(n, bool)}, fused={})
    return path


def test_answers_resume_and_mer_csv(tmp_path) -> None:
    llm, tok = _llm("llama")
    with FeatureStore(_store(tmp_path / "s.h5")) as store:
        front = FrontEnd.from_store_dims(store, FrontEndConfig(llm_hidden=32, level="feature", fused=False,
                                                               tokens_per_modality=2))
        rows = [InstructionRow(f"clip{i}", "<audio> What emotion does this person express ?") for i in range(5)]
        rows.append(InstructionRow("clip0#1", "Say it in words : <audio>", clip="clip0"))
        settings = GenerateSettings(batch_size=4, max_new_tokens=5)
        path, mer = generate_answers(front, llm, tok, store, rows=rows, out_dir=tmp_path / "full", settings=settings)
        full = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["id"] for r in full] == [r.id for r in rows]
        assert all(1 <= r["tokens_generated"] <= 5 and r["variant"] == "real" for r in full)
        # a killed run: two rows and half a line written; the rerun finishes with the same answers
        part = tmp_path / "part"
        part.mkdir()
        lines = path.read_text().splitlines()
        (part / "answers.jsonl").write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:10])
        calls = []
        path2, _ = generate_answers(front, llm, tok, store, rows=rows, out_dir=part, settings=settings,
                                    progress=lambda d, t: calls.append(d))
        assert [json.loads(line) for line in path2.read_text().splitlines()] == full
        assert calls == [6]  # the 4 missing rows in one batch
        with mer.open() as f:
            table = list(csv.DictReader(f))
        assert [r["name"] for r in table] == [f"clip{i}" for i in range(5)]
        assert table[0]["answer"] == full[0]["answer"]
        zeros, _ = generate_answers(front, llm, tok, store, rows=rows, out_dir=tmp_path / "zeros",
                                    settings=GenerateSettings(batch_size=4, max_new_tokens=5, variant="zeros"))
        answers = [json.loads(line)["answer"] for line in zeros.read_text().splitlines()]
        assert len(set(answers[:5])) == 1  # the same prompt and zeroed tokens: one answer for every clip
        with pytest.raises(Exception, match="refer to clips not in"):
            generate_answers(front, llm, tok, store, rows=[InstructionRow("nope", "<audio>")], out_dir=tmp_path / "x")
