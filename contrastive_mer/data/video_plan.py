"""Planned video decoding: decode only what the sampled frames need.

From the video stream's packet index (demux only), each sampled frame's pts and the keyframe before it; the decoder
seeks to that keyframe when one lies ahead and skips the frames no other frame references. The caller falls back
to sequential decoding when the index cannot place the frames exactly or the file does not behave as it says.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from contrastive_mer.data import decoding
from contrastive_mer.data.decoding import DECODE_ERRORS, Budget, DecodeLimits, demux


@dataclass
class SeekPlan:
    """Which frames to decode for the sampled ones, from the video stream's packet index.

    ``pts``: every packet's pts in decode order; ``want``: the pts of each output frame in output order (repeats
    allowed); ``start``: for each wanted pts, the decode index of the keyframe to start decoding from.
    """

    pts: list[int]
    want: list[int]
    start: dict[int, int]


def scan_video(path: Path, container: Any, stream: Any, limits: DecodeLimits) -> list[tuple[Any, bool, bool]]:
    """``(pts, keyframe, discard)`` of every non-empty video packet in decode order (demux only, no decoding)."""
    return [(packet.pts, packet.is_keyframe, getattr(packet, "is_discard", False))  # absent in old PyAV
            for packet in demux(path, container, [stream], limits) if packet.size > 0]


def seek_plan(packets: list[tuple[Any, bool, bool]], ordinals: list[int]) -> SeekPlan | None:
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
    return SeekPlan(pts, want, start)


def decode_planned(path: Path, container: Any, stream: Any, plan: SeekPlan, *, convert: Callable[[Any], np.ndarray],
                   limits: DecodeLimits) -> np.ndarray | None:
    """Decode only what the sampled frames need: from the keyframe before each one (seeking past the frames in
    between), skipping the frames no other frame references. ``None`` when the file does not behave as its
    index says (a seek lands elsewhere, a frame does not come out): the caller then decodes sequentially."""
    budget = Budget(path, limits)
    codec = stream.codec_context
    stream.thread_type = decoding.VIDEO_THREAD_TYPE
    codec.thread_count = decoding.VIDEO_THREAD_COUNT
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
            except DECODE_ERRORS:
                return None
            packets, pos = demux(path, container, [stream], limits, budget=budget), None
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
