"""Mel filterbank geometry checks (numpy only: config validation imports no torchaudio).

A triangular mel filter (HTK mel scale, no normalisation: torchaudio's ``MelSpectrogram`` defaults) is empty when
no FFT bin centre falls strictly inside it: with many mel bands and a short FFT the lowest bands are narrower than
the bin spacing, and their log-mel rows are constant (``log(1e-6)``) for every clip. :func:`check_mel_geometry`
refuses inconsistent settings and warns, once per setting, about empty filters with the settings that would
avoid them (a warning, not an error: checkpoints trained that way must still load).
"""

from __future__ import annotations

import sys

import numpy as np

MAX_N_FFT = 16384  # the search for the smallest n_fft without empty filters stops here
_checked: set[tuple[object, ...]] = set()  # settings already checked


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def empty_mel_filters(sample_rate: int, n_fft: int, n_mels: int, *, f_min: float = 0.0,
                      f_max: float | None = None) -> int:
    """How many of the ``n_mels`` triangular filters have no FFT bin (of ``n_fft // 2 + 1``, from 0 to
    ``sample_rate // 2``) strictly inside them, i.e. an all-zero row in the filterbank."""
    top = float(sample_rate // 2) if f_max is None else float(f_max)
    bins = np.linspace(0.0, sample_rate // 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(top), n_mels + 2))
    lower, upper = edges[:-2], edges[2:]
    inside = (bins[:, None] > lower[None, :]) & (bins[:, None] < upper[None, :])
    return int((~inside.any(axis=0)).sum())


def check_mel_geometry(sample_rate: int, n_fft: int, n_mels: int, *, f_min: float = 0.0, f_max: float | None = None,
                       win_length: int | None = None) -> None:
    """ValueError when the settings are inconsistent; a warning on stderr (once per message) when they leave mel
    filters empty, naming the smallest ``n_fft`` and the largest ``n_mels`` that would leave none."""
    for name, value in (("sample_rate", sample_rate), ("n_fft", n_fft), ("n_mels", n_mels)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if win_length is not None and not 1 <= win_length <= n_fft:
        raise ValueError(f"win_length must be between 1 and n_fft ({n_fft}), got {win_length}")
    top = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < top <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max} "
                         f"at {sample_rate} Hz")
    key = (sample_rate, n_fft, n_mels, f_min, f_max, win_length)
    if key in _checked:
        return
    _checked.add(key)
    message = empty_filter_message(sample_rate, n_fft, n_mels, f_min=f_min, f_max=f_max, win_length=win_length)
    if message:
        print(f"[cmer] warning: {message}", file=sys.stderr, flush=True)


def empty_filter_message(sample_rate: int, n_fft: int, n_mels: int, *, f_min: float = 0.0, f_max: float | None = None,
                         win_length: int | None = None) -> str | None:
    """None when no mel filter is empty, else what is wrong and the smallest ``n_fft`` / largest ``n_mels``
    that would fix it."""
    empty = empty_mel_filters(sample_rate, n_fft, n_mels, f_min=f_min, f_max=f_max)
    if not empty:
        return None
    fft = next((k for k in range(n_fft + 1, MAX_N_FFT + 1)
                if not empty_mel_filters(sample_rate, k, n_mels, f_min=f_min, f_max=f_max)), None)
    mels = next((m for m in range(n_mels - 1, 0, -1)
                 if not empty_mel_filters(sample_rate, n_fft, m, f_min=f_min, f_max=f_max)), None)
    fixes = []
    if fft is not None:
        fixes.append(f"n_fft >= {fft} (win_length: {win_length or n_fft} keeps the analysis window)")
    if mels is not None:
        fixes.append(f"n_mels <= {mels}")
    return (f"n_mels={n_mels} with n_fft={n_fft} at {sample_rate} Hz leaves {empty} of the {n_mels} mel filters "
            "without an FFT bin (constant log-mel rows); use " + " or ".join(fixes))
