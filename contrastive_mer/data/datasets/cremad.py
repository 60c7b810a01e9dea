"""CREMA-D (Cao et al. 2014): 91 actors, 12 sentences, 6 emotions, acted at several levels.

Layout under ``root``: ``AudioWAV/*.wav``, ``AudioMP3/*.mp3``, ``VideoFlash/*.flv`` (FLV with MP3 audio), any
of them optional. Clip names ``AAAA_SSS_EEE_LL``: actor, sentence code, emotion, level. One record per clip
name; ``audio`` comes from the first available of WAV, MP3, FLV (``audio_sources`` sets the order), ``video``
from the FLV, ``text`` is the sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contrastive_mer.data.datasets.base import ClipRecord, register_adapter
from contrastive_mer.data.datasets.corpus import MediaCorpus, MediaCorpusOptions

SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
EMOTION_CODES = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
EMOTIONS = ["anger", "disgust", "fear", "happy", "neutral", "sad"]
LEVEL_CODES = ["LO", "MD", "HI", "XX"]
LEVELS = ["low", "medium", "high", "unspecified"]
FOLDERS = {"wav": ("AudioWAV", ".wav"), "mp3": ("AudioMP3", ".mp3"), "flv": ("VideoFlash", ".flv")}
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def parse_name(stem: str) -> dict[str, Any]:
    """``1001_DFA_ANG_XX`` -> speaker, sentence code, emotion index, level index; ValueError when malformed."""
    m = _NAME.match(stem)
    if m is None:
        raise ValueError(f"file name {stem!r} does not follow ACTOR_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)")
    speaker, sentence, emotion, level = m.groups()
    for code, known, what in ((sentence, SENTENCES, "sentence"), (emotion, EMOTION_CODES, "emotion"),
                              (level, LEVEL_CODES, "level")):
        if code not in known:
            raise ValueError(f"unknown label code {what}={code!r} in {stem!r}; known: {', '.join(known)}")
    return {"speaker": speaker, "sentence": sentence, "emotion": EMOTION_CODES.index(emotion),
            "level": LEVEL_CODES.index(level)}


@dataclass
class CremadOptions(MediaCorpusOptions):
    """CREMA-D options: those of :class:`MediaCorpusOptions` (``speakers``: actor ids like ``1001``) plus
    ``audio_sources``, where audio is taken from in order of preference (``wav``, ``mp3``, ``flv``)."""

    audio_sources: list[str] = field(default_factory=lambda: list(FOLDERS))

    def check(self) -> None:
        super().check()
        bad = set(self.audio_sources) - set(FOLDERS)
        if bad:
            raise ValueError(f"unknown audio source {sorted(bad)}; expected some of {sorted(FOLDERS)}")


@register_adapter("cremad")
class CremadAdapter(MediaCorpus):
    """CREMA-D clips with audio, video and text (options: :class:`CremadOptions`).

    Labels: ``emotion`` (0..5: anger, disgust, fear, happy, neutral, sad), ``level`` (low, medium, high,
    unspecified), ``sentence`` (0..11 in :data:`SENTENCES` order). Groups: ``speaker`` (``"1001"``...).
    """

    name = "cremad"
    title = "CREMA-D"
    modalities = ("audio", "video", "text")
    options_cls = CremadOptions
    options: CremadOptions

    def __init__(self, root: str | Path | None = None, options: CremadOptions | None = None,
                 **fields: Any) -> None:
        super().__init__(root, options, **fields)
        self.audio_sources = tuple(self.options.audio_sources)
        self.label_names = {"emotion": list(EMOTIONS), "level": list(LEVELS), "sentence": list(SENTENCES)}

    def _scan(self) -> list[ClipRecord]:
        found: dict[str, dict[str, str]] = {}  # clip name -> source kind -> path
        for kind, (folder, ext) in FOLDERS.items():
            directory = self.root / folder
            if not directory.is_dir():
                continue
            for path in sorted(directory.iterdir()):
                if path.suffix.lower() != ext:
                    continue
                speaker = path.stem.split("_", 1)[0]
                if self.keep_speaker(speaker):
                    found.setdefault(path.stem, {})[kind] = str(path)
        if not found:
            raise FileNotFoundError(f"no CREMA-D clips under {self.root} (looked in "
                                    f"{', '.join(f for f, _ in FOLDERS.values())})")
        records = []
        for stem in sorted(found):
            files = found[stem]
            try:
                codes = parse_name(stem)
            except ValueError as err:
                self.mark_invalid(stem, next(iter(files.values())), str(err))
                records.append(ClipRecord(stem, {}))
                continue
            sources: dict[str, Any] = {}
            audio = next((files[k] for k in self.audio_sources if k in files), None)
            if "audio" in self.modalities and audio:
                sources["audio"] = audio
            if "video" in self.modalities and "flv" in files:
                sources["video"] = files["flv"]
            if not sources and "text" not in self.modalities:
                continue
            if "text" in self.modalities:
                sources["text"] = SENTENCES[codes["sentence"]]
            labels = {"emotion": codes["emotion"], "level": codes["level"],
                      "sentence": list(SENTENCES).index(codes["sentence"])}
            records.append(ClipRecord(stem, sources, labels, {"speaker": codes["speaker"]}))
        return records
