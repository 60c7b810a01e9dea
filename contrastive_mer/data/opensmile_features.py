"""openSMILE acoustic features (Eyben et al.) from a decoded waveform, through the ``opensmile`` PyPI package.

The package ships its binary and the standard configurations, so this works offline. Two levels:
``functionals`` (one vector per clip: 88 values for eGeMAPSv02, 6373 for ComParE_2016) and ``lld`` (frame-level
low-level descriptors every 10 ms: 25 for eGeMAPSv02, 65 for ComParE_2016). Decoding stays in
:mod:`contrastive_mer.data.media`; this module only turns a mono float waveform into features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: feature set -> (functionals dimension, low-level-descriptor dimension)
FEATURE_SETS: dict[str, tuple[int, int]] = {
    "eGeMAPSv02": (88, 25),
    "eGeMAPSv01b": (88, 23),
    "GeMAPSv01b": (62, 18),
    "ComParE_2016": (6373, 65),
}
LEVELS = ("functionals", "lld")


def feature_dim(feature_set: str, level: str) -> int:
    """The number of values per clip (functionals) or per frame (lld) of a feature set."""
    check(feature_set, level)
    return FEATURE_SETS[feature_set][LEVELS.index(level)]


def check(feature_set: str, level: str) -> None:
    """ValueError naming the bad feature set or level."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown openSMILE feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}")
    if level not in LEVELS:
        raise ValueError(f"unknown openSMILE level {level!r}; expected functionals or lld")


class OpenSmileExtractor:
    """Callable ``waveform (N,), sample_rate -> float32 (D,)`` (functionals) or ``(T, D)`` (lld).

    The openSMILE process object is created on first use in each process (it does not pickle).
    """

    def __init__(self, feature_set: str = "eGeMAPSv02", level: str = "functionals"):
        check(feature_set, level)
        self.feature_set, self.level = feature_set, level
        self._smile: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"feature_set": self.feature_set, "level": self.level, "_smile": None}

    def _engine(self) -> Any:
        if self._smile is None:
            try:
                import opensmile
            except ImportError as err:  # pragma: no cover - depends on the environment
                raise ImportError("openSMILE features need the opensmile package: pip install opensmile") from err
            level = opensmile.FeatureLevel.Functionals if self.level == "functionals" \
                else opensmile.FeatureLevel.LowLevelDescriptors
            self._smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, self.feature_set),
                                          feature_level=level)
        return self._smile

    def __call__(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"openSMILE needs a mono waveform (N,), got shape {wave.shape}")
        if len(wave) < sample_rate // 10:
            raise ValueError(f"audio too short for openSMILE ({len(wave)} samples at {sample_rate} Hz; need 0.1 s)")
        values = self._engine().process_signal(wave, sample_rate).to_numpy(dtype=np.float32)
        out = values[0] if self.level == "functionals" else values
        expected = feature_dim(self.feature_set, self.level)
        if out.shape[-1] != expected:
            raise ValueError(f"openSMILE {self.feature_set} {self.level} gave {out.shape[-1]} values, "
                             f"expected {expected}")
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
