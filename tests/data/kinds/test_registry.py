"""Every registered input kind has every part, and the names saved configs hold never change."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from contrastive_mer.config import ConfigError
from contrastive_mer.data.kinds import INPUT_KINDS, InputKind, kind_of
from contrastive_mer.data.transforms import Preprocessor
from contrastive_mer.encoders import encoder_names, get_entry

#: names written into saved configs (model.modalities.<m>.input) and what the built-ins were before the package
BUILT_INS = {"logmel": "logmel", "frames": "frames", "tokens": "tokens", "vector": "vector",
             "opensmile": "vector", "logmel_stats": "vector", "waveform": "waveform", "hf_audio_cached": "vector"}
DERIVED = {"logmel": {"n_mels": "n_mels"},
           "tokens": {"model_path": "model_path", "vocab_size": "vocab_size", "max_length": "max_length"},
           "vector": {"input_dim": "input_dim"}, "opensmile": {"input_dim": "input_dim"},
           "logmel_stats": {"input_dim": "input_dim"}, "frames": {}, "waveform": {"sample_rate": "sample_rate"},
           "hf_audio_cached": {"input_dim": "input_dim"}}


def _opensmile_installed() -> bool:
    try:
        import opensmile  # noqa: F401
    except ImportError:
        return False
    return True


def test_built_in_names_produces_and_derived_settings_are_unchanged():
    assert set(BUILT_INS) <= set(INPUT_KINDS.names())
    for name, produces in BUILT_INS.items():
        kind = INPUT_KINDS.get(name)
        assert kind.name == name and kind.encoder_kind == produces
        assert dict(kind.derived) == DERIVED[name]
    with pytest.raises(KeyError, match="unknown input kind 'nope'; known: frames, hf_audio_cached, logmel"):
        INPUT_KINDS.get("nope")


@pytest.mark.parametrize("name", sorted(BUILT_INS))
def test_every_kind_has_every_part(name: str):
    kind = INPUT_KINDS.get(name)
    assert isinstance(kind, InputKind)
    assert dataclasses.is_dataclass(kind.config_cls)
    assert issubclass(kind.preprocessor_cls, Preprocessor) and kind.preprocessor_cls.kind == name
    fields = {f.name for f in dataclasses.fields(kind.config_cls)}
    assert set(kind.derived.values()) <= fields
    encoders = [e for e in encoder_names() if get_entry(e).input_kind == kind.encoder_kind]
    assert encoders, f"{name}: no encoder takes {kind.encoder_kind} inputs"
    if name == "opensmile" and not _opensmile_installed():
        pytest.skip("opensmile not installed")
    prep = kind.build(kind.config_cls(), source="src")
    assert prep.kind == name and prep.source == "src" and kind_of(prep) is kind
    assert isinstance(prep.settings(), dict)  # the disk-cache key
    x = prep.placeholder()
    padded, _ = prep.collate([x, None])
    assert padded.shape[0] == 2
    assert kind.baseline(prep, x).ndim == 1
    assert kind.window_length(prep, 5, None) in (0, 5)
    if kind.standardisable:
        rows = kind.to_rows(prep, x)
        assert rows.dim() == 2 and torch.equal(kind.from_rows(prep, rows), x)
    else:
        with pytest.raises(ValueError, match="cannot be standardised"):
            kind.to_rows(prep, x)
    if not kind.text_input:  # every non-text kind decodes a file path (a missing file: a decoding error)
        assert type(kind).decode_path is not InputKind.decode_path
        with pytest.raises(Exception):
            kind.decode_path(prep, Path("/nonexistent/clip.bin"))


def test_cache_keys_are_unchanged():
    """``settings()`` enters the disk-cache key: the same dicts as before the move."""
    logmel, stats = INPUT_KINDS.get("logmel"), INPUT_KINDS.get("logmel_stats")
    assert logmel.build(logmel.config_cls()).settings() == {
        "sample_rate": 16000, "n_mels": 128, "n_fft": 400, "hop_length": 160, "win_length": None, "f_min": 0.0,
        "f_max": None, "max_seconds": 8.0}
    s = stats.build(stats.config_cls()).settings()
    assert s["kind"] == "logmel_stats" and s["input_dim"] == 256


def test_input_kind_errors_name_the_key():
    from omegaconf import OmegaConf

    from contrastive_mer.data.kinds import check_modality_input

    mod = OmegaConf.create({"encoder": "mlp", "encoder_args": {}, "preprocess": {}, "input": "logmel"})
    with pytest.raises(ConfigError, match=r"^model\.modalities\.au\.input: 'logmel' produces logmel inputs"):
        check_modality_input(mod, "model.modalities.au")
    mod.input = "nope"
    with pytest.raises(ConfigError, match=r"^model\.modalities\.au\.input: unknown preprocessor kind 'nope'"):
        check_modality_input(mod, "model.modalities.au")
    mod.input, mod.preprocess = "vector", {"nope": 1}
    with pytest.raises(ConfigError, match=r"^model\.modalities\.au\.preprocess: "):
        check_modality_input(mod, "model.modalities.au")
    mod.preprocess = {}
    assert check_modality_input(mod, "model.modalities.au") == "vector"
