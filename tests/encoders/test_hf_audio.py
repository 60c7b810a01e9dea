"""``hf_audio`` on tiny random transformers speech models saved to a folder and loaded through the real path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive_mer.encoders import build_encoder
from contrastive_mer.encoders.hf_audio import window_starts
from contrastive_mer.encoders.hf_backbone import BackboneNotFound
from contrastive_mer.errors import UserError
from tests.encoders.hf_tiny import AUDIO_ARCHS, save_tiny_audio

RATE = 16000


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_audio")
    return {arch: save_tiny_audio(arch, root / arch) for arch in AUDIO_ARCHS}


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    return (0.3 * np.sin(np.arange(n) * 0.05) + 0.1 * rng.standard_normal(n) + 0.2).astype(np.float32)


def _reference(folder: Path, wave: np.ndarray) -> tuple[torch.Tensor, ...]:
    """transformers' own path: feature extractor, then the model with ``output_hidden_states``."""
    from transformers import AutoFeatureExtractor, AutoModel

    fe = AutoFeatureExtractor.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).eval()
    inputs = fe(wave, sampling_rate=RATE, return_tensors="pt")
    with torch.no_grad():
        if model.config.model_type == "whisper":
            hidden = model.get_encoder()(inputs["input_features"], output_hidden_states=True).hidden_states
            frames = -(-len(wave) // 320)
            return tuple(h[:, :frames] for h in hidden)
        return model(inputs["input_values"], output_hidden_states=True).hidden_states


def _batch(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(w) for w in waves])
    x = torch.zeros(len(waves), int(lens.max()))
    for i, w in enumerate(waves):
        x[i, : len(w)] = torch.from_numpy(w)
    return x, lens


@pytest.mark.parametrize("arch", AUDIO_ARCHS)
def test_selected_layers_equal_transformers_hidden_states(models, arch):
    wave = _clip(0.7, 1)
    ref = _reference(models[arch], wave)
    for layers in (0, -1, [1, 2]):
        enc = build_encoder("hf_audio", {"model_path": str(models[arch]), "layers": layers,
                                         "layer_combine": "concat"})
        with torch.no_grad():
            out = enc(torch.from_numpy(wave)[None])
        idx = [layers] if isinstance(layers, int) else layers
        expected = torch.cat([ref[i][0] for i in idx], dim=-1)
        assert out.sequence.shape[1] == expected.shape[0] == int(out.sequence_lengths[0])
        torch.testing.assert_close(out.sequence[0], expected, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(out.feature[0], expected.mean(0), atol=2e-5, rtol=1e-4)
    assert enc.frame_rate == RATE / (320 if arch == "whisper" else 10)


@pytest.mark.parametrize("arch", AUDIO_ARCHS)
def test_padded_batch_equals_each_clip_alone(models, arch):
    waves = [_clip(0.5, 2), _clip(0.23, 3), _clip(0.5, 4), _clip(0.37, 5)]
    enc = build_encoder("hf_audio", {"model_path": str(models[arch]), "layers": "all"})
    x, lens = _batch(waves)
    with torch.no_grad():
        batched = enc(x, lens)
        for i, w in enumerate(waves):
            alone = enc(torch.from_numpy(w)[None])
            n = int(alone.sequence_lengths[0])
            assert int(batched.sequence_lengths[i]) == n
            torch.testing.assert_close(batched.sequence[i, :n], alone.sequence[0], atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(batched.feature[i], alone.feature[0], atol=2e-5, rtol=1e-4)
            assert torch.all(batched.sequence[i, n:] == 0)


def test_group_norm_needs_the_per_length_rule(models):
    """A group-norm wav2vec 2.0 config normalises over the whole (padded) input: running a zero-padded clip
    through it, even with an attention mask, changes its features, which the per-length grouping avoids."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(models["wav2vec2_group"])).eval()
    short = torch.from_numpy(_clip(0.23, 3))
    short = (short - short.mean()) / torch.sqrt(short.var(unbiased=False) + 1e-7)
    padded = torch.nn.functional.pad(short, (0, 4000))[None]
    with torch.no_grad():
        alone = model(short[None]).last_hidden_state
        naive = model(padded, attention_mask=(torch.arange(padded.shape[1]) < short.shape[0]).long()[None])
    n = alone.shape[1]
    assert (naive.last_hidden_state[0, :n] - alone[0]).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ["wav2vec2_layer", "wav2vec2_group", "hubert", "wavlm"])
def test_windowed_long_clip_matches_whole_clip(models, arch):
    """Layer 0 (convolutions + positional convolution: a receptive field of 30 frames) is local, so with an
    overlap wider than it the stitched windows equal the whole clip to 1e-4 (layer-norm front ends); a
    group-norm front end normalises per window, so its windows agree only to a mean cosine similarity > 0.98. The
    attention layers see the whole window; their stitched features agree with the whole clip's only roughly
    (cosine similarity > 0.8 on this random model), which is stated, not hidden."""
    wave = torch.from_numpy(_clip(0.6, 6))[None]
    args = {"model_path": str(models[arch]), "window_seconds": 0.1, "overlap_seconds": 0.04, "layers": [0, -1],
            "layer_combine": "concat"}
    windowed = build_encoder("hf_audio", args)
    whole = build_encoder("hf_audio", {**args, "window_seconds": 2.0})
    assert window_starts(wave.shape[1], windowed.window, windowed.window - windowed.overlap)[-1] > 0
    with torch.no_grad():
        a, b = windowed(wave).sequence[0], whole(wave).sequence[0]
    assert a.shape == b.shape
    first, last = a[:, :32], b[:, :32]
    if arch == "wav2vec2_group":
        assert torch.nn.functional.cosine_similarity(first, last, dim=-1).mean() > 0.98
    else:
        torch.testing.assert_close(first, last, atol=1e-4, rtol=1e-4)
    assert torch.nn.functional.cosine_similarity(a[:, 32:], b[:, 32:], dim=-1).mean() > 0.8


def test_frozen_by_default_top_layers_trainable_on_request(models):
    folder = str(models["wavlm"])
    x = torch.from_numpy(_clip(0.3, 7))[None]
    frozen = build_encoder("hf_audio", {"model_path": folder, "layers": "all", "output_dim": 8}).train()
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    frozen(x)
    assert not frozen.backbone.training  # no dropout in a frozen backbone
    frozen(x).feature.sum().backward()
    assert frozen.mixer.weights.grad is not None and frozen.proj.weight.grad is not None
    top = build_encoder("hf_audio", {"model_path": folder, "trainable_layers": 1,
                                     "gradient_checkpointing": True}).train()
    trainable = {n.split(".")[2] for n, p in top.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"1"}  # encoder.layers.1 only
    top(x).feature.sum().backward()
    assert top.backbone.encoder.layers[1].feed_forward.output_dense.weight.grad is not None


def test_missing_local_model_is_one_line_naming_path_and_setting(tmp_path):
    missing = tmp_path / "wavlm-base-plus"
    with pytest.raises(BackboneNotFound) as err:
        build_encoder("hf_audio", {"model_path": str(missing)})
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)
    assert str(missing) in str(err.value) and "model_path" in str(err.value)
    with pytest.raises(BackboneNotFound, match="nobody/no-such-model.*allow_download") as err:
        build_encoder("hf_audio", {"model_path": "nobody/no-such-model", "cache_dir": str(tmp_path)})
    assert "\n" not in str(err.value)
    with pytest.raises(BackboneNotFound, match="model_path is not set"):
        build_encoder("hf_audio", {})


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="layers must be"):
        build_encoder("hf_audio", {"model_path": "x", "layers": "some"})
    with pytest.raises(ValueError, match="layer_combine"):
        build_encoder("hf_audio", {"model_path": "x", "layer_combine": "max"})
