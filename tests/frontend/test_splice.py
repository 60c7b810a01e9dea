"""Prompt splicing: positions, shapes, labels and padding for mixed batches, checked against a hand-built
reference; left/right padding agree on the LLM's logits; ``generate`` runs on spliced embeddings."""

from __future__ import annotations

import pytest
import torch

from contrastive_mer.frontend.splice import IGNORE_INDEX, PromptSplicer, SoftTokens
from tests.fixtures.frontend import tiny_llm

PROMPT = "Listen to <audio> and watch <video> . What emotion does this person express ?"
TARGETS = ["happy", "sad", "angry"]


def soft(counts: list[int], hidden: int, n_max: int, seed: int) -> SoftTokens:
    g = torch.Generator().manual_seed(seed)
    counts_t = torch.tensor(counts)
    return SoftTokens(torch.randn(len(counts), n_max, hidden, generator=g), counts_t, counts_t > 0)


@pytest.fixture(scope="module")
def llm():
    return tiny_llm("llama", hidden=32)


def reference_row(tok, emb, tokens, i, target):
    """Embeddings, labels and spans of sample ``i`` built by hand, without the splicer."""
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    pieces = [("ids", [tok.bos_token_id]), ("ids", ids("Listen to")), ("audio", None), ("ids", ids("and watch")),
              ("video", None), ("ids", ids(". What emotion does this person express ?"))]
    rows, labels, spans, pos = [], [], [], 0
    for kind, value in pieces:
        if kind == "ids":
            rows.append(emb(torch.tensor(value)))
            n = len(value)
        else:
            block = tokens[kind].tokens[i, : int(tokens[kind].counts[i])]
            rows.append(block)
            n = block.shape[0]
            spans.append((kind, pos, pos + n))
        labels += [IGNORE_INDEX] * n
        pos += n
    target_ids = ids(target) + [tok.eos_token_id]
    rows.append(emb(torch.tensor(target_ids)))
    labels += target_ids
    return torch.cat(rows), labels, spans, (pos, pos + len(target_ids))


@pytest.mark.parametrize("side", ["right", "left"])
def test_splice_matches_reference_for_a_mixed_batch(llm, side):
    model, tok = llm
    emb = model.get_input_embeddings()
    # sample 1 lacks audio (0 tokens), sample 2 lacks video; counts differ per row
    tokens = {"audio": soft([2, 0, 3], 32, 3, 0), "video": soft([1, 2, 0], 32, 2, 1)}
    splicer = PromptSplicer(tok, emb, {"audio": "<audio>", "video": "<video>"}, padding_side=side)
    with torch.no_grad():
        out = splicer(PROMPT, tokens, TARGETS)
        refs = [reference_row(tok, emb, tokens, i, t) for i, t in enumerate(TARGETS)]
    lengths = [r[0].shape[0] for r in refs]
    longest = max(lengths)
    assert out.inputs_embeds.shape == (3, longest, 32)
    assert len(set(lengths)) > 1  # the batch really needs padding
    for i, (row, labels, spans, target) in enumerate(refs):
        n = lengths[i]
        off = longest - n if side == "left" else 0
        real = slice(off, off + n)
        torch.testing.assert_close(out.inputs_embeds[i, real], row)
        pad = torch.ones(longest, dtype=torch.bool)
        pad[real] = False
        assert torch.all(out.inputs_embeds[i, pad] == 0)
        assert out.attention_mask[i].tolist() == [0 if p else 1 for p in pad.tolist()]
        assert out.labels[i, real].tolist() == labels
        assert torch.all(out.labels[i, pad] == IGNORE_INDEX)
        assert out.position_ids[i, real].tolist() == list(range(n))
        assert out.spans[i] == [(s, a + off, e + off) for s, a, e in spans]
        assert out.target_spans[i] == (target[0] + off, target[1] + off)
    # the absent sources leave no span of soft tokens behind
    assert [s for s, a, e in out.spans[1] if e > a] == ["video"]
    assert [s for s, a, e in out.spans[2] if e > a] == ["audio"]


def test_left_and_right_padding_give_the_same_logits_and_loss(llm):
    model, tok = llm
    tokens = {"audio": soft([2, 0, 3], 32, 3, 2), "video": soft([1, 2, 0], 32, 2, 3)}
    splicer = PromptSplicer(tok, model.get_input_embeddings(), {"audio": "<audio>", "video": "<video>"})
    with torch.no_grad():
        right = splicer(PROMPT, tokens, TARGETS, padding_side="right")
        left = splicer(PROMPT, tokens, TARGETS, padding_side="left")
        out_r, out_l = model(**right.model_inputs()), model(**left.model_inputs())
    for i in range(3):
        mr, ml = right.attention_mask[i].bool(), left.attention_mask[i].bool()
        torch.testing.assert_close(out_r.logits[i, mr], out_l.logits[i, ml], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out_r.loss, out_l.loss, rtol=1e-5, atol=1e-5)
    # the same loss computed by hand over the target tokens only
    logp = torch.log_softmax(out_r.logits[:, :-1], -1)
    labels = right.labels[:, 1:]
    keep = labels != IGNORE_INDEX
    manual = -logp[keep].gather(-1, labels[keep].unsqueeze(-1)).mean()
    torch.testing.assert_close(out_r.loss, manual, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_generate_with_spliced_embeddings_matches_one_by_one(arch):
    model, tok = tiny_llm(arch, hidden=32)
    tokens = {"audio": soft([2, 0, 3], 32, 3, 4), "video": soft([1, 2, 0], 32, 2, 5)}
    splicer = PromptSplicer(tok, model.get_input_embeddings(), {"audio": "<audio>", "video": "<video>"},
                            padding_side="left")
    kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id, min_new_tokens=4)
    with torch.no_grad():
        batch = splicer(PROMPT, tokens)
        assert batch.labels is None
        together = model.generate(**batch.model_inputs(), **kwargs)
        assert together.shape == (3, 4)
        for i in range(3):
            one = {k: SoftTokens(v.tokens[i:i + 1], v.counts[i:i + 1], v.present[i:i + 1]) for k, v in tokens.items()}
            alone = model.generate(**splicer(PROMPT, one).model_inputs(), **kwargs)
            assert alone[0].tolist() == together[i].tolist()


def test_errors_name_the_problem(llm):
    model, tok = llm
    splicer = PromptSplicer(tok, model.get_input_embeddings(), {"audio": "<audio>", "video": "<video>"})
    tokens = {"audio": soft([1, 1], 32, 1, 0)}
    with pytest.raises(KeyError, match="<video>"):
        splicer("<audio> <video> ?", tokens)
    with pytest.raises(ValueError, match="3 prompts"):
        splicer(["?"] * 3, tokens)
    with pytest.raises(ValueError, match="padding_side"):
        splicer("<audio> ?", tokens, padding_side="middle")
    with pytest.raises(ValueError, match="distinct"):
        PromptSplicer(tok, model.get_input_embeddings(), {"audio": "<x>", "video": "<x>"})
    # a prompt without a source's placeholder simply does not use it
    out = splicer("What ?", tokens)
    assert out.spans == [[], []] and out.inputs_embeds.shape[1] == 3  # BOS, What, ?
