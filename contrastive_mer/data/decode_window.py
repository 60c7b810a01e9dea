"""Decode no more audio than the preprocessors keep, even when the adapter's ``max_seconds`` is unset.

A log-mel preprocessor with ``max_seconds: 2`` reads the first 2 s of a clip; without a bound on the decoder, a
10-minute 96 kHz recording would still be decoded in full first. :func:`decode_window` is the audio, in seconds
at the adapter's output rate, that every preprocessor reading the adapter's ``audio`` input will use (None: one of
them reads it all); :func:`bounded_decoding` sets it on a media adapter's options for the duration of a load
(the dataset wraps each ``adapter.load`` in it). The tensors are the same as with a full decode: decoding
continues a little past the window so that resampling sees the samples after it.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

AUDIO_INPUT = "audio"


def decode_window(preprocessors: Mapping[str, Any], sample_rate: int) -> float | None:
    """Seconds of the ``audio`` input (at ``sample_rate``) the preprocessors reading it keep at most; None when
    one of them keeps everything or none reads it."""
    readers = [prep for name, prep in preprocessors.items() if (getattr(prep, "source", None) or name) == AUDIO_INPUT]
    samples = [prep.input_samples() if hasattr(prep, "input_samples") else None for prep in readers]
    kept = [int(n) for n in samples if n is not None]
    if not samples or len(kept) < len(samples):
        return None
    return max(kept) / sample_rate


@contextmanager
def bounded_decoding(adapter: Any, preprocessors: Mapping[str, Any]) -> Iterator[None]:
    """While the block runs, ``adapter.media.decode_seconds`` is the preprocessors' window (adapters without
    media options are left alone); restored afterwards."""
    media = getattr(adapter, "media", None)
    window = None if media is None else decode_window(preprocessors, media.sample_rate)
    if media is None or window is None:
        yield
        return
    adapter.media = dataclasses.replace(media, decode_seconds=window)
    try:
        yield
    finally:
        adapter.media = media
