"""``tcn_seq``: the paper's TCN over ``(B, T, D)`` vector sequences equals ``tcn`` on the same frames read
channel-first; padding is invisible, gradients reach every weight, per-clip vectors are refused."""

from __future__ import annotations

import pytest
import torch

from contrastive_mer.encoders import build_encoder

ARGS = {"bottleneck": 6, "hidden": 10, "blocks": 2, "repeats": 1, "output_dim": 5}


def test_equals_tcn_on_transposed_frames_and_ignores_padding():
    torch.manual_seed(0)
    seq_enc = build_encoder("tcn_seq", {"input_dim": 7, **ARGS, "output_prelu": True}).eval()
    ref = build_encoder("tcn", {"n_mels": 7, **ARGS, "output_prelu": True}).eval()
    ref.load_state_dict(seq_enc.state_dict())  # same weights, same parameter names
    x = torch.randn(2, 11, 7)
    lengths = torch.tensor([11, 8])
    with torch.no_grad():
        got = seq_enc(x, lengths)
        want = ref(x.transpose(1, 2), lengths)
        torch.testing.assert_close(got.feature, want.feature)
        torch.testing.assert_close(got.sequence, want.sequence)
        alone = seq_enc(x[1:, :8])  # the second clip without its padding
        torch.testing.assert_close(got.feature[1:], alone.feature, atol=1e-5, rtol=1e-5)
    assert got.feature.shape == (2, 5) and got.sequence.shape == (2, 11, 5)
    assert got.sequence_lengths.tolist() == [11, 8]


def test_gradient_reaches_every_weight_and_vectors_are_refused():
    torch.manual_seed(1)
    enc = build_encoder("tcn_seq", {"input_dim": 4, **ARGS})
    enc(torch.randn(3, 9, 4), torch.tensor([9, 5, 2])).feature.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    with pytest.raises(ValueError, match=r"tcn_seq expects \(B, T, 4\).*set preprocess.sequence: true"):
        enc(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"got shape \(3, 9, 6\)"):
        enc(torch.randn(3, 9, 6))
