"""Merge the feature stores of a sharded extraction into one store ordered by id.

A sharded extraction (``cmer extract --shard-index I --num-shards N --out feats.h5``) writes N complete stores
``feats.shard-I-of-N.h5``. :func:`merge_shards` checks that they belong together (all complete, same schema:
modalities, dims, labels, groups, fusion modes, config, checkpoint SHA-256; every shard index present once; no id
in two shards) and writes ``feats.h5`` with the rows of all of them sorted by id (Python string order).

Crash safety: the output is written to ``<out>.tmp`` with ``complete`` set last, then ``os.replace``-d to
``<out>``; an interrupted merge leaves at most the temp file, which the next merge overwrites.
Memory: features, projections, fused vectors and sequences stream through in blocks of about ``block_bytes``;
what grows with the row count is every id (as bytes), the sort order (two integers per row) and HDF5's
bookkeeping of the variable-length strings it reads and writes (about 0.3 KiB per row in all at 100k rows).
"""

from __future__ import annotations

import errno
import json
import os
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from contrastive_mer.store import integrity as _integrity
from contrastive_mer.store._layout import COMPRESSIONS, STR_DTYPE, StoreLayout, StoreSchema
from contrastive_mer.store.hdf5 import FeatureStore, IncompleteStoreError
from contrastive_mer.store.integrity import StoreIntegrityError
from contrastive_mer.store.parts import abandon_file, fsync_dir, fsync_file, is_disk_full

__all__ = ["SHARD_ATTRS", "ShardMergeError", "find_shards", "merge_shards", "shard_store_path"]

#: root attributes that tell the shards apart (removed from the merged store)
SHARD_ATTRS = ("shard_index", "num_shards")
#: rows read from a shard in one slice when the span holds at most 4x the rows needed plus this many
SPAN_SLACK = 1024
_REOPEN_BYTES = 64 << 20  # reopen the shards after about this much output (see _ShardFiles)
_ID_SLICE = 1 << 13  # small slices: large vlen reads leave fragmented C heap behind


class ShardMergeError(ValueError):
    """The shards do not belong together (schema mismatch, missing shard, duplicate id)."""


def shard_store_path(out: str | Path, index: int, count: int) -> Path:
    """``feats.h5`` -> ``feats.shard-I-of-N.h5``: where shard ``index`` of ``count`` is written."""
    out = Path(out)
    return out.with_name(f"{out.stem}.shard-{index}-of-{count}{out.suffix}")


def find_shards(out: str | Path) -> list[Path]:
    """The N shard paths of ``out`` (``<stem>.shard-I-of-N<suffix>``, I = 0..N-1), found by listing its folder.

    Returns every expected path, including shards that are missing or unfinished (only their ``.parts`` folder
    exists), so that :func:`merge_shards` can name them. Raises when no shard is found or N is ambiguous.
    """
    out = Path(out)
    pattern = re.compile(re.escape(out.stem) + r"\.shard-(\d+)-of-(\d+)" + re.escape(out.suffix) + r"(\.parts)?$")
    counts = set()
    if out.parent.is_dir():
        for p in out.parent.iterdir():
            m = pattern.match(p.name)
            if m:
                counts.add(int(m.group(2)))
    if not counts:
        raise FileNotFoundError(f"no shards of {out} found (expected {shard_store_path(out, 0, 2).name} ...)")
    if len(counts) > 1:
        raise ShardMergeError(f"shards of {out} from runs with different shard counts {sorted(counts)}; "
                              "delete the stale ones")
    n = counts.pop()
    return [shard_store_path(out, i, n) for i in range(n)]


# ----------------------------------------------------------------------------------------------- checks
def _open_shard(path: Path, stack: ExitStack | None = None) -> h5py.File:
    """A shard through the stores' one opener (:meth:`FeatureStore.open_file`: finished, complete, layout as
    its schema says), without a chunk cache (per-shard caches would add up); errors name the shard."""
    try:
        f = FeatureStore.open_file(path, rdcc_nbytes=0)
    except IncompleteStoreError as e:
        what = str(e).split(";")[0]  # the opener's hint is about reading a partial store, not merging one
        raise IncompleteStoreError(f"shard {what}; rerun its extraction with the same options to finish it") from e
    except FileNotFoundError as e:
        raise FileNotFoundError(f"shard {path} does not exist") from e
    if stack is not None:
        stack.enter_context(f)
    if "schema" not in f.attrs or "ids" not in f:
        f.close()
        raise ShardMergeError(f"shard {path} was not written by FeatureStoreWriter (no schema attribute)")
    return f


def _schema(f: h5py.File) -> StoreSchema:
    schema = StoreSchema.from_json(f.attrs["schema"])
    for key in SHARD_ATTRS:
        schema.attrs.pop(key, None)
    return schema


def _attr(f: h5py.File, key: str) -> Any:
    v = f.attrs.get(key)
    return v.item() if isinstance(v, np.generic) else v


def _check_shards(paths: Sequence[Path], files: Sequence[h5py.File]) -> StoreSchema:
    """The common schema (without shard attributes); raises naming the first shard that does not fit."""
    first = _schema(files[0])
    for path, f in zip(paths[1:], files[1:]):
        diff = first.diff(_schema(f))
        if _attr(f, "format_version") != _attr(files[0], "format_version"):
            diff.insert(0, "format_version")
        if diff:
            raise ShardMergeError(f"shard {path} does not match {paths[0]}: they differ in {', '.join(diff)}")
    counts = [_attr(f, "num_shards") for f in files]
    if all(c is None for c in counts):
        return first
    if any(c is None for c in counts) or len(set(counts)) > 1:
        by = ", ".join(f"{p.name}: {c}" for p, c in zip(paths, counts))
        raise ShardMergeError(f"the shards come from different shardings (num_shards {by})")
    n = counts[0]
    seen: dict[int, Path] = {}
    for path, f in zip(paths, files):
        i = _attr(f, "shard_index")
        if i in seen:
            raise ShardMergeError(f"shard index {i} given twice: {seen[i]} and {path}")
        seen[i] = path
    missing = sorted(set(range(n)) - set(seen))
    if missing:
        raise ShardMergeError(f"missing shard index(es) {missing} of {n}; given: "
                              f"{', '.join(str(seen[i]) for i in sorted(seen))}")
    return first


def _global_order(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shard of each output row, its row in that shard, sorted ids as UTF-8 bytes); raises on a duplicate id.

    Each shard is opened on its own and closed again: HDF5 keeps what it read of a file's variable-length
    strings until the file is closed, so reading every shard's ids through files held open would add up.
    """
    keys, shard, row = [], [], []
    for s, path in enumerate(paths):
        with _open_shard(path) as f:
            ds = f["ids"]  # raw UTF-8 bytes (byte order = code point order), in slices: little memory held
            ids = np.concatenate([np.asarray(ds[i:i + _ID_SLICE]).astype(bytes)
                                  for i in range(0, len(ds), _ID_SLICE)] or [np.array([], dtype=bytes)])
        keys.append(ids)
        shard.append(np.full(len(ids), s, dtype=np.int32))
        row.append(np.arange(len(ids), dtype=np.int64))
    all_ids = np.concatenate(keys)
    order = np.argsort(all_ids, kind="stable")
    sorted_ids = all_ids[order]
    shard_of, row_of = np.concatenate(shard)[order], np.concatenate(row)[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(dup):
        j = int(dup[0])
        raise ShardMergeError(f"duplicate id {sorted_ids[j].decode()!r} in {paths[shard_of[j]]} and "
                              f"{paths[shard_of[j + 1]]}")
    return shard_of, row_of, sorted_ids


# ----------------------------------------------------------------------------------------------- streaming
def _read_rows(ds: h5py.Dataset, rows: np.ndarray, is_str: bool) -> np.ndarray:
    """``ds[rows]`` for increasing ``rows``: one slice read when they are close together, else fancy indexing."""
    src = ds.asstr() if is_str else ds
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if hi - lo <= 4 * len(rows) + SPAN_SLACK:
        return np.asarray(src[lo:hi])[rows - lo]
    return np.asarray(src[rows])


def _segment_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions ``[s0, s0+1, .., s0+l0-1, s1, ...]`` of the segments ``(starts, lengths)``."""
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(total)


def _read_segments(ds: h5py.Dataset, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The rows of ``ds`` in the segments (increasing, non-overlapping), concatenated."""
    if len(starts) == 0 or lengths.sum() == 0:
        return np.zeros((0, *ds.shape[1:]), dtype=ds.dtype)
    lo, hi = int(starts[0]), int(starts[-1] + lengths[-1])
    if hi - lo <= 4 * int(lengths.sum()) + SPAN_SLACK:
        return ds[lo:hi][_segment_index(starts - lo, lengths)]
    return np.concatenate([ds[int(s):int(s + n)] for s, n in zip(starts, lengths) if n])


class _ShardFiles:
    """The shards opened for reading; :meth:`reopen` closes and reopens them, which frees what HDF5 keeps of
    the variable-length strings (ids, groups) it has read from a file until that file is closed."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        self.files: list[h5py.File] = []
        self.reopen()

    def reopen(self) -> None:
        self.close()
        for p in self.paths:
            self.files.append(_open_shard(p))

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []

    def __getitem__(self, index: int) -> h5py.File:
        return self.files[index]

    def __iter__(self) -> Iterator[h5py.File]:
        return iter(self.files)


def _block_rows(files: Sequence[h5py.File], schema: StoreSchema, block_bytes: int) -> int:
    row_bytes = 0
    for dtype, tail in schema.row_specs().values():
        row_bytes += 64 if dtype is STR_DTYPE else np.dtype(dtype).itemsize * int(np.prod(tail, dtype=np.int64))
    n = sum(int(f["ids"].shape[0]) for f in files)
    for m, dim in schema.sequence_dims.items():
        frames = sum(int(f[f"sequences/{m}"].shape[0]) for f in files)
        row_bytes += np.dtype(schema.sequence_dtype).itemsize * dim * frames // max(n, 1)
    return int(max(16, min(65536, block_bytes // max(row_bytes, 1))))


def _sequence_block(files: _ShardFiles, m: str, offsets: Sequence[np.ndarray],
                    groups: Sequence[tuple[int, np.ndarray, np.ndarray]], *, n: int,
                    schema: StoreSchema) -> tuple[np.ndarray, np.ndarray]:
    """The frames of one output block of ``n`` rows for modality ``m``, and the rows' frame counts.

    ``groups``: (shard, output positions, shard rows in increasing order) for every shard in the block.
    """
    lengths = np.zeros(n, dtype=np.int64)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for s, pos, r in groups:
        off = offsets[s]
        lengths[pos] = off[r + 1] - off[r]
        parts.append((pos, _read_segments(files[s][f"sequences/{m}"], off[r], off[r + 1] - off[r])))
    ends = np.cumsum(lengths)
    values = np.empty((int(ends[-1]) if n else 0, schema.sequence_dims[m]), dtype=np.dtype(schema.sequence_dtype))
    for pos, data in parts:
        values[_segment_index(ends[pos] - lengths[pos], lengths[pos])] = data
    return values, lengths


def _write_merged(tmp: Path, files: _ShardFiles, schema: StoreSchema, block_bytes: int,
                  *, order: tuple[np.ndarray, np.ndarray, np.ndarray]) -> int:
    shard_of, row_of, sorted_ids = order
    f = h5py.File(tmp, "w", rdcc_nbytes=0)  # no chunk cache: blocks cover whole chunks; flat memory
    try:
        for key, value in files[0].attrs.items():
            if key not in SHARD_ATTRS and key != "complete":
                f.attrs[key] = value
        f.attrs["schema"] = schema.to_json()
        created = [str(_attr(s, "created")) for s in files if "created" in s.attrs]
        if created:
            f.attrs["created"] = min(created)
        first = files[0].get(f"features/{schema.modalities[0]}")
        compression = first.compression if first is not None and first.compression in COMPRESSIONS else None
        # compressed as the shards are; each dataset buffered up to one block (at most 1 MiB) per write
        layout = StoreLayout(f, schema, compression, write_bytes=min(block_bytes, 1 << 20))
        offsets = {m: [s[f"sequences/{m}_offsets"][...] for s in files]  # (N_s + 1,) int64 each
                   for m in schema.sequence_dims}
        block = _block_rows(files.files, schema, block_bytes)
        reopen_every = max(1, _REOPEN_BYTES // block_bytes)
        for b, start in enumerate(range(0, len(shard_of), block)):
            if b and b % reopen_every == 0:
                files.reopen()
            sh, rows = shard_of[start:start + block], row_of[start:start + block]
            groups = []
            for s in np.unique(sh):
                pos = np.flatnonzero(sh == s)
                by_row = np.argsort(rows[pos], kind="stable")
                groups.append((int(s), pos[by_row], rows[pos][by_row]))
            layout.append("ids", np.char.decode(sorted_ids[start:start + block], "utf-8").astype(object))
            for key in layout.row_keys:
                if key == "ids":
                    continue
                dtype, tail = layout.specs[key]
                is_str = dtype is STR_DTYPE
                buf = np.empty((len(sh), *tail), dtype=object if is_str else dtype)
                for s, pos, r in groups:
                    buf[pos] = _read_rows(files[s][key], r, is_str)
                layout.append(key, buf)
            for m in schema.sequence_dims:
                layout.append_sequences(m, *_sequence_block(files, m, offsets[m], groups, n=len(sh), schema=schema))
        layout.close()
        f.attrs["complete"] = True
        f.close()
    except BaseException:
        abandon_file(f, tmp)  # closes it even on a full disk (else the interpreter crashes at exit)
        raise
    return len(shard_of)


def _corrupt_shard(paths: Sequence[Path]) -> StoreIntegrityError | None:
    """After a failed read: the first shard dataset that fails its checks or checksums, as an error naming it."""
    for path in paths:
        try:
            FeatureStore(path).close()  # layout, sizes, the ids' SHA-256
            with _open_shard(path) as f:
                keys: list[str] = []
                f.visititems(lambda k, o: keys.append(k) if isinstance(o, h5py.Dataset) else None)
                for key in keys:
                    for start in range(0, f[key].shape[0] if f[key].ndim else 1, 1 << 16):
                        _integrity.read(path, key, f[key], slice(start, start + (1 << 16)))
        except StoreIntegrityError as e:
            return e
    return None


def _merge_skipped(paths: Sequence[Path], out: Path) -> None:
    """Concatenate the shards' ``.skipped.jsonl`` reports into ``<out>.skipped.jsonl`` (if any exist)."""
    lines = []
    for p in paths:
        report = p.with_name(p.name + ".skipped.jsonl")
        if report.is_file():
            lines += [ln for ln in report.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if lines:
        target = out.with_name(out.name + ".skipped.jsonl")
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text("\n".join(json.dumps(json.loads(ln)) for ln in lines) + "\n", encoding="utf-8")
        os.replace(tmp, target)


def merge_shards(shard_paths: Sequence[str | Path], out: str | Path, *, overwrite: bool = False,
                 remove_shards: bool = False, block_bytes: int = 4 << 20, fsync: bool = True) -> Path:
    """Merge complete stores ``shard_paths`` into one store at ``out``, rows ordered by id; return ``out``.

    Refuses (before writing anything) an incomplete or missing shard, shards whose schemas differ, shards of
    different shardings or with an index missing, and an id stored in two shards; every error names the shard.
    ``overwrite`` replaces an existing ``out``; ``remove_shards`` deletes the shard files after a successful merge.
    """
    paths = [Path(p) for p in shard_paths]
    out = Path(out)
    if not paths:
        raise ValueError(f"no shards given to merge into {out}")
    if out in paths:
        raise ValueError(f"the merged store {out} cannot be one of the shards")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (cmer: --overwrite) to replace it")
    tmp = out.with_name(out.name + ".tmp")
    with ExitStack() as stack:
        schema = _check_shards(paths, [_open_shard(p, stack) for p in paths])
    order = _global_order(paths)
    tmp.unlink(missing_ok=True)
    try:
        files = _ShardFiles(paths)
        try:
            _write_merged(tmp, files, schema, block_bytes, order=order)
        finally:
            files.close()
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise OSError(errno.ENOSPC, f"No space left on device while merging {len(paths)} shards into {out}; "
                          "the shards are untouched: free space and rerun", str(tmp)) from e
        if isinstance(e, (OSError, RuntimeError)):
            corrupt = _corrupt_shard(paths)
            if corrupt is not None:
                raise corrupt from e
        raise
    if fsync:
        fsync_file(tmp)
    os.replace(tmp, out)
    if fsync:
        fsync_dir(out.parent)
    _merge_skipped(paths, out)
    if remove_shards:
        for p in paths:
            p.unlink(missing_ok=True)
    return out
