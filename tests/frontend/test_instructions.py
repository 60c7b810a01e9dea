"""Instruction data: JSONL rows and chat messages, chat templates that keep the soft-token placeholders, and the
spliced batch keeps placeholders and labels aligned for two tokenizer families (word-level LLaMA-2 style and
byte-level BPE ChatML), checked by reading the token ids back out of ``inputs_embeds``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from contrastive_mer.frontend.instructions import (
    InstructionError,
    InstructionRow,
    RowRecipe,
    instruction_rows,
    read_instructions,
    render_prompt,
    store_instruction_rows,
    template_writes_bos,
    write_instructions,
)
from contrastive_mer.frontend.splice import IGNORE_INDEX, PromptSplicer, SoftTokens
from contrastive_mer.frontend.tiny_llm import TinyLLMConfig, build_tiny_llm
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from tests.fixtures.chat_tokenizers import bpe_chat_tokenizer, word_chat_tokenizer

PROMPT = "Audio: <audio> Overall: <fused> What emotion does this person express?"
ROWS = [InstructionRow("a", PROMPT, "The person sounds happy."),
        InstructionRow("b", answer="sad", messages=[{"role": "system", "content": "Be brief ."},
                                                    {"role": "user", "content": "Clip <fused> then <audio> ?"}])]
TEXTS = [PROMPT, "The person sounds happy . sad Be brief Clip then ?", "system user assistant"]
PLACEHOLDERS = {"audio": "<audio>", "fused": "<fused>"}


def _soft(hidden: int) -> dict[str, SoftTokens]:
    g = torch.Generator().manual_seed(0)
    return {"audio": SoftTokens(torch.randn(2, 3, hidden, generator=g), torch.tensor([2, 3]),
                                torch.tensor([True, True])),
            "fused": SoftTokens(torch.randn(2, 1, hidden, generator=g), torch.tensor([1, 1]),
                                torch.tensor([True, True]))}


def _ids_back(embeds: torch.Tensor, weight: torch.Tensor) -> list[int]:
    dist = (embeds[:, None] - weight[None]).abs().amax(-1)
    assert bool((dist.min(-1).values == 0).all()), "a text position is not a token embedding"
    return dist.argmin(-1).tolist()


@pytest.mark.parametrize("family", ["word-llama", "bpe-chatml"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_chat_splicing_keeps_placeholders_and_labels_aligned(family: str, side: str) -> None:
    tok = word_chat_tokenizer(TEXTS) if family == "word-llama" else bpe_chat_tokenizer(TEXTS)
    llm = build_tiny_llm(TinyLLMConfig(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2,
                                       intermediate_size=32), tok)
    writes_bos = template_writes_bos(tok)
    assert writes_bos == (family == "word-llama")
    prompts = [render_prompt(r, tok, list(PLACEHOLDERS.values())) for r in ROWS]
    splicer = PromptSplicer(tok, llm.get_input_embeddings(), PLACEHOLDERS, side, add_bos=not writes_bos)
    soft = _soft(32)
    batch = splicer(prompts, soft, [r.answer for r in ROWS])
    weight = llm.get_input_embeddings().weight.detach()
    for i, row in enumerate(ROWS):
        keep = batch.attention_mask[i].bool()
        start = int(keep.nonzero()[0])
        embeds, labels = batch.inputs_embeds[i].detach(), batch.labels[i]
        # every soft-token span holds exactly that source's valid tokens, in the placeholders' order
        order = [s for s, _, _ in batch.spans[i]]
        assert order == (["audio", "fused"] if i == 0 else ["fused", "audio"])
        for source, a, e in batch.spans[i]:
            assert torch.equal(embeds[a:e], soft[source].row(i))
        # the text positions, read back as ids and decoded with the placeholders put back, give the template
        pieces, pos, spans = [], start, {a: (s, e) for s, a, e in batch.spans[i]}
        end = int(keep.nonzero()[-1]) + 1
        while pos < end:
            if pos in spans:
                source, e = spans[pos]
                pieces.append(PLACEHOLDERS[source])
                pos = e
                continue
            run_end = min([a for a in spans if a > pos] + [end])
            pieces.append(tok.decode(_ids_back(embeds[pos:run_end], weight), skip_special_tokens=False))
            pos = run_end
        expected = prompts[i] + row.answer + tok.eos_token
        if family == "word-llama":  # the word-level decoder does not keep spaces
            assert "".join("".join(pieces).split()) == "".join(expected.split())
        else:
            assert "".join(pieces) == expected
        # labels: the answer and EOS at the target span, -100 everywhere else
        a, e = batch.target_spans[i]
        target = tok(row.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert labels[a:e].tolist() == target == _ids_back(embeds[a:e], weight)
        assert bool((labels[:a] == IGNORE_INDEX).all()) and bool((labels[e:] == IGNORE_INDEX).all())
        ids = _ids_back(embeds[start:batch.spans[i][0][1]], weight)
        if family == "word-llama":
            assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id  # BOS once, from the template
        else:
            assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")


def test_a_template_that_eats_placeholders_is_refused() -> None:
    tok = word_chat_tokenizer(TEXTS)
    tok.chat_template = "{% for m in messages %}{{ m['content'] | replace('<audio>', '') }}{% endfor %}"
    with pytest.raises(InstructionError, match=r"row 'a': the chat template turned 1 '<audio>' into 0"):
        render_prompt(ROWS[0], tok, ["<audio>"])
    assert render_prompt(ROWS[1], tok, ["<audio>"], chat=False) == "Be brief .\nClip <fused> then <audio> ?"


def test_jsonl_round_trip_and_bad_rows(tmp_path) -> None:
    path = write_instructions(tmp_path / "rows.jsonl", ROWS + [InstructionRow("c#1", PROMPT, None, clip="c")])
    back = read_instructions(path)
    assert [(r.id, r.clip, r.answer) for r in back] == [("a", "a", "The person sounds happy."), ("b", "b", "sad"),
                                                        ("c#1", "c", None)]
    assert back[1].messages == ROWS[1].messages and back[0].chat() == [{"role": "user", "content": PROMPT}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "answer": "happy"}) + "\n")
    with pytest.raises(InstructionError, match=r"bad.jsonl: line 1 \(id 'x'\): needs a 'prompt'"):
        read_instructions(bad)
    bad.write_text(json.dumps({"id": "x", "prompt": "p"}) + "\n" + json.dumps({"id": "x", "prompt": "q"}) + "\n")
    with pytest.raises(InstructionError, match=r"line 2: id 'x' appears twice"):
        read_instructions(bad)


def test_generator_phrasings_answers_and_sentiment() -> None:
    recipe = RowRecipe(tokens="<audio>", rows_per_clip=3, seed=1)
    rows = instruction_rows(["c1", "c2", "c3"], ["happy", None, "sad"], sentiments=["positive", None, None],
                            recipe=recipe)
    assert [r.id for r in rows] == ["c1#0", "c1#1", "c1#2", "c3#0", "c3#1", "c3#2"]
    assert all(r.prompt.startswith("<audio> ") for r in rows)
    assert all("happy" in r.answer for r in rows[:3]) and all("sad" in r.answer for r in rows[3:])
    assert all("sentiment" not in r.answer for r in rows[3:])  # no sentiment label, no sentiment answer
    many = instruction_rows([f"c{i}" for i in range(40)], ["happy"] * 40, sentiments=["positive"] * 40)
    assert len({r.prompt for r in many}) == len(RowRecipe().prompts)  # several phrasings
    assert any("the sentiment is positive" in r.answer for r in many)
    assert [r.to_dict() for r in instruction_rows(["c1"], ["happy"], recipe=RowRecipe(seed=5))] == \
        [r.to_dict() for r in instruction_rows(["c1"], ["happy"], recipe=RowRecipe(seed=5))]


def test_rows_from_a_feature_store(tmp_path) -> None:
    path = tmp_path / "s.h5"
    with FeatureStoreWriter(path, ["audio"], {"audio": 2}, None, labels={"emotion": ["neutral", "happy"]},
                            fsync=False) as w:
        w.append(["x", "y", "z"], {"emotion": np.array([1, -1, 0])}, {}, {"audio": np.zeros((3, 2), np.float32)},
                 projections={}, present={"audio": np.ones(3, bool)}, fused={})
    with FeatureStore(path) as store:
        rows = store_instruction_rows(store, recipe=RowRecipe(answers=("{emotion}",)))
        assert [(r.clip, r.answer) for r in rows] == [("x", "happy"), ("z", "neutral")]
        with pytest.raises(InstructionError, match="no label 'sentiment'"):
            store_instruction_rows(store, sentiment_label="sentiment")
