"""Decoding the audio and video of one clip record for the file-based adapters (RAVDESS, CREMA-D, ...)."""

from __future__ import annotations

from typing import Any, Sequence

from contrastive_mer.data.datasets.base import ClipRecord, SampleError
from contrastive_mer.data.media import MediaError, MediaOptions, load_media


def decode_audio_video(record: ClipRecord, modalities: Sequence[str], options: MediaOptions,
                       cropper: Any = None) -> dict[str, Any]:
    """The requested ``audio``/``video`` of ``record`` (one container read when both come from the same file).

    Raises :class:`SampleError` naming the clip, the modality and the file when decoding fails.
    """
    src = record.sources
    audio = src.get("audio") if "audio" in modalities else None
    video = src.get("video") if "video" in modalities else None
    try:
        return load_media(audio, video, options, cropper)
    except MediaError as err:
        modality = "audio+video" if audio == video else "audio" if err.path == str(audio) else "video"
        raise SampleError(record.id, f"{modality}: {err.reason}", err.path) from err
