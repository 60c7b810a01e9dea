"""Decode sampled video frames to uint8 RGB ``(T, size, size, 3)``.

Uniform sampling (``num_frames`` frames at the centres of equal segments) goes through the planned decoder of
:mod:`contrastive_mer.data.video_plan` when the packet index allows, else through a sequential decode up to the
last sampled frame; ``fps`` sampling decodes sequentially. Only the kept frames are converted to RGB.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from contrastive_mer.data.decoding import (
    DECODE_ERRORS,
    DEFAULT_LIMITS,
    DecodeLimits,
    MediaError,
    av,
    check_file,
    decode_streams,
    first_stream,
    open_container,
    require_av,
)
from contrastive_mer.data.face import FaceCropper, center_crop
from contrastive_mer.data.truncation import check_mode, declared_seconds, report
from contrastive_mer.data.video_plan import decode_planned, scan_video, seek_plan

CROPS = ("center", "face", "none")


def check_video_args(num_frames: int | None, fps: float | None, size: int | None, crop: str) -> None:
    """ValueError naming the first invalid sampling/geometry argument."""
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


def frame_converter(size: int | None, crop: str, cropper: FaceCropper | None) -> Callable[[Any], np.ndarray]:
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


class VideoSink:
    """Keeps the decoded frames that the sampling plan asks for, converting only those to RGB.

    Uniform mode (``targets``): frame ordinals to keep. Fps mode: sample-and-hold at times
    ``t0 + k / fps`` (the latest frame shown at each time), at most ``max_frames`` of them.
    """

    def __init__(self, convert: Callable[[Any], np.ndarray], targets: list[int] | None, fps: float | None,
                 max_frames: int | None, *, frame_duration: float, truncated: str = "skip"):
        self.convert = convert
        self.truncated = truncated
        self.declared: float | None = None  # set by the decoding loop (fps mode checks it)
        self.first_time: float | None = None
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
            self.next_time = self.first_time = t
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
        if not self.done and self.first_time is not None:
            report(path, "video", end - self.first_time, self.declared, truncated=self.truncated)
        while not self.done and self.next_time is not None and (self.next_time < end - 1e-9 or not self.out):
            self._emit()
        return np.stack(self.out)


def uniform_indices(total: int, num_frames: int) -> list[int]:
    """``num_frames`` frame ordinals at the centres of equal segments of ``total`` frames (repeats if short)."""
    return [min(total - 1, int((k + 0.5) * total / num_frames)) for k in range(num_frames)]


def packet_extent(packets: list[tuple[Any, bool, bool]], time_base: Any, frame_duration: float) -> float | None:
    """Seconds the scanned video packets span (first pts to the end of the last frame); None without pts."""
    pts = [p for p, _, _ in packets]
    if not pts or any(p is None for p in pts) or not time_base:
        return None
    return float((max(pts) - min(pts)) * time_base) + frame_duration


def read_video(path: Path, num_frames: int | None, fps: float | None, size: int | None, *, crop: str,
               face_detector: FaceCropper | None, limits: DecodeLimits, truncated: str = "skip") -> np.ndarray:
    """Sample and convert the frames (see :func:`load_video`).

    Uniform mode counts the video packets first (demux only), and compares their span with the duration the file
    declares (:mod:`~contrastive_mer.data.truncation`); then, when the packet index allows it, decodes only
    what the sampled frames need (:func:`~contrastive_mer.data.video_plan.decode_planned`), else every frame up to
    the last one sampled.
    """
    if crop == "face" and face_detector is None:
        face_detector = _default_cropper()
    convert = frame_converter(size, crop, face_detector)
    with open_container(path) as container:
        stream = first_stream(path, container, "video")
        rate = stream.average_rate
        frame_duration = 1.0 / float(rate) if rate else 0.0
        if fps is not None:
            sink = VideoSink(convert, None, fps, num_frames, frame_duration=frame_duration, truncated=truncated)
        else:
            packets = scan_video(path, container, stream, limits)
            if not packets:
                raise MediaError(path, "no video frames (the video stream has no packets)")
            extent = packet_extent(packets, stream.time_base, frame_duration)
            if extent is not None:
                report(path, "video", extent, declared_seconds(container, stream), truncated=truncated)
            assert num_frames is not None
            ordinals = uniform_indices(len(packets), num_frames)
            plan = seek_plan(packets, ordinals)
            frames = None if plan is None else decode_planned(path, container, stream, plan, convert=convert,
                                                              limits=limits)
            if frames is not None:
                return frames
            sink = VideoSink(convert, ordinals, None, num_frames, frame_duration=frame_duration, truncated=truncated)
    decode_streams(path, None, sink, limits)
    return sink.result(path)


@functools.lru_cache(maxsize=1)
def _default_cropper() -> FaceCropper:
    return FaceCropper("haar")


def load_video(path: str | Path, num_frames: int | None = 8, fps: float | None = None, size: int | None = 112,
               *, crop: str = "center", face_detector: FaceCropper | None = None,
               limits: DecodeLimits = DEFAULT_LIMITS, truncated: str = "skip") -> np.ndarray:
    """Decode ``num_frames`` frames of a video to uint8 RGB ``(T, size, size, 3)``.

    Frames are taken at the centres of ``num_frames`` equal segments of the clip, or, when ``fps`` is given,
    at times ``0, 1/fps, 2/fps, ...`` from the first frame (at most ``num_frames`` of them; ``None``: the whole
    clip). ``crop``: ``"center"`` resizes the shorter side to ``size`` and cuts the centre square; ``"face"``
    crops the largest face (``face_detector`` or a shared Haar :class:`FaceCropper`); ``"none"`` squeezes the
    whole frame to ``size x size``. ``size=None`` keeps the native resolution. Only the kept frames are
    converted to RGB. ``truncated``: ``"skip"`` raises :class:`MediaError` when the video stream ends well before
    the duration the file declares, ``"keep"`` logs a warning (:mod:`~contrastive_mer.data.truncation`). Raises
    :class:`MediaError` when the file is missing, corrupt or has no decodable frames.
    """
    check_video_args(num_frames, fps, size, crop)
    check_mode(truncated)
    p = check_file(path)
    require_av()
    try:
        return read_video(p, num_frames, fps, size, crop=crop, face_detector=face_detector, limits=limits,
                          truncated=truncated)
    except DECODE_ERRORS as err:
        raise MediaError(p, f"cannot decode video: {err}") from err
