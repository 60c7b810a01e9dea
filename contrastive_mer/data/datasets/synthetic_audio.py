"""Procedural speech-like audio for the synthetic corpus (vectorised numpy, no files).

Source-filter model: a sawtooth "glottal" source following a pitch contour, shaped in the frequency domain by
three formant resonances and a spectral tilt, gated by a syllable envelope, scaled to a loudness, plus
background noise. The speaker fixes base pitch, formants (vocal-tract length), loudness, tilt, speaking rate
and breathiness; the clip's latent emotion state ``(valence, arousal, dominance)`` moves pitch level, pitch
slope and range, syllable rate, spectral tilt, formant shift and energy, each read with its own noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_NEUTRAL_FORMANTS = (560.0, 1450.0, 2600.0)
_BANDWIDTHS = (90.0, 120.0, 180.0)


@dataclass(frozen=True)
class VoiceTraits:
    """Speaker-specific voice parameters."""

    f0: float
    formants: tuple[float, float, float]
    loudness_db: float
    tilt: float
    syllable_rate: float
    breathiness: float


def sample_voice_traits(rng: np.random.Generator, spread: float = 1.0) -> VoiceTraits:
    """Draw one speaker's voice traits; ``spread`` scales how far they stray from the average voice (1: default)."""

    def shrink(value: float, centre: float) -> float:  # exact draw at spread == 1 (bit-identical defaults)
        return float(value) if spread == 1.0 else float(centre + spread * (value - centre))

    tract = shrink(rng.uniform(0.88, 1.15), 1.015)
    formants = np.asarray(_NEUTRAL_FORMANTS) * tract * (1 + spread * rng.normal(0, 0.03, 3))
    log_f0 = shrink(rng.uniform(np.log(90.0), np.log(230.0)), (np.log(90.0) + np.log(230.0)) / 2)
    return VoiceTraits(
        f0=float(np.exp(log_f0)),
        formants=tuple(float(f) for f in formants),  # type: ignore[arg-type]
        loudness_db=shrink(rng.uniform(-30.0, -24.0), -27.0),
        tilt=float(spread * rng.normal(0.0, 0.3)),
        syllable_rate=shrink(rng.uniform(3.2, 4.8), 4.0),
        breathiness=shrink(rng.uniform(0.02, 0.12), 0.07),
    )


def _next_fast_len(n: int) -> int:
    return 1 << max(int(n - 1).bit_length(), 1)


def synthesize_voice(traits: VoiceTraits, state: np.ndarray, rng: np.random.Generator, *, sample_rate: int,
                     min_seconds: float, max_seconds: float, signal: float = 1.0, noise: float = 1.0,
                     noise_floor: float = 0.004) -> np.ndarray:
    """Render a clip's waveform.

    Args:
        traits: the speaker's voice.
        state: the clip's latent emotion state ``(valence, arousal, dominance)``.
        rng: the clip's audio random stream.
        signal: scales how strongly ``state`` moves the voice parameters.
        noise: scales read noise on the voice parameters and the background noise.
        noise_floor: standard deviation of the additive background noise at ``noise=1``.

    Returns:
        float32 waveform in ``[-1, 1]`` of ``min_seconds..max_seconds`` at ``sample_rate``.
    """
    v, ar, dom = (float(x) for x in state)
    n = lambda scale: noise * scale * rng.normal()  # noqa: E731
    sr = sample_rate
    dur = rng.uniform(min_seconds, max_seconds)
    N = max(int(round(dur * sr)), 16)
    f32 = np.float32
    u = np.arange(N, dtype=f32) / f32(N)  # relative time in [0, 1); float32 keeps this fast

    # pitch contour (semitones around the speaker's base pitch)
    shift = signal * (3.5 * ar + 1.0 * v) + n(1.0)
    slope = signal * (2.0 * v - 1.5 * dom) + n(1.0)
    depth = max(0.2, 1.2 + signal * 1.2 * ar + n(0.3))
    ph = rng.uniform(0, 1, 4).astype(f32)
    two_pi = f32(2 * np.pi)
    contour = (f32(slope) * (u - f32(0.5)) + f32(0.6 * depth) * np.sin(two_pi * (f32(1.1) * u + ph[0]))
               + f32(0.4 * depth) * np.sin(two_pi * (f32(2.7) * u + ph[1])))
    f0 = f32(traits.f0 / sr) * np.exp2((contour + f32(shift)) / f32(12.0))
    cycles = np.cumsum(f0, dtype=np.float64)
    source = (2.0 * (cycles - np.floor(cycles)) - 1.0)

    # formants + spectral tilt, applied as a zero-phase filter in the frequency domain (log gain on a coarse
    # grid, interpolated to the FFT bins)
    nfft = _next_fast_len(N)
    f = np.linspace(0.0, sr / 2, 257)
    log_gain = np.zeros_like(f)
    formant_shift = 1.0 + signal * 0.04 * v + n(0.02)
    for F, B in zip(traits.formants, _BANDWIDTHS):
        F = F * formant_shift
        log_gain += np.log(F * F) - 0.5 * np.log((F * F - f * f) ** 2 + (B * f) ** 2)
    tilt = traits.tilt + signal * (0.5 * dom + 0.4 * ar) + n(0.25)
    log_gain += tilt * np.log1p(f / 500.0)
    gain = np.exp(np.interp(np.linspace(0.0, sr / 2, nfft // 2 + 1), f, log_gain))
    voiced = np.fft.irfft(np.fft.rfft(source, nfft) * gain, nfft)[:N].astype(f32)
    voiced /= np.sqrt(np.mean(voiced ** 2)) + f32(1e-12)

    # syllables: a raised-cosine envelope at a wobbling rate, plus breath noise
    rate = traits.syllable_rate * 2.0 ** (signal * 0.3 * ar + n(0.1))
    syl = (f32(rate * dur) * (u + f32(0.25 / (0.7 * 2 * np.pi)) * (np.cos(two_pi * ph[2])
                                                                    - np.cos(two_pi * (f32(0.7) * u + ph[2]))))
           + ph[3])
    env = (f32(0.5) - f32(0.5) * np.cos(two_pi * syl)) ** f32(1.5)
    t = u * f32(dur)
    env *= np.clip(np.minimum(t, f32(dur) - t) / f32(0.03), f32(0.0), f32(1.0))
    breath = f32(traits.breathiness) * rng.standard_normal(N, dtype=f32)
    speech = (voiced + breath) * env

    level_db = traits.loudness_db + signal * (5.0 * ar + 2.0 * dom) + n(1.5)
    speech *= f32(10.0 ** (level_db / 20.0)) / (np.sqrt(np.mean(speech ** 2)) + f32(1e-12))
    speech += f32(noise * noise_floor) * rng.standard_normal(N, dtype=f32)
    return np.clip(speech, -1.0, 1.0, out=speech)
