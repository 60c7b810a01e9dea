"""The decoders figure d2 compares, besides the library's own: the sequential decoder from git, the library's
planned decoder with a thread setting, a GOP-parallel variant of it, decord and the ``ffmpeg`` command line; and
the per-frame-type decoding cost used to explain where a planned decode's time goes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from common import ROOT

from contrastive_mer.data import decoding, media, video_io
from contrastive_mer.data.video_plan import SeekPlan, decode_planned, scan_video, seek_plan

BEFORE = "e7ae7ce"  # the last commit with the sequential decoder
NUM_FRAMES, SIZE = 8, 112
PICT_TYPES = {1: "I", 2: "P", 3: "B"}


def load_before() -> Any:
    """The sequential decoder as a module, from git, with its thread setting made a module variable."""
    src = subprocess.run(["git", "show", f"{BEFORE}:contrastive_mer/data/media.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert 'streams[-1].thread_type = "AUTO"' in src
    src = src.replace('streams[-1].thread_type = "AUTO"', 'streams[-1].thread_type = VIDEO_THREAD_TYPE')
    src += '\nVIDEO_THREAD_TYPE = "AUTO"\n'
    path = Path(tempfile.mkdtemp()) / "media_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("media_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def with_threads(module: Any, thread_type: str, setting: Any = None, count: int = 0) -> Callable[[Path], np.ndarray]:
    """``module.load_video`` with ``VIDEO_THREAD_TYPE`` (and ``VIDEO_THREAD_COUNT`` where the module has it) set
    on ``setting`` (default: the module itself)."""
    setting = setting or module

    def decode(path: Path) -> np.ndarray:
        setting.VIDEO_THREAD_TYPE, setting.VIDEO_THREAD_COUNT = thread_type, count
        try:
            return module.load_video(path, num_frames=NUM_FRAMES, size=SIZE)
        finally:
            setting.VIDEO_THREAD_TYPE, setting.VIDEO_THREAD_COUNT = "AUTO", 0
    return decode


def ffmpeg_cli(threads: int) -> Callable[[Path], np.ndarray]:
    """The same frames (decoded-frame numbers) through the ``ffmpeg`` command line, resized and cropped alike."""
    import av

    def decode(path: Path) -> np.ndarray:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = sum(1 for p in container.demux(stream) if p.size > 0)
            w, h = stream.width, stream.height
        ordinals = sorted(set(media.uniform_indices(total, NUM_FRAMES)))
        scale = SIZE / min(w, h)
        nw, nh = max(SIZE, round(w * scale)), max(SIZE, round(h * scale))
        select = "+".join(f"eq(n\\,{i})" for i in ordinals)
        vf = f"select='{select}',scale={nw}:{nh}:flags=area,crop={SIZE}:{SIZE}:{(nw - SIZE) // 2}:{(nh - SIZE) // 2}"
        cmd = ["ffmpeg", "-v", "error", "-threads", str(threads), "-i", str(path), "-an", "-vf", vf,
               "-fps_mode", "passthrough", "-frames:v", str(len(ordinals)), "-f", "rawvideo", "-pix_fmt", "rgb24",
               "pipe:1"]
        out = subprocess.run(cmd, check=True, capture_output=True).stdout
        return np.frombuffer(out, np.uint8).reshape(-1, SIZE, SIZE, 3)
    return decode


def decord_reader(native: bool = False) -> Callable[[Path], np.ndarray]:
    """The same frame numbers through decord (one thread, as in a DataLoader worker): resized by decord to the
    library's geometry and centre-cropped, or at the native resolution (``native``) for the pixel check."""
    import decord

    def decode(path: Path) -> np.ndarray:
        if native:
            reader = decord.VideoReader(str(path), num_threads=1)
        else:
            h, w = decord.VideoReader(str(path), num_threads=1)[0].shape[:2]
            scale = SIZE / min(w, h)
            nw, nh = max(SIZE, round(w * scale)), max(SIZE, round(h * scale))
            reader = decord.VideoReader(str(path), num_threads=1, width=nw, height=nh)
        frames = reader.get_batch(media.uniform_indices(len(reader), NUM_FRAMES)).asnumpy()
        if native:
            return frames
        top, left = (frames.shape[1] - SIZE) // 2, (frames.shape[2] - SIZE) // 2
        return frames[:, top:top + SIZE, left:left + SIZE]
    return decode


def decord_version() -> str:
    import decord

    return str(decord.__version__)


def gop_parallel(workers: int) -> Callable[[Path], np.ndarray]:
    """The planned decoder split by GOP: the sampled frames that start from the same keyframe are decoded by one
    of ``workers`` threads, each with its own container and a one-thread decoder (a prototype measured here, not
    in the library: it buys wall time with a second core, at the cost of one container open per GOP)."""
    convert = video_io.frame_converter(SIZE, "center", None)
    limits = decoding.DEFAULT_LIMITS

    def decode(path: Path) -> np.ndarray:
        with decoding.open_container(path) as container:
            packets = scan_video(path, container, container.streams.video[0], limits)
        plan = seek_plan(packets, video_io.uniform_indices(len(packets), NUM_FRAMES))
        assert plan is not None, path
        groups: dict[int, list[int]] = {}
        for pts in sorted(set(plan.want)):
            groups.setdefault(plan.start[pts], []).append(pts)

        def run(wants: list[int]) -> dict[int, np.ndarray]:
            sub = SeekPlan(plan.pts, wants, {p: plan.start[p] for p in wants})
            with decoding.open_container(path) as container:
                frames = decode_planned(path, container, container.streams.video[0], sub, convert=convert,
                                        limits=limits)
            assert frames is not None, path
            return dict(zip(wants, frames))

        decoding.VIDEO_THREAD_TYPE, decoding.VIDEO_THREAD_COUNT = "NONE", 1
        try:
            with ThreadPoolExecutor(workers) as pool:
                kept = {p: f for part in pool.map(run, groups.values()) for p, f in part.items()}
        finally:
            decoding.VIDEO_THREAD_TYPE, decoding.VIDEO_THREAD_COUNT = "AUTO", 0
        return np.stack([kept[p] for p in plan.want])
    return decode


def frame_type_costs(path: Path) -> dict[str, list[float]]:
    """CPU seconds FFmpeg spends on each packet of the video stream, by the packet's picture type (I/P/B), from a
    one-thread sequential decode (a one-thread decoder does a packet's work when the packet is sent)."""
    import av

    spent: list[tuple[Any, float]] = []
    types: dict[Any, str] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.codec_context.thread_count = "NONE", 1
        for packet in container.demux(stream):
            start = time.process_time()
            frames = packet.decode()
            spent.append((packet.pts, time.process_time() - start))
            for frame in frames:
                types[frame.pts] = PICT_TYPES.get(int(frame.pict_type), "other")
    costs: dict[str, list[float]] = {}
    for pts, seconds in spent:
        if pts in types:
            costs.setdefault(types[pts], []).append(seconds)
    return costs


def count_types(frames: list[Any], into: dict[str, int]) -> None:
    """Add the picture types of decoded frames to a count."""
    for frame in frames:
        kind = PICT_TYPES.get(int(frame.pict_type), "other")
        into[kind] = into.get(kind, 0) + 1
