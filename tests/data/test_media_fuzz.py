"""Damaged and garbage media: every call either returns valid finite data or raises MediaError naming the file,
quickly. Truncated and byte-flipped copies of real clips (written to tmp_path; skipped without
``../shared/data``) and random bytes with media extensions (always run)."""

from __future__ import annotations

import faulthandler
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from contrastive_mer.data.media import MediaError, load_audio, load_audio_video, load_video

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
REAL = {".flac": "ravdess/Actor_02/*.flac", ".wav": "ravdess/Actor_01/*.wav", ".mp3": "cremad/AudioMP3/*.mp3",
        ".mp4": "ravdess/Actor_01/*.mp4", ".flv": "cremad/VideoFlash/*.flv"}
VIDEO_EXTS = {".mp4", ".flv"}
MAGIC = {  # the first bytes of a real file of each kind
    ".wav": b"RIFF\x24\x08\x00\x00WAVEfmt ", ".flac": b"fLaC\x00\x00\x00\x22",
    ".mp3": b"ID3\x03\x00\x00\x00\x00\x00\x10",
    ".mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", ".flv": b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"}
CALL_SECONDS = 10.0  # each call must finish within this (decoding these files normally takes < 0.5 s)


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    """If a decoder hangs inside C code, dump the stacks and end the run instead of waiting forever."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _check(fn: Callable[..., Any], path: Path, outcomes: list[str], **kw: Any) -> None:
    start = time.monotonic()
    try:
        out = fn(path, **kw)
    except MediaError as err:
        assert err.path == str(path) and str(path) in str(err), err
        outcomes.append("error")
    else:
        outcomes.append("ok")
        audio, frames = out if isinstance(out, tuple) else (out, None) if out.dtype == np.float32 else (None, out)
        if audio is not None:
            assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
            assert np.isfinite(audio).all()
        if frames is not None:
            assert frames.dtype == np.uint8 and frames.shape == (2, 32, 32, 3)
    assert time.monotonic() - start < CALL_SECONDS, f"{fn.__name__}({path.name}) took too long"


def _exercise(path: Path, outcomes: list[str]) -> None:
    _check(load_audio, path, outcomes)
    _check(load_audio, path, outcomes, truncated="keep")  # partial audio returned, not skipped
    if path.suffix in VIDEO_EXTS:
        _check(load_video, path, outcomes, num_frames=2, size=32)
        _check(load_audio_video, path, outcomes, num_frames=2, size=32)


def _variants(data: bytes, rng: np.random.Generator) -> Iterator[tuple[str, bytes]]:
    for frac in (0.001, 0.05, 0.3, 0.7, 0.97):
        yield f"trunc{frac}", data[: max(1, int(len(data) * frac))]
    for n in (8, 100, 2000):
        buf = bytearray(data)
        lo = 0 if n == 8 else 64  # 8 flips in the header; the others anywhere after it
        hi = min(len(buf), 128) if n == 8 else len(buf)
        for pos in rng.integers(lo, hi, size=n):
            buf[pos] ^= int(rng.integers(1, 256))
        yield f"flip{n}", bytes(buf)


@pytest.mark.parametrize("ext", sorted(REAL))
def test_damaged_real_clips(tmp_path: Path, ext: str) -> None:
    if not DATA.is_dir():
        pytest.skip(f"real recordings not found at {DATA} (../shared/data)")
    source = sorted(DATA.glob(REAL[ext]))[0]
    rng = np.random.default_rng(sum(map(ord, ext)))
    outcomes: list[str] = []
    for name, blob in _variants(source.read_bytes(), rng):
        path = tmp_path / f"{name}{ext}"
        path.write_bytes(blob)
        _exercise(path, outcomes)
    assert "ok" in outcomes and "error" in outcomes, outcomes  # both paths were exercised


@pytest.mark.parametrize("ext", sorted(MAGIC))
def test_random_bytes(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(len(ext) * 1000 + ord(ext[1]))
    outcomes: list[str] = []
    for i, size in enumerate((1, 64, 4096, 65536)):
        noise = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()
        for prefix in (b"", MAGIC[ext]):
            path = tmp_path / f"noise{i}{'_magic' if prefix else ''}{ext}"
            path.write_bytes(prefix + noise)
            _exercise(path, outcomes)
    assert "error" in outcomes
