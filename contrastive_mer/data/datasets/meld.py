"""MELD (Poria et al. 2019): multi-party dialogue utterances from the series Friends.

Layout under ``root``: the tables ``{train,dev,test}_sent_emo.csv`` (columns ``Utterance, Speaker, Emotion,
Sentiment, Dialogue_ID, Utterance_ID, ...``) and, optionally, the clips ``dia{D}_utt{U}.mp4`` in one folder
per split (the release's ``train_splits/``, ``dev_splits_complete/``, ``output_repeated_splits_test/`` by
default). Records list ``audio``/``video`` as the clip path whether or not the file exists; loading a missing
clip raises :class:`SampleError` ("file not found", naming the clip). ``text`` comes from the table.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from contrastive_mer.data.datasets.base import ClipRecord, register_adapter
from contrastive_mer.data.datasets.corpus import MediaCorpus, MediaCorpusOptions
from contrastive_mer.data.sample import LabelValue

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


@dataclass
class MeldOptions(MediaCorpusOptions):
    """MELD options: those of :class:`MediaCorpusOptions` (``modalities`` defaults to ``[text]``; ``speakers``:
    speaker names as in the tables) plus

    Attributes:
        split: the splits to list, some of ``train``, ``dev``, ``test``.
        clips_dir: the clip folder (one split) or a split -> folder mapping; relative paths are under ``root``.
            Default: the release's folder names (:data:`CLIP_DIRS`).
    """

    modalities: Optional[list[str]] = field(default_factory=lambda: ["text"])
    split: list[str] = field(default_factory=lambda: list(SPLITS))
    clips_dir: Any = None

    def check(self) -> None:
        super().check()
        if isinstance(self.split, str):
            self.split = [self.split]
        bad = [s for s in self.split if s not in SPLITS]
        if bad or not self.split:
            raise ValueError(f"unknown MELD split {bad or self.split!r}; expected some of {SPLITS}")
        if self.clips_dir is not None and not isinstance(self.clips_dir, (str, Path, Mapping)):
            raise ValueError(f"MELD clips_dir: expected a folder or a split -> folder mapping, got {self.clips_dir!r}")


@register_adapter("meld")
class MeldAdapter(MediaCorpus):
    """MELD utterances with text, and audio/video from the clips when they are present (options:
    :class:`MeldOptions`).

    Sample id ``{split}_dia{D}_utt{U}`` (dialogue ids restart in every split). Labels: ``emotion`` (7 classes,
    :data:`EMOTIONS`), ``sentiment`` (3). Groups: ``speaker``, ``dialogue`` (``{split}_dia{D}``), ``split``.
    """

    name = "meld"
    title = "MELD"
    modalities = ("audio", "video", "text")
    options_cls = MeldOptions
    options: MeldOptions

    def __init__(self, root: str | Path | None = None, options: MeldOptions | None = None,
                 **fields: Any) -> None:
        super().__init__(root, options, **fields)
        self.splits = tuple(self.options.split)
        clips_dir = self.options.clips_dir
        if clips_dir is None:
            dirs: Mapping[str, str | Path] = CLIP_DIRS
        elif isinstance(clips_dir, Mapping):
            dirs = clips_dir
        else:
            dirs = {s: clips_dir for s in self.splits}
        self.clip_dirs = {s: self.root / dirs[s] for s in self.splits if s in dirs}
        self.tables = {s: self.root / f"{s}_sent_emo.csv" for s in self.splits}
        for table in self.tables.values():
            if not table.is_file():
                raise FileNotFoundError(f"MELD table not found: {table}")
        self.label_names = {"emotion": list(EMOTIONS), "sentiment": list(SENTIMENTS)}

    def _scan(self) -> list[ClipRecord]:
        """Every utterance of the chosen splits (and speakers), in table order."""
        records = []
        for split, table in self.tables.items():
            for line, row in enumerate(read_table(table), start=2):
                record = self._record(split, table, line, row)
                if self.keep_speaker(record.groups.get("speaker", "")) or record.id in self._invalid:
                    records.append(record)
        seen: dict[str, int] = {}
        for r in records:
            seen[r.id] = seen.get(r.id, 0) + 1
        for r in records:
            if seen[r.id] > 1:
                self.mark_invalid(r.id, self.tables[r.id.split("_", 1)[0]],
                                  f"utterance listed {seen[r.id]} times in the table")
        return records

    def _record(self, split: str, table: Path, line: int, row: dict[str, Any]) -> ClipRecord:
        try:
            dia, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
        except (TypeError, ValueError):
            key = f"{split}_line{line}"
            self.mark_invalid(key, table, f"{table} line {line}: bad Dialogue_ID/Utterance_ID "
                                          f"{row['Dialogue_ID']!r}/{row['Utterance_ID']!r}", line)
            return ClipRecord(key, {})
        key = f"{split}_dia{dia}_utt{utt}"
        emotion = (row["Emotion"] or "").strip().lower()
        sentiment = (row["Sentiment"] or "").strip().lower()
        for value, known, what in ((emotion, EMOTIONS, "emotion"), (sentiment, SENTIMENTS, "sentiment")):
            if value not in known:
                self.mark_invalid(key, table, f"{table} line {line}: unknown label code {what}={value!r}; "
                                              f"known: {', '.join(known)}", line)
                return ClipRecord(key, {})
        sources: dict[str, Any] = {}
        if split in self.clip_dirs:
            clip = str(self.clip_dirs[split] / f"dia{dia}_utt{utt}.mp4")
            sources.update({m: clip for m in ("audio", "video") if m in self.modalities})
        if "text" in self.modalities:
            sources["text"] = " ".join((row["Utterance"] or "").split())
            if not sources["text"]:
                self.mark_invalid(key, table, f"{table} line {line}: empty utterance", line)
        labels: dict[str, LabelValue] = {"emotion": EMOTIONS.index(emotion), "sentiment": SENTIMENTS.index(sentiment)}
        groups = {"speaker": (row["Speaker"] or "").strip(), "dialogue": f"{split}_dia{dia}", "split": split}
        return ClipRecord(key, sources, labels, groups)
