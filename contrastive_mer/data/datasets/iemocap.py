"""IEMOCAP adapter: utterances of ``Session{1..5}`` with categorical and dimensional labels.

Layout read (the release's own):
``Session<n>/dialog/EmoEvaluation/<dialog>.txt`` summary lines
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`` (``[V, A, D]``),
``Session<n>/sentences/wav/<dialog>/<utterance>.wav`` and
``Session<n>/dialog/transcriptions/<dialog>.txt`` lines ``Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.``

``classes=4`` maps neu / hap+exc / ang / sad (the usual merge); ``classes=6`` keeps neu, hap, ang, sad, exc,
fru. Utterances with any other label (``xxx``, ``oth``, ``sur``, ...) are left out and counted in
:attr:`IemocapAdapter.excluded`. The speaker of an utterance is its session plus the gender letter of the
utterance id's last part (``Ses01F_impro01_M003`` -> ``Ses01_M``). Video is not offered: IEMOCAP's videos
are whole two-speaker dialogues, not utterances.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, SampleError, register_adapter
from contrastive_mer.data.sample import Sample

CLASS_MAPS: dict[int, tuple[list[str], dict[str, int]]] = {
    4: (["neutral", "happy", "angry", "sad"], {"neu": 0, "hap": 1, "exc": 1, "ang": 2, "sad": 3}),
    6: (["neutral", "happy", "angry", "sad", "excited", "frustrated"],
        {"neu": 0, "hap": 1, "ang": 2, "sad": 3, "exc": 4, "fru": 5}),
}
_SUMMARY = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[\s*([^,\]]+),\s*([^,\]]+),"
                      r"\s*([^,\]]+)\]\s*$")
_TRANSCRIPT = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
_GENDER = re.compile(r"_([FM])[^_]*$")


def parse_evaluation(path: Path) -> list[dict[str, Any]]:
    """Summary lines of one EmoEvaluation file as dicts (start, end, utterance, label, valence, arousal,
    dominance). Evaluator lines (``C-E1: ...``) and headers are ignored; a malformed summary line raises
    ValueError naming the file and line."""
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.startswith("["):
            continue
        match = _SUMMARY.match(line.strip())
        if match is None:
            raise ValueError(f"{path}:{lineno}: expected '[start - end]\\tutterance\\tlabel\\t[V, A, D]', "
                             f"got {line!r}")
        start, end, utt, label, v, a, d = match.groups()
        try:
            vad = [float(v), float(a), float(d)]
            rows.append({"start": float(start), "end": float(end), "utterance": utt, "label": label,
                         "valence": vad[0], "arousal": vad[1], "dominance": vad[2]})
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: non-numeric time or V/A/D in {line!r}") from err
    return rows


def parse_transcript(path: Path) -> dict[str, str]:
    """Utterance id -> text from one transcription file (lines that are not utterances are ignored)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _TRANSCRIPT.match(line.strip())
        if match:
            out[match.group(1)] = match.group(2).strip()
    return out


@register_adapter("iemocap")
class IemocapAdapter(CorpusAdapter):
    """IEMOCAP utterances.

    Args:
        root: folder holding ``Session1`` ... ``Session5``.
        classes: 4 or 6 (see module docstring).
        sessions: session numbers to keep (default: every ``Session<n>`` folder found).
        sample_rate, max_seconds: passed to :func:`contrastive_mer.data.media.load_audio`.
    """

    name = "iemocap"
    modalities = ("audio", "text")

    def __init__(self, root: str | Path, classes: int = 4, sessions: Sequence[int] | None = None,
                 sample_rate: int = 16000, max_seconds: float | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"IEMOCAP root folder not found: {self.root}")
        if classes not in CLASS_MAPS:
            raise ValueError(f"classes must be 4 or 6, got {classes!r}")
        self.classes = classes
        self.sessions = None if sessions is None else sorted(int(s) for s in sessions)
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.label_names = {"emotion": list(CLASS_MAPS[classes][0])}
        #: original label -> number of utterances left out because the class map has no entry for it
        self.excluded: Counter[str] = Counter()
        #: utterance ids whose wav file is missing (their audio is absent, not an error)
        self.missing_audio: list[str] = []
        self._records: list[ClipRecord] | None = None

    def _session_dirs(self) -> list[Path]:
        found = sorted(p for p in self.root.glob("Session*") if p.is_dir() and p.name[7:].isdigit())
        if self.sessions is not None:
            found = [p for p in found if int(p.name[7:]) in self.sessions]
            missing = set(self.sessions) - {int(p.name[7:]) for p in found}
            if missing:
                raise FileNotFoundError(f"{self.root}: no Session folder for sessions {sorted(missing)}")
        if not found:
            raise FileNotFoundError(f"{self.root}: no Session<n> folders (expected Session1 ... Session5)")
        return found

    def records(self) -> list[ClipRecord]:
        """One record per utterance whose label is in the class map, sorted by id."""
        if self._records is not None:
            return self._records
        _, mapping = CLASS_MAPS[self.classes]
        self.excluded, self.missing_audio = Counter(), []
        out: list[ClipRecord] = []
        for sdir in self._session_dirs():
            evals = sorted(p for p in (sdir / "dialog" / "EmoEvaluation").glob("*.txt")
                           if not p.name.startswith("."))
            if not evals:
                raise FileNotFoundError(f"{sdir / 'dialog' / 'EmoEvaluation'}: no evaluation .txt files")
            session = f"Ses{int(sdir.name[7:]):02d}"
            for eval_path in evals:
                dialog = eval_path.stem
                tpath = sdir / "dialog" / "transcriptions" / f"{dialog}.txt"
                texts = parse_transcript(tpath) if tpath.is_file() else {}
                for row in parse_evaluation(eval_path):
                    utt, label = row["utterance"], row["label"]
                    if label not in mapping:
                        self.excluded[label] += 1
                        continue
                    gender = _GENDER.search(utt)
                    if gender is None:
                        raise ValueError(f"{eval_path}: utterance id {utt!r} does not end in _F<n> or _M<n>")
                    sources: dict[str, Any] = {}
                    wav = sdir / "sentences" / "wav" / dialog / f"{utt}.wav"
                    if wav.is_file():
                        sources["audio"] = str(wav)
                    else:
                        self.missing_audio.append(utt)
                    if utt in texts:
                        sources["text"] = texts[utt]
                    labels = {"emotion": mapping[label], "valence": row["valence"], "arousal": row["arousal"],
                              "dominance": row["dominance"]}
                    groups = {"speaker": f"{session}_{gender.group(1)}", "session": session, "dialogue": dialog}
                    out.append(ClipRecord(utt, sources, labels, groups))
        out.sort(key=lambda r: r.id)
        self._records = out
        return out

    def load(self, record: ClipRecord, modalities: Sequence[str]) -> Sample:
        """Decode the utterance's wav (if asked and present); text is inline."""
        inputs: dict[str, Any] = {}
        if "audio" in modalities and "audio" in record.sources:
            from contrastive_mer.data.media import MediaError, load_audio

            path = record.sources["audio"]
            try:
                inputs["audio"] = load_audio(path, sample_rate=self.sample_rate, max_seconds=self.max_seconds)
            except MediaError as err:
                raise SampleError(record.id, f"audio: {err.reason}", str(err.path)) from err
        if "text" in modalities and "text" in record.sources:
            inputs["text"] = record.sources["text"]
        meta = {"audio_path": record.sources.get("audio")}
        return Sample(record.id, inputs, dict(record.labels), dict(record.groups), meta)
