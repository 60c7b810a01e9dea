"""What the file-based adapters (RAVDESS, CREMA-D) share: a scanned record list that keeps malformed entries
(their ``load`` raises, naming the file), and decoding a record's audio and video."""

from __future__ import annotations

from typing import Any, Sequence

from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, SampleError
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


class ScannedCorpus(CorpusAdapter):
    """An adapter whose records come from one scan of its folder.

    Subclasses fill ``self._records`` and, for entries found malformed during the scan (bad file name, unknown
    label code, bad table row), ``self._invalid[id] = (reason, path)``; such records stay listed and their
    :meth:`check_valid` raises, so the skip report names them instead of the scan silently dropping them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._records: list[ClipRecord] = []
        self._invalid: dict[str, tuple[str, str | None]] = {}

    def records(self) -> list[ClipRecord]:
        """Every record of the scan (sorted), including malformed ones, whose ``load`` raises."""
        return list(self._records)

    def check_valid(self, record: ClipRecord) -> None:
        """Raise :class:`SampleError` for a record the scan found malformed."""
        if record.id in self._invalid:
            reason, path = self._invalid[record.id]
            raise SampleError(record.id, reason, path)
