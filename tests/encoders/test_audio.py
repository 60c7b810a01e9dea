"""The TCN's official-code options: dB log-mel relative to the clip maximum, dropout, PReLU before the output
layer (official order: mean over time, PReLU, Linear), the official widths; defaults unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from contrastive_mer.encoders import build_encoder
from contrastive_mer.encoders.audio import TCNConfig, db_relative_to_max
from contrastive_mer.encoders.base import length_mask


def test_db_relative_to_max_matches_numpy_power_to_db():
    rng = np.random.default_rng(0)
    power = rng.uniform(1e-12, 1.0, size=(2, 4, 7)) ** 4  # wide dynamic range, so the 80 dB floor bites
    lengths = torch.tensor([7, 5])
    out = db_relative_to_max(torch.from_numpy(np.log(power)), length_mask(lengths, 7, 2, torch.device("cpu")))
    for b, n in enumerate(lengths.tolist()):
        valid = power[b, :, :n]
        expected = np.maximum(10 * np.log10(valid / valid.max()), -80.0)  # librosa.power_to_db(S, ref=np.max)
        np.testing.assert_allclose(out[b, :, :n].numpy(), expected, rtol=1e-6, atol=1e-6)
        assert torch.all(out[b, :, n:] == 0)
    assert out.max() == 0.0 and out.min() >= -80.0


def test_defaults_unchanged_and_official_widths_selectable():
    cfg = TCNConfig()
    assert (cfg.bottleneck, cfg.hidden, cfg.dropout, cfg.db_scale, cfg.output_prelu) == (128, 256, 0.0, False, False)
    plain = build_encoder("tcn", {"n_mels": 16, "blocks": 2, "repeats": 1})
    assert not any("output_act" in k for k in plain.state_dict())  # old checkpoints still load
    official = build_encoder("tcn", {"n_mels": 16, "bottleneck": 64, "hidden": 128, "blocks": 2, "repeats": 1})
    assert official.bottleneck.out_channels == 64 and official.blocks[0].expand.out_channels == 128


def test_output_prelu_is_mean_then_prelu_then_linear_and_padding_free():
    torch.manual_seed(0)
    args = {"n_mels": 8, "bottleneck": 6, "hidden": 10, "blocks": 2, "repeats": 1, "output_dim": 5,
            "output_prelu": True, "db_scale": True, "dropout": 0.1}
    enc = build_encoder("tcn", args).eval()
    with torch.no_grad():
        enc.output_act.weight.fill_(0.1)  # a slope that is not 1: the activation matters
        x = torch.randn(1, 8, 12)
        out = enc(x)
        mask = torch.ones(1, 12, dtype=torch.bool)
        h = enc.bottleneck(enc.input_norm(db_relative_to_max(x, mask), mask))
        for block in enc.blocks:
            h = block(h, mask)
        slope = 0.1
        pooled = h.mean(-1)
        expected = enc.frame_proj(torch.where(pooled > 0, pooled, slope * pooled))
        torch.testing.assert_close(out.feature, expected)
        padded = torch.cat([x, torch.randn(1, 8, 5)], dim=-1)  # padding after the clip changes nothing
        torch.testing.assert_close(enc(padded, torch.tensor([12])).feature, out.feature, atol=1e-5, rtol=1e-5)
    enc.train()
    a, b = enc(x).feature, enc(x).feature
    assert not torch.allclose(a, b)  # dropout is active in training
    cfg = dataclasses.asdict(TCNConfig(**args))
    assert cfg["dropout"] == 0.1
