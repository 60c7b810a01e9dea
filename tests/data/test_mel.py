"""Mel filterbank geometry: empty filters counted as torchaudio builds them, warned about once with working fixes;
the paper configs' 128-band log-mel has no constant rows, the old 400-point FFT had four."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from contrastive_mer.data import mel
from contrastive_mer.data.kinds import LogMel, LogMelConfig
from contrastive_mer.data.mel import check_mel_geometry, empty_filter_message, empty_mel_filters

torchaudio_functional = pytest.importorskip("torchaudio.functional")


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050])
def test_empty_filters_match_torchaudio_filterbank(sample_rate: int) -> None:
    import warnings

    for n_fft, n_mels, f_min, f_max in itertools.product([256, 400, 512, 1024], [32, 64, 96, 128], [0.0, 60.0],
                                                         [None, 3800.0]):
        top = float(sample_rate // 2) if f_max is None else f_max
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bank = torchaudio_functional.melscale_fbanks(n_fft // 2 + 1, f_min, top, n_mels, sample_rate)
        expected = int((bank.sum(0) == 0).sum())
        got = empty_mel_filters(sample_rate, n_fft, n_mels, f_min=f_min, f_max=f_max)
        assert got == expected, (n_fft, n_mels, f_min, f_max)


def test_warning_names_fixes_that_work_and_comes_once(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mel, "_checked", set())
    check_mel_geometry(16000, 400, 128)
    err = capsys.readouterr().err
    assert "4 of the 128 mel filters" in err and "n_fft >= 574" in err and "n_mels <= 89" in err
    assert empty_mel_filters(16000, 574, 128) == 0 < empty_mel_filters(16000, 573, 128)
    assert empty_mel_filters(16000, 400, 89) == 0 < empty_mel_filters(16000, 400, 90)
    check_mel_geometry(16000, 400, 128)
    assert capsys.readouterr().err == ""  # once per setting
    assert empty_filter_message(16000, 400, 64) is None


@pytest.mark.parametrize("kwargs", [{"win_length": 2000}, {"win_length": 0}, {"f_min": 9000.0},
                                    {"f_max": 9000.0}, {"n_mels": 0}])
def test_inconsistent_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LogMelConfig(**kwargs)


def constant_rows(cfg: LogMelConfig) -> int:
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    out = LogMel(cfg)(wave)
    return int((out.std(dim=1) == 0).sum())


def test_paper_logmel_has_no_constant_rows_the_old_setting_had_four() -> None:
    from contrastive_mer.data.kinds import preprocess_config
    from contrastive_mer.experiment import load_config

    cfg = load_config("experiments/paper.yaml")
    paper = preprocess_config(cfg.model.modalities.audio, "logmel")
    assert (paper.n_mels, paper.n_fft, paper.win_length) == (128, 1024, 400)
    assert constant_rows(paper) == 0
    assert constant_rows(LogMelConfig(n_mels=128, n_fft=400)) == 4


def test_window_is_zero_padded_not_lengthened() -> None:
    """win_length 400 in a 1024-point FFT: a click is seen by the same frames as with a 400-point FFT (25 ms)."""
    wave = np.zeros(16000, dtype=np.float32)
    wave[8000] = 1.0
    hit = {}
    for n_fft, win in ((400, None), (1024, 400), (1024, None)):
        out = LogMel(LogMelConfig(n_mels=40, n_fft=n_fft, win_length=win))(wave)
        hit[(n_fft, win)] = torch.nonzero(out.max(dim=0).values > np.log(1e-6) + 1).flatten().tolist()
    assert hit[(1024, 400)] == hit[(400, None)]
    assert len(hit[(1024, None)]) > len(hit[(400, None)])


def test_config_names_the_key_of_an_inconsistent_window() -> None:
    from contrastive_mer.config import ConfigError
    from contrastive_mer.experiment import load_config

    with pytest.raises(ConfigError, match=r"^model\.modalities\.audio\.preprocess: win_length must be between"):
        load_config("experiments/demo.yaml", ["model.modalities.audio.preprocess.win_length=2000"])


def test_db_ref_clip_max_is_power_to_db_over_the_whole_clip_before_windowing() -> None:
    from contrastive_mer.data.windows import take_window

    rng = np.random.default_rng(0)
    wave = (rng.normal(size=16000) * np.linspace(0.01, 1.0, 16000)).astype(np.float32)  # loudest at the end
    prep = LogMel(LogMelConfig(n_mels=40, db_ref="clip_max"))
    db = prep(wave)
    power = prep.mel(torch.from_numpy(wave)).double().numpy()  # the mel power itself
    want = 10 * np.log10(np.maximum(power, 1e-10)) - 10 * np.log10(np.maximum(power.max(), 1e-10))
    np.testing.assert_allclose(db.numpy(), np.maximum(want, -80.0), atol=1e-3)
    assert float(db.max()) == 0.0 and float(db.min()) >= -80.0
    first = take_window(db, 1, 20, 0.0)  # a quiet window keeps the clip's reference: its maximum is below 0 dB
    assert float(first.max()) < -10.0
    # the natural-log cache key is unchanged by the new options; the dB one differs
    assert "db_ref" not in LogMel(LogMelConfig(n_mels=40)).settings()
    assert LogMel(LogMelConfig(n_mels=40, db_ref="clip_max")).settings()["db_ref"] == "clip_max"
    with pytest.raises(ValueError, match="db_ref"):
        LogMelConfig(db_ref="window_max")
