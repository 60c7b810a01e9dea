"""Write a manifest (see :mod:`contrastive_mer.data.datasets.manifest`) from a folder of media files and an
optional label table: what ``cmer init-manifest`` does.

Files are found recursively under the folder and sorted into columns by suffix: audio (``.wav`` ...) ->
``audio``, video (``.mp4`` ...) -> ``video``, ``.txt`` -> ``transcript``, ``.npy`` -> ``feat:<name>`` where
``<name>`` is the ``.npy`` file's folder (relative to the scanned folder; ``features`` at its top level) unless
``npy_modality`` names it. A clip's id is its file name without the suffix; two files of one column with the same
id are an error naming both. Label-table ids are matched with or without a media suffix. Clips without a label
row are kept (pretraining uses unlabelled clips) with empty label cells; label rows without files are counted and
left out. Paths are written relative to the manifest's folder (they resolve against it when read).

A video file holding an audio track also fills the ``audio`` column (unless the clip has its own audio file).
A symbolic link that loops or points nowhere is a skipped entry with the reason (:attr:`ManifestSummary.skipped`).
Label values follow the manifest reader's rule (:func:`contrastive_mer.data.label_text.normalize_label`:
spaces stripped, case folded unless ``keep_case``); values that differ only in case or spaces are listed in
:attr:`ManifestSummary.warnings`.
"""

from __future__ import annotations

import csv
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from contrastive_mer.data.label_text import case_variants, normalize_label, variants_warning

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".flv", ".webm", ".mpg", ".mpeg")
TEXT_SUFFIXES = (".txt",)
FEATURE_SUFFIXES = (".npy",)
MEDIA_SUFFIXES = AUDIO_SUFFIXES + VIDEO_SUFFIXES + TEXT_SUFFIXES + FEATURE_SUFFIXES
#: manifest output formats by suffix
OUTPUT_SUFFIXES = (".csv", ".tsv", ".jsonl")


@dataclass
class ManifestSummary:
    """What :func:`init_manifest` wrote: the file, its columns, row and per-column counts, the label rows
    matched and unmatched (with a few examples), and each categorical label's sorted class names."""

    path: Path
    columns: list[str]
    rows: int
    files: dict[str, int]
    labelled: int = 0
    unmatched_labels: int = 0
    unmatched_examples: list[str] = field(default_factory=list)
    class_names: dict[str, list[str]] = field(default_factory=dict)
    #: (file, reason) of the entries the folder scan left out
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: label values that differ only in case or spaces (one line per label column)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """A few lines for the terminal: counts, unmatched label rows, and the config options to use."""
        files = ", ".join(f"{c}: {n}" for c, n in self.files.items())
        lines = [f"wrote {self.path}: {self.rows} clip(s) ({files}); {self.labelled} with a label row"]
        if self.unmatched_labels:
            lines.append(f"  {self.unmatched_labels} label row(s) have no file, left out "
                         f"(e.g. {', '.join(self.unmatched_examples)})")
        labels = [c for c in self.columns if c not in _FILE_COLUMNS and not c.startswith("feat:")
                  and c not in ("id", "speaker")]
        lines.append(f"  config: data.dataset=manifest data.root={self.path}"
                     + (f" data.options.labels=[{','.join(labels)}]" if labels else ""))
        for name, classes in self.class_names.items():
            lines.append(f"  class_names.{name}: [{', '.join(classes)}]")
        if self.skipped:
            lines.append(f"  {len(self.skipped)} file(s) skipped:")
            lines += [f"    {file}: {reason}" for file, reason in self.skipped]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


_FILE_COLUMNS = ("audio", "video", "transcript")


def _column_of(path: Path, folder: Path, npy_modality: str | None) -> str | None:
    """The manifest column a file belongs to, or None for a file that is not media."""
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in TEXT_SUFFIXES:
        return "transcript"
    if suffix in FEATURE_SUFFIXES:
        if npy_modality:
            return f"feat:{npy_modality}"
        parent = path.parent.relative_to(folder)
        return f"feat:{parent.as_posix().replace('/', '_') if parent.parts else 'features'}"
    return None


def _link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (a loop, or nothing at its end), or None."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13: "Symlink loop from ..."
        return "symbolic link loop"
    except OSError as err:
        return "symbolic link loop" if err.errno == errno.ELOOP else f"broken symbolic link ({err.strerror})"
    return None


def has_audio_track(path: Path) -> bool:
    """Whether a video container holds an audio stream (its header only is read; False when unreadable)."""
    try:
        import av

        with av.open(str(path), metadata_errors="ignore") as container:
            return len(container.streams.audio) > 0
    except Exception:  # noqa: BLE001 - an unreadable file is reported when it is decoded, not here
        return False


def scan_media(folder: str | Path, npy_modality: str | None = None,
               skipped: list[tuple[str, str]] | None = None) -> dict[str, dict[str, Path]]:
    """Clip id -> {column: file} for every media file under ``folder`` (recursively, hidden files skipped).

    A symbolic link that loops or points nowhere is left out and appended to ``skipped`` as ``(file, reason)``.
    A video file with an audio track fills the clip's ``audio`` column too when no audio file does."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"media folder not found: {root}")
    clips: dict[str, dict[str, Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            column = _column_of(path, root, npy_modality)
            if column is None:
                continue
            problem = _link_problem(path)
            if problem is not None:
                if skipped is not None:
                    skipped.append((str(path), problem))
                continue
            entry = clips.setdefault(path.stem, {})
            if column in entry:
                raise ValueError(f"two {column} files for clip id {path.stem!r}: {entry[column]} and {path} "
                                 "(clip ids are file names without the suffix and must be unique per column)")
            entry[column] = path
    for entry in clips.values():
        if "video" in entry and "audio" not in entry and has_audio_track(entry["video"]):
            entry["audio"] = entry["video"]
    return clips


def _table_id(value: str) -> str:
    value = value.strip()
    stem, suffix = os.path.splitext(value)
    return Path(stem).name if suffix.lower() in MEDIA_SUFFIXES else value


def read_label_table(path: str | Path, id_column: str = "id", label_columns: Sequence[str] | None = None,
                     speaker_column: str | None = None) -> tuple[list[str], dict[str, dict[str, str]]]:
    """``(label columns, id -> {column: value})`` from a CSV/TSV label table with a header row.

    ``label_columns`` default: every column but the id and speaker columns. The speaker column (if any) is
    returned under ``speaker``, stripped; label values are returned as written (:func:`init_manifest` applies the
    label rule, and names the values that differ only in case or spaces). A repeated id is an error naming its
    line.
    """
    table = Path(path)
    if not table.is_file():
        raise FileNotFoundError(f"label table not found: {table}")
    delimiter = "\t" if table.suffix.lower() == ".tsv" else ","
    with open(table, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = list(reader.fieldnames or [])
        for name, what in ((id_column, "--id-column"), (speaker_column, "--speaker-column")):
            if name is not None and name not in header:
                raise ValueError(f"{table}: no column {name!r} ({what}); columns: {', '.join(header)}")
        labels = list(label_columns) if label_columns is not None else \
            [c for c in header if c not in (id_column, speaker_column)]
        missing = [c for c in labels if c not in header]
        if missing:
            raise ValueError(f"{table}: no label column {missing[0]!r}; columns: {', '.join(header)}")
        rows: dict[str, dict[str, str]] = {}
        first: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            clip = _table_id(row.get(id_column) or "")
            if not clip:
                raise ValueError(f"{table}:{line}: empty {id_column!r}")
            if clip in rows:
                raise ValueError(f"{table}:{line}: id {clip!r} repeats line {first[clip]}")
            first[clip] = line
            values = {c: (row.get(c) or "") for c in labels}  # normalised by init_manifest (numbers too)
            if speaker_column is not None:
                values["speaker"] = (row.get(speaker_column) or "").strip()
            rows[clip] = values
    return labels, rows


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _normalized_labels(names: Sequence[str], table: dict[str, dict[str, str]], *, keep_case: bool
                       ) -> tuple[dict[str, list[str]], list[str]]:
    """Rewrite ``table``'s label values by the label rule (a numeric column is only stripped); returns the
    class names of each categorical column and the warnings about values differing only in case or spaces."""
    class_names, warnings = {}, []
    for n in names:
        raw = [v for r in table.values() if (v := r.get(n, "")).strip()]
        if not raw or all(_is_number(x) for x in raw):
            for r in table.values():
                r[n] = r.get(n, "").strip()
            continue
        for r in table.values():
            r[n] = normalize_label(r.get(n, ""), keep_case=keep_case)
        class_names[n] = sorted({r[n] for r in table.values() if r[n]})
        message = variants_warning(n, case_variants(raw), keep_case=keep_case)
        if message:
            warnings.append(message)
    return class_names, warnings


def init_manifest(folder: str | Path, out: str | Path, labels: str | Path | None = None, *, id_column: str = "id",
                  label_columns: Sequence[str] | None = None, speaker_column: str | None = None,
                  npy_modality: str | None = None, overwrite: bool = False,
                  keep_case: bool = False) -> ManifestSummary:
    """Write a manifest of the media under ``folder`` (and the labels of ``labels``, a CSV/TSV table) to ``out``
    (``.csv``, ``.tsv`` or ``.jsonl``); see the module docstring for the rules."""
    target = Path(out)
    if target.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out {target}: the manifest must end in {', '.join(OUTPUT_SUFFIXES)}")
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists (pass --overwrite to replace it)")
    skipped: list[tuple[str, str]] = []
    clips = scan_media(folder, npy_modality, skipped)
    if not clips:
        raise ValueError(f"no media files under {folder} (suffixes: {', '.join(MEDIA_SUFFIXES)})")
    names: list[str] = []
    table: dict[str, dict[str, str]] = {}
    if labels is not None:
        names, table = read_label_table(labels, id_column, label_columns, speaker_column)
    class_names, warnings = _normalized_labels(names, table, keep_case=keep_case)
    file_columns = [c for c in _FILE_COLUMNS if any(c in e for e in clips.values())]
    file_columns += sorted({c for e in clips.values() for c in e if c.startswith("feat:")})
    columns = ["id", *file_columns, *names, *(["speaker"] if speaker_column is not None else [])]
    base = target.parent.resolve()
    rows = []
    for clip in sorted(clips):
        row = {"id": clip}
        for column in file_columns:
            path = clips[clip].get(column)
            row[column] = "" if path is None else os.path.relpath(path.resolve(), base)
        row.update({c: "" for c in columns if c not in row})
        row.update(table.get(clip, {}))
        rows.append(row)
    unmatched = [t for t in table if t not in clips]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        if target.suffix.lower() == ".jsonl":
            for row in rows:
                fh.write(json.dumps({c: row[c] for c in columns if row[c] != "" or c == "id"}) + "\n")
        else:
            writer = csv.DictWriter(fh, columns, delimiter="\t" if target.suffix.lower() == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    os.replace(tmp, target)
    return ManifestSummary(target, columns, len(rows),
                           {c: sum(c in e for e in clips.values()) for c in file_columns},
                           labelled=sum(clip in table for clip in clips), unmatched_labels=len(unmatched),
                           unmatched_examples=unmatched[:3], class_names=class_names, skipped=skipped,
                           warnings=warnings)
