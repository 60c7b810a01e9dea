"""MELD (Poria et al. 2019): multi-party dialogue utterances from the series Friends.

Layout under ``root``: the tables ``{train,dev,test}_sent_emo.csv`` (columns ``Utterance, Speaker, Emotion,
Sentiment, Dialogue_ID, Utterance_ID, ...``) and, optionally, the clips ``dia{D}_utt{U}.mp4`` in one folder
per split (the release's ``train_splits/``, ``dev_splits_complete/``, ``output_repeated_splits_test/`` by
default). Records list ``audio``/``video`` as the clip path whether or not the file exists; loading a missing
clip raises :class:`SampleError` ("clip not found"). ``text`` comes from the table.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, SampleError, register_adapter
from contrastive_mer.data.face import FaceCropper
from contrastive_mer.data.media import MediaError, MediaOptions, load_media
from contrastive_mer.data.sample import Sample

SPLITS = ("train", "dev", "test")
EMOTIONS = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
SENTIMENTS = ["negative", "neutral", "positive"]
CLIP_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")


def read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a MELD table as dicts (UTF-8, falling back to Windows-1252 as in some releases)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {header}")
    reader.fieldnames = header
    return list(reader)


@register_adapter("meld")
class MeldAdapter(CorpusAdapter):
    """MELD utterances with text, and audio/video from the clips when they are present.

    Sample id ``{split}_dia{D}_utt{U}`` (dialogue ids restart in every split). Labels: ``emotion`` (7 classes,
    :data:`EMOTIONS`), ``sentiment`` (3). Groups: ``speaker``, ``dialogue`` (``{split}_dia{D}``), ``split``.
    """

    name = "meld"
    modalities = ("audio", "video", "text")

    def __init__(self, root: str | Path, modalities: Sequence[str] = ("text",),
                 split: str | Sequence[str] = SPLITS, clips_dir: str | Path | Mapping[str, str | Path] | None = None,
                 sample_rate: int = 16000, max_seconds: float | None = None, num_frames: int | None = 8,
                 fps: float | None = None, frame_size: int | None = 112, crop: str = "center",
                 face_backend: str = "haar") -> None:
        """Args:
            root: the folder holding the ``*_sent_emo.csv`` tables.
            modalities: which modalities to list (a subset of ``audio, video, text``).
            split: ``"train"``, ``"dev"``, ``"test"`` or several of them.
            clips_dir: the clip folder (one split) or a split -> folder mapping; relative paths are under
                ``root``. Default: the release's folder names (:data:`CLIP_DIRS`).
            sample_rate, max_seconds, num_frames, fps, frame_size, crop, face_backend: decoding (see media.py).
        """
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"MELD root not found: {self.root}")
        unknown = set(modalities) - set(type(self).modalities)
        if unknown:
            raise ValueError(f"MELD has no modality {sorted(unknown)}; available: {type(self).modalities}")
        self.splits = (split,) if isinstance(split, str) else tuple(split)
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise ValueError(f"unknown MELD split {bad or split!r}; expected some of {SPLITS}")
        self.modalities = tuple(modalities)
        if clips_dir is None:
            dirs: Mapping[str, str | Path] = CLIP_DIRS
        elif isinstance(clips_dir, Mapping):
            dirs = clips_dir
        else:
            dirs = {s: clips_dir for s in self.splits}
        self.clip_dirs = {s: self.root / dirs[s] for s in self.splits if s in dirs}
        self.options = MediaOptions(sample_rate=sample_rate, max_seconds=max_seconds, num_frames=num_frames,
                                    fps=fps, size=frame_size, crop=crop)
        self.cropper = FaceCropper(face_backend) if crop == "face" else None
        self.label_names = {"emotion": list(EMOTIONS), "sentiment": list(SENTIMENTS)}
        self._invalid: dict[str, tuple[str, str]] = {}
        self._records = self._scan()

    def _scan(self) -> list[ClipRecord]:
        records = []
        for split in self.splits:
            table = self.root / f"{split}_sent_emo.csv"
            if not table.is_file():
                raise FileNotFoundError(f"MELD table not found: {table}")
            for line, row in enumerate(read_table(table), start=2):
                records.append(self._record(split, table, line, row))
        seen: dict[str, int] = {}
        for r in records:
            seen[r.id] = seen.get(r.id, 0) + 1
        for r in records:
            if seen[r.id] > 1:
                self._invalid[r.id] = (f"utterance listed {seen[r.id]} times in the table", "")
        return records

    def _record(self, split: str, table: Path, line: int, row: dict[str, Any]) -> ClipRecord:
        try:
            dia, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
        except (TypeError, ValueError):
            key = f"{split}_line{line}"
            self._invalid[key] = (f"{table} line {line}: bad Dialogue_ID/Utterance_ID "
                                  f"{row['Dialogue_ID']!r}/{row['Utterance_ID']!r}", str(table))
            return ClipRecord(key, {})
        key = f"{split}_dia{dia}_utt{utt}"
        emotion = (row["Emotion"] or "").strip().lower()
        sentiment = (row["Sentiment"] or "").strip().lower()
        for value, known, what in ((emotion, EMOTIONS, "emotion"), (sentiment, SENTIMENTS, "sentiment")):
            if value not in known:
                self._invalid[key] = (f"{table} line {line}: unknown label code {what}={value!r}; "
                                      f"known: {', '.join(known)}", str(table))
                return ClipRecord(key, {})
        sources: dict[str, Any] = {}
        if split in self.clip_dirs:
            clip = str(self.clip_dirs[split] / f"dia{dia}_utt{utt}.mp4")
            sources.update({m: clip for m in ("audio", "video") if m in self.modalities})
        if "text" in self.modalities:
            sources["text"] = " ".join((row["Utterance"] or "").split())
            if not sources["text"]:
                self._invalid[key] = (f"{table} line {line}: empty utterance", str(table))
        labels = {"emotion": EMOTIONS.index(emotion), "sentiment": SENTIMENTS.index(sentiment)}
        groups = {"speaker": (row["Speaker"] or "").strip(), "dialogue": f"{split}_dia{dia}", "split": split}
        return ClipRecord(key, sources, labels, groups)

    def records(self) -> list[ClipRecord]:
        """Every utterance of the chosen splits, in table order."""
        return list(self._records)

    def load(self, record: ClipRecord, modalities: Sequence[str]) -> Sample:
        """Text from the table; audio/video decoded from the clip (SampleError "clip not found" if absent)."""
        if record.id in self._invalid:
            reason, path = self._invalid[record.id]
            raise SampleError(record.id, reason, path or None)
        src = record.sources
        audio = src.get("audio") if "audio" in modalities else None
        video = src.get("video") if "video" in modalities else None
        clip = audio or video
        inputs: dict[str, Any] = {}
        if clip is not None:
            if not Path(clip).is_file():
                raise SampleError(record.id, f"clip not found: {clip}", clip)
            try:
                inputs.update(load_media(audio, video, self.options, self.cropper))
            except MediaError as err:
                raise SampleError(record.id, err.reason, err.path) from err
        if "text" in modalities and "text" in src:
            inputs["text"] = src["text"]
        meta = {"files": {m: src[m] for m in ("audio", "video") if m in inputs}}
        return Sample(record.id, inputs, dict(record.labels), dict(record.groups), meta)
