"""The media API of the corpus adapters: decode a record's audio and/or video with one set of options.

Audio comes back as float32 mono ``(N,)`` at the requested rate (:mod:`~contrastive_mer.data.audio_io`); video as
uint8 RGB frames ``(T, H, W, 3)`` (:mod:`~contrastive_mer.data.video_io`, planned seeks in
:mod:`~contrastive_mer.data.video_plan`); both through the bounded decoding loop of
:mod:`~contrastive_mer.data.decoding`. Every problem raises :class:`MediaError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contrastive_mer.data.audio_io import (
    SILENCE_DBFS,
    AudioSink,
    check_silence_dbfs,
    check_target_rate,
    finish_audio,
    load_audio,
)
from contrastive_mer.data.decoding import (
    DECODE_ERRORS,
    DEFAULT_LIMITS,
    DecodeLimits,
    MediaError,
    check_file,
    decode_streams,
    require_av,
)
from contrastive_mer.data.face import FaceCropper
from contrastive_mer.data.truncation import check_mode
from contrastive_mer.data.video_io import check_video_args, load_video, read_video, uniform_indices

__all__ = ["DEFAULT_LIMITS", "DecodeLimits", "MediaError", "MediaOptions", "load_audio", "load_audio_video",
           "load_media", "load_video", "uniform_indices"]


@dataclass
class MediaOptions:
    """Decoding settings shared by the corpus adapters (see :func:`load_audio`, :func:`load_video`).

    ``truncated``: ``skip`` or ``keep`` a file that ends well before its declared duration. ``decode_seconds``
    is not a user option: the dataset sets it, while it decodes, to the audio its preprocessors keep
    (:mod:`contrastive_mer.data.decode_window`).
    """

    sample_rate: int = 16000
    max_seconds: float | None = None
    reject_silent: bool = True
    silence_dbfs: float = SILENCE_DBFS
    num_frames: int | None = 8
    fps: float | None = None
    size: int | None = 112
    crop: str = "center"
    truncated: str = "skip"
    decode_seconds: float | None = None

    def __post_init__(self) -> None:
        check_target_rate(self.sample_rate)
        check_silence_dbfs(self.silence_dbfs)
        check_video_args(self.num_frames, self.fps, self.size, self.crop)
        check_mode(self.truncated)


def load_audio_video(path: str | Path, sample_rate: int = 16000, *, num_frames: int | None = 8,
                     fps: float | None = None, size: int | None = 112, crop: str = "center",
                     face_detector: FaceCropper | None = None, max_seconds: float | None = None,
                     reject_silent: bool = True, limits: DecodeLimits = DEFAULT_LIMITS,
                     decode_seconds: float | None = None, truncated: str = "skip",
                     silence_dbfs: float = SILENCE_DBFS) -> tuple[np.ndarray, np.ndarray]:
    """Decode a container's first audio and video streams -> ``(audio, frames)`` (the video as :func:`load_video`
    does, then the audio stream alone).

    Arguments as in :func:`load_audio` and :func:`load_video`.
    """
    check_target_rate(sample_rate)
    check_video_args(num_frames, fps, size, crop)
    check_mode(truncated)
    p = check_file(path)
    require_av()
    try:
        frames = read_video(p, num_frames, fps, size, crop=crop, face_detector=face_detector, limits=limits,
                            truncated=truncated)
        audio = AudioSink(p, max_seconds, limits, decode_seconds=decode_seconds, truncated=truncated)
        decode_streams(p, audio, None, limits)
        wave, rate = audio.result()
    except DECODE_ERRORS as err:
        raise MediaError(p, f"cannot decode: {err}") from err
    return finish_audio(p, wave, rate, sample_rate, max_seconds=max_seconds, reject_silent=reject_silent,
                        silence_dbfs=silence_dbfs), frames


def load_media(audio_path: str | Path | None, video_path: str | Path | None, options: MediaOptions,
               face_detector: FaceCropper | None = None) -> dict[str, np.ndarray]:
    """Decode the requested audio and/or video (one pass when both come from the same file).

    Returns ``{"audio": ..., "video": ...}`` holding the ones whose path is not None.
    """
    o = options
    vkw = dict(num_frames=o.num_frames, fps=o.fps, size=o.size, crop=o.crop, face_detector=face_detector,
               truncated=o.truncated)
    if audio_path is not None and video_path is not None and Path(audio_path) == Path(video_path):
        a, v = load_audio_video(audio_path, sample_rate=o.sample_rate, max_seconds=o.max_seconds,
                                reject_silent=o.reject_silent, decode_seconds=o.decode_seconds,
                                silence_dbfs=o.silence_dbfs, **vkw)  # type: ignore[arg-type]
        return {"audio": a, "video": v}
    out: dict[str, np.ndarray] = {}
    if audio_path is not None:
        out["audio"] = load_audio(audio_path, o.sample_rate, o.max_seconds, reject_silent=o.reject_silent,
                                  decode_seconds=o.decode_seconds, truncated=o.truncated,
                                  silence_dbfs=o.silence_dbfs)
    if video_path is not None:
        out["video"] = load_video(video_path, **vkw)  # type: ignore[arg-type]
    return out
