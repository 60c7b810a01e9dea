"""Issue 22 item 14: "silent" audio is judged by level (the RMS of its loudest 50 ms window below -60 dBFS by
default, configurable through ``data.options.silence_dbfs``), not by exact zeros: dither or a noise floor in an
empty recording is silence, speech with long pauses is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from contrastive_mer.data.audio_io import SILENCE_DBFS, loudest_dbfs, rms_dbfs
from contrastive_mer.data.datasets.base import SampleError
from contrastive_mer.data.datasets.manifest import ManifestAdapter
from contrastive_mer.data.media import MediaError, load_audio


def _noise(level_dbfs: float, n: int = 16000, seed: int = 0) -> np.ndarray:
    """White noise scaled to an RMS level of ``level_dbfs``."""
    x = np.random.default_rng(seed).normal(size=n)
    return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (level_dbfs / 20)).astype(np.float32)


def test_rms_dbfs_matches_known_levels() -> None:
    t = np.arange(48000) / 48000
    assert rms_dbfs(np.sin(2 * np.pi * 440 * t)) == pytest.approx(-3.0103, abs=1e-3)
    assert rms_dbfs(np.ones(10)) == 0.0 and rms_dbfs(np.zeros(10)) == float("-inf")
    assert rms_dbfs(_noise(-70.0)) == pytest.approx(-70.0, abs=1e-3)
    assert SILENCE_DBFS == -60.0


def test_a_noise_floor_is_silent_by_level_and_the_level_is_configurable(tmp_path: Path) -> None:
    floor = tmp_path / "floor.wav"
    sf.write(floor, _noise(-75.0), 16000, subtype="FLOAT")  # every sample far above 1e-6, but inaudible
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, _noise(-50.0), 16000, subtype="FLOAT")
    with pytest.raises(MediaError, match=r"silent audio \(RMS level of its loudest 50 ms: -7\d\.\d dBFS, below the"):
        load_audio(floor)
    assert load_audio(quiet).shape == (16000,)
    assert load_audio(floor, silence_dbfs=-90.0).shape == (16000,)
    with pytest.raises(MediaError, match="silent"):
        load_audio(quiet, silence_dbfs=-40.0)
    with pytest.raises(ValueError, match="silence_dbfs"):
        load_audio(quiet, silence_dbfs=3.0)

    manifest = tmp_path / "m.csv"
    manifest.write_text("id,audio\nfloor,floor.wav\nquiet,quiet.wav\n", encoding="utf-8")
    default = ManifestAdapter(path=str(manifest))
    records = {r.id: r for r in default.records()}
    with pytest.raises(SampleError, match="silent audio"):
        default.load(records["floor"], ["audio"])
    assert default.load(records["quiet"], ["audio"]).inputs["audio"].shape == (16000,)
    for level in (-80.0, None):  # a lower level, or none: the floor is kept
        adapter = ManifestAdapter(path=str(manifest), silence_dbfs=level)
        assert adapter.load(adapter.records()[0], ["audio"]).inputs["audio"].shape == (16000,)
    with pytest.raises(ValueError, match="silence_dbfs"):
        ManifestAdapter(path=str(manifest), silence_dbfs=float("nan"))


def test_loudest_window_against_a_numpy_loop_and_speech_with_pauses(tmp_path: Path) -> None:
    """The loudest window's level equals a plain loop over 50 ms windows; a clip that is mostly pause (whole-clip RMS
    below -60 dBFS, like a quiet real take) is kept because one stretch of it is loud."""
    rate = 16000
    x = _noise(-80.0, n=3 * rate + 123, seed=1)
    x[rate: rate + 800] = _noise(-50.0, n=800, seed=2)  # 50 ms of "speech" in 3 s of floor
    n = 800
    levels = [10 * np.log10(np.mean(np.square(x[i:i + n], dtype=np.float64))) for i in range(0, x.size, n)]
    assert loudest_dbfs(x, rate) == pytest.approx(max(levels), abs=1e-9)
    assert rms_dbfs(x) < -60.0
    path = tmp_path / "pauses.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    assert load_audio(path).shape == (x.size,)
