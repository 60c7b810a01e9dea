"""Projectors: segment pooling against a loop reference, masking by valid length, token counts, config checks."""

from __future__ import annotations

import math

import pytest
import torch

from contrastive_mer.frontend.config import FUSED, FrontEndConfig
from contrastive_mer.frontend.projector import Resampler, TokenMapper, build_projector, segment_mean


def naive_segment_mean(seq: torch.Tensor, lengths: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(seq.shape[0], n, seq.shape[2], dtype=seq.dtype)
    for b in range(seq.shape[0]):
        length = max(int(lengths[b]), 1)
        for k in range(n):
            start, end = math.floor(k * length / n), math.ceil((k + 1) * length / n)
            out[b, k] = seq[b, start:end].mean(0)
    return out


@pytest.mark.parametrize("n", [1, 3, 4, 7])
def test_segment_mean_matches_loop_reference(n):
    g = torch.Generator().manual_seed(n)
    seq = torch.randn(4, 9, 5, generator=g, dtype=torch.float64)
    lengths = torch.tensor([9, 5, 2, 1])
    expected = naive_segment_mean(seq, lengths, n)
    torch.testing.assert_close(segment_mean(seq, lengths, n), expected)


def test_segment_mean_equals_adaptive_pool_on_full_rows():
    seq = torch.randn(2, 10, 3, dtype=torch.float64)
    pooled = torch.nn.functional.adaptive_avg_pool1d(seq.transpose(1, 2), 4).transpose(1, 2)
    torch.testing.assert_close(segment_mean(seq, torch.tensor([10, 10]), 4), pooled)


@pytest.mark.parametrize("kind", ["linear", "mlp", "resampler"])
def test_padding_does_not_change_tokens(kind):
    """Values written into padded frames must not reach the tokens (masked by the valid length)."""
    torch.manual_seed(0)
    proj = build_projector(kind, 6, 8, 3, level="sequence", resampler_dim=16, resampler_heads=2).eval()
    seq = torch.randn(3, 7, 6)
    lengths = torch.tensor([7, 4, 2])
    noisy = seq.clone()
    for b, n in enumerate(lengths.tolist()):
        noisy[b, n:] = 1e3 * torch.randn(7 - n, 6)
    a, counts = proj(seq, lengths)
    b, _ = proj(noisy, lengths)
    assert a.shape == (3, 3, 8) and counts.tolist() == [3, 3, 3]
    torch.testing.assert_close(a, b)
    # a row alone (no padding at all) gives the same tokens as inside the padded batch
    alone, _ = proj(seq[1:2, :4], lengths[1:2])
    torch.testing.assert_close(alone, a[1:2], rtol=1e-5, atol=1e-5)


def test_frames_mode_one_token_per_valid_frame():
    proj = TokenMapper(5, 4, 0, expand=False, kind="linear")
    seq = torch.randn(2, 6, 5)
    tokens, counts = proj(seq, torch.tensor([6, 3]))
    assert counts.tolist() == [6, 3]
    torch.testing.assert_close(tokens[1, :3], seq[1, :3] @ proj.net.weight.T + proj.net.bias)


def test_feature_level_expands_one_vector_to_n_tokens():
    proj = TokenMapper(5, 4, 3, expand=True, kind="linear")
    x = torch.randn(2, 5)
    tokens, counts = proj(x.unsqueeze(1), torch.ones(2, dtype=torch.long))
    assert tokens.shape == (2, 3, 4) and counts.tolist() == [3, 3]
    torch.testing.assert_close(tokens.reshape(2, 12), x @ proj.net.weight.T + proj.net.bias)


def test_resampler_tokens_depend_on_frame_order():
    torch.manual_seed(0)
    r = Resampler(4, 6, 2, dim=8, heads=2).eval()
    seq = torch.randn(1, 5, 4)
    lengths = torch.tensor([5])
    assert not torch.allclose(r(seq, lengths)[0], r(seq.flip(1), lengths)[0])


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="llm_hidden"):
        FrontEndConfig()
    with pytest.raises(ValueError, match="projector"):
        FrontEndConfig(llm_hidden=8, projector="qformer")
    with pytest.raises(ValueError, match="missing"):
        FrontEndConfig(llm_hidden=8, missing="zeros")
    with pytest.raises(ValueError, match="unknown key"):
        FrontEndConfig.from_dict({"llm_hidden": 8, "tokens_per_mod": 2})
    cfg = FrontEndConfig(llm_hidden=8, tokens={"audio": 6})
    assert cfg.num_tokens("audio") == 6 and cfg.num_tokens("video") == 4 and cfg.num_tokens(FUSED) == 1
    assert cfg.source_names(["audio", "video"]) == ["audio", "video", FUSED]
    with pytest.raises(ValueError, match="not in the encoder"):
        FrontEndConfig(llm_hidden=8, modalities=["landmarks"]).source_names(["audio", "video"])
    with pytest.raises(ValueError, match="num_tokens >= 1"):
        build_projector("resampler", 4, 8, 0, level="sequence")
