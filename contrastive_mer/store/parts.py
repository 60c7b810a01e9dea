"""The parts folder of a :class:`~contrastive_mer.store.hdf5.FeatureStoreWriter` and its merge into the store.

While an extraction runs, ``<out>.parts/`` holds its *parts list* ``parts.json`` (the
:class:`~contrastive_mer.store._layout.StoreSchema` and the creation time, so that a resumed run can check it is
compatible; folders of earlier versions named it ``manifest.json``, still read: :func:`find_parts_list`) and the
row log ``rows.log`` (:mod:`contrastive_mer.store.rowlog`: one framed, CRC-checked record per flushed block of
rows). Folders left by earlier versions also hold HDF5 part files ``part-<n>.h5`` (or ``shard-<n>.h5``), one per
flushed block, each dataset keyed by its final path plus ``sequences/<m>_lengths``; they are still read (before
the log) when such a run is resumed. ``finish`` joins the rows in order into the final layout
(``docs/architecture.md``) with :func:`merge_parts`. (Joining the stores of a *sharded* extraction is
:mod:`contrastive_mer.store.merge`.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

import h5py
import numpy as np

from contrastive_mer.store import rowlog
from contrastive_mer.store._layout import STR_DTYPE, StoreLayout, StoreSchema
from contrastive_mer.utils import to_numpy as _np

__all__ = ["FORMAT_VERSION", "PARTS_LIST_NAME", "LEGACY_PARTS_LIST_NAMES", "FINISHED_NAME", "find_parts_list",
           "abandon_file", "atomic_write_text", "build_rows", "fsync_dir", "fsync_file", "is_disk_full", "iter_rows",
           "list_parts", "merge_parts", "parts_dir_for", "read_part_ids"]

FORMAT_VERSION = 1
PARTS_SUFFIX = ".parts"
#: the parts list of a parts folder: the writer's schema and creation time
PARTS_LIST_NAME = "parts.json"
#: what earlier versions named the parts list (read when resuming their folders)
LEGACY_PARTS_LIST_NAMES = ("manifest.json",)
FINISHED_NAME = "FINISHED"
#: HDF5 part files of earlier versions, ``part-<n>.h5`` or ``shard-<n>.h5`` (still read when resuming)
_PART_RE = re.compile(r"^(?:part|shard)-(\d+)\.h5$")


def find_parts_list(parts: Path) -> Path | None:
    """The parts list of the folder ``parts``: ``parts.json``, else the name an earlier version wrote
    (``manifest.json``); None when there is none."""
    for name in (PARTS_LIST_NAME, *LEGACY_PARTS_LIST_NAMES):
        if (parts / name).is_file():
            return parts / name
    return None


# ----------------------------------------------------------------------------------------------- batches
def _ragged(schema: StoreSchema, m: str, value: Any, ids: list[str], *, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(values (sum T_i, D), lengths (B,))`` from a list of per-row arrays or such a pair."""
    dim, dtype, b = schema.sequence_dims[m], np.dtype(schema.sequence_dtype), len(ids)
    if isinstance(value, tuple) and len(value) == 2:
        values, lengths = _np(value[0]), _np(value[1]).astype(np.int64)
    else:
        items = [np.zeros((0, dim)) if v is None or _np(v).size == 0 else _np(v) for v in value]
        if len(items) != b:
            raise ValueError(f"{where}: sequences/{m} has {len(items)} rows, expected {b}")
        for i, v in zip(ids, items):
            if v.ndim != 2 or v.shape[1] != dim:
                raise ValueError(f"{where}: sequences/{m} of {i!r} has shape {v.shape}, expected (T, {dim})")
        lengths = np.array([len(v) for v in items], dtype=np.int64)
        values = np.concatenate(items)
    if lengths.shape != (b,) or values.ndim != 2 or values.shape[1] != dim or len(values) != lengths.sum():
        raise ValueError(f"{where}: sequences/{m} must be (sum T_i={lengths.sum()}, {dim}) with B={b} "
                         f"lengths, got values {values.shape} and lengths {lengths.shape}")
    return values.astype(dtype, copy=False), lengths


def build_rows(schema: StoreSchema, ids: list[str], given: Mapping[str, Mapping[str, Any]],
               where: str) -> dict[str, np.ndarray]:
    """Check one batch against ``schema`` and flatten it to part-file datasets (key -> array with B rows).

    ``given`` maps section (labels, groups, features, projections, present, fused, sequences) -> name -> value.
    """
    b = len(ids)
    specs = schema.row_specs()
    rows: dict[str, np.ndarray] = {"ids": np.array(ids, dtype=object)}
    bad = next((i for i in ids if "\0" in i), None)
    if bad is not None:
        raise ValueError(f"{where}: id {bad!r} holds a NUL character, which HDF5 strings cannot store")
    for section, mapping in given.items():
        expected = {k.split("/", 1)[1].removesuffix("_lengths") for k in specs if k.startswith(section + "/")}
        extra = sorted(set(mapping) - expected)
        if extra:
            raise ValueError(f"{where}: unknown {section} keys {extra}; the store has {sorted(expected)}")
    for key, (dtype, tail) in specs.items():
        if key == "ids" or key.startswith("sequences/"):
            continue
        section, name = key.split("/", 1)
        if name not in given[section]:
            raise ValueError(f"{where}: batch lacks {key} (ids {ids[0]!r}...)")
        value = given[section][name]
        arr = np.array([str(v) for v in value], dtype=object) if dtype is STR_DTYPE else _np(value)
        if dtype is STR_DTYPE and any("\0" in v for v in arr):
            raise ValueError(f"{where}: {key} holds a NUL character ({next(v for v in arr if chr(0) in v)!r}), "
                             "which HDF5 strings cannot store")
        if arr.shape != (b, *tail):
            raise ValueError(f"{where}: {key} has shape {arr.shape}, expected {(b, *tail)}")
        rows[key] = arr if dtype is STR_DTYPE else arr.astype(dtype, copy=False)
    for m in schema.sequence_dims:
        if m not in given["sequences"]:
            raise ValueError(f"{where}: batch lacks sequences/{m}")
        rows[f"sequences/{m}"], rows[f"sequences/{m}_lengths"] = _ragged(schema, m, given["sequences"][m], ids,
                                                                         where=where)
    return rows


# ----------------------------------------------------------------------------------------------- files
def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (an OSError, or what HDF5 raises when a write fails) says the disk is full."""
    return (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        isinstance(err, (OSError, RuntimeError)) and ("errno = 28" in str(err) or "No space left" in str(err)))


def abandon_file(f: h5py.File, tmp: Path) -> None:
    """Close a half-written HDF5 file after a failed write and delete it. The file is first cut to zero bytes,
    which frees its space, so that HDF5 can flush what it still holds and close the file: a file HDF5 cannot
    close makes the interpreter crash at exit (segmentation fault) when the disk is full."""
    try:
        os.truncate(tmp, 0)
    except OSError:
        pass
    for _ in range(2):
        try:
            if f.id.valid:
                f.close()
            break
        except (OSError, RuntimeError):
            try:
                os.truncate(tmp, 0)
            except OSError:
                pass
    tmp.unlink(missing_ok=True)


def parts_dir_for(path: Path) -> Path:
    """``feats.h5`` -> ``feats.h5.parts``: the folder of a writer's part files."""
    return path.with_name(path.name + PARTS_SUFFIX)


def _numbered_parts(parts: Path) -> list[tuple[int, Path]]:
    found = []
    for p in parts.iterdir():
        m = _PART_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def list_parts(parts: Path) -> list[Path]:
    """HDF5 part files (earlier versions) of the folder ``parts`` in write order."""
    return [p for _, p in _numbered_parts(parts)]


def read_part_ids(path: Path) -> list[str]:
    try:
        with h5py.File(path, "r") as f:
            return list(f["ids"].asstr()[...])
    except (OSError, KeyError) as e:
        raise OSError(f"cannot read part file {path}: {e}; delete it to re-extract its rows") from e


def _read_part(path: Path, schema: StoreSchema) -> dict[str, np.ndarray]:
    """A part file's rows; strings as UTF-8 bytes (as HDF5 holds them)."""
    keys = list(schema.row_specs()) + [f"sequences/{m}" for m in schema.sequence_dims]
    try:
        with h5py.File(path, "r") as s:
            return {k: s[k][...] for k in keys}
    except (OSError, KeyError) as e:
        raise OSError(f"cannot read part file {path}: {e}; delete it to re-extract its rows") from e


def iter_rows(parts: Path, schema: StoreSchema, *, verify: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """The blocks of rows of the folder ``parts`` in write order: HDF5 part files first, then the row log
    (up to its last complete record; ``verify=False``: without checking CRCs again, see :func:`rowlog.scan`).
    Strings come as UTF-8 bytes (what HDF5 stores: no decoding and encoding again)."""
    for part in list_parts(parts):
        yield _read_part(part, schema)
    for rows, _ in rowlog.scan(parts / rowlog.LOG_NAME, schema, verify=verify, raw_strings=True):
        yield rows


# ----------------------------------------------------------------------------------------------- merge
def set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> list[str]:
    """Store plain values as they are and lists/dicts as JSON text; return the JSON-encoded keys."""
    encoded = []
    for key, value in attrs.items():
        if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
            obj.attrs[key] = value
        else:
            try:
                obj.attrs[key] = json.dumps(value)
            except TypeError as e:
                raise ValueError(f"attribute {key!r}: {type(value).__name__} is neither a plain value "
                                 "nor JSON-serialisable") from e
            encoded.append(key)
    return encoded


def merge_parts(parts: Path, schema: StoreSchema, f: h5py.File, root_attrs: Mapping[str, Any],
                *, compression: str | None = None, verify: bool = True) -> int:
    """Write the final layout into the open file ``f`` from the parts folder ``parts``; return N.

    ``root_attrs`` are written before the data; the caller sets ``complete`` afterwards. The rows stream
    through in whole chunks (:class:`~contrastive_mer.store._layout.StoreLayout`), one block of the log at a time.
    """
    json_keys = set_attrs(f, root_attrs)
    f.attrs["json_attrs"] = json.dumps(sorted(json_keys + ["json_attrs"]))
    layout = StoreLayout(f, schema, compression)
    n = 0
    for rows in iter_rows(parts, schema, verify=verify):
        for key in layout.row_keys:
            layout.append(key, rows[key])
        for m in schema.sequence_dims:
            layout.append_sequences(m, rows[f"sequences/{m}"], rows[f"sequences/{m}_lengths"])
        n += len(rows["ids"])
    layout.close()
    return n
