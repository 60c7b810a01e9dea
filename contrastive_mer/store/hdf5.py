"""The HDF5 feature store: a crash-safe streaming writer and a read-only reader (layout in docs/architecture.md).

Writing: :class:`FeatureStoreWriter` buffers at most ``part_rows`` rows, then appends them as one CRC-checked
record to the row log ``<out>.parts/rows.log`` (:mod:`contrastive_mer.store.rowlog`).
:meth:`FeatureStoreWriter.finish` streams the log in order into ``<out>.tmp`` (chunked, lzf, Fletcher-32
checksums, written in whole chunks), sets ``complete=True`` last, and ``os.replace``-s it to ``<out>``. If the
process dies at any moment, constructing the writer again with the same arguments resumes:
:meth:`~FeatureStoreWriter.done_ids` tells the caller which ids to skip, and the final file equals that of an
uninterrupted run (same rows, same order, same ``created`` time).

Reading: :class:`FeatureStore` refuses a file without ``complete=True`` unless ``allow_partial=True``. With
``allow_partial=True`` it also reads an unfinished ``<out>.parts/`` folder (merged in memory).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

import contrastive_mer
from contrastive_mer.errors import UserError
from contrastive_mer.store import integrity as _integrity
from contrastive_mer.store import views as _views
from contrastive_mer.store._layout import COMPRESSIONS, LabelSpec, StoreSchema, as_label_spec
from contrastive_mer.store.integrity import StoreIntegrityError, check_layout, check_metadata
from contrastive_mer.store.lock import OutputLockedError, WriterLock, acquire
from contrastive_mer.store.parts import (
    FINISHED_NAME,
    FORMAT_VERSION,
    PARTS_LIST_NAME,
    abandon_file,
    atomic_write_text,
    build_rows,
    find_parts_list,
    fsync_dir,
    fsync_file,
    is_disk_full,
    list_parts,
    merge_parts,
    parts_dir_for,
    read_part_ids,
)
from contrastive_mer.store.rowlog import LOG_NAME, RowLog, good_length
from contrastive_mer.store.views import StoreView

__all__ = ["FeatureStore", "FeatureStoreWriter", "IncompleteStoreError", "StoreIntegrityError", "StoreMismatchError",
           "StoreView", "LabelSpec", "OutputLockedError"]

_RESERVED_ATTRS = {"format_version", "library_version", "created", "modalities", "complete", "schema",
                   "json_attrs", "fused_modes"}


class IncompleteStoreError(RuntimeError):
    """The store was not finished (``complete`` attribute missing or false)."""


class StoreMismatchError(ValueError):
    """A resumed writer does not match the store already on disk."""


class StoreCompleteError(UserError, RuntimeError):
    """New rows for a store that is already complete (e.g. a rerun over a corpus that has grown)."""


def _root_attrs(schema: StoreSchema, created: str) -> dict[str, Any]:
    """Root attributes of a merged store (``complete`` is set separately, last)."""
    return {"format_version": FORMAT_VERSION, "library_version": contrastive_mer.__version__, "created": created,
            "modalities": schema.modalities, "fused_modes": list(schema.fused_dims), "schema": schema.to_json(),
            **schema.attrs}


class FeatureStoreWriter:
    """Streams rows into a feature store; resumable after a crash (see the module docstring).

    Args:
        path: the final ``.h5`` file.
        modalities: modality names, in the store's fixed order.
        feature_dims: modality -> D_m of ``/features/<m>``.
        projection_dim: P of ``/projections/<m>``, or None to store no projections.
        fused_dims: fusion mode -> D_f of ``/fused/<mode>``.
        sequences: modalities with frame-level rows; a list (dim = D_m) or modality -> frame dim.
        labels: label name -> :class:`LabelSpec`, class names (categorical) or None (float).
        groups: group names (speaker, session, ...).
        attrs: extra root attributes (``config`` YAML text, ``checkpoint_sha256``, ...); plain values are
            stored as they are, lists/dicts as JSON text.
        sequence_dtype: ``float32`` or ``float16``.
        part_rows: rows buffered before they are appended to the row log (the most a killed process can
            lose); 1 = every append.
        overwrite: delete an existing store and its parts first.
        fsync: make the row log durable against power loss too (not only process death): it is synced when
            ``sync_seconds`` have passed since the last sync (so a power loss loses at most the rows of that
            interval), and the final file before it replaces anything. False: no fsync at all (tests, scratch).
        sync_seconds: the most time between two syncs of the row log (with ``fsync``).
        compression: None (default, fastest) or ``"lzf"`` (smaller files when features hold many zeros) for
            the datasets of the final file.

    The writer holds an exclusive lock (``<path>.lock``, :mod:`contrastive_mer.store.lock`) from construction
    until :meth:`finish` returns or :meth:`close` is called: a second process writing the same store fails at
    once with :class:`OutputLockedError` naming the holder's pid.
    """

    def __init__(self, path: str | Path, modalities: Sequence[str], feature_dims: Mapping[str, int],
                 projection_dim: int | None, *, fused_dims: Mapping[str, int] | None = None,
                 sequences: Sequence[str] | Mapping[str, int] = (),
                 labels: Mapping[str, LabelSpec | Sequence[str] | None] | None = None,
                 groups: Sequence[str] = (), attrs: Mapping[str, Any] | None = None,
                 sequence_dtype: str = "float32", part_rows: int = 256, overwrite: bool = False,
                 fsync: bool = True, sync_seconds: float = 1.0, compression: str | None = None) -> None:
        self.path = Path(path)
        self.parts = parts_dir_for(self.path)
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self.part_rows = max(1, int(part_rows))
        self.fsync = fsync
        self.sync_seconds = float(sync_seconds)
        if compression not in COMPRESSIONS:
            raise ValueError(f"{self.path}: compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.compression = compression
        self._log: RowLog | None = None
        self._last_sync = time.monotonic()
        self._meta_synced = False  # parts list and folder entries not yet fsynced
        self._parts_list = self.parts / PARTS_LIST_NAME  # or an earlier version's name, found when resuming
        self.schema = self._make_schema(modalities=modalities, feature_dims=feature_dims,
                                        projection_dim=projection_dim, fused_dims=fused_dims or {},
                                        sequences=sequences, labels=labels or {}, groups=groups, attrs=attrs or {},
                                        sequence_dtype=sequence_dtype)
        self._buffer: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        self._done: set[str] = set()  # durably written (in part files or the finished file)
        self._pending: set[str] = set()  # buffered for the next part file
        self._finished = False
        self.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._lock: WriterLock = acquire(self.path, "feature store")
        try:
            if overwrite:
                shutil.rmtree(self.parts, ignore_errors=True)
                for p in (self.path, self.tmp_path):
                    p.unlink(missing_ok=True)
            self._open()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------ setup
    def _make_schema(self, *, modalities, feature_dims, projection_dim, fused_dims, sequences, labels, groups,
                     attrs, sequence_dtype) -> StoreSchema:
        modalities = [str(m) for m in modalities]
        if not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"{self.path}: modalities must be a non-empty list of unique names, got {modalities}")
        missing = [m for m in modalities if m not in feature_dims]
        if missing:
            raise ValueError(f"{self.path}: feature_dims lacks modalities {missing}")
        seq = dict(sequences) if isinstance(sequences, Mapping) else {m: feature_dims[m] for m in sequences}
        unknown = [m for m in seq if m not in modalities]
        if unknown:
            raise ValueError(f"{self.path}: sequence modalities {unknown} are not among {modalities}")
        if np.dtype(sequence_dtype) not in (np.float16, np.float32):
            raise ValueError(f"{self.path}: sequence_dtype must be float16 or float32, got {sequence_dtype}")
        bad = sorted(_RESERVED_ATTRS & set(attrs))
        if bad:
            raise ValueError(f"{self.path}: attrs {bad} are set by the writer itself")
        attrs = {str(k): v.item() if isinstance(v, np.generic) else v for k, v in attrs.items()}
        try:
            json.dumps(attrs)
        except TypeError as e:
            raise ValueError(f"{self.path}: attrs must be plain values, lists or dicts ({e})") from e
        return StoreSchema(
            modalities=modalities, feature_dims={m: int(feature_dims[m]) for m in modalities},
            projection_dim=None if projection_dim is None else int(projection_dim),
            fused_dims={str(k): int(v) for k, v in fused_dims.items()},
            sequence_dims={m: int(d) for m, d in seq.items()}, sequence_dtype=str(np.dtype(sequence_dtype)),
            labels={str(k): as_label_spec(k, v) for k, v in labels.items()}, groups=[str(g) for g in groups],
            attrs=dict(attrs))

    def _check(self, other: StoreSchema, where: Path) -> None:
        diff = self.schema.diff(other)
        if diff:
            raise StoreMismatchError(
                f"{where} was written with different settings ({', '.join(diff)}); use another output path "
                "or overwrite it to start afresh")

    def _open(self) -> None:
        if (self.parts / FINISHED_NAME).exists():  # a previous finish() died after merging
            if self.tmp_path.exists():
                os.replace(self.tmp_path, self.path)
            if self.path.exists():
                shutil.rmtree(self.parts)
            else:  # the merged file itself was lost (a power loss before its folder entry was on disk)
                (self.parts / FINISHED_NAME).unlink()
        self.tmp_path.unlink(missing_ok=True)  # an interrupted merge
        if self.parts.is_dir():
            for p in self.parts.glob("*.tmp"):  # a part file or parts list that was being written
                p.unlink()
            listing = find_parts_list(self.parts)
            if listing is not None:
                self._parts_list = listing
                meta = json.loads(listing.read_text(encoding="utf-8"))
                self._check(StoreSchema.from_json(meta["schema"]), self.parts)
                self.created = meta["created"]
            elif list_parts(self.parts):
                raise StoreMismatchError(f"{self.parts} holds part files but no parts list "
                                         f"({PARTS_LIST_NAME}); delete the folder")
            else:
                self._write_parts_list()
            for part in list_parts(self.parts):
                self._add_done(read_part_ids(part), part)
            log = self.parts / LOG_NAME
            ids, length = good_length(log, self.schema)
            self._add_done(ids, log)
            self._log = RowLog(log, self.schema, length)  # cuts off a record a crash left half-written
            return
        if self.path.exists():
            with FeatureStore(self.path, allow_partial=True) as old:
                if not old.attrs.get("complete", False):
                    raise StoreMismatchError(f"{self.path} is an unfinished store without its {self.parts.name} "
                                             "folder; it cannot be resumed; overwrite it")
                if "schema" not in old.attrs:
                    raise StoreMismatchError(f"{self.path} was not written by FeatureStoreWriter; overwrite it")
                self._check(StoreSchema.from_json(old.attrs["schema"]), self.path)
                self._done = set(old.ids.tolist())
            self._finished = True
            return
        self.parts.mkdir(parents=True)
        self._write_parts_list()
        self._log = RowLog(self.parts / LOG_NAME, self.schema, 0)

    def _write_parts_list(self) -> None:
        """The parts list (fsynced with the log's first sync, not here: one fsync fewer per extraction)."""
        text = json.dumps({"schema": self.schema.to_json(), "created": self.created})
        self._parts_list = self.parts / PARTS_LIST_NAME
        atomic_write_text(self._parts_list, text, fsync=False)

    def sync(self) -> None:
        """Make the rows appended so far durable against power loss (the log, and once the parts list and the
        folder entries); called by :meth:`flush` every ``sync_seconds`` when ``fsync`` is on."""
        if self._log is None:
            return
        self._log.sync()
        if not self._meta_synced:
            fsync_file(self._parts_list)
            fsync_dir(self.parts)
            fsync_dir(self.path.parent)
            self._meta_synced = True
        self._last_sync = time.monotonic()

    def _add_done(self, ids: Sequence[str], where: Any) -> None:
        for i in ids:
            if i in self._done:
                raise ValueError(f"duplicate id {i!r} in {where} (already in the store {self.path})")
            self._done.add(i)

    # ------------------------------------------------------------------------------------ writing
    def done_ids(self) -> set[str]:
        """Ids safely written (in part files or the finished store); skip these when resuming."""
        return set(self._done)

    def append(self, ids: Sequence[str], labels: Mapping[str, Any], groups: Mapping[str, Sequence[str]],
               features: Mapping[str, Any], *, projections: Mapping[str, Any], present: Mapping[str, Any],
               fused: Mapping[str, Any], sequences: Mapping[str, Any] | None = None) -> None:
        """Add one batch of B rows (numpy arrays or CPU tensors).

        ``sequences[m]`` is either a list of B arrays ``(T_i, D)`` (None or empty for absent rows) or a pair
        ``(values (sum T_i, D), lengths (B,))``. Categorical labels are int codes (-1 = missing), float labels
        use NaN for missing.
        """
        if self._finished:
            new = [str(i) for i in ids if str(i) not in self._done]
            raise StoreCompleteError(
                f"{self.path} is already complete and lacks {len(new)} of the rows now given (first: {new[:1]}); "
                "overwrite it (--overwrite) or choose another output")
        ids = [str(i) for i in ids]
        if not ids:
            return
        given = {"labels": labels, "groups": groups, "features": features, "projections": projections,
                 "present": present, "fused": fused, "sequences": sequences or {}}
        rows = build_rows(self.schema, ids, given, where=str(self.path))
        seen = set(ids)
        if len(seen) != len(ids) or not self._done.isdisjoint(seen) or not self._pending.isdisjoint(seen):
            dup = next(i for k, i in enumerate(ids) if i in self._done or i in self._pending or i in ids[:k])
            raise ValueError(f"duplicate id {dup!r}: it is already in the store {self.path}")
        self._buffer.append(rows)
        self._buffered += len(ids)
        self._pending |= seen
        if self._buffered >= self.part_rows:
            self.flush()

    def flush(self) -> None:
        """Append the buffered rows to the row log as one record (and sync it when ``sync_seconds`` passed)."""
        if not self._buffer:
            return
        assert self._log is not None, "flush() on a finished or closed writer"
        rows = (self._buffer[0] if len(self._buffer) == 1
                else {k: np.concatenate([r[k] for r in self._buffer]) for k in self._buffer[0]})
        self._log.append(rows)
        self._buffer, self._buffered = [], 0
        self._done |= self._pending
        self._pending = set()
        if self.fsync and time.monotonic() - self._last_sync >= self.sync_seconds:
            self.sync()

    def finish(self) -> Path:
        """Merge the part files into the final file, mark it complete, remove the parts; return the path."""
        if self._finished:
            self.close()
            return self.path
        self.flush()
        self._merge()
        if self.fsync:
            fsync_file(self.tmp_path)
        # the marker needs no fsync: the merged file it vouches for is already durable
        atomic_write_text(self.parts / FINISHED_NAME, "merged\n", fsync=False)
        os.replace(self.tmp_path, self.path)
        if self.fsync:
            fsync_dir(self.path.parent)
        shutil.rmtree(self.parts)
        self._finished = True
        self.close()
        return self.path

    def _merge(self) -> None:
        """Write ``<out>.tmp`` from the parts folder, ``complete`` set last. On a full disk: remove the temp
        file, keep the parts, and raise one OSError (ENOSPC) that says so."""
        f = h5py.File(self.tmp_path, "w", rdcc_nbytes=0)  # whole chunks are written: no cache needed
        try:
            # the log's CRCs were checked when this writer opened it; what it appended since, it wrote itself
            merge_parts(self.parts, self.schema, f, _root_attrs(self.schema, self.created),
                        compression=self.compression,
                        verify=False)
            f.attrs["complete"] = True
            f.close()
        except BaseException as e:
            abandon_file(f, self.tmp_path)
            if is_disk_full(e):
                raise OSError(errno.ENOSPC, f"No space left on device while merging {self.parts} into "
                              f"{self.path}; the rows written so far are kept there: free space and rerun to "
                              "finish", str(self.tmp_path)) from e
            raise

    def close(self) -> None:
        """Release the writer lock without finishing (what was flushed stays resumable); idempotent."""
        if self._log is not None:
            self._log.close()
            self._log = None
        self._lock.release()

    def __enter__(self) -> "FeatureStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Finish on a clean exit; on an exception keep what was written (resumable)."""
        if exc_type is None:
            self.finish()
            return
        try:
            self.flush()
        finally:
            self.close()


# ---------------------------------------------------------------------------------------------------- opener
_PARTIAL_HINT = ("rerun the extraction with the same output to resume it, or open it with allow_partial=True "
                 "to read the rows written so far")


def _open_checked(path: Path, allow_partial: bool, rdcc_nbytes: int | None = None,
                  merge_tag: int = 0) -> tuple[h5py.File, dict[str, Any]]:
    """The one opener of a store (:class:`FeatureStore`, :meth:`FeatureStore.open_file`): the file and its
    decoded root attributes, after the checks (HDF5 can open it; unless ``allow_partial``, it is no unfinished
    ``.parts`` folder and has ``complete=True``; its attributes read; its layout fits its schema)."""
    parts = path if path.name.endswith(".parts") else parts_dir_for(path)
    if path.is_file():
        try:
            f = h5py.File(path, "r") if rdcc_nbytes is None else h5py.File(path, "r", rdcc_nbytes=rdcc_nbytes)
        except OSError as e:
            raise StoreIntegrityError(path, f"cannot be opened as a feature store "
                                            f"({' '.join(str(e).split())})") from e
    elif parts.is_dir() and find_parts_list(parts) is not None:
        if not allow_partial:
            raise IncompleteStoreError(f"{path} is unfinished (only {parts} exists); {_PARTIAL_HINT}")
        f = _merge_in_memory(parts, merge_tag)
    else:
        raise FileNotFoundError(f"feature store {path} does not exist")
    try:
        attrs = _read_attrs(f, path)
        if not attrs.get("complete", False) and not allow_partial:
            raise IncompleteStoreError(f"{path} is incomplete (no complete=True attribute); {_PARTIAL_HINT}")
        schema = attrs.get("schema")
        check_layout(f, path, schema if isinstance(schema, str) else None)  # names the dataset that is wrong
        check_metadata(f, path)  # then every attribute and name the layout checks do not cover
    except (IncompleteStoreError, StoreIntegrityError):
        f.close()
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        f.close()  # h5py's answer to damaged metadata (a B-tree, a heap, an object header): one line
        raise StoreIntegrityError(path, f"its HDF5 metadata is damaged ({type(e).__name__}: "
                                        f"{' '.join(str(e).split())[:200]})") from None
    except BaseException:
        f.close()
        raise
    return f, attrs


def _merge_in_memory(parts: Path, tag: int) -> h5py.File:
    """An unfinished parts folder merged into an in-memory HDF5 file (``complete=False``)."""
    listing = find_parts_list(parts)
    assert listing is not None
    meta = json.loads(listing.read_text(encoding="utf-8"))
    schema = StoreSchema.from_json(meta["schema"])
    f = h5py.File(f"{parts}/partial-{tag}.h5", "w", driver="core", backing_store=False)
    merge_parts(parts, schema, f, _root_attrs(schema, meta["created"]))
    f.attrs["complete"] = False
    return f


def _read_attrs(f: h5py.File, path: Path) -> dict[str, Any]:
    """The root attributes, decoded (bytes to str, numpy scalars to Python, JSON-valued ones parsed)."""
    try:
        raw = dict(f.attrs)
        json_keys = set(json.loads(raw.get("json_attrs", "[]")))
    except (OSError, RuntimeError, ValueError, TypeError) as e:
        raise StoreIntegrityError(path, f"its attributes cannot be read ({e})") from None
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        elif isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, np.ndarray):
            v = [x.decode("utf-8") if isinstance(x, bytes) else x for x in v.tolist()]
        out[k] = json.loads(v) if k in json_keys and k != "json_attrs" else v
    out.pop("json_attrs", None)
    return out


# ---------------------------------------------------------------------------------------------------- reader
class FeatureStore:
    """Read-only access to a feature store (never unpickles anything).

    ``allow_partial=True`` accepts a file whose ``complete`` flag is missing/false, and an unfinished
    ``<path>.parts/`` folder (its part files are merged in memory, so use it for inspection, not huge stores).

    >>> import tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with FeatureStoreWriter(f"{tmp}/s.h5", ["audio"], {"audio": 2}, None, fsync=False) as w:
    ...         w.append(["a", "b"], {}, {}, {"audio": np.eye(2, dtype=np.float32)}, projections={},
    ...                  present={"audio": np.array([True, False])}, fused={})
    ...     with FeatureStore(f"{tmp}/s.h5") as store:
    ...         view = store.view("audio")  # features/audio and its usable rows
    ...         print(list(store.ids), view.key, view.rows.tolist(), view.vectors[0].tolist())
    ['a', 'b'] features/audio [0] [1.0, 0.0]
    """

    def __init__(self, path: str | Path, *, allow_partial: bool = False) -> None:
        self.path = Path(path)
        self._f, self.attrs = _open_checked(self.path, allow_partial, merge_tag=id(self))
        try:
            self.ids = (self._read("ids").astype(object) if "ids" in self._f else np.array([], object))
        except BaseException:
            self._f.close()
            raise
        mods = self.attrs.get("modalities")
        self.modalities = list(mods) if mods else sorted(self._f.get("features", {}))
        self._offsets: dict[str, np.ndarray] = {}

    @staticmethod
    def open_file(path: str | Path, rdcc_nbytes: int | None = None) -> h5py.File:
        """The finished store at ``path`` as a read-only :class:`h5py.File`, after the checks every reader of a
        finished store passes (it exists, is finished with ``complete=True``, its attributes read, its layout
        fits its schema): for code that streams a store's datasets itself (the shard merge). ``rdcc_nbytes``
        sizes HDF5's chunk cache (0: none). The caller closes the file; reads through
        :func:`contrastive_mer.store.integrity.read` keep the checksum checks."""
        return _open_checked(Path(path), False, rdcc_nbytes=rdcc_nbytes)[0]

    def _read(self, key: str, selection: Any = Ellipsis) -> np.ndarray:
        """``<key>[selection]`` through the checks of :mod:`~contrastive_mer.store.integrity` (checksums, and the
        SHA-256 of a whole string dataset)."""
        group, _, name = key.partition("/")
        try:
            ds = self._get(group, name) if name else self._f[key]
        except (RuntimeError, OSError, ValueError) as e:
            raise StoreIntegrityError(self.path, f"dataset {key} cannot be opened (its metadata is damaged: "
                                                 f"{' '.join(str(e).split())[:200]})") from None
        values = _integrity.read(self.path, key, ds, selection)
        if selection is Ellipsis:
            if h5py.check_string_dtype(ds.dtype) is not None:
                _integrity.check_strings(self.path, key, ds, values)
            _integrity.check_content(self.path, key, ds, values)
        return values

    # ------------------------------------------------------------------------------------ lookup
    def _get(self, group: str, name: str) -> h5py.Dataset:
        key = f"{group}/{name}"
        if key not in self._f:
            have = sorted(self._f[group]) if group in self._f else []
            raise KeyError(f"{key!r} is not in {self.path}; {group} has {have}")
        return self._f[key]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, key: object) -> bool:
        """Whether the dataset ``key`` (e.g. ``projections/audio``) is stored."""
        return isinstance(key, str) and key in self._f

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def index_of(self, sample_id: str) -> int:
        """Row of ``sample_id``; KeyError naming the file when it is not stored."""
        hits = np.flatnonzero(self.ids == sample_id)
        if len(hits) == 0:
            raise KeyError(f"id {sample_id!r} is not in {self.path}")
        return int(hits[0])

    def row(self, key: str, index: int) -> np.ndarray:
        """One row of ``<group>/<name>`` (e.g. ``features/audio``) without reading the whole dataset."""
        return self._read(key, int(index))

    def dataset(self, key: str) -> np.ndarray:
        """The whole dataset ``<group>/<name>``; KeyError naming the file when it is not stored."""
        return self._read(key)

    def dataset_shape(self, key: str) -> tuple[int, ...]:
        group, _, name = key.partition("/")
        return tuple(self._get(group, name).shape)

    # ------------------------------------------------------------------------------------ views
    def view(self, name: str) -> StoreView:
        """The view ``name`` (vectors, usable rows, canonical key) by the one naming rule of
        :mod:`contrastive_mer.store.views`: ``audio`` = ``features/audio``, ``projections/audio`` named in full,
        ``fused`` = the only fused mode (else an error listing ``fused/<mode>``), full keys as given."""
        return _views.load_view(self, name)

    def view_row(self, name: str, row: int) -> tuple[str, np.ndarray, bool]:
        """``(canonical key, vector, usable)`` of one row of the view ``name``."""
        return _views.load_view_row(self, name, row)

    def view_dim(self, name: str) -> int:
        """Width of the view ``name`` without reading it."""
        return _views.view_dim(self, name)

    def expand_views(self, names: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """``(name, canonical key)`` for each view ``names`` stand for (``fused`` = every fused mode);
        ``None`` = every modality and every fused mode."""
        return _views.expand_views(self, names)

    def label_names(self) -> list[str]:
        return list(self._f.get("labels", {}))

    def labels(self, name: str) -> np.ndarray:
        return self._read(f"labels/{name}")

    def class_names(self, name: str) -> list[str] | None:
        names = self._get("labels", name).attrs.get("class_names")
        return None if names is None else [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def group_names(self) -> list[str]:
        return list(self._f.get("groups", {}))

    def groups(self, name: str) -> np.ndarray:
        return self._read(f"groups/{name}").astype(object)

    def features(self, modality: str) -> np.ndarray:
        return self._read(f"features/{modality}")

    def projections(self, modality: str) -> np.ndarray:
        return self._read(f"projections/{modality}")

    def present(self, modality: str) -> np.ndarray:
        return self._read(f"present/{modality}").astype(bool)

    def fused_modes(self) -> list[str]:
        modes = self.attrs.get("fused_modes")
        return list(modes) if modes is not None else list(self._f.get("fused", {}))

    def fused(self, mode: str) -> np.ndarray:
        return self._read(f"fused/{mode}")

    def has_sequences(self, modality: str) -> bool:
        return f"sequences/{modality}" in self._f

    def sequence(self, modality: str, index: int) -> np.ndarray:
        """Frame-level rows ``(T_i, D)`` of row ``index``."""
        key = f"sequences/{modality}"
        data = self._get("sequences", modality)
        if modality not in self._offsets:
            off = self._read(f"{key}_offsets")
            _integrity.check_offsets(self.path, f"{key}_offsets", off, int(data.shape[0]))
            self._offsets[modality] = off
        off = self._offsets[modality]
        if not -len(self) <= index < len(self):
            raise IndexError(f"row {index} out of range for {len(self)} rows in {self.path}")
        index %= len(self)
        return self._read(key, slice(int(off[index]), int(off[index + 1])))
