"""The bounded FFmpeg (PyAV) decoding loop shared by the audio and video readers.

:class:`MediaError` names a file that cannot be decoded; :class:`DecodeLimits` bounds the work one call may do
(packets, wall-clock time, decode errors, audio length), so garbage input returns or raises quickly. The decoders
are install requirements imported softly, so that the rest of the library (configs, models, data on tensors) also
works where they are absent, e.g. a GPU machine with torch only: decoding there raises ImportError (not
MediaError, which would mark every file as bad).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

try:
    import av
except ImportError:  # pragma: no cover - depends on the environment
    av = None  # type: ignore[assignment]  # the optional-import idiom: every use checks `av is None` first

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
#: FFmpeg threading of the video decoders ("AUTO": frame and slice threads as the codec allows, "NONE": one thread)
VIDEO_THREAD_TYPE = "AUTO"
#: FFmpeg decoder threads (0: one per core, FFmpeg's default); benchmark d2 compares the settings
VIDEO_THREAD_COUNT = 0
# errors a decoder may raise on bad data (anything else is a bug and propagates)
DECODE_ERRORS = ((av.FFmpegError,) if av is not None else ()) + (OSError, ValueError, RuntimeError, EOFError,
                                                                 MemoryError, OverflowError)


class MediaError(Exception):
    """A media file that cannot be decoded. ``path`` is the file, ``reason`` says what went wrong."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on the work one decode call may do.

    Attributes:
        max_packets: demuxed packets per call (all streams).
        max_wall_seconds: wall-clock time per call.
        max_audio_seconds: decoded audio length (guards against headers that claim absurd sizes).
        max_decode_errors: packets that fail to decode before the file is declared corrupt.
    """

    max_packets: int = 2_000_000
    max_wall_seconds: float = 300.0
    max_audio_seconds: float = 4 * 3600.0
    max_decode_errors: int = 50


DEFAULT_LIMITS = DecodeLimits()


AV_TIME_BASE = 1_000_000


class Sink(Protocol):
    """Receives the decoded frames of one stream; ``done`` once it has what it needs; ``declared``: the duration
    the file declares for the stream (set when it is opened; see :mod:`contrastive_mer.data.truncation`)."""

    done: bool
    declared: float | None

    def add(self, frame: Any) -> None: ...


def require_av() -> None:
    """ImportError naming the package when PyAV is missing."""
    if av is None:
        raise ImportError("decoding audio/video files needs PyAV: pip install av")


def check_file(path: str | Path) -> Path:
    """``path`` as a Path; :class:`MediaError` unless it is a non-empty regular file."""
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(p, "empty file (0 bytes)")
    return p


def check_rate(path: Path, rate: float) -> None:
    """:class:`MediaError` for a sample rate outside 1 kHz..384 kHz."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise MediaError(path, f"unsupported sample rate {rate} Hz "
                               f"(expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE})")


def open_container(path: Path) -> Any:
    """The file opened with PyAV for reading; :class:`MediaError` when FFmpeg cannot open it."""
    try:
        return av.open(str(path), mode="r", metadata_errors="replace")
    except DECODE_ERRORS as err:
        raise MediaError(path, f"cannot open: {err}") from err


class Budget:
    """The work one decoding pass may do: packets and wall-clock time (shared by the demuxers of its seeks) and
    packets that fail to decode."""

    def __init__(self, path: Path, limits: DecodeLimits):
        self.path, self.limits = path, limits
        self.start, self.packets, self.errors, self.first_error = time.monotonic(), 0, 0, ""

    def charge(self) -> None:
        """Count one demuxed packet; raises :class:`MediaError` past the packet or time limit."""
        self.packets += 1
        if self.packets > self.limits.max_packets:
            raise MediaError(self.path, f"decode limit reached ({self.limits.max_packets} packets)")
        if time.monotonic() - self.start > self.limits.max_wall_seconds:
            raise MediaError(self.path, f"decode limit reached ({self.limits.max_wall_seconds:g} s)")

    def decode(self, packet: Any, codec: Any = None) -> list[Any]:
        """Frames from ``packet`` (``None``: drain ``codec``); a failure counts toward the error limit."""
        try:
            return list(packet.decode() if packet is not None else codec.decode(None))
        except DECODE_ERRORS as err:
            self.errors += 1
            self.first_error = self.first_error or str(err)
            if self.errors > self.limits.max_decode_errors:
                raise MediaError(self.path, f"corrupt data: {self.errors} packets failed to decode "
                                            f"(first: {self.first_error})") from err
            return []


def demux(path: Path, container: Any, streams: list[Any], limits: DecodeLimits,
          *, budget: Budget | None = None) -> Iterator[Any]:
    """Packets of ``streams`` within the limits; a read error ends the stream (a truncated file)."""
    budget = budget or Budget(path, limits)
    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, *DECODE_ERRORS):
            return
        budget.charge()
        yield packet


def declared_seconds(container: Any, stream: Any) -> float | None:
    """The duration a PyAV stream declares (its own, else the container's); ``None`` when neither says."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return float(container.duration) / AV_TIME_BASE
    return None


def first_stream(path: Path, container: Any, kind: str) -> Any:
    """The container's first ``audio``/``video`` stream; :class:`MediaError` naming the kind when it has none
    or FFmpeg has no decoder for it."""
    streams = getattr(container.streams, kind)
    if not streams:
        others = ", ".join(f"{s.type} {s.codec_context.name if s.codec_context else '?'}"
                           for s in container.streams) or "none"
        raise MediaError(path, f"no {kind} stream (the file has: {others})")
    if streams[0].codec_context is None:
        raise MediaError(path, f"no decoder for the {kind} stream")
    return streams[0]


def decode_streams(path: Path, audio: Sink | None, video: Sink | None, limits: DecodeLimits) -> None:
    """Demux once, feeding decoded frames to the sinks, until they are satisfied or the file ends."""
    budget = Budget(path, limits)
    with open_container(path) as container:
        streams = []
        for receiver, kind in ((audio, "audio"), (video, "video")):
            if receiver is not None:
                streams.append(first_stream(path, container, kind))
                receiver.declared = declared_seconds(container, streams[-1])
        if video is not None:
            streams[-1].thread_type = VIDEO_THREAD_TYPE
            streams[-1].codec_context.thread_count = VIDEO_THREAD_COUNT
        for packet in demux(path, container, streams, limits, budget=budget):
            sink: Any = audio if packet.stream.type == "audio" else video
            if sink.done:
                if (audio is None or audio.done) and (video is None or video.done):
                    break
                continue
            for frame in budget.decode(packet):
                sink.add(frame)
