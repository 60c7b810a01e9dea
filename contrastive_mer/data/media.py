"""Decode audio and video files into arrays.

Audio comes back as float32 mono ``(N,)`` at the requested rate; video as uint8 RGB frames ``(T, H, W, 3)``.
WAV/FLAC/OGG/AIFF are read with ``soundfile``; everything else (mp3, aac, m4a, mp4, flv, mkv, avi, ...) with
PyAV. Resampling uses ``torchaudio.functional.resample``. Every problem raises :class:`MediaError` naming the
file; decoding work is bounded (:class:`DecodeLimits`) so garbage input returns or raises quickly.
"""

from __future__ import annotations

import bisect
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from contrastive_mer.data.face import FaceCropper, center_crop

# The decoders are install requirements, imported softly so that the rest of the library (configs, models, data
# on tensors) also works where they are absent, e.g. a GPU machine with torch only: decoding there raises
# ImportError (not MediaError, which would mark every file as bad).
try:
    import av
except ImportError:  # pragma: no cover - depends on the environment
    av = None  # type: ignore[assignment]  # the optional-import idiom: every use checks `av is None` first
try:
    import soundfile as sf
except ImportError:  # pragma: no cover - depends on the environment
    sf = None

SOUNDFILE_EXTS = frozenset({".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"})
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
MAX_CHANNELS = 64
SILENCE_THRESHOLD = 1e-6
CROPS = ("center", "face", "none")
#: FFmpeg threading of the video decoders ("AUTO": frame and slice threads as the codec allows, "NONE": one thread)
VIDEO_THREAD_TYPE = "AUTO"
# errors a decoder may raise on bad data (anything else is a bug and propagates)
_DECODE_ERRORS = ((av.FFmpegError,) if av is not None else ()) + (OSError, ValueError, RuntimeError, EOFError,
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


@dataclass
class MediaOptions:
    """Decoding settings shared by the corpus adapters (see :func:`load_audio`, :func:`load_video`)."""

    sample_rate: int = 16000
    max_seconds: float | None = None
    reject_silent: bool = True
    num_frames: int | None = 8
    fps: float | None = None
    size: int | None = 112
    crop: str = "center"

    def __post_init__(self) -> None:
        _check_target_rate(self.sample_rate)
        _check_video_args(self.num_frames, self.fps, self.size, self.crop)


# ----------------------------------------------------------------------------------------------- helpers
def _check_target_rate(sample_rate: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}], got {sample_rate}")


def _check_video_args(num_frames: int | None, fps: float | None, size: int | None, crop: str) -> None:
    if num_frames is None and fps is None:
        raise ValueError("num_frames may be None only when fps is given")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    if crop == "face" and size is None:
        raise ValueError("crop='face' needs a size")


def _require_av() -> None:
    if av is None:
        raise ImportError("decoding audio/video files needs PyAV: pip install av")


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(p, "empty file (0 bytes)")
    return p


def _check_rate(path: Path, rate: float) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise MediaError(path, f"unsupported sample rate {rate} Hz "
                               f"(expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE})")


def _finish_audio(path: Path, wave: np.ndarray, rate: int, sample_rate: int, max_seconds: float | None,
                  reject_silent: bool) -> np.ndarray:
    """``(channels, n)`` float samples -> checked, mono, trimmed, resampled float32 ``(N,)``."""
    _check_rate(path, rate)
    if wave.shape[-1] == 0:
        raise MediaError(path, "zero-length audio (no samples decoded)")
    if not np.isfinite(wave).all():
        raise MediaError(path, "audio contains NaN or Inf samples")
    mono = wave.mean(axis=0, dtype=np.float64).astype(np.float32) if wave.shape[0] > 1 else wave[0]
    if max_seconds is not None:
        mono = mono[: max(1, int(round(max_seconds * rate)))]
    if reject_silent and not (np.abs(mono) >= SILENCE_THRESHOLD).any():
        raise MediaError(path, f"silent audio (every |sample| < {SILENCE_THRESHOLD:g})")
    if rate != sample_rate:
        import torchaudio.functional as AF

        mono = AF.resample(torch.from_numpy(np.ascontiguousarray(mono)), int(rate), int(sample_rate)).numpy()
        if mono.size == 0:
            raise MediaError(path, "audio too short to resample")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _read_soundfile(path: Path, max_seconds: float | None, limits: DecodeLimits) -> tuple[np.ndarray, int]:
    """Read with libsndfile in blocks (never trusting the header's frame count for allocation), downmixed to
    mono block by block: ``((1, n), rate)``."""
    with sf.SoundFile(str(path)) as f:
        rate, channels = int(f.samplerate), int(f.channels)
        _check_rate(path, rate)
        if not 1 <= channels <= MAX_CHANNELS:
            raise MediaError(path, f"unsupported channel count {channels}")
        cap = int(limits.max_audio_seconds * rate)
        want = cap if max_seconds is None else min(cap, int(round(max_seconds * rate)))
        blocks, n = [], 0
        while n < want:
            block = f.read(min(1 << 18, want - n), dtype="float32", always_2d=True)
            if len(block) == 0:
                break
            blocks.append(_mono(block.T))
            n += len(block)
        if n >= cap and max_seconds is None and len(f.read(1, dtype="float32")):
            raise MediaError(path, f"audio longer than the {limits.max_audio_seconds:g} s decode limit")
    return (np.concatenate(blocks, axis=1) if blocks else np.zeros((1, 0), np.float32)), rate


def _mono(chunk: np.ndarray) -> np.ndarray:
    """``(channels, n)`` -> ``(1, n)``, the channel mean, taken as each block is decoded: memory holds one channel,
    not all of them (a long 6-channel file costs what a mono one does). The same values as the mean of the
    whole file; a NaN or Inf in any channel stays in the mean, where :func:`_finish_audio` finds it."""
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


class _AudioSink:
    """Collects decoded audio frames (checks rate/channel consistency and the length caps)."""

    def __init__(self, path: Path, max_seconds: float | None, limits: DecodeLimits):
        self.path, self.max_seconds, self.limits = path, max_seconds, limits
        self.chunks: list[np.ndarray] = []
        self.rate: int | None = None
        self.channels: int | None = None
        self.n = 0
        self.want = 0
        self.done = False

    def add(self, frame: av.AudioFrame) -> None:
        if self.done or frame.samples == 0:
            return
        rate, channels = int(frame.sample_rate), len(frame.layout.channels)
        if self.rate is None:
            _check_rate(self.path, rate)
            if not 1 <= channels <= MAX_CHANNELS:
                raise MediaError(self.path, f"unsupported channel count {channels}")
            self.rate, self.channels = rate, channels
            seconds = self.limits.max_audio_seconds if self.max_seconds is None else self.max_seconds
            self.want = int(round(min(seconds, self.limits.max_audio_seconds) * rate))
        elif rate != self.rate or channels != self.channels:
            raise MediaError(self.path, f"audio format changes mid-stream ({self.rate} Hz x {self.channels} -> "
                                        f"{rate} Hz x {channels})")
        chunk = _mono(_audio_frame_to_float(frame))  # one channel kept in memory, whatever the file has
        self.chunks.append(chunk)
        self.n += chunk.shape[1]
        if self.n >= self.want:
            if self.max_seconds is None:
                raise MediaError(self.path, f"audio longer than the {self.limits.max_audio_seconds:g} s decode limit")
            self.done = True

    def result(self) -> tuple[np.ndarray, int]:
        if self.rate is None:
            raise MediaError(self.path, "zero-length audio (no audio frames decoded)")
        return np.concatenate(self.chunks, axis=1), self.rate


def _frame_converter(size: int | None, crop: str, cropper: FaceCropper | None) -> Callable[[Any], np.ndarray]:
    """A function turning a decoded video frame into the RGB uint8 output geometry."""

    def convert(frame: av.VideoFrame) -> np.ndarray:
        w, h = frame.width, frame.height
        if w < 1 or h < 1:
            raise ValueError(f"bad frame size {w}x{h}")
        if size is None:
            return frame.to_ndarray(format="rgb24")
        if crop == "none":
            return frame.to_ndarray(format="rgb24", width=size, height=size, interpolation="AREA")
        side = size if crop == "center" else min(min(w, h), 3 * size)  # face: detect at a working resolution
        scale = side / min(w, h)
        nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
        rgb = frame.to_ndarray(format="rgb24", width=nw, height=nh, interpolation="AREA")
        if crop == "face":
            assert cropper is not None
            return cropper.crop(rgb, size)
        return center_crop(rgb, size)

    return convert


class _VideoSink:
    """Keeps the decoded frames that the sampling plan asks for, converting only those to RGB.

    Uniform mode (``targets``): frame ordinals to keep. Fps mode: sample-and-hold at times
    ``t0 + k / fps`` (the latest frame shown at each time), at most ``max_frames`` of them.
    """

    def __init__(self, convert: Callable[[Any], np.ndarray], targets: list[int] | None, fps: float | None,
                 max_frames: int | None, frame_duration: float):
        self.convert = convert
        self.targets = targets
        self.wanted = set(targets or ())
        self.fps, self.max_frames, self.frame_duration = fps, max_frames, frame_duration
        self.index = -1  # ordinal of the last decoded frame
        self.kept: dict[int, np.ndarray] = {}  # uniform mode: ordinal -> RGB
        self.out: list[np.ndarray] = []  # fps mode output
        self.last_rgb: tuple[int, np.ndarray] | None = None  # fps mode: conversion cache
        self.prev: tuple[int, Any, float] | None = None  # (ordinal, frame, time) of the last decoded frame
        self.next_time: float | None = None
        self.done = False

    def add(self, frame: Any) -> None:
        if self.done:
            return
        self.index += 1
        if self.targets is not None:
            if self.index in self.wanted:
                self.kept[self.index] = self.convert(frame)
            self.prev = (self.index, frame, 0.0)
            self.done = self.index >= self.targets[-1]
            return
        t = float(frame.time) if frame.time is not None else self.index * self.frame_duration
        if self.next_time is None:
            self.next_time = t
        while self.prev is not None and self.next_time < t - 1e-9 and not self.done:
            self._emit()
        self.prev = (self.index, frame, t)

    def _emit(self) -> None:
        assert self.prev is not None and self.next_time is not None and self.fps is not None
        index, frame, _ = self.prev
        if self.last_rgb is None or self.last_rgb[0] != index:
            self.last_rgb = (index, self.convert(frame))
        self.out.append(self.last_rgb[1])
        self.next_time += 1.0 / self.fps
        self.done = self.max_frames is not None and len(self.out) >= self.max_frames

    def result(self, path: Path) -> np.ndarray:
        if self.prev is None:
            raise MediaError(path, "no decodable video frames")
        last, frame, t_last = self.prev
        if self.targets is not None:
            # the decoder may give fewer frames than there were packets: later targets hold the last frame
            if self.targets[-1] > last and last not in self.kept:
                self.kept[last] = self.convert(frame)
            return np.stack([self.kept[min(i, last)] for i in self.targets])
        end = t_last + self.frame_duration  # the last frame is shown until then
        while not self.done and self.next_time is not None and (self.next_time < end - 1e-9 or not self.out):
            self._emit()
        return np.stack(self.out)


def uniform_indices(total: int, num_frames: int) -> list[int]:
    """``num_frames`` frame ordinals at the centres of equal segments of ``total`` frames (repeats if short)."""
    return [min(total - 1, int((k + 0.5) * total / num_frames)) for k in range(num_frames)]


def _open(path: Path) -> Any:
    try:
        return av.open(str(path), mode="r", metadata_errors="replace")
    except _DECODE_ERRORS as err:
        raise MediaError(path, f"cannot open: {err}") from err


class _Budget:
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
        except _DECODE_ERRORS as err:
            self.errors += 1
            self.first_error = self.first_error or str(err)
            if self.errors > self.limits.max_decode_errors:
                raise MediaError(self.path, f"corrupt data: {self.errors} packets failed to decode "
                                            f"(first: {self.first_error})") from err
            return []


def _demux(path: Path, container: Any, streams: list[Any], limits: DecodeLimits,
           budget: _Budget | None = None) -> Iterator[Any]:
    """Packets of ``streams`` within the limits; a read error ends the stream (a truncated file)."""
    budget = budget or _Budget(path, limits)
    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, *_DECODE_ERRORS):
            return
        budget.charge()
        yield packet


def _first_stream(path: Path, container: Any, kind: str) -> Any:
    streams = getattr(container.streams, kind)
    if not streams:
        raise MediaError(path, f"no {kind} stream")
    if streams[0].codec_context is None:
        raise MediaError(path, f"no decoder for the {kind} stream")
    return streams[0]


def _decode(path: Path, audio: _AudioSink | None, video: _VideoSink | None, limits: DecodeLimits) -> None:
    """Demux once, feeding decoded frames to the sinks, until they are satisfied or the file ends."""
    budget = _Budget(path, limits)
    with _open(path) as container:
        streams = []
        if audio is not None:
            streams.append(_first_stream(path, container, "audio"))
        if video is not None:
            streams.append(_first_stream(path, container, "video"))
            streams[-1].thread_type = VIDEO_THREAD_TYPE
        for packet in _demux(path, container, streams, limits, budget):
            sink: Any = audio if packet.stream.type == "audio" else video
            if sink.done:
                if (audio is None or audio.done) and (video is None or video.done):
                    break
                continue
            for frame in budget.decode(packet):
                sink.add(frame)


@dataclass
class _SeekPlan:
    """Which frames to decode for the sampled ones, from the video stream's packet index.

    ``pts``: every packet's pts in decode order; ``want``: the pts of each output frame in output order (repeats
    allowed); ``start``: for each wanted pts, the decode index of the keyframe to start decoding from.
    """

    pts: list[int]
    want: list[int]
    start: dict[int, int]


def _scan_video(path: Path, container: Any, stream: Any, limits: DecodeLimits) -> list[tuple[Any, bool, bool]]:
    """``(pts, keyframe, discard)`` of every non-empty video packet in decode order (demux only, no decoding)."""
    return [(packet.pts, packet.is_keyframe, getattr(packet, "is_discard", False))  # absent in old PyAV
            for packet in _demux(path, container, [stream], limits) if packet.size > 0]


def _seek_plan(packets: list[tuple[Any, bool, bool]], ordinals: list[int]) -> _SeekPlan | None:
    """Place the sampled frame ordinals on packets, or ``None`` when the index cannot do it exactly (missing or
    repeated pts, no keyframe first).

    The sequential decoder keeps the ordinals-th frames the decoder outputs, and the decoder outputs the packets
    not marked discard in pts order; so ordinal ``i`` is the ``i``-th smallest such pts (the last one past the end).
    """
    pts = [p for p, _, _ in packets]
    if not packets or not packets[0][1] or any(p is None for p in pts) or len(set(pts)) != len(pts):
        return None
    shown = sorted(p for p, _, discard in packets if not discard)
    if not shown:
        return None
    want = [shown[min(i, len(shown) - 1)] for i in ordinals]
    index = {p: i for i, p in enumerate(pts)}
    keys = [i for i, (_, key, _) in enumerate(packets) if key]
    start = {}
    for p in set(want):
        # the last keyframe decoded before this frame and shown no later (an open GOP's leading frames belong
        # to the keyframe before); keys[0] == 0 qualifies for every frame
        k = bisect.bisect_right(keys, index[p]) - 1
        while pts[keys[k]] > p:
            k -= 1
        start[p] = keys[k]
    return _SeekPlan(pts, want, start)


def _decode_planned(path: Path, container: Any, stream: Any, plan: _SeekPlan, convert: Callable[[Any], np.ndarray],
                    limits: DecodeLimits) -> np.ndarray | None:
    """Decode only what the sampled frames need: from the keyframe before each one (seeking past the frames in
    between), skipping the frames no other frame references. ``None`` when the file does not behave as its
    index says (a seek lands elsewhere, a frame does not come out): the caller then decodes sequentially."""
    budget = _Budget(path, limits)
    codec = stream.codec_context
    stream.thread_type = VIDEO_THREAD_TYPE
    wanted = set(plan.want)
    index = {p: i for i, p in enumerate(plan.pts)}
    kept: dict[int, np.ndarray] = {}

    def take(frames: list[Any]) -> None:
        for frame in frames:
            if frame.pts in wanted and frame.pts not in kept:
                kept[frame.pts] = convert(frame)

    pos: int | None = None  # decode index of the last packet sent; None: just seeked
    packets: Iterator[Any] = iter(())
    for target in sorted(wanted, key=index.__getitem__):
        key = plan.start[target]
        if pos is None or key > pos + 1:  # a keyframe lies ahead: jump to it (the target is not sent yet)
            if pos is not None:
                take(budget.decode(None, codec))  # drain: earlier targets may still be in the decoder
            codec.flush_buffers()
            try:
                container.seek(plan.pts[key], stream=stream, backward=True, any_frame=False)
            except _DECODE_ERRORS:
                return None
            packets, pos = _demux(path, container, [stream], limits, budget), None
        while pos is None or pos < index[target]:
            packet = next(packets, None)
            if packet is None:
                break
            if packet.size == 0:
                continue
            at = index.get(packet.pts)
            if at is None or (pos is None and at != key) or (pos is not None and at < pos):
                return None
            pos = at
            codec.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
            take(budget.decode(packet))
    take(budget.decode(None, codec))
    if len(kept) < len(wanted):
        return None
    return np.stack([kept[p] for p in plan.want])


def _read_video(path: Path, num_frames: int | None, fps: float | None, size: int | None, crop: str,
                face_detector: FaceCropper | None, limits: DecodeLimits) -> np.ndarray:
    """Sample and convert the frames (see :func:`load_video`).

    Uniform mode counts the video packets first (demux only); then, when the packet index allows it, decodes only
    what the sampled frames need (:func:`_decode_planned`), else every frame up to the last one sampled.
    """
    if crop == "face" and face_detector is None:
        face_detector = _default_cropper()
    convert = _frame_converter(size, crop, face_detector)
    with _open(path) as container:
        stream = _first_stream(path, container, "video")
        rate = stream.average_rate
        frame_duration = 1.0 / float(rate) if rate else 0.0
        if fps is not None:
            sink = _VideoSink(convert, None, fps, num_frames, frame_duration)
        else:
            packets = _scan_video(path, container, stream, limits)
            if not packets:
                raise MediaError(path, "no video frames (the video stream has no packets)")
            assert num_frames is not None
            ordinals = uniform_indices(len(packets), num_frames)
            plan = _seek_plan(packets, ordinals)
            frames = None if plan is None else _decode_planned(path, container, stream, plan, convert, limits)
            if frames is not None:
                return frames
            sink = _VideoSink(convert, ordinals, None, num_frames, frame_duration)
    _decode(path, None, sink, limits)
    return sink.result(path)


@functools.lru_cache(maxsize=1)
def _default_cropper() -> FaceCropper:
    return FaceCropper("haar")


# -------------------------------------------------------------------------------------------- public API
def load_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None, *,
               reject_silent: bool = True, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode an audio file (or a container's first audio stream) to float32 mono ``(N,)`` at ``sample_rate``.

    Multi-channel audio is averaged to mono; ``max_seconds`` keeps only the start. Raises :class:`MediaError`
    for a missing, unreadable, corrupt or truncated-to-nothing file, no audio stream, zero-length, non-finite
    or (with ``reject_silent``) silent audio, and sample rates outside 1 kHz..384 kHz.
    """
    _check_target_rate(sample_rate)
    p = _check_file(path)
    sf_error = ""
    if p.suffix.lower() in SOUNDFILE_EXTS and sf is not None:
        try:
            wave, rate = _read_soundfile(p, max_seconds, limits)
            return _finish_audio(p, wave, rate, sample_rate, max_seconds, reject_silent)
        except _DECODE_ERRORS as err:
            sf_error = f"soundfile: {err}; "  # not a libsndfile format after all: try FFmpeg
    _require_av()
    sink = _AudioSink(p, max_seconds, limits)
    try:
        _decode(p, sink, None, limits)
        wave, rate = sink.result()
    except MediaError as err:
        raise MediaError(p, sf_error + err.reason) from err
    except _DECODE_ERRORS as err:
        raise MediaError(p, f"{sf_error}cannot decode audio: {err}") from err
    return _finish_audio(p, wave, rate, sample_rate, max_seconds, reject_silent)


def load_video(path: str | Path, num_frames: int | None = 8, fps: float | None = None, size: int | None = 112,
               crop: str = "center", face_detector: FaceCropper | None = None, *,
               limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode ``num_frames`` frames of a video to uint8 RGB ``(T, size, size, 3)``.

    Frames are taken at the centres of ``num_frames`` equal segments of the clip, or, when ``fps`` is given,
    at times ``0, 1/fps, 2/fps, ...`` from the first frame (at most ``num_frames`` of them; ``None``: the whole
    clip). ``crop``: ``"center"`` resizes the shorter side to ``size`` and cuts the centre square; ``"face"``
    crops the largest face (``face_detector`` or a shared Haar :class:`FaceCropper`); ``"none"`` squeezes the
    whole frame to ``size x size``. ``size=None`` keeps the native resolution. Only the kept frames are
    converted to RGB. Raises :class:`MediaError` when the file is missing, corrupt or has no decodable frames.
    """
    _check_video_args(num_frames, fps, size, crop)
    p = _check_file(path)
    _require_av()
    try:
        return _read_video(p, num_frames, fps, size, crop, face_detector, limits)
    except _DECODE_ERRORS as err:
        raise MediaError(p, f"cannot decode video: {err}") from err


def load_audio_video(path: str | Path, sample_rate: int = 16000, num_frames: int | None = 8,
                     fps: float | None = None, size: int | None = 112, crop: str = "center",
                     face_detector: FaceCropper | None = None, max_seconds: float | None = None, *,
                     reject_silent: bool = True,
                     limits: DecodeLimits = DEFAULT_LIMITS) -> tuple[np.ndarray, np.ndarray]:
    """Decode a container's first audio and video streams -> ``(audio, frames)`` (the video as :func:`load_video`
    does, then the audio stream alone).

    Arguments as in :func:`load_audio` and :func:`load_video`.
    """
    _check_target_rate(sample_rate)
    _check_video_args(num_frames, fps, size, crop)
    p = _check_file(path)
    _require_av()
    try:
        frames = _read_video(p, num_frames, fps, size, crop, face_detector, limits)
        audio = _AudioSink(p, max_seconds, limits)
        _decode(p, audio, None, limits)
        wave, rate = audio.result()
    except _DECODE_ERRORS as err:
        raise MediaError(p, f"cannot decode: {err}") from err
    return _finish_audio(p, wave, rate, sample_rate, max_seconds, reject_silent), frames


def load_media(audio_path: str | Path | None, video_path: str | Path | None, options: MediaOptions,
               face_detector: FaceCropper | None = None) -> dict[str, np.ndarray]:
    """Decode the requested audio and/or video (one pass when both come from the same file).

    Returns ``{"audio": ..., "video": ...}`` holding the ones whose path is not None.
    """
    o = options
    vkw = dict(num_frames=o.num_frames, fps=o.fps, size=o.size, crop=o.crop, face_detector=face_detector)
    if audio_path is not None and video_path is not None and Path(audio_path) == Path(video_path):
        a, v = load_audio_video(audio_path, sample_rate=o.sample_rate, max_seconds=o.max_seconds,
                                reject_silent=o.reject_silent, **vkw)  # type: ignore[arg-type]
        return {"audio": a, "video": v}
    out: dict[str, np.ndarray] = {}
    if audio_path is not None:
        out["audio"] = load_audio(audio_path, o.sample_rate, o.max_seconds, reject_silent=o.reject_silent)
    if video_path is not None:
        out["video"] = load_video(video_path, **vkw)  # type: ignore[arg-type]
    return out
