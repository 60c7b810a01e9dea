"""``hf_audio_cached``: a frozen backbone's layers computed once per clip, cached under the model's identity,
and the pairwise encoders pretrained on them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive_mer.data.kinds import INPUT_KINDS
from contrastive_mer.encoders import build_encoder
from contrastive_mer.encoders.hf_backbone import BackboneNotFound
from tests.encoders.hf_tiny import save_tiny_audio

KIND = INPUT_KINDS.get("hf_audio_cached")


def _prep(folder: Path, **settings):
    return KIND.build(KIND.config_cls(model_path=str(folder), input_dim=32, **settings), source="audio")


def test_cache_key_follows_weights_layers_and_preprocessing_not_location(tmp_path):
    folder = save_tiny_audio("wavlm", tmp_path / "m", seed=0)
    base = _prep(folder).settings()
    assert base["model"] and "model_path" not in base and "device" not in base
    moved = shutil.copytree(folder, tmp_path / "elsewhere")
    assert _prep(moved).settings() == base  # identity, not location
    for changed in ({"layers": 0}, {"layers": [1, 2]}, {"layer_combine": "concat"}, {"max_seconds": 4.0},
                    {"normalize": False}, {"sample_rate": 8000}, {"sequence": True}, {"window_seconds": 10.0}):
        assert _prep(folder, **changed).settings() != base, changed
    save_tiny_audio("wavlm", folder, seed=1)  # new weights in the same folder
    assert _prep(folder).settings()["model"] != base["model"]


def test_features_are_the_backbone_layers(tmp_path):
    folder = save_tiny_audio("hubert", tmp_path / "m")
    wave = np.random.default_rng(0).normal(size=8000).astype(np.float32)
    enc = build_encoder("hf_audio", {"model_path": str(folder), "layers": [1, 2], "layer_combine": "mean"})
    with torch.no_grad():
        want = enc(torch.from_numpy(wave)[None])
    seq = _prep(folder, layers=[1, 2], sequence=True)(wave)
    torch.testing.assert_close(seq, want.sequence[0], atol=1e-5, rtol=1e-4)
    utt = _prep(folder, layers=[1, 2])(wave)
    torch.testing.assert_close(utt, want.feature[0], atol=1e-5, rtol=1e-4)
    cat = KIND.build(KIND.config_cls(model_path=str(folder), input_dim=64, layers=[1, 2], layer_combine="concat"))
    assert cat(wave).shape == (64,)
    with pytest.raises(ValueError, match="32-d features but input_dim is 768: set encoder_args.input_dim: 32"):
        KIND.build(KIND.config_cls(model_path=str(folder)))(wave)
    assert KIND.baseline(_prep(folder), utt).shape == (32,)
    with pytest.raises(BackboneNotFound, match=r"preprocess\.model_path: no folder .*nope"):
        _prep(tmp_path / "nope")(wave)


def test_pretraining_on_cached_backbone_features(tmp_path, monkeypatch):
    """mlp (utterance means) and seq_transformer (frame sequences) pretrain on a tiny backbone's cached layers,
    standardised per speaker; a second pass reads the disk cache and never runs the backbone."""
    from contrastive_mer.data.datamodule import build_corpus, build_preprocessors
    from contrastive_mer.data.dataset import MERDataset, PreparedSample
    from contrastive_mer.data.kinds.hf_audio_cached import HFAudioCached
    from contrastive_mer.experiment import load_config
    from contrastive_mer.pretrain.loop import pretrain

    folder = save_tiny_audio("wav2vec2_layer", tmp_path / "w2v", conv_kernel=(16, 20), conv_stride=(16, 20))
    overrides = [
        "data.options.num_speakers=4", "data.options.speakers=[0,1,2]", "data.options.clips_per_speaker_emotion=2",
        "data.options.num_emotions=2",
        "data.options.modalities=[audio,text]", "data.batch_size=8", "data.val_fraction=0.34",
        "model.head.hidden_dim=32", "model.head.output_dim=16", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
        "data.cache=disk", f"data.cache_dir={tmp_path / 'cache'}",
        "model.modalities={audio: {encoder: mlp}, speech: {encoder: seq_transformer}, text: {encoder: hf_text}}",
        "model.modalities.text.encoder_args={output_dim: 32, bert_hidden: 32, bert_layers: 1, bert_heads: 2, "
        "bert_intermediate: 32}",
        "model.modalities.audio.input=hf_audio_cached", "model.modalities.audio.encoder_args.input_dim=32",
        "model.modalities.audio.encoder_args.output_dim=32", f"model.modalities.audio.preprocess.model_path={folder}",
        "model.modalities.audio.preprocess.max_seconds=1.0", "model.modalities.audio.preprocess.layers=all",
        "model.modalities.speech.input=hf_audio_cached", "model.modalities.speech.source=audio",
        "model.modalities.speech.encoder_args={input_dim: 32, d_model: 32, heads: 2, layers: 1, "
        "dim_feedforward: 32, output_dim: 32}",
        f"model.modalities.speech.preprocess.model_path={folder}", "model.modalities.speech.preprocess.sequence=true",
        "model.modalities.speech.preprocess.max_seconds=1.0",
        "data.normalize.audio=speaker", "data.normalize.speech=speaker",
    ]
    cfg = load_config(None, overrides)
    first = pretrain(cfg, tmp_path / "run1")
    assert first.checkpoint.is_file()
    cached = sorted((tmp_path / "cache").rglob("*.pt"))
    assert {p.parent.name for p in cached} >= {"audio", "speech"}
    vec = torch.load(next(p for p in cached if p.parent.name == "audio"), weights_only=True)
    seq = torch.load(next(p for p in cached if p.parent.name == "speech"), weights_only=True)
    assert vec.shape == (32,) and seq.dim() == 2 and seq.shape[1] == 32 and seq.shape[0] > 10

    def no_backbone(self, wave):
        raise AssertionError("the backbone ran although its features are cached")

    monkeypatch.setattr(HFAudioCached, "features", no_backbone)
    preps = build_preprocessors(cfg)
    adapter = build_corpus(cfg)
    again = MERDataset(adapter, adapter.records(), preps, "disk", cache_dir=tmp_path / "cache")
    items = [again[i] for i in range(len(again))]
    assert all(isinstance(s, PreparedSample) and s.tensors["speech"].shape[1] == 32 for s in items)


def test_pretraining_tcn_seq_on_cached_backbone_frames(tmp_path, monkeypatch):
    """The paper's TCN (``tcn_seq``) pretrains on a tiny backbone's cached frame sequences (two layers
    concatenated, standardised per speaker); one more step moves every encoder's weights."""
    import math

    import pytorch_lightning as pl

    from contrastive_mer.data.datamodule import MERDataModule
    from contrastive_mer.experiment import load_config
    from contrastive_mer.model.module import PairwiseContrastiveModule
    from contrastive_mer.pretrain.loop import pretrain
    from tests.conftest import fast_dev_run_changes

    folder = save_tiny_audio("wav2vec2_layer", tmp_path / "w2v", conv_kernel=(16, 20), conv_stride=(16, 20))
    cfg = load_config(None, [
        "data.options.num_speakers=4", "data.options.speakers=[0,1,2]", "data.options.clips_per_speaker_emotion=2",
        "data.options.num_emotions=2", "data.options.modalities=[audio,text]", "data.batch_size=8",
        "data.val_fraction=0.34", "model.head.hidden_dim=32", "model.head.output_dim=16", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
        "data.cache=disk", f"data.cache_dir={tmp_path / 'cache'}",
        "model.modalities={audio: {encoder: tcn_seq}, text: {encoder: hf_text}}",
        "model.modalities.text.encoder_args={output_dim: 32, bert_hidden: 32, bert_layers: 1, bert_heads: 2, "
        "bert_intermediate: 32}",
        "model.modalities.audio.input=hf_audio_cached",
        "model.modalities.audio.encoder_args={input_dim: 64, bottleneck: 16, hidden: 24, blocks: 2, repeats: 1, "
        "output_dim: 32}",
        f"model.modalities.audio.preprocess.model_path={folder}", "model.modalities.audio.preprocess.sequence=true",
        "model.modalities.audio.preprocess.layers=[1,2]", "model.modalities.audio.preprocess.layer_combine=concat",
        "model.modalities.audio.preprocess.max_seconds=1.0", "data.normalize.audio=speaker",
    ])
    result = pretrain(cfg, tmp_path / "run")
    assert result.checkpoint.is_file()
    assert result.metrics and all(math.isfinite(v) for v in result.metrics.values())
    cached = sorted((tmp_path / "cache" / "audio").glob("*.pt"))
    frames = torch.load(cached[0], weights_only=True)
    assert frames.dim() == 2 and frames.shape[1] == 64 and frames.shape[0] > 10  # (T, 2 x 32)
    pl.seed_everything(0)
    changed, _ = fast_dev_run_changes(PairwiseContrastiveModule(cfg), MERDataModule(cfg))
    assert changed == {"audio", "text"}

    def no_backbone(self, wave):
        raise AssertionError("the backbone ran although pretraining cached these layers")

    from contrastive_mer.data.kinds.hf_audio_cached import HFAudioCached
    from contrastive_mer.extract.backbone_layers import export_backbone_layers

    monkeypatch.setattr(HFAudioCached, "features", no_backbone)  # the per-layer export shares the cache
    done = export_backbone_layers(cfg, "audio", tmp_path / "feats", layers=[1, 2], levels=["FRA"])
    assert done.written == len(cached) and not done.failed
    stored = [torch.load(p, weights_only=True).numpy() for p in cached]
    for path in sorted((tmp_path / "feats" / "w2v-L1-FRA").glob("*.npy")):  # the cached (T, 64) split in two
        both = np.concatenate([np.load(path), np.load(tmp_path / "feats" / "w2v-L2-FRA" / path.name)], axis=1)
        assert any(t.shape == both.shape and np.array_equal(t, both) for t in stored), path.name
