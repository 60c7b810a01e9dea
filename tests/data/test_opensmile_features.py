"""openSMILE features: eGeMAPS on a real RAVDESS clip, the preprocessor, its config checks and cache key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastive_mer.config import ConfigError
from contrastive_mer.data.kinds import OpenSmile, OpenSmileConfig
from contrastive_mer.experiment import load_config

pytest.importorskip("opensmile", reason="openSMILE features need the opensmile package")

RAVDESS_CLIP = "ravdess/Actor_02/03-01-05-02-01-01-02.flac"


def test_egemaps_functionals_on_a_ravdess_clip(shared_data):
    import soundfile as sf

    wave, rate = sf.read(shared_data / RAVDESS_CLIP, dtype="float32")
    prep = OpenSmile(OpenSmileConfig(sample_rate=rate, max_seconds=None))
    x = prep(wave)
    assert x.shape == (88,) and x.dtype == torch.float32 and torch.isfinite(x).all()
    # the first functional is the mean F0 in semitones from 27.5 Hz: a speaking voice sits between 10 and 50
    assert 10.0 < float(x[0]) < 50.0
    assert torch.equal(prep(wave), x)  # deterministic
    lld = OpenSmile(OpenSmileConfig(sample_rate=rate, level="lld", input_dim=25, max_seconds=None))(wave)
    assert lld.shape[1] == 25 and abs(lld.shape[0] - len(wave) / rate * 100) < 10  # one frame per 10 ms


def test_preprocessor_checks_dimension_and_keys_cache_by_feature_set():
    with pytest.raises(ValueError, match="88 values per clip.*input_dim=35"):
        OpenSmile(OpenSmileConfig(input_dim=35))
    with pytest.raises(ValueError, match="unknown openSMILE feature set"):
        OpenSmile(OpenSmileConfig(feature_set="nope"))
    a = OpenSmile(OpenSmileConfig()).settings()
    b = OpenSmile(OpenSmileConfig(feature_set="ComParE_2016", input_dim=6373)).settings()
    assert a["feature_set"] == "eGeMAPSv02" and a != b
    wave = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)
    with pytest.raises(ValueError, match="too short"):
        OpenSmile(OpenSmileConfig())(wave[:100])


def test_config_wires_opensmile_to_vector_encoders():
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "experiments" / "ravdess_speaker.yaml")
    assert cfg.model.modalities.egemaps.source == "audio"
    with pytest.raises(ConfigError, match="model.modalities.au.input: 'logmel' produces logmel inputs but the "
                                          "encoder 'mlp' takes vector"):
        load_config(ROOT / "experiments" / "ravdess_speaker.yaml", ["model.modalities.au.input=logmel"])
    with pytest.raises(ConfigError, match="unknown preprocessor kind"):
        load_config(ROOT / "experiments" / "ravdess_speaker.yaml", ["model.modalities.egemaps.input=nope"])
    with pytest.raises(ConfigError, match="source 'voice' of modality 'egemaps'"):
        load_config(ROOT / "experiments" / "ravdess_speaker.yaml", ["model.modalities.egemaps.source=voice"])


def test_logmel_stats_match_the_log_mel_and_audio_baselines_are_added():
    from contrastive_mer.data.kinds import (
        LogMel,
        LogMelConfig,
        LogMelStats,
        LogMelStatsConfig,
        Vector,
        VectorConfig,
    )
    from contrastive_mer.evaluation.baselines import with_audio_baselines

    wave = np.random.default_rng(0).normal(size=16000).astype(np.float32)
    mel = LogMel(LogMelConfig(n_mels=32))(wave).numpy()
    stats = LogMelStats(LogMelStatsConfig(n_mels=32, input_dim=64))(wave).numpy()
    np.testing.assert_allclose(stats, np.concatenate([mel.mean(1), mel.std(1)]), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="64 values"):
        LogMelStats(LogMelStatsConfig(n_mels=32, input_dim=35))
    smile = OpenSmile(OpenSmileConfig())
    smile.source = "audio"
    preps = with_audio_baselines({"egemaps": smile, "au": Vector(VectorConfig())})
    assert set(preps) == {"egemaps", "au", "logmel_stats"}  # eGeMAPS already an input: only log-mel added
    assert preps["logmel_stats"].source == "audio"
    assert set(with_audio_baselines({"au": Vector(VectorConfig())})) == {"au"}  # no waveform input
