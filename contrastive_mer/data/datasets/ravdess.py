"""RAVDESS (Livingstone & Russo 2018): acted speech, 24 actors, 8 emotions.

Layout: ``root/Actor_XX/MM-VV-EE-II-SS-RR-AA.{wav,flac,mp4}`` and optionally ``root/facial_action_units.csv``.
File-name codes: modality (01 audio-video, 02 video-only, 03 audio-only), vocal channel, emotion (01..08),
intensity (01 normal, 02 strong), statement (01/02), repetition, actor (odd male, even female).

One record per take, keyed by the audio-only style id ``03-VV-EE-II-SS-RR-AA`` whatever files it has.
Modalities: ``audio`` (the ``03-`` WAV/FLAC, else the audio track of the ``01-`` MP4), ``video`` (``01-`` or
``02-`` MP4), ``au`` (the take's row of the action-unit table, float32 ``(n_au,)``), ``text`` (the statement),
``landmarks`` (with ``landmarks_dir``: the take's OpenFace CSV, named after any of its files, e.g.
``01-01-03-01-01-01-01.csv`` as ``FeatureExtraction -f 01-01-03-01-01-01-01.mp4`` writes it; read with
:func:`contrastive_mer.data.landmarks.read_landmark_frames` into float32 ``(T, 102)``).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from contrastive_mer.data.datasets.base import ClipRecord, SkipEntry, register_adapter
from contrastive_mer.data.datasets.corpus import MediaCorpus, MediaCorpusOptions
from contrastive_mer.data.landmarks import index_landmark_csvs, load_landmark_source
from contrastive_mer.data.normalization import standardise

EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
INTENSITIES = ["normal", "strong"]
STATEMENTS = ["Kids are talking by the door", "Dogs are sitting by the door"]
VOCAL_CHANNELS = {1: "speech", 2: "song"}
MEDIA_EXTS = (".wav", ".flac", ".mp4")
AU_FILE = "facial_action_units.csv"
AU_NORMALIZE = (None, "actor")
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_AU_COLUMN = re.compile(r"^AU\d+_[rc]$")


def parse_name(stem: str) -> dict[str, int]:
    """Split ``MM-VV-EE-II-SS-RR-AA`` into its integer codes; ValueError on a malformed name or code."""
    m = _NAME.match(stem)
    if m is None:
        raise ValueError(f"file name {stem!r} does not follow MM-VV-EE-II-SS-RR-AA")
    keys = ("modality", "channel", "emotion", "intensity", "statement", "repetition", "actor")
    codes = dict(zip(keys, (int(g) for g in m.groups()), strict=True))
    checks = {"modality": (1, 3), "channel": (1, 2), "emotion": (1, len(EMOTIONS)),
              "intensity": (1, len(INTENSITIES)), "statement": (1, len(STATEMENTS)), "repetition": (1, 2),
              "actor": (1, 99)}
    for key, (lo, hi) in checks.items():
        if not lo <= codes[key] <= hi:
            raise ValueError(f"unknown label code {key}={codes[key]:02d} in {stem!r} (expected {lo:02d}..{hi:02d})")
    return codes


def take_id(codes: dict[str, int]) -> str:
    """The audio-only style id ``03-VV-EE-II-SS-RR-AA`` of a take."""
    rest = [codes[k] for k in ("channel", "emotion", "intensity", "statement", "repetition", "actor")]
    return "-".join(f"{c:02d}" for c in [3, *rest])


def _actor_number(actor: int | str) -> int:
    text = str(actor).lower().removeprefix("actor_").removeprefix("actor")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"bad actor {actor!r}; expected a number like 1 or 'actor01'") from None


def normalise_per_actor(au_table: dict[str, np.ndarray | str]) -> dict[str, np.ndarray | str]:
    """Standardise every action-unit column within each actor (mean 0, std 1 over that actor's valid takes).

    Removes what identifies the face (an actor's resting action-unit levels) and keeps how each take departs
    from it; uses no labels. Columns constant for an actor become 0; error entries (strings) are kept as they are.
    """
    by_actor: dict[int, list[str]] = {}
    for key, entry in au_table.items():
        if isinstance(entry, np.ndarray):
            by_actor.setdefault(parse_name(key)["actor"], []).append(key)
    out = dict(au_table)
    for keys in by_actor.values():
        block = np.stack([au_table[k] for k in keys]).astype(np.float64)
        block = standardise(block, block.mean(axis=0), block.std(axis=0))  # the library's one rule (EPS = 1e-6)
        for key, row in zip(keys, block):
            out[key] = row.astype(np.float32)
    return out


def read_action_units(path: Path) -> tuple[list[str], dict[str, np.ndarray | str], list[SkipEntry]]:
    """The action-unit table -> (AU column names, take id -> float32 vector or an error message, rows naming no
    valid take).

    ``clip_id`` may use any modality code; rows are keyed by the take's audio-only style id.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or "clip_id" not in header:
            raise ValueError(f"{path}: expected a header with a 'clip_id' column")
        au_cols = [i for i, name in enumerate(header) if _AU_COLUMN.match(name)]
        if not au_cols:
            raise ValueError(f"{path}: no AUxx_r / AUxx_c columns in the header")
        id_col = header.index("clip_id")
        table: dict[str, np.ndarray | str] = {}
        skipped: list[SkipEntry] = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                key = take_id(parse_name(row[id_col].strip()))
            except (ValueError, IndexError) as err:
                skipped.append(SkipEntry(str(path), str(err), line))
                continue
            if key in table:
                table[key] = f"{path}: duplicate clip_id {row[id_col]!r} (line {line})"
                continue
            try:
                vec = np.array([float(row[i]) for i in au_cols], dtype=np.float32)
                if not np.isfinite(vec).all():
                    raise ValueError("non-finite value")
                table[key] = vec
            except (ValueError, IndexError) as err:
                table[key] = f"{path} line {line}: bad action-unit row ({err})"
    return [header[i] for i in au_cols], table, skipped


@dataclass
class RavdessOptions(MediaCorpusOptions):
    """RAVDESS options: those of :class:`MediaCorpusOptions` (``speakers``: actor numbers or ``"actor01"``
    style names) plus

    Attributes:
        au_file: the action-unit table, relative to ``root``; None to ignore it.
        au_normalize: ``"actor"`` standardises the action units within each actor (:func:`normalise_per_actor`,
            over the actors kept); None leaves them as in the table.
        landmarks_dir: a folder (relative to ``root`` or absolute) of OpenFace ``FeatureExtraction`` CSVs, one
            per take, named after the take's file (any modality code); None: no ``landmarks`` modality.
    """

    au_file: Optional[str] = AU_FILE
    au_normalize: Optional[str] = None
    landmarks_dir: Optional[str] = None

    def check(self) -> None:
        super().check()
        self.require_one_of("au_normalize", AU_NORMALIZE)

    @staticmethod
    def speaker_id(value: Any) -> str:
        """``1``, ``"1"``, ``"actor01"`` -> ``"actor01"``."""
        return f"actor{_actor_number(value):02d}"


@register_adapter("ravdess")
class RavdessAdapter(MediaCorpus):
    """RAVDESS takes with audio, video, action units and text (see the module docstring; options:
    :class:`RavdessOptions`).

    Labels: ``emotion`` (0..7), ``intensity`` (0 normal, 1 strong), ``statement`` (0, 1).
    Groups: ``speaker`` (``"actor01"``...), ``gender``.
    """

    name = "ravdess"
    title = "RAVDESS"
    modalities = ("audio", "video", "au", "text", "landmarks")
    options_cls = RavdessOptions
    options: RavdessOptions

    def __init__(self, root: str | Path | None = None, options: RavdessOptions | None = None,
                 **fields: Any) -> None:
        super().__init__(root, options, **fields)
        au_file = self.options.au_file
        self.au_path = None if au_file is None else self.root / au_file
        if self.au_path is not None and "au" in self.modalities and au_file != AU_FILE and not self.au_path.is_file():
            raise FileNotFoundError(f"RAVDESS action-unit table not found: {self.au_path}")
        self.au_columns: list[str] = []
        landmarks = self.options.landmarks_dir
        self.landmarks_dir = None if landmarks is None else self.root / landmarks  # an absolute path stays as it is
        if self.landmarks_dir is not None and not self.landmarks_dir.is_dir():
            raise FileNotFoundError(f"RAVDESS landmarks_dir not found: {self.landmarks_dir}")
        if self.landmarks_dir is None and self.options.modalities is not None and "landmarks" in self.modalities:
            raise ValueError("RAVDESS: modality 'landmarks' needs data.options.landmarks_dir (a folder of OpenFace "
                             "CSVs, one per take; docs/paper.md says how to make them)")
        self.label_names = {"emotion": list(EMOTIONS), "intensity": list(INTENSITIES),
                            "statement": list(STATEMENTS)}

    def _scan(self) -> list[ClipRecord]:
        takes: dict[str, dict[Any, Any]] = {}  # take id -> {"codes": ..., (modality code, ext): path}
        for folder in sorted(f for f in self.root.glob("Actor_*") if f.is_dir()):
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in MEDIA_EXTS:
                    continue
                try:
                    codes = parse_name(path.stem)
                except ValueError as err:
                    well_formed = _NAME.match(path.stem) is not None
                    if not well_formed or self._keep_actor(int(path.stem[-2:])):
                        key = "03" + path.stem[2:] if well_formed else path.stem
                        self.mark_invalid(key, path, str(err))
                    continue
                if self._keep_actor(codes["actor"]):
                    files = takes.setdefault(take_id(codes), {"codes": codes})
                    files[(codes["modality"], path.suffix.lower())] = str(path)
        au_table: dict[str, np.ndarray | str] = {}
        if "au" in self.modalities and self.au_path is not None and self.au_path.is_file():
            self.au_columns, au_table, self.skipped = read_action_units(self.au_path)
            au_table = {k: v for k, v in au_table.items() if self._keep_actor(parse_name(k)["actor"])}
            if self.options.au_normalize == "actor":
                au_table = normalise_per_actor(au_table)
            for key, entry in au_table.items():
                takes.setdefault(key, {"codes": parse_name(key)})
                if isinstance(entry, str):
                    self.mark_invalid(key, self.au_path, entry)
        if "landmarks" in self.modalities and self.landmarks_dir is not None:
            self._scan_landmarks(takes)
        records = []
        for key in sorted(takes):
            files, codes = takes[key], takes[key]["codes"]
            sources: dict[str, Any] = {}
            audio = files.get((3, ".wav")) or files.get((3, ".flac")) or files.get((1, ".mp4"))
            video = files.get((1, ".mp4")) or files.get((2, ".mp4"))
            if "audio" in self.modalities and audio:
                sources["audio"] = audio
            if "video" in self.modalities and video:
                sources["video"] = video
            if "au" in self.modalities and isinstance(au_table.get(key), np.ndarray):
                sources["au"] = au_table[key]
            if "landmarks" in files:
                sources["landmarks"] = files["landmarks"]
            if not sources and key not in self._invalid and "text" not in self.modalities:
                continue
            if "text" in self.modalities:
                sources["text"] = STATEMENTS[codes["statement"] - 1]
            labels = {"emotion": codes["emotion"] - 1, "intensity": codes["intensity"] - 1,
                      "statement": codes["statement"] - 1}
            groups = {"speaker": f"actor{codes['actor']:02d}",
                      "gender": "male" if codes["actor"] % 2 else "female"}
            records.append(ClipRecord(key, sources, labels, groups))
        records += [ClipRecord(key, {}) for key in sorted(self._invalid) if key not in takes]
        return records

    def _scan_landmarks(self, takes: dict[str, dict[Any, Any]]) -> None:
        """Attach each kept take's landmark CSV (by file stem, any modality code); a CSV whose name is no
        RAVDESS id is listed in :attr:`skipped`, two CSVs of one take make the take invalid."""
        assert self.landmarks_dir is not None
        for stem, path in index_landmark_csvs(self.landmarks_dir).items():
            try:
                codes = parse_name(stem)
            except ValueError as err:
                self.skip(path, f"not a RAVDESS landmark CSV name ({err})")
                continue
            if not self._keep_actor(codes["actor"]):
                continue
            files = takes.setdefault(take_id(codes), {"codes": codes})
            if "landmarks" in files:
                self.mark_invalid(take_id(codes), path, f"two landmark CSVs for one take: {files['landmarks']}")
            files["landmarks"] = str(path)

    def load_source(self, record: ClipRecord, modality: str, source: Any) -> Any:
        """A landmark CSV -> ``(T, 102)`` frame vectors; other sources as :class:`MediaCorpus` passes them."""
        if modality == "landmarks":
            return load_landmark_source(record.id, source)
        return super().load_source(record, modality, source)

    def source_file(self, modality: str, source: Any) -> str | None:
        return str(source) if modality == "landmarks" else super().source_file(modality, source)

    def _keep_actor(self, actor: int) -> bool:
        return self.keep_speaker(f"actor{actor:02d}")
