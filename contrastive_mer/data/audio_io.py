"""Decode audio files to float32 mono ``(N,)`` at a requested rate.

WAV/FLAC/OGG/AIFF are read with ``soundfile``; everything else (mp3, aac, m4a, a container's audio stream) with
PyAV. Channels are averaged block by block as they are decoded; resampling uses
``torchaudio.functional.resample``. Every problem raises :class:`~contrastive_mer.data.decoding.MediaError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from contrastive_mer.data.decoding import (
    DECODE_ERRORS,
    DEFAULT_LIMITS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    DecodeLimits,
    MediaError,
    av,
    check_file,
    check_rate,
    decode_streams,
    require_av,
)
from contrastive_mer.data.truncation import check_mode, report, wav_declared_frames

try:
    import soundfile as sf
except ImportError:  # pragma: no cover - depends on the environment
    sf = None

SOUNDFILE_EXTS = frozenset({".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"})
MAX_CHANNELS = 64
#: audio whose RMS level is below this many dB relative to full scale (RMS 1.0) is "silent" by default:
#: judged by level, so dither, a hiss or an MP3's noise floor in an empty recording is silence too
SILENCE_DBFS = -60.0


def rms_dbfs(mono: np.ndarray) -> float:
    """The RMS level of ``mono`` in dB relative to full scale (a full-scale square wave: 0; a full-scale sine:
    -3.01; all zeros: -inf)."""
    rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64)))) if mono.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


#: the window whose RMS level judges silence: a clip is silent when even its loudest window is below the level
SILENCE_WINDOW_SECONDS = 0.05


def loudest_dbfs(mono: np.ndarray, rate: int, window_seconds: float = SILENCE_WINDOW_SECONDS) -> float:
    """The RMS level (dBFS) of the loudest non-overlapping ``window_seconds`` window of ``mono`` (the last,
    shorter window included). Speech with long pauses has a low whole-clip RMS (a quiet RAVDESS take: -61.7
    dBFS) but loud windows; an empty recording's noise floor is low in every window."""
    n = max(1, int(round(window_seconds * rate)))
    if mono.size == 0:
        return float("-inf")
    squares = np.square(mono, dtype=np.float64)
    sums = np.add.reduceat(squares, np.arange(0, mono.size, n))
    counts = np.diff(np.append(np.arange(0, mono.size, n), mono.size))
    peak = float(np.max(sums / counts))
    return 10.0 * np.log10(peak) if peak > 0 else float("-inf")


def check_silence_dbfs(value: float | None) -> None:
    """ValueError for a silence level that is not a finite number of dB at or below 0 (None: no check)."""
    if value is not None and not (np.isfinite(value) and value <= 0):
        raise ValueError(f"silence_dbfs must be a finite level in dB at or below 0, got {value}")
#: audio decoded past ``decode_seconds``, so that resampling the kept part sees the samples after it
#: (torchaudio's sinc filter reaches 6 / (0.99 min(rate)) s, 6 ms at the lowest rate allowed)
RESAMPLE_MARGIN_SECONDS = 0.1


def wanted_samples(rate: int, max_seconds: float | None, decode_seconds: float | None,
                   limits: DecodeLimits) -> tuple[int, bool]:
    """Source samples to decode at ``rate``: the least of the decode limit, ``max_seconds`` and
    ``decode_seconds`` plus the resampling margin; and whether the limit is what sets it (then reaching it is
    an error: the file is longer than anything this library decodes)."""
    cap = int(limits.max_audio_seconds * rate)
    want = cap
    if max_seconds is not None:
        want = min(want, int(round(max_seconds * rate)))
    if decode_seconds is not None:
        want = min(want, int(np.ceil((decode_seconds + RESAMPLE_MARGIN_SECONDS) * rate)))
    return want, max_seconds is None and decode_seconds is None


def check_target_rate(sample_rate: int) -> None:
    """ValueError for a requested output rate outside 1 kHz..384 kHz."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}], got {sample_rate}")


def finish_audio(path: Path, wave: np.ndarray, rate: int, sample_rate: int, *, max_seconds: float | None,
                 reject_silent: bool, silence_dbfs: float = SILENCE_DBFS) -> np.ndarray:
    """``(channels, n)`` float samples -> checked, mono, trimmed, resampled float32 ``(N,)`` (with
    ``reject_silent``: MediaError when the RMS level of the kept part's loudest 50 ms window is below
    ``silence_dbfs``; :func:`loudest_dbfs`)."""
    check_rate(path, rate)
    if wave.shape[-1] == 0:
        raise MediaError(path, "zero-length audio (no samples decoded)")
    if not np.isfinite(wave).all():
        raise MediaError(path, "audio contains NaN or Inf samples")
    mono = wave.mean(axis=0, dtype=np.float64).astype(np.float32) if wave.shape[0] > 1 else wave[0]
    if max_seconds is not None:
        mono = mono[: max(1, int(round(max_seconds * rate)))]
    if reject_silent and (level := loudest_dbfs(mono, rate)) < silence_dbfs:
        raise MediaError(path, f"silent audio (RMS level of its loudest 50 ms: {level:.1f} dBFS, below the "
                               f"{silence_dbfs:g} dBFS of data.options.silence_dbfs)")
    if rate != sample_rate:
        import torchaudio.functional as AF

        mono = AF.resample(torch.from_numpy(np.ascontiguousarray(mono)), int(rate), int(sample_rate)).numpy()
        if mono.size == 0:
            raise MediaError(path, "audio too short to resample")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _read_soundfile(path: Path, max_seconds: float | None, limits: DecodeLimits, *, decode_seconds: float | None,
                    truncated: str) -> tuple[np.ndarray, int]:
    """Read with libsndfile in blocks (never trusting the header's frame count for allocation), downmixed to
    mono block by block: ``((1, n), rate)``; a file ending before the length its header declares is reported
    (:mod:`~contrastive_mer.data.truncation`)."""
    with sf.SoundFile(str(path)) as f:
        rate, channels = int(f.samplerate), int(f.channels)
        check_rate(path, rate)
        if not 1 <= channels <= MAX_CHANNELS:
            raise MediaError(path, f"unsupported channel count {channels}")
        want, limited = wanted_samples(rate, max_seconds, decode_seconds, limits)
        blocks, n = [], 0
        while n < want:
            block = f.read(min(1 << 18, want - n), dtype="float32", always_2d=True)
            if len(block) == 0:
                break
            blocks.append(mono_block(block.T))
            n += len(block)
        if n >= want and limited and len(f.read(1, dtype="float32")):
            raise MediaError(path, f"audio longer than the {limits.max_audio_seconds:g} s decode limit")
        if n < want:
            frames = max(f.frames, wav_declared_frames(path) or 0)
            declared = frames / rate if frames > 0 else None
            report(path, "audio", n / rate, declared if declared is None else min(declared, want / rate),
                   truncated=truncated)
    return (np.concatenate(blocks, axis=1) if blocks else np.zeros((1, 0), np.float32)), rate


def mono_block(chunk: np.ndarray) -> np.ndarray:
    """``(channels, n)`` -> ``(1, n)``, the channel mean, taken as each block is decoded: memory holds one channel,
    not all of them (a long 6-channel file costs what a mono one does). The same values as the mean of the
    whole file; a NaN or Inf in any channel stays in the mean, where :func:`finish_audio` finds it."""
    if chunk.shape[0] == 1:
        return chunk
    return chunk.mean(axis=0, dtype=np.float64).astype(np.float32)[None]


def _audio_frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """An audio frame of any sample format -> float32 ``(channels, samples)`` in [-1, 1]."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(arr.dtype, np.integer):
        return (arr.astype(np.float64) / float(2 ** (8 * arr.dtype.itemsize - 1))).astype(np.float32)
    return arr.astype(np.float32, copy=False)


class AudioSink:
    """Collects decoded audio frames (checks rate/channel consistency and the length caps)."""

    def __init__(self, path: Path, max_seconds: float | None, limits: DecodeLimits,
                 *, decode_seconds: float | None = None, truncated: str = "skip"):
        self.path, self.max_seconds, self.limits = path, max_seconds, limits
        self.decode_seconds, self.truncated = decode_seconds, truncated
        self.chunks: list[np.ndarray] = []
        self.rate: int | None = None
        self.channels: int | None = None
        self.n = 0
        self.want = 0
        self.limited = False
        self.done = False
        self.declared: float | None = None

    def add(self, frame: av.AudioFrame) -> None:
        if self.done or frame.samples == 0:
            return
        rate, channels = int(frame.sample_rate), len(frame.layout.channels)
        if self.rate is None:
            check_rate(self.path, rate)
            if not 1 <= channels <= MAX_CHANNELS:
                raise MediaError(self.path, f"unsupported channel count {channels}")
            self.rate, self.channels = rate, channels
            self.want, self.limited = wanted_samples(rate, self.max_seconds, self.decode_seconds, self.limits)
        elif rate != self.rate or channels != self.channels:
            raise MediaError(self.path, f"audio format changes mid-stream ({self.rate} Hz x {self.channels} -> "
                                        f"{rate} Hz x {channels})")
        chunk = mono_block(_audio_frame_to_float(frame))  # one channel kept in memory, whatever the file has
        self.chunks.append(chunk)
        self.n += chunk.shape[1]
        if self.n >= self.want:
            if self.limited:
                raise MediaError(self.path, f"audio longer than the {self.limits.max_audio_seconds:g} s decode limit")
            self.done = True

    def result(self) -> tuple[np.ndarray, int]:
        if self.rate is None:
            raise MediaError(self.path, "zero-length audio (no audio frames decoded)")
        if not self.done and self.declared is not None:
            report(self.path, "audio", self.n / self.rate, min(self.declared, self.want / self.rate),
                   truncated=self.truncated)
        return np.concatenate(self.chunks, axis=1), self.rate


def load_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None, *,
               reject_silent: bool = True, limits: DecodeLimits = DEFAULT_LIMITS, decode_seconds: float | None = None,
               truncated: str = "skip", silence_dbfs: float = SILENCE_DBFS) -> np.ndarray:
    """Decode an audio file (or a container's first audio stream) to float32 mono ``(N,)`` at ``sample_rate``.

    Multi-channel audio is averaged to mono; ``max_seconds`` keeps only the start. ``decode_seconds``: decoding
    stops a little past this many seconds (what the preprocessors will keep; the result may be longer than it,
    and its first ``decode_seconds`` are the same as a full decode's). ``truncated``: ``"skip"`` raises
    :class:`MediaError` when the file ends well before the duration it declares, ``"keep"`` logs a warning
    (:mod:`~contrastive_mer.data.truncation`). Raises :class:`MediaError` for a missing, unreadable, corrupt or
    truncated-to-nothing file, no audio stream, zero-length, non-finite or (with ``reject_silent``) silent
    audio (an RMS level below ``silence_dbfs``), and sample rates outside 1 kHz..384 kHz.
    """
    check_target_rate(sample_rate)
    check_mode(truncated)
    check_silence_dbfs(silence_dbfs)
    p = check_file(path)
    sf_error = ""
    if p.suffix.lower() in SOUNDFILE_EXTS and sf is not None:
        try:
            wave, rate = _read_soundfile(p, max_seconds, limits, decode_seconds=decode_seconds, truncated=truncated)
            return finish_audio(p, wave, rate, sample_rate, max_seconds=max_seconds, reject_silent=reject_silent,
                                silence_dbfs=silence_dbfs)
        except DECODE_ERRORS as err:
            sf_error = f"soundfile: {err}; "  # not a libsndfile format after all: try FFmpeg
    require_av()
    sink = AudioSink(p, max_seconds, limits, decode_seconds=decode_seconds, truncated=truncated)
    try:
        decode_streams(p, sink, None, limits)
        wave, rate = sink.result()
    except MediaError as err:
        raise MediaError(p, sf_error + err.reason) from err
    except DECODE_ERRORS as err:
        raise MediaError(p, f"{sf_error}cannot decode audio: {err}") from err
    return finish_audio(p, wave, rate, sample_rate, max_seconds=max_seconds, reject_silent=reject_silent,
                        silence_dbfs=silence_dbfs)
