"""FrontEnd: missing-modality rule, gradients, save/load with the encoder SHA-256, raw paths and feature stores."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from contrastive_mer.data.datamodule import build_preprocessors
from contrastive_mer.frontend import (
    FUSED,
    EncoderMismatchError,
    FrontEnd,
    FrontEndConfig,
    StoreSources,
    prepare_batch,
)
from contrastive_mer.frontend.sources import SourceBatch
from contrastive_mer.fusion import fuse
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from tests.fixtures.frontend import mixed_batch, save_checkpoint, tiny_llm, write_store

H = 32


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "enc.ckpt", seed=0)


@pytest.fixture(scope="module")
def batch():
    return mixed_batch(6)


@pytest.fixture(scope="module")
def encoded(ckpt, batch):
    """Token sources of the fixture batch and the encoder outputs they came from (encoded once)."""
    front = FrontEnd.from_checkpoint(ckpt, config())
    with torch.no_grad():
        return front.sources(batch), front.encoder.encode(batch)


def config(**kw) -> FrontEndConfig:
    base = dict(llm_hidden=H, tokens_per_modality=3, resampler_dim=16, resampler_heads=2)
    return FrontEndConfig(**{**base, **kw})


@pytest.mark.parametrize("projector", ["linear", "mlp", "resampler"])
def test_sources_and_tokens_follow_presence(ckpt, batch, encoded, projector):
    front = FrontEnd.from_checkpoint(ckpt, config(projector=projector))
    sources, outputs = encoded
    with torch.no_grad():
        tokens = front(sources)
    assert list(tokens) == ["audio", "video", "text", FUSED]
    for m in ["audio", "video", "text"]:
        present = batch.present[m]
        src = sources.sources[m]
        # sources are the encoder's own outputs: frame-level sequence (before pooling) and pooled feature
        lengths = outputs[m].sequence_lengths
        assert torch.equal(src.feature, outputs[m].feature)
        for i in torch.nonzero(present).flatten().tolist():
            assert int(src.lengths[i]) == int(lengths[i])
            assert torch.equal(src.sequence[i, :int(lengths[i])], outputs[m].sequence[i, :int(lengths[i])])
        assert src.lengths[~present].eq(0).all() and src.lengths[present].gt(0).all()
        assert tokens[m].tokens.shape == (6, 3, H)
        assert tokens[m].counts.tolist() == [3 if p else 0 for p in present.tolist()]
    expected = fuse({m: o.feature for m, o in outputs.items()}, None, batch.present, "concat",
                    modalities=front.encoder.modalities)
    torch.testing.assert_close(sources.sources[FUSED].feature, expected)
    assert tokens[FUSED].counts.tolist() == [1] * 6


def test_learned_missing_token_replaces_absent_rows(ckpt, batch, encoded):
    front = FrontEnd.from_checkpoint(ckpt, config(missing="learned"))
    with torch.no_grad():
        tokens = front(encoded[0])
    for m in ["audio", "video", "text"]:
        present = batch.present[m]
        assert tokens[m].counts.tolist() == [3 if p else 1 for p in present.tolist()]
        for i in torch.nonzero(~present).flatten().tolist():
            torch.testing.assert_close(tokens[m].row(i), front.missing_tokens[m].detach().unsqueeze(0))
    # two absent rows of the same modality get the very same token, which is not a zero vector
    assert front.missing_tokens["audio"].abs().sum() > 0


@pytest.mark.parametrize("freeze", [True, False])
def test_gradients_reach_the_projector_only(ckpt, batch, freeze):
    front = FrontEnd.from_checkpoint(ckpt, config(projector="resampler", missing="learned", freeze_encoders=freeze))
    llm, tok = tiny_llm("llama", hidden=H)
    llm.requires_grad_(False)
    front.train()
    assert not front.encoder.training or not freeze
    spliced = front.splicer(tok, llm)("<audio> <video> <text> <fused> What emotion ?", front(batch),
                                      ["happy"] * len(batch))
    llm(**spliced.model_inputs()).loss.backward()
    for name, p in front.projectors.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in front.missing_tokens.parameters())
    assert all(p.grad is None for p in llm.parameters())
    enc_grads = [p.grad is not None and p.grad.abs().sum() > 0 for p in front.encoder.encoders.parameters()]
    assert (not any(enc_grads)) if freeze else any(enc_grads)
    trainable = {id(p) for p in front.trainable_parameters()}
    assert all(id(p) in trainable for p in front.projectors.parameters())
    encoder_trainable = [id(p) in trainable for p in front.encoder.encoders.parameters()]
    assert (not any(encoder_trainable)) if freeze else sum(encoder_trainable) > 0.9 * len(encoder_trainable)


def test_save_load_round_trip_and_sha_check(ckpt, encoded, tmp_path):
    front = FrontEnd.from_checkpoint(ckpt, config(projector="mlp", missing="learned", seed=3))
    with torch.no_grad():  # make the weights differ from any fresh initialisation
        for p in front.projectors.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = front.save(tmp_path / "front.safetensors")
    loaded = FrontEnd.load(path, encoder_ckpt=ckpt)
    assert loaded.config == front.config
    with torch.no_grad():
        a, b = front(encoded[0]), loaded(encoded[0])
    for s in a:
        assert torch.equal(a[s].tokens, b[s].tokens) and torch.equal(a[s].counts, b[s].counts)
    # the saved file holds the projectors, not the frozen encoders
    from safetensors.torch import load_file

    assert not any(k.startswith("encoder.") for k in load_file(str(path)))
    other = save_checkpoint(tmp_path / "other.ckpt", seed=1)
    with pytest.raises(EncoderMismatchError, match="SHA-256"):
        FrontEnd.load(path, encoder_ckpt=other)
    with pytest.raises(ValueError, match="not a safetensors"):
        (tmp_path / "junk.safetensors").write_bytes(b"junk")
        FrontEnd.load(tmp_path / "junk.safetensors", encoder_ckpt=ckpt)


def test_raw_inputs_and_clip_paths_give_the_same_tokens(ckpt, tmp_path):
    front = FrontEnd.from_checkpoint(ckpt, config())
    pre = build_preprocessors(front.encoder.cfg)
    rng = np.random.default_rng(0)
    wave = (0.1 * np.sin(np.arange(12000) * 0.05) + 0.01 * rng.standard_normal(12000)).astype(np.float32)
    frames = rng.integers(0, 255, size=(3, 32, 32, 3), dtype=np.uint8)
    sf.write(tmp_path / "clip.wav", wave, 16000, subtype="FLOAT")
    raw = [{"audio": wave, "video": frames, "text": "I am so happy today"}, {"audio": wave}]
    by_path = [{"audio": str(tmp_path / "clip.wav"), "video": frames, "text": "I am so happy today"},
               {"audio": tmp_path / "clip.wav"}]
    with torch.no_grad():
        a = front(prepare_batch(pre, raw, ["x", "y"]))
        b = front(prepare_batch(pre, by_path, ["x", "y"]))
    for s in a:
        torch.testing.assert_close(a[s].tokens, b[s].tokens)
    assert a["video"].counts.tolist() == [3, 0] and a["text"].counts.tolist() == [3, 0]
    with pytest.raises(ValueError, match="sample 'x'.*audio"):
        prepare_batch(pre, [{"audio": str(tmp_path / "missing.wav")}], ["x"])
    with pytest.raises(ValueError, match="unknown modalities"):
        prepare_batch(pre, [{"landmarks": wave}], ["x"])


def test_tokens_from_a_feature_store_match_raw_inputs(ckpt, batch, encoded, tmp_path):
    front = FrontEnd.from_checkpoint(ckpt, config(projector="resampler"))
    write_store(tmp_path / "feats.h5", front.encoder, batch, front.encoder_sha256)
    path = front.save(tmp_path / "front.safetensors")
    with FeatureStore(tmp_path / "feats.h5") as store:
        store_front = FrontEnd.load(path, store=store)
        assert store_front.encoder is None and store_front.source_dims == front.source_dims
        rows = [4, 0, 2]  # any order
        sources = StoreSources(store, front.modalities)(rows)
        assert sources.ids == [batch.ids[r] for r in rows]
        with torch.no_grad():
            from_store = store_front(sources)
            from_raw = front(SourceBatch.concat([encoded[0].split()[r] for r in rows]))
        for s in from_raw:
            torch.testing.assert_close(from_store[s].tokens, from_raw[s].tokens, rtol=1e-5, atol=1e-5)
            assert from_store[s].counts.tolist() == from_raw[s].counts.tolist()
        other = FrontEnd(front.config, front.source_dims, None, "0" * 64)
        other.save(tmp_path / "other.safetensors")
        with pytest.raises(EncoderMismatchError):
            FrontEnd.load(tmp_path / "other.safetensors", store=store)
        with pytest.raises(KeyError, match="sequences"):
            store_sources_without_sequences(tmp_path, front.encoder.modalities, encoded[0], batch)


def store_sources_without_sequences(tmp_path, mods, sources, batch):
    feats = {m: sources.sources[m].feature.numpy() for m in mods}
    with FeatureStoreWriter(tmp_path / "flat.h5", mods, {m: f.shape[1] for m, f in feats.items()}, None,
                            fsync=False) as w:
        w.append(batch.ids, {}, {}, feats, projections={}, present={m: batch.present[m].numpy() for m in mods},
                 fused={})
    with FeatureStore(tmp_path / "flat.h5") as store:
        StoreSources(store, mods, level="sequence", fused=False)


def test_split_and_concat_round_trip(encoded, batch):
    sb = encoded[0]
    assert sb.ids == batch.ids
    parts = sb.split()
    assert [p.sources["audio"].sequence.shape[1] for p in parts] == \
        [max(int(n), 1) for n in sb.sources["audio"].lengths]
    again = SourceBatch.concat(parts)
    for name, src in sb.sources.items():
        torch.testing.assert_close(again.sources[name].feature, src.feature)
        if src.sequence is not None:
            torch.testing.assert_close(again.sources[name].sequence, src.sequence)
            assert torch.equal(again.sources[name].lengths, src.lengths)


def test_config_names_must_be_token_sources():
    with pytest.raises(ValueError, match="tokens names \\['landmarks'\\]"):
        FrontEnd(FrontEndConfig(llm_hidden=8, tokens={"landmarks": 2}), {"audio": 4})
    with pytest.raises(ValueError, match="placeholders names"):
        FrontEnd(FrontEndConfig(llm_hidden=8, placeholders={"vid": "<v>"}), {"audio": 4, FUSED: 4})
    front = FrontEnd(FrontEndConfig(llm_hidden=8, tokens={"audio": 2}), {"audio": 4, FUSED: 4})
    assert front.encoder is None and front.modalities == ["audio"]
    with pytest.raises(RuntimeError, match="no encoders"):
        front.sources(None)
