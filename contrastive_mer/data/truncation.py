"""Truncated media: what a file declares against what decoding got out of it.

A container or stream header declares a duration (FLAC STREAMINFO, an MP4 index, FLV metadata, a Xing header);
when decoding runs out well before it, the file was cut (a partial download or copy). ``truncated="skip"`` (the
default) raises :class:`~contrastive_mer.data.decoding.MediaError`, so the clip is skipped and listed with the
reason; ``"keep"`` logs a warning naming the file and keeps the partial clip. Files that declare nothing (or whose
declared size the demuxers clamp to the file, as for WAV: :func:`wav_declared_frames` reads it from the RIFF
header instead) cannot be checked otherwise.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

from contrastive_mer.data.decoding import DECODE_ERRORS, MediaError, declared_seconds, open_container

__all__ = ["TRUNCATED_MODES", "check_mode", "declared_seconds", "is_truncated", "report", "wav_declared_frames"]

TRUNCATED_MODES = ("skip", "keep")
#: shortfall tolerated before a file counts as cut: codec priming and padding, rounding of declared durations
TOLERANCE_SECONDS = 0.25
TOLERANCE_FRACTION = 0.05
#: packets demuxed (not decoded) at most when checking whether a file's other streams run to its declared end
MAX_CHECK_PACKETS = 200_000
#: RIFF chunks walked before giving up on finding ``data`` (a header, not a scan of the file)
MAX_RIFF_CHUNKS = 64

log = logging.getLogger(__name__)


def check_mode(truncated: str) -> None:
    """ValueError unless ``truncated`` is one of :data:`TRUNCATED_MODES`."""
    if truncated not in TRUNCATED_MODES:
        raise ValueError(f"truncated must be one of {', '.join(map(repr, TRUNCATED_MODES))}; got {truncated!r}")


def is_truncated(decoded: float, declared: float | None) -> bool:
    """Whether ``decoded`` seconds fall short of ``declared`` by more than the tolerance."""
    if declared is None or declared <= 0:
        return False
    return declared - decoded > max(TOLERANCE_SECONDS, TOLERANCE_FRACTION * declared)


def report(path: Path, kind: str, decoded: float, declared: float | None, *, truncated: str) -> None:
    """Skip (raise :class:`MediaError`) or warn about a truncated ``kind`` stream; nothing when it is complete."""
    if not is_truncated(decoded, declared) or _other_streams_reach(path, declared):
        return
    reason = (f"truncated {kind}: {decoded:.2f} s decoded of the {declared:.2f} s the file declares "
              f"(a cut copy?)")
    if truncated == "skip":
        raise MediaError(path, f"{reason}; skipped (data.options.truncated=keep keeps partial clips)")
    log.warning("%s: %s; kept as a partial clip (data.options.truncated=keep)", path, reason)


def _other_streams_reach(path: Path, declared: float | None) -> bool:
    """Whether ``path`` holds several audio/video streams and its packets run to the ``declared`` end: then the
    duration is the file's (FLV declares only that) and a stream ending earlier is short, not cut. Demuxes
    without decoding, at most :data:`MAX_CHECK_PACKETS` packets; False when the file cannot be read."""
    if declared is None:
        return False
    try:
        with open_container(path) as container:
            streams = [s for s in container.streams if s.type in ("audio", "video")]
            if len(streams) < 2:
                return False
            end = 0.0
            for i, packet in enumerate(container.demux(streams)):
                if i >= MAX_CHECK_PACKETS:
                    return False
                if packet.pts is not None and packet.time_base:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    except (MediaError, *DECODE_ERRORS):
        return False
    return not is_truncated(end, declared)


def wav_declared_frames(path: Path) -> int | None:
    """The sample frames a RIFF/WAVE header's ``data`` chunk declares (libsndfile and FFmpeg report the frames the
    file still holds instead); None for anything else, a streaming placeholder size or an unreadable header."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"RIFF" or len(f.read(4)) != 4 or f.read(4) != b"WAVE":
                return None
            block_align = 0
            for _ in range(MAX_RIFF_CHUNKS):
                head = f.read(8)
                if len(head) < 8:
                    return None
                kind, size = head[:4], struct.unpack("<I", head[4:])[0]
                if kind == b"fmt " and size >= 14:
                    block_align = struct.unpack("<H", f.read(14)[12:14])[0]
                    f.seek(size - 14 + (size & 1), 1)
                elif kind == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except (OSError, struct.error):
        return None
    return None
