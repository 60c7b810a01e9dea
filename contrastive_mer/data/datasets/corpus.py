"""What the adapters of corpora on disk share: their common options, the root folder, the modality and speaker
subsets, the audio/video decoding options with the face cropper, and decoding a record's media files.

:class:`FolderCorpus` owns root, modalities and speakers (MOSEI uses it alone); :class:`MediaCorpus` adds the
decoding (RAVDESS, CREMA-D, MELD, IEMOCAP, manifests). A subclass implements ``_scan`` (see
:class:`~contrastive_mer.data.datasets.base.CorpusAdapter`); when its speaker ids have a short form, its options
class overrides :meth:`CorpusOptions.speaker_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from contrastive_mer.data.audio_io import SILENCE_DBFS
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, SampleError
from contrastive_mer.data.media import MediaError, MediaOptions, load_media
from contrastive_mer.data.sample import Sample

#: modalities whose sources are media files decoded with :func:`contrastive_mer.data.media.load_media`
MEDIA_MODALITIES = ("audio", "video")
FACE_BACKENDS = ("haar", "mtcnn")


@dataclass
class CorpusOptions:
    """Options of every corpus read from disk.

    Attributes:
        root: the corpus folder (``data.root``).
        modalities: which modalities to list (None: the adapter's default, usually all it offers).
        speakers: keep only these speakers: values of the records' ``speaker`` group, or the corpus's short
            form of them (RAVDESS actor numbers, ``1`` for ``actor01``; IEMOCAP sessions for both their speakers).
    """

    root: Optional[str] = None
    modalities: Optional[list[str]] = None
    speakers: Optional[list[str]] = None

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ValueError naming an invalid option (no file-system access: this also runs on configs)."""
        for speaker in self.speakers or ():
            self.speaker_id(speaker)

    def require_one_of(self, name: str, allowed: Sequence[Any]) -> None:
        """Raise ValueError unless option ``name`` is one of ``allowed``."""
        value = getattr(self, name)
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")

    @staticmethod
    def speaker_id(value: Any) -> str:
        """The ``speaker`` group value a ``speakers`` entry stands for; ValueError when it names none (corpora
        with a short form of their speaker ids override this)."""
        return str(value)


@dataclass
class AudioCorpusOptions(CorpusOptions):
    """Plus audio decoding: resample to ``sample_rate``; keep at most the first ``max_seconds``; ``truncated``:
    ``skip`` (default) or ``keep`` a media file that ends well before its declared duration (a cut copy; see
    :mod:`contrastive_mer.data.truncation`); ``silence_dbfs``: audio whose RMS level is below it is skipped as
    silent (default -60 dBFS; None keeps silent clips)."""

    sample_rate: int = 16000
    max_seconds: Optional[float] = None
    truncated: str = "skip"
    silence_dbfs: Optional[float] = SILENCE_DBFS

    def check(self) -> None:
        super().check()
        media_options(self)


@dataclass
class MediaCorpusOptions(AudioCorpusOptions):
    """Plus video decoding: ``num_frames`` frames (or every ``1/fps`` s), ``frame_size`` x ``frame_size``
    pixels, ``crop`` ``center``/``face``/``none``; ``face_backend`` ``haar``/``mtcnn`` for ``crop=face``
    (see :mod:`contrastive_mer.data.media` and :mod:`contrastive_mer.data.face`)."""

    num_frames: Optional[int] = 8
    fps: Optional[float] = None
    frame_size: Optional[int] = 112
    crop: str = "center"
    face_backend: str = "haar"

    def check(self) -> None:
        if self.frame_size is not None and self.frame_size < 1:
            raise ValueError(f"frame_size must be >= 1, got {self.frame_size}")
        self.require_one_of("face_backend", FACE_BACKENDS)
        super().check()


def media_options(options: Any) -> MediaOptions:
    """The :class:`MediaOptions` of an options object (the audio and video fields it has; defaults otherwise)."""
    names = {"sample_rate": "sample_rate", "max_seconds": "max_seconds", "num_frames": "num_frames", "fps": "fps",
             "frame_size": "size", "crop": "crop", "truncated": "truncated"}
    fields = {dst: getattr(options, src) for src, dst in names.items() if hasattr(options, src)}
    if hasattr(options, "silence_dbfs"):  # None: silent clips are kept
        level = options.silence_dbfs
        fields.update(reject_silent=level is not None, silence_dbfs=SILENCE_DBFS if level is None else float(level))
    return MediaOptions(**fields)


class FolderCorpus(CorpusAdapter):
    """A corpus under a root folder, with the modality and speaker subsets of :class:`CorpusOptions`.

    Build it as ``Adapter(root, **options)``, ``Adapter(root=..., **options)`` or ``Adapter(options=obj)``.
    """

    #: the corpus name in messages (``"RAVDESS"``)
    title: str = "corpus"
    options_cls = CorpusOptions

    def __init__(self, root: str | Path | None = None, options: Any = None, **fields: Any) -> None:
        if root is not None:
            fields["root"] = root
        super().__init__(options, **fields)
        self.root = self._check_root()
        self.modalities = self._check_modalities()
        speakers = self.options.speakers
        #: the speaker group values to keep (None: all)
        self.speaker_filter = None if speakers is None else {self.options.speaker_id(s) for s in speakers}

    def _check_root(self) -> Path:
        if self.options.root is None:
            raise ValueError(f"{self.title}: no root given (set data.root to the corpus folder)")
        root = Path(self.options.root)
        if not root.is_dir():
            raise FileNotFoundError(f"{self.title} root not found: {root}")
        return root

    def _check_modalities(self) -> tuple[str, ...]:
        offered = type(self).modalities
        wanted = offered if self.options.modalities is None else tuple(self.options.modalities)
        unknown = sorted(set(wanted) - set(offered)) if offered else []
        if unknown:
            raise ValueError(f"{self.title} has no modality {unknown}; available: {offered}")
        return tuple(wanted)

    def keep_speaker(self, speaker: str) -> bool:
        """Whether the ``speakers`` option keeps this speaker group value."""
        return self.speaker_filter is None or speaker in self.speaker_filter


class MediaCorpus(FolderCorpus):
    """A :class:`FolderCorpus` whose ``audio``/``video`` sources are media files, decoded with the options'
    :class:`MediaOptions` (:attr:`media`) and face cropper (:attr:`cropper`, for ``crop="face"``).

    :meth:`load` decodes those and passes other sources through (numpy arrays copied); subclasses with other
    kinds of source override :meth:`load_source`.
    """

    #: a MediaCorpusOptions subclass, or the audio-only AudioCorpusOptions for corpora without video
    options_cls: ClassVar[type[CorpusOptions]] = MediaCorpusOptions

    def __init__(self, root: str | Path | None = None, options: Any = None, **fields: Any) -> None:
        super().__init__(root, options, **fields)
        self.media = media_options(self.options)
        self.cropper = None
        if self.media.crop == "face":
            from contrastive_mer.data.face import FaceCropper

            self.cropper = FaceCropper(self.options.face_backend)

    def decode(self, record: ClipRecord, modalities: Sequence[str]) -> dict[str, Any]:
        """The requested ``audio``/``video`` of ``record`` (one container read when both are the same file).

        Raises :class:`SampleError` naming the clip, the modality and the file when decoding fails.
        """
        src = record.sources
        audio = src.get("audio") if "audio" in modalities else None
        video = src.get("video") if "video" in modalities else None
        try:
            return load_media(audio, video, self.media, self.cropper)
        except MediaError as err:
            modality = "audio+video" if audio == video else "audio" if err.path == str(audio) else "video"
            raise SampleError(record.id, f"{modality}: {err.reason}", str(err.path)) from err

    def load_source(self, record: ClipRecord, modality: str, source: Any) -> Any:
        """A non-media source's value (numpy arrays are copied, anything else is returned as it is)."""
        return source.copy() if isinstance(source, np.ndarray) else source

    def source_file(self, modality: str, source: Any) -> str | None:
        """The file a source is read from (None for inline values); listed in ``Sample.meta["files"]``."""
        return str(source) if modality in MEDIA_MODALITIES else None

    def load(self, record: ClipRecord, modalities: Sequence[str]) -> Sample:
        """Decode the requested modalities the record has; :class:`SampleError` names the clip and file."""
        self.check_valid(record)
        inputs = self.decode(record, modalities)
        for m in modalities:
            if m in record.sources and m not in MEDIA_MODALITIES:
                inputs[m] = self.load_source(record, m, record.sources[m])
        files = {m: self.source_file(m, record.sources[m]) for m in inputs}
        meta = {"files": {m: f for m, f in files.items() if f is not None}}
        return Sample(record.id, inputs, dict(record.labels), dict(record.groups), meta)
