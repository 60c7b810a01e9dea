"""Map-style dataset over an adapter's records: decode, preprocess, cache, and report what cannot be used.

A clip that fails to decode or preprocess does not crash the run: ``__getitem__`` returns a skip marker, the
collate function drops it from the batch and lists it in ``Batch.skipped``, and the consumer records it in a
:class:`SkipReport`. Nothing half-decoded reaches a batch: a sample is returned only when every requested
modality it has was prepared.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, SampleError
from contrastive_mer.data.decode_window import bounded_decoding
from contrastive_mer.data.normalization import GroupNormalizer
from contrastive_mer.data.sample import Batch
from contrastive_mer.data.transforms import Preprocessor
from contrastive_mer.errors import UserError


@dataclass
class PreparedSample:
    id: str
    tensors: dict[str, torch.Tensor]
    labels: dict[str, Any]
    groups: dict[str, str]


@dataclass
class Skipped:
    id: str
    path: str
    reason: str


class TooManySkippedError(UserError, RuntimeError):
    """More clips were skipped than ``data.max_skip_fraction`` allows (the run stops, nothing is marked done)."""


def _skip_key(entry: Mapping[str, Any]) -> tuple[str, str]:
    """What makes two skip records the same: the clip id (or, without one, the file and line) and the reason."""
    where = entry.get("id") or f"{entry.get('path', '')}:{entry.get('line', '')}"
    return str(where), str(entry.get("reason", ""))


class SkipReport:
    """Per-sample records of skipped clips (id, file, reason), written as JSON lines, each (id, reason) once.

    Two kinds of record: clips dropped while decoding (:meth:`add`, in :attr:`entries`), and rows the corpus scan
    left out (:meth:`add_scan`, e.g. a manifest row with an unknown label, a duplicate id or an unparsable line;
    in :attr:`scan`, written with ``"stage": "scan"``). The file is rewritten per run by :meth:`start` (never
    appended across runs); with ``keep`` (a resumed pretraining run) the records already in it are kept, once.
    Without :meth:`start`, the first :meth:`add` starts the file.

    ``check(seen)`` raises :class:`TooManySkippedError` once the fraction of decoding skips exceeds
    ``max_fraction`` (scan records are no clip of the run and are not counted),
    taken over at least ``min_seen`` clips (``skipped / max(seen, min_seen)``): a few bad clips at the start of a
    large corpus stop it only if they would at ``min_seen`` clips too, and a corpus (or a shard of one) smaller
    than ``min_seen`` is still held to the limit. ``check(seen, final=True)``, once every clip was seen, also
    stops a run whose every clip was skipped, whatever the limit (nothing would be trained or written).
    """

    def __init__(self, path: str | Path | None = None, max_fraction: float = 0.05, min_seen: int = 20,
                 *, keep: bool = False):
        self.path = Path(path) if path else None
        self.max_fraction = max_fraction
        self.min_seen = min_seen
        #: clips skipped while decoding in this run, by id
        self.entries: dict[str, dict[str, str]] = {}
        #: rows the corpus scan left out
        self.scan: list[dict[str, Any]] = []
        #: with ``keep``: the records an earlier run left in the file
        self.earlier: list[dict[str, Any]] = []
        self._written: set[tuple[str, str]] = set()
        self._started = False
        if keep and self.path and self.path.is_file():
            seen: set[tuple[str, str]] = set()
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and _skip_key(row) not in seen:
                    seen.add(_skip_key(row))
                    self.earlier.append(row)

    def add_scan(self, skipped: Sequence[Any]) -> None:
        """Record what the corpus scan left out (``SkipEntry`` objects or dicts), each (id, reason) once."""
        known = {_skip_key(r) for r in self.scan}
        for s in skipped:
            row = dict(s) if isinstance(s, Mapping) else {"id": getattr(s, "id", None) or "",
                                                           "path": str(getattr(s, "file", "")),
                                                           "line": getattr(s, "line", None),
                                                           "reason": str(getattr(s, "reason", s))}
            row["stage"] = "scan"
            if _skip_key(row) not in known:
                known.add(_skip_key(row))
                self.scan.append(row)
        self._append(self.scan)

    def start(self, *, write: bool = True) -> None:
        """Begin this run's file: rewrite it with the kept and scan records (remove it when there are none).
        ``write=False`` (a DDP rank other than the first) only marks the report as started."""
        self._started = True
        if not write or self.path is None:
            return
        rows = self._unique([*self.earlier, *self.scan, *self.entries.values()])
        self._written = {_skip_key(r) for r in rows}
        if not rows:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, self.path)

    @staticmethod
    def _unique(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        seen: set[tuple[str, str]] = set()
        out = []
        for r in rows:
            if _skip_key(r) not in seen:
                seen.add(_skip_key(r))
                out.append(r)
        return out

    def _append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.path is None:
            return
        if not self._started:
            self.start()
            return
        new = [r for r in self._unique(rows) if _skip_key(r) not in self._written]
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                for r in new:
                    self._written.add(_skip_key(r))
                    fh.write(json.dumps(r) + "\n")

    def add(self, entries: Sequence[dict[str, str]]) -> None:
        """Record clips dropped while decoding (``{"id", "path", "reason"}``); a clip seen again is ignored."""
        new = [e for e in entries if e["id"] not in self.entries]
        for e in new:
            self.entries[e["id"]] = e
        if new:
            self._append(new)

    @property
    def total(self) -> int:
        """Distinct records: this run's and, with ``keep``, the earlier run's."""
        return len({_skip_key(r) for r in [*self.earlier, *self.scan, *self.entries.values()]})

    def check(self, seen: int, *, final: bool = False) -> None:
        n = len(self.entries)
        if n == 0:
            return
        if n / max(seen, self.min_seen, 1) > self.max_fraction or (final and n >= seen):
            first = next(iter(self.entries.values()))
            reason = " ".join(str(first["reason"]).split())  # one line, whatever the decoder said
            raise TooManySkippedError(
                f"{n} of {max(seen, n)} samples skipped (data.max_skip_fraction={self.max_fraction:g}); first: "
                f"{first['id']} ({first['path']}): {reason}; see {self.path or 'the report'}")

    def summary(self) -> str:
        """``N sample(s) skipped (K when listing the corpus, M while decoding, E in the earlier run), listed in F``."""
        now = {_skip_key(r) for r in [*self.scan, *self.entries.values()]}
        parts = [f"{len(self.scan)} when listing the corpus" if self.scan else "",
                 f"{len(self.entries)} while decoding" if self.entries else "",
                 f"{len({_skip_key(r) for r in self.earlier} - now)} more in the run before the resume"
                 if {_skip_key(r) for r in self.earlier} - now else ""]
        detail = ", ".join(p for p in parts if p)
        return (f"{self.total} sample(s) skipped" + (f" ({detail})" if detail else "")
                + (f", listed in {self.path}" if self.path else ""))


def _source_digest(value: Any) -> str:
    """Content hash of one record source: file bytes for an existing path, else the value's bytes/repr."""
    h = hashlib.sha1()
    if isinstance(value, (str, Path)) and len(str(value)) < 4096 and os.path.isfile(value):
        with open(value, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    elif isinstance(value, np.ndarray):
        h.update(value.tobytes())
    else:
        h.update(repr(value).encode())
    return h.hexdigest()


#: ``none``; ``memory`` (per process); ``disk`` (under cache_dir, across runs); ``disk+memory`` (both)
CACHES = ("none", "memory", "disk", "disk+memory")
MEMORY_CACHES = ("memory", "disk+memory")


def uses_disk(cache: str) -> bool:
    """True for the cache modes that read and write ``cache_dir``."""
    return cache in ("disk", "disk+memory")


class MERDataset(Dataset):
    """Decodes records with ``adapter.load`` and applies each modality's preprocessor.

    ``cache``: ``none``; ``memory`` (per process; keep DataLoader workers persistent); ``disk`` (under
    ``cache_dir``, keyed by file content, record id and preprocessing settings, so later epochs and extractions
    don't decode again); or ``disk+memory`` (the disk cache, and every prepared clip also kept in memory: for
    small inputs such as feature vectors, where reading one file per clip per epoch would dominate).

    ``normalize``: modality -> ``speaker`` (any group name), ``utterance`` or ``none``
    (:mod:`contrastive_mer.data.normalization`). Group statistics are fitted on this dataset's records when it
    is built (one pass over the clips; cached inputs are kept un-normalised), from the clips' own groups only;
    ``normalize_records`` fits them on other records instead (e.g. the whole corpus when only some clips are
    encoded, so that a resumed or sharded extraction sees the same statistics).
    """

    def __init__(self, adapter: CorpusAdapter, records: Sequence[ClipRecord],
                 preprocessors: dict[str, Preprocessor], cache: str = "memory", *, cache_dir: str | Path | None = None,
                 normalize: Mapping[str, str] | None = None, normalize_min_clips: int = 2,
                 normalize_records: Sequence[ClipRecord] | None = None):
        self.adapter = adapter
        self.records = list(records)
        self.preprocessors = preprocessors
        self.modalities = list(preprocessors)
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if cache not in CACHES:
            raise ValueError(f"unknown cache {cache!r}; expected one of {', '.join(CACHES)}")
        if uses_disk(cache) and self.cache_dir is None:
            raise ValueError("data.cache=disk needs data.cache_dir")
        self._memory: dict[int, PreparedSample | Skipped] = {}
        self.normalizer: GroupNormalizer | None = None
        if normalize and any(mode != "none" for mode in normalize.values()):
            self.normalizer = GroupNormalizer(dict(normalize), preprocessors, min_clips=normalize_min_clips)
            if self.normalizer.needs_fit:
                source = self if normalize_records is None else \
                    MERDataset(adapter, normalize_records, preprocessors, "disk" if uses_disk(cache) else "none",
                               cache_dir=cache_dir)
                self.normalizer.fit((item.tensors, item.groups) for item in map(source._cached, range(len(source)))
                                    if isinstance(item, PreparedSample))

    def __len__(self) -> int:
        return len(self.records)

    def _source(self, modality: str) -> str:
        """The adapter input a modality reads (``model.modalities.<m>.source``, default its name)."""
        return self.preprocessors[modality].source or modality

    def _disk_key(self, record: ClipRecord, modality: str) -> Path:
        assert self.cache_dir is not None
        settings = json.dumps(self.preprocessors[modality].settings(), sort_keys=True, default=str)
        source = _source_digest(record.sources.get(self._source(modality)))
        key = hashlib.sha1(f"{self.adapter.name}|{record.id}|{source}|{settings}".encode()).hexdigest()
        return self.cache_dir / modality / f"{key}.pt"

    def _prepare(self, record: ClipRecord) -> PreparedSample | Skipped:
        tensors: dict[str, torch.Tensor] = {}
        absent: set[str] = set()
        keys = {m: self._disk_key(record, m) for m in self.modalities} if uses_disk(self.cache) else {}
        for m, path in keys.items():
            if path.is_file():
                cached = torch.load(path, weights_only=True)
                if cached.numel() == 0:  # marker: the clip has no such modality
                    absent.add(m)
                else:
                    tensors[m] = cached
        todo = [m for m in self.modalities if m not in tensors and m not in absent]
        labels, groups = record.labels, record.groups
        if todo:
            try:
                with bounded_decoding(self.adapter, self.preprocessors):  # decode only what is kept
                    sample = self.adapter.load(record, list(dict.fromkeys(self._source(m) for m in todo)))
                for m in todo:
                    if self._source(m) in sample.inputs:
                        try:
                            tensors[m] = self.preprocessors[m](sample.inputs[self._source(m)])
                        except (ValueError, RuntimeError) as err:
                            raise SampleError(record.id, f"{m}: {err}",
                                              str(record.sources.get(self._source(m)) or "")) from err
                labels, groups = sample.labels or labels, sample.groups or groups
            except SampleError as err:
                return Skipped(record.id, err.path or "", err.reason)
            for m in todo:
                if m in keys:
                    keys[m].parent.mkdir(parents=True, exist_ok=True)
                    tmp = keys[m].with_suffix(f".tmp{os.getpid()}")
                    torch.save(tensors.get(m, torch.empty(0)), tmp)
                    os.replace(tmp, keys[m])
        if not tensors:
            return Skipped(record.id, "", f"none of the modalities {self.modalities} could be loaded")
        return PreparedSample(record.id, tensors, dict(labels), dict(groups))

    def _cached(self, index: int) -> PreparedSample | Skipped:
        """The prepared (un-normalised) sample, from the memory cache when it is on."""
        if self.cache in MEMORY_CACHES and index in self._memory:
            return self._memory[index]
        item = self._prepare(self.records[index])
        if self.cache in MEMORY_CACHES:
            self._memory[index] = item
        return item

    def __getitem__(self, index: int) -> PreparedSample | Skipped:
        item = self._cached(index)
        if self.normalizer is None or not isinstance(item, PreparedSample):
            return item
        return PreparedSample(item.id, self.normalizer(item.tensors, item.groups), item.labels, item.groups)


def _label_column(values: list[Any]) -> torch.Tensor | None:
    """One label over a batch; a clip lacking it gets -1 (categorical) or NaN (float, multi-label)."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in known):
        return torch.tensor([-1 if v is None else int(v) for v in values], dtype=torch.long)
    width = np.asarray(known[0], dtype=np.float32).shape
    filler = np.full(width, np.nan, dtype=np.float32)
    return torch.from_numpy(np.stack([filler if v is None else np.asarray(v, dtype=np.float32) for v in values]))


class Collator:
    """Builds a :class:`Batch` from prepared samples, padding each modality with its preprocessor."""

    def __init__(self, preprocessors: dict[str, Preprocessor], label_names: Sequence[str] | None = None):
        self.preprocessors = preprocessors
        self.label_names = label_names

    def __call__(self, items: Sequence[PreparedSample | Skipped]) -> Batch:
        skipped = [{"id": s.id, "path": s.path, "reason": s.reason} for s in items if isinstance(s, Skipped)]
        samples = [s for s in items if isinstance(s, PreparedSample)]
        inputs, lengths, present = {}, {}, {}
        for m, prep in self.preprocessors.items():
            column = [s.tensors.get(m) for s in samples]
            present[m] = torch.tensor([t is not None for t in column], dtype=torch.bool)
            if samples:
                inputs[m], lens = prep.collate(column)
                if lens is not None:
                    lengths[m] = lens
        label_keys = self.label_names if self.label_names is not None else \
            sorted({k for s in samples for k in s.labels})
        columns = {k: _label_column([s.labels.get(k) for s in samples]) for k in label_keys}
        labels = {k: v for k, v in columns.items() if v is not None}
        group_keys = sorted({k for s in samples for k in s.groups})
        groups = {k: [s.groups.get(k, "") for s in samples] for k in group_keys}
        return Batch([s.id for s in samples], inputs, lengths, present, labels, groups, skipped)


class SkipTracker:
    """Counts the clips a loader delivered or skipped and records the skipped ones in ``report``, which raises
    once too large a fraction of them was skipped. ``seen`` starts at clips already handled (a resumed run)."""

    def __init__(self, report: SkipReport | None, seen: int = 0):
        self.report = report
        self.seen = seen

    def __call__(self, batch: Batch) -> int:
        """Account for one batch; returns how many clips it covered (decoded + skipped)."""
        covered = len(batch) + len(batch.skipped)
        self.seen += covered
        if self.report is not None:
            if batch.skipped:
                self.report.add(batch.skipped)
            self.report.check(max(self.seen, len(self.report.entries)))
        return covered
