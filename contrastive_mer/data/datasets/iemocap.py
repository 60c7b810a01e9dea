"""IEMOCAP adapter: utterances of ``Session{1..5}`` with categorical and dimensional labels.

Layout read (the release's own):
``Session<n>/dialog/EmoEvaluation/<dialog>.txt`` summary lines
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`` (``[V, A, D]``),
``Session<n>/sentences/wav/<dialog>/<utterance>.wav`` and
``Session<n>/dialog/transcriptions/<dialog>.txt`` lines ``Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.``

``classes=4`` maps neu / hap+exc / ang / sad (the usual merge); ``classes=6`` keeps neu, hap, ang, sad, exc,
fru. Utterances with any other label (``xxx``, ``oth``, ``sur``, ...) are left out and listed in
:attr:`IemocapAdapter.skipped`. The speaker of an utterance is its session plus the gender letter of the
utterance id's last part (``Ses01F_impro01_M003`` -> ``Ses01_M``). Video is not offered: IEMOCAP's videos
are whole two-speaker dialogues, not utterances.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contrastive_mer.data.datasets.base import ClipRecord, register_adapter
from contrastive_mer.data.datasets.corpus import AudioCorpusOptions, MediaCorpus

CLASS_MAPS: dict[int, tuple[list[str], dict[str, int]]] = {
    4: (["neutral", "happy", "angry", "sad"], {"neu": 0, "hap": 1, "exc": 1, "ang": 2, "sad": 3}),
    6: (["neutral", "happy", "angry", "sad", "excited", "frustrated"],
        {"neu": 0, "hap": 1, "ang": 2, "sad": 3, "exc": 4, "fru": 5}),
}
_SUMMARY = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[\s*([^,\]]+),\s*([^,\]]+),"
                      r"\s*([^,\]]+)\]\s*$")
_TRANSCRIPT = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
_GENDER = re.compile(r"_([FM])[^_]*$")
_SPEAKER = re.compile(r"^(?:ses(?:sion)?)?(\d+)(?:_([fm]))?$", re.IGNORECASE)


def parse_evaluation(path: Path) -> list[dict[str, Any]]:
    """Summary lines of one EmoEvaluation file as dicts (start, end, utterance, label, valence, arousal,
    dominance, line). Evaluator lines (``C-E1: ...``) and headers are ignored; a malformed summary line raises
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
                         "valence": vad[0], "arousal": vad[1], "dominance": vad[2], "line": lineno})
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


@dataclass
class IemocapOptions(AudioCorpusOptions):
    """IEMOCAP options: those of :class:`AudioCorpusOptions` plus ``classes`` (4 or 6, see the module docstring).

    ``speakers`` entries are speaker ids (``Ses01_F``) or sessions (``1``, ``Ses01``: both of its speakers); only
    the ``Session<n>`` folders of the speakers kept are read (default: every one found).
    """

    classes: int = 4

    def check(self) -> None:
        super().check()
        self.require_one_of("classes", tuple(CLASS_MAPS))

    @staticmethod
    def speaker_id(value: Any) -> str:
        """A ``speakers`` entry as a speaker id (``"ses01_f"`` -> ``"Ses01_F"``) or a session (``1`` -> ``"Ses01"``)."""
        match = _SPEAKER.match(str(value).strip())
        if match is None:
            raise ValueError(f"bad IEMOCAP speaker {value!r}; expected a session (1, 'Ses01') or a speaker "
                             f"('Ses01_F')")
        number, gender = match.groups()
        return f"Ses{int(number):02d}" + (f"_{gender.upper()}" if gender else "")


@register_adapter("iemocap")
class IemocapAdapter(MediaCorpus):
    """IEMOCAP utterances (options: :class:`IemocapOptions`).

    Utterances whose label the class map lacks are left out and listed in :attr:`skipped`; utterances whose wav
    file is missing keep their text and are listed in :attr:`missing_audio`.
    """

    name = "iemocap"
    title = "IEMOCAP"
    modalities = ("audio", "text")
    options_cls = IemocapOptions
    options: IemocapOptions

    def __init__(self, root: str | Path | None = None, options: IemocapOptions | None = None,
                 **fields: Any) -> None:
        super().__init__(root, options, **fields)
        self.classes = self.options.classes
        self.label_names = {"emotion": list(CLASS_MAPS[self.classes][0])}
        #: utterance ids whose wav file is missing (their audio is absent, not an error)
        self.missing_audio: list[str] = []

    def keep_speaker(self, speaker: str) -> bool:
        """Kept when the speaker or its whole session is in ``speakers``."""
        return super().keep_speaker(speaker) or super().keep_speaker(speaker[:5])

    def _session_dirs(self) -> list[Path]:
        found = sorted(p for p in self.root.glob("Session*") if p.is_dir() and p.name[7:].isdigit())
        if self.speaker_filter is not None:
            sessions = {int(s[3:5]) for s in self.speaker_filter}
            found = [p for p in found if int(p.name[7:]) in sessions]
            missing = sessions - {int(p.name[7:]) for p in found}
            if missing:
                raise FileNotFoundError(f"{self.root}: no Session folder for sessions {sorted(missing)}")
        if not found:
            raise FileNotFoundError(f"{self.root}: no Session<n> folders (expected Session1 ... Session5)")
        return found

    def _scan(self) -> list[ClipRecord]:
        """One record per utterance whose label is in the class map, sorted by id."""
        _, mapping = CLASS_MAPS[self.classes]
        self.missing_audio = []
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
                    gender = _GENDER.search(utt)
                    if gender is None:
                        raise ValueError(f"{eval_path}: utterance id {utt!r} does not end in _F<n> or _M<n>")
                    speaker = f"{session}_{gender.group(1)}"
                    if not self.keep_speaker(speaker):
                        continue
                    if label not in mapping:
                        self.skip(eval_path, f"label {label!r} is not in the {self.classes}-class map",
                                  row["line"], utt)
                        continue
                    sources: dict[str, Any] = {}
                    wav = sdir / "sentences" / "wav" / dialog / f"{utt}.wav"
                    if "audio" in self.modalities:
                        if wav.is_file():
                            sources["audio"] = str(wav)
                        else:
                            self.missing_audio.append(utt)
                    if "text" in self.modalities and utt in texts:
                        sources["text"] = texts[utt]
                    labels = {"emotion": mapping[label], "valence": row["valence"], "arousal": row["arousal"],
                              "dominance": row["dominance"]}
                    groups = {"speaker": speaker, "session": session, "dialogue": dialog}
                    out.append(ClipRecord(utt, sources, labels, groups))
        out.sort(key=lambda r: r.id)
        return out
