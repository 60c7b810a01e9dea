"""Generic manifest adapter: any corpus described by a CSV or JSONL table.

Columns (all but ``id`` optional, empty cells mean "absent"):
``id``; ``audio`` / ``video`` (media paths); ``text`` (inline string); ``transcript`` (path to a ``.txt``,
used when ``text`` is empty); ``feat:<modality>`` (path to a float ``.npy``: ``(D,)`` or ``(T, D)``); label
columns named in the ``labels`` option; group columns ``group``, ``speaker``, ``session``, ``dialogue`` (plus
any named in ``groups``). Relative paths resolve against the manifest's folder.

A label column whose values all parse as numbers is kept as float; otherwise it is categorical and its
values are coded by their sorted class names (or by the order given in ``class_names``). A JSONL list value
is kept as a multi-label vector of floats. Categorical values and ``class_names`` follow one rule
(:func:`contrastive_mer.data.label_text.normalize_label`: spaces stripped, case folded unless
``keep_label_case``); values that differ only in case or spaces are named in a warning. Labels never remove a clip:
a value outside ``class_names`` leaves that clip without the label (listed in :attr:`ManifestAdapter.warnings`),
so label-free pretraining still uses it. A file saved with a UTF-8 byte-order mark reads like one without.

Malformed rows (no id, duplicate id, unparseable JSON) are skipped and listed in
:attr:`ManifestAdapter.skipped` (file, line, reason); with ``strict=True`` they (and unknown classes) raise
ValueError.

With ``confine_paths`` (``data.confine_paths`` in a config) every file a row names (media, transcript, ``.npy``)
must lie inside that folder once symbolic links are followed (``manifest``: the manifest's own folder); a row
naming a file outside it keeps its id but the file is refused when the clip is loaded (skip report: "outside
confine_paths"), and a ``landmarks_dir`` outside it is an error. Without it, a manifest is trusted like a config:
it may name any file the user can read (docs/reliability.md).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from contrastive_mer.data.datasets.base import NO_CHOSEN_MODALITY, ClipRecord, SampleError, register_adapter
from contrastive_mer.data.datasets.corpus import MediaCorpus, MediaCorpusOptions
from contrastive_mer.data.label_text import case_variants, normalize_label, variants_warning
from contrastive_mer.data.landmarks import index_landmark_csvs, load_landmark_source
from contrastive_mer.data.safe_files import BadFileError, load_npy, read_text

MEDIA_COLUMNS = ("audio", "video")
GROUP_COLUMNS = ("group", "speaker", "session", "dialogue")
FEATURE_PREFIX = "feat:"


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


@dataclass
class ManifestOptions(MediaCorpusOptions):
    """Manifest options: those of :class:`MediaCorpusOptions` (``modalities``: the columns to list, default all;
    ``speakers``: values of the ``speaker`` column) plus

    Attributes:
        path: the manifest file; relative to ``root`` when both are given (``root`` alone: the manifest itself).
        labels: label columns to read.
        class_names: label -> class names fixing the coding of a categorical label.
        features: modality -> column holding ``.npy`` paths (in addition to ``feat:<modality>`` columns).
        groups: extra group columns.
        strict: raise on the first malformed row instead of skipping it.
        landmarks_dir: a folder of OpenFace CSVs (relative to the manifest's folder), one per clip, named after
            the clip's id or the stem of its video or audio file: a ``landmarks`` modality, float32 ``(T, 102)``.
        keep_label_case: categorical labels keep their case (spaces are still stripped).
        confine_paths: a folder every file the manifest names must lie in (``manifest``: the manifest's folder);
            None reads any path (see the module docstring).
    """

    path: Optional[str] = None
    labels: list[str] = field(default_factory=list)
    class_names: Optional[dict[str, list[str]]] = None
    features: Optional[dict[str, str]] = None
    groups: list[str] = field(default_factory=list)
    strict: bool = False
    landmarks_dir: Optional[str] = None
    keep_label_case: bool = False
    confine_paths: Optional[str] = None


@register_adapter("manifest")
class ManifestAdapter(MediaCorpus):
    """Clips listed in a CSV (``.csv``/``.tsv``) or JSON-lines (``.jsonl``/``.ndjson``) manifest (options:
    :class:`ManifestOptions`). Relative paths in it resolve against its folder, :attr:`root`."""

    name = "manifest"
    title = "manifest"
    options_cls = ManifestOptions
    options: ManifestOptions

    def __init__(self, path: str | Path | None = None, root: str | Path | None = None,
                 options: ManifestOptions | None = None, **fields: Any) -> None:
        if path is not None:
            fields["path"] = path
        super().__init__(root, options, **fields)
        self.label_columns = list(self.options.labels)
        self.keep_case = self.options.keep_label_case
        self.class_names = {k: self._given_classes(k, v) for k, v in (self.options.class_names or {}).items()}
        #: what the scan noticed without leaving a clip out (also printed once as ``[cmer] warning:`` lines)
        self.warnings: list[str] = []
        self.feature_columns = dict(self.options.features or {})
        self.group_columns = [*GROUP_COLUMNS, *[g for g in self.options.groups if g not in GROUP_COLUMNS]]
        self.strict = self.options.strict
        self._landmarks: dict[str, Path] | None = None  # stem -> landmark CSV, indexed on first use

    def _check_root(self) -> Path:
        """The manifest file is :attr:`path`; the root is its folder."""
        path, root = self.options.path, self.options.root
        if path is None and root is None:
            raise ValueError("manifest adapter needs path= (or root= pointing at the manifest file)")
        manifest = Path(path) if path is not None else Path(root)  # type: ignore[arg-type]
        if path is not None and root is not None and not manifest.is_absolute():
            manifest = Path(root) / manifest
        if not manifest.is_file():
            raise FileNotFoundError(f"manifest not found: {manifest}")
        self.path = manifest
        return manifest.parent

    def _given_classes(self, label: str, names: Any) -> list[str]:
        """``class_names[label]`` under the label rule; ValueError when two names become one."""
        out = [normalize_label(n, keep_case=self.keep_case) for n in names]
        if len(set(out)) != len(out):
            raise ValueError(f"class_names.{label}: {list(names)} repeats a class once spaces are stripped"
                             + ("" if self.keep_case else " and case is folded"))
        return out

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"[cmer] warning: {message}", file=sys.stderr, flush=True)

    @property
    def confine_root(self) -> Path | None:
        """The folder every named file must lie in (symbolic links followed), or None."""
        value = self.options.confine_paths
        if value is None:
            return None
        return (self.root if value == "manifest" else Path(value).expanduser()).resolve()

    def _outside(self, path: str) -> bool:
        root = self.confine_root
        return root is not None and not Path(path).resolve().is_relative_to(root)

    # -- reading -----------------------------------------------------------------------------------------
    def _rows(self) -> list[tuple[int, dict[str, Any] | None, str]]:
        """(line, row or None, parse error) for every data row of the file."""
        suffix = self.path.suffix.lower()
        with open(self.path, encoding="utf-8-sig", newline="") as fh:  # a byte-order mark is not part of 'id'
            if suffix in (".jsonl", ".ndjson"):
                out: list[tuple[int, dict[str, Any] | None, str]] = []
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        out.append((lineno, None, f"unparseable JSON ({err.msg})"))
                        continue
                    if not isinstance(row, dict):
                        out.append((lineno, None, f"expected a JSON object, got {type(row).__name__}"))
                    else:
                        out.append((lineno, row, ""))
                return out
            if suffix not in (".csv", ".tsv"):
                raise ValueError(f"{self.path}: unknown manifest type {suffix!r} (use .csv, .tsv or .jsonl)")
            reader = csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            header = next(reader, None)
            if not header or "id" not in header:
                raise ValueError(f"{self.path}: header must contain an 'id' column, got {header}")
            rows: list[tuple[int, dict[str, Any] | None, str]] = []
            while True:
                start = reader.line_num + 1  # a quoted cell may span lines: report where the row starts
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except csv.Error as err:
                    rows.append((start, None, f"unparseable CSV ({err})"))
                    continue
                if not cells:
                    continue
                if len(cells) > len(header):
                    rows.append((start, None, f"{len(cells)} cells for {len(header)} columns"))
                else:
                    rows.append((start, dict(zip(header, cells)), ""))
            return rows

    def _bad(self, line: int, reason: str, sid: str | None = None) -> None:
        if self.strict:
            raise ValueError(f"{self.path}:{line}: {reason}")
        self.skip(self.path, reason, line, sid)

    def _resolve(self, value: Any) -> str:
        path = Path(str(value).strip())
        return str(path if path.is_absolute() else self.root / path)

    def _chosen(self, sources: dict[str, Any]) -> dict[str, Any]:
        """``sources`` restricted to ``data.options.modalities`` (all when it is unset)."""
        wanted = self.options.modalities
        return sources if wanted is None else {m: v for m, v in sources.items() if m in wanted}

    def _sources(self, row: dict[str, Any], *, chosen_only: bool = True) -> dict[str, Any]:
        sources: dict[str, Any] = {}
        for col in MEDIA_COLUMNS:
            if not _empty(row.get(col)):
                sources[col] = self._resolve(row[col])
        if not _empty(row.get("text")):
            sources["text"] = str(row["text"])
        elif not _empty(row.get("transcript")):
            sources["text"] = ("transcript", self._resolve(row["transcript"]))
        feature_cols = {k[len(FEATURE_PREFIX):]: k for k in row if k.startswith(FEATURE_PREFIX)}
        feature_cols.update(self.feature_columns)
        for modality, col in feature_cols.items():
            if not _empty(row.get(col)):
                sources[modality] = ("npy", self._resolve(row[col]))
        landmark_csv = self._landmark_csv(row, sources)
        if landmark_csv is not None:
            sources["landmarks"] = ("landmarks", str(landmark_csv))
        return self._chosen(sources) if chosen_only else sources

    def _landmark_csv(self, row: dict[str, Any], sources: dict[str, Any]) -> Path | None:
        """The row's landmark CSV in ``landmarks_dir``: named after its id, else its video's or audio's stem."""
        if self.options.landmarks_dir is None:
            return None
        if self._landmarks is None:
            folder = self._resolve(self.options.landmarks_dir)
            if self._outside(folder):
                raise ValueError(f"landmarks_dir {folder} is outside confine_paths {self.confine_root}")
            self._landmarks = index_landmark_csvs(folder)
        stems = [str(row.get("id", "")).strip()] + [Path(sources[m]).stem for m in MEDIA_COLUMNS if m in sources]
        return next((self._landmarks[s] for s in stems if s in self._landmarks), None)

    def _code_labels(self, rows: list[tuple[int, str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        """Per row id, the coded labels. A categorical value outside the class names, or a value that cannot be
        read as its column's type, leaves that clip without the label (a warning lists them; ``strict``:
        ValueError naming file, line and id): labels never remove a clip."""
        kinds: dict[str, str] = {}
        for name in self.label_columns:
            values = [row.get(name) for _, _, row in rows if not _empty(row.get(name))]
            if name in self.class_names:
                kinds[name] = "categorical"
            elif values and all(isinstance(v, list) for v in values):
                kinds[name] = "multi"
            elif all(_is_number(v) for v in values):
                kinds[name] = "float"
            else:
                kinds[name] = "categorical"
                self.class_names[name] = sorted({normalize_label(v, keep_case=self.keep_case) for v in values})
            if kinds[name] == "categorical":
                message = variants_warning(name, case_variants(values), keep_case=self.keep_case)
                if message:
                    self._warn(message)
        self.label_names = {n: list(self.class_names[n]) for n in self.label_columns if kinds[n] == "categorical"}
        coded: dict[str, dict[str, Any]] = {}
        unknown: dict[str, dict[str, list[str]]] = {}  # label -> value -> ids left without it
        for line, sid, row in rows:
            labels: dict[str, Any] = {}
            for name in self.label_columns:
                if _empty(row.get(name)):
                    continue
                value = row[name]
                try:
                    if kinds[name] == "float":
                        labels[name] = float(value)
                    elif kinds[name] == "multi":
                        labels[name] = [float(v) for v in value]
                    elif (text := normalize_label(value, keep_case=self.keep_case)) in self.class_names[name]:
                        labels[name] = self.class_names[name].index(text)
                    else:
                        raise KeyError(text)
                except (TypeError, ValueError, KeyError) as err:
                    if self.strict:
                        raise ValueError(f"{self.path}:{line}: id {sid!r}: label {name!r} value {value!r} "
                                         + (f"not in {self.class_names[name]}" if isinstance(err, KeyError)
                                            else f"unreadable ({err})")) from None
                    shown = normalize_label(value, keep_case=self.keep_case) if isinstance(err, KeyError) else \
                        f"unreadable {value!r}"
                    unknown.setdefault(name, {}).setdefault(shown, []).append(sid)
            coded[sid] = labels
        for name, by_value in unknown.items():
            n = sum(len(ids) for ids in by_value.values())
            shown = ", ".join(f"{v!r} ({len(ids)}: {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})"
                              for v, ids in sorted(by_value.items()))
            known = f"not in class_names {self.class_names[name]}" if name in self.class_names else "not readable"
            self._warn(f"label {name!r}: {n} clip(s) have a value {known}: "
                       f"{shown}; they are kept without this label (pretraining uses them, probes do not)")
        return coded

    def _scan(self) -> list[ClipRecord]:
        """One record per well-formed row (of the speakers kept), in file order."""
        self.warnings = []
        seen: dict[str, int] = {}
        kept: list[tuple[int, str, dict[str, Any]]] = []
        try:
            rows = self._rows()
        except UnicodeDecodeError as err:
            raise ValueError(f"{self.path}: not UTF-8 text ({err})") from err
        for line, row, error in rows:
            if row is None:
                self._bad(line, error)
                continue
            sid = row.get("id")
            if _empty(sid):
                self._bad(line, "missing id")
                continue
            sid = str(sid).strip()
            nul = [k for k in ("id", *self.group_columns) if "\x00" in str(row.get(k, ""))]
            if nul:  # HDF5 strings end at NUL: such an id or group would be stored cut short
                self._bad(line, f"NUL byte in column(s) {', '.join(nul)}", sid.replace("\x00", "\\x00"))
                continue
            if sid in seen:
                self._bad(line, f"duplicate id {sid!r} (first on line {seen[sid]})", sid)
                continue
            seen[sid] = line
            kept.append((line, sid, row))
        missing = [c for c in self.label_columns if kept and all(c not in row for _, _, row in kept)]
        if missing:
            raise ValueError(f"{self.path}: label columns {missing} not found")
        coded = self._code_labels(kept)
        out = []
        for line, sid, row in kept:
            if sid not in coded:
                continue
            groups = {g: str(row[g]).strip() for g in self.group_columns if not _empty(row.get(g))}
            if not self.keep_speaker(groups.get("speaker", "")):
                continue
            every = self._sources(row, chosen_only=False)
            sources = self._chosen(every)
            if every and not sources:  # left out, listed once; not a decoding failure (max_skip_fraction)
                self.skip(self.path, f"{NO_CHOSEN_MODALITY}: the clip has {', '.join(sorted(every))}; "
                          f"data.options.modalities: {', '.join(self.options.modalities or [])}", line, sid)
                continue
            outside = [f for f in map(self.source_file, sources, sources.values()) if f and self._outside(f)]
            if outside:  # listed (its id is known) but never read: the skip report names the file
                self.mark_invalid(sid, outside[0], f"path outside confine_paths {self.confine_root}", line)
            out.append(ClipRecord(sid, sources, coded[sid], groups))
        self.modalities = tuple(sorted({m for r in out for m in r.sources}))
        return out

    # -- decoding ----------------------------------------------------------------------------------------
    def load_source(self, record: ClipRecord, modality: str, source: Any) -> Any:
        """Inline text, a transcript file or a ``.npy`` feature file (audio and video: :meth:`decode`)."""
        if isinstance(source, tuple) and source[0] == "transcript":
            try:  # a regular file of at most 1 MB (a FIFO or /dev/zero is refused, not read)
                return read_text(source[1], what="transcript").strip()
            except BadFileError as err:
                raise SampleError(record.id, f"cannot read transcript ({err})", source[1]) from err
        if isinstance(source, tuple) and source[0] == "landmarks":
            return load_landmark_source(record.id, source[1])
        if isinstance(source, tuple) and source[0] == "npy":
            return self._load_npy(record, modality, source[1])
        return source

    def source_file(self, modality: str, source: Any) -> str | None:
        return source[1] if isinstance(source, tuple) else super().source_file(modality, source)

    @staticmethod
    def _load_npy(record: ClipRecord, modality: str, path: str) -> np.ndarray:
        try:  # header checked against the file size first: an empty or lying file is skipped, not allocated
            array = load_npy(path)
        except BadFileError as err:
            raise SampleError(record.id, f"{modality}: unreadable .npy ({err})", path) from err
        if array.dtype.kind not in "fiu" or array.ndim not in (1, 2):
            raise SampleError(record.id, f"{modality}: expected a numeric (D,) or (T, D) array, got "
                              f"{array.dtype} {array.shape}", path)
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise SampleError(record.id, f"{modality}: NaN/Inf in features", path)
        return array
