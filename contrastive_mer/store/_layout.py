"""The layout of a finished feature store, shared by both merges (private to :mod:`contrastive_mer.store`).

:class:`StoreSchema` says which datasets a store holds (dtype and trailing shape of each); :class:`StoreLayout`
creates them empty in an open HDF5 file (chunked, Fletcher-32 checksums on numbers, SHA-256 attributes on
strings, optionally lzf, growing along rows) and appends rows and frame-level sequences in output order, in
whole chunks, keeping ``sequences/<m>_offsets`` (N+1,) in step. Used by
:func:`contrastive_mer.store.parts.merge_parts` (a writer's part files -> its store) and
:func:`contrastive_mer.store.merge.merge_shards` (the stores of a sharded extraction -> one store). The layout
itself is described in ``docs/architecture.md``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import h5py
import numpy as np

STR_DTYPE = h5py.string_dtype("utf-8")
_CHUNK_BYTES = 1 << 17  # ~128 KiB per chunk


@dataclass(frozen=True)
class LabelSpec:
    """How one label is stored.

    ``class_names`` set and ``multi_label`` False: categorical, ``(N,)`` int64 codes (missing = -1).
    ``multi_label`` True: ``(N, K)`` float32 (K = ``len(class_names)`` or ``dim``; missing = NaN).
    Neither: a float32 scalar per row (missing = NaN).
    """

    class_names: tuple[str, ...] | None = None
    multi_label: bool = False
    dim: int | None = None

    @property
    def kind(self) -> str:
        if self.multi_label:
            return "multilabel"
        return "categorical" if self.class_names is not None else "float"

    @property
    def width(self) -> int | None:
        """K for multi-label labels, None for one value per row."""
        if not self.multi_label:
            return None
        return len(self.class_names) if self.class_names is not None else self.dim


def as_label_spec(name: str, spec: Any) -> LabelSpec:
    """Accept a :class:`LabelSpec`, a list of class names (categorical) or None (float)."""
    if isinstance(spec, LabelSpec):
        out = LabelSpec(tuple(spec.class_names) if spec.class_names is not None else None,
                        spec.multi_label, spec.dim)
    elif spec is None:
        out = LabelSpec()
    elif isinstance(spec, (list, tuple)) and all(isinstance(c, str) for c in spec):
        out = LabelSpec(tuple(spec))
    else:
        raise ValueError(f"label {name!r}: expected a LabelSpec, a list of class names or None, got {spec!r}")
    if out.multi_label and not out.width:
        raise ValueError(f"label {name!r}: a multi-label spec needs class_names or dim")
    if out.class_names is not None and len(out.class_names) == 0:
        raise ValueError(f"label {name!r}: class_names is empty")
    return out


@dataclass
class StoreSchema:
    """Everything that must match between a store's runs (compared on resume)."""

    modalities: list[str]
    feature_dims: dict[str, int]
    projection_dim: int | None
    fused_dims: dict[str, int] = field(default_factory=dict)
    sequence_dims: dict[str, int] = field(default_factory=dict)
    sequence_dtype: str = "float32"
    labels: dict[str, LabelSpec] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StoreSchema":
        d = json.loads(text)
        d["labels"] = {k: as_label_spec(k, LabelSpec(v["class_names"], v["multi_label"], v["dim"]))
                       for k, v in d["labels"].items()}
        return cls(**d)

    def diff(self, other: "StoreSchema") -> list[str]:
        """Names of the fields that differ (``attrs.<key>`` for root attributes)."""
        mine, theirs = json.loads(self.to_json()), json.loads(other.to_json())
        out = [k for k in mine if k != "attrs" and mine[k] != theirs[k]]
        keys = sorted(set(mine["attrs"]) | set(theirs["attrs"]))
        out += [f"attrs.{k}" for k in keys if mine["attrs"].get(k) != theirs["attrs"].get(k)]
        return out

    def row_specs(self) -> dict[str, tuple[Any, tuple[int, ...]]]:
        """Per-row datasets of a part file: key -> (dtype, trailing shape), in the store's fixed order."""
        specs: dict[str, tuple[Any, tuple[int, ...]]] = {"ids": (STR_DTYPE, ())}
        for name, spec in self.labels.items():
            if spec.kind == "categorical":
                specs[f"labels/{name}"] = (np.int64, ())
            else:
                width = spec.width  # None unless multi-label (as_label_spec checks a multi-label one has a width)
                specs[f"labels/{name}"] = (np.float32, (width,) if width is not None else ())
        for name in self.groups:
            specs[f"groups/{name}"] = (STR_DTYPE, ())
        for m in self.modalities:
            specs[f"features/{m}"] = (np.float32, (self.feature_dims[m],))
        if self.projection_dim is not None:
            for m in self.modalities:
                specs[f"projections/{m}"] = (np.float32, (self.projection_dim,))
        for m in self.modalities:
            specs[f"present/{m}"] = (np.bool_, ())
        for mode, dim in self.fused_dims.items():
            specs[f"fused/{mode}"] = (np.float32, (dim,))
        for m in self.sequence_dims:
            specs[f"sequences/{m}_lengths"] = (np.int64, ())
        return specs


# ----------------------------------------------------------------------------------------------- datasets
#: root attribute / dataset attribute holding the SHA-256 of a string dataset's UTF-8 content (see string_digest)
SHA_ATTR = "utf8_sha256"
#: what the writers may compress with: nothing (the default: lzf costs about 20 us per row of 400 float32
#: values, most of a fast extraction, and saves nothing on dense projections) or lzf (a third smaller on
#: ReLU features, see BENCHMARKS.md c)
COMPRESSIONS = (None, "lzf")
#: Fletcher-32 on every chunk of numbers (False only to measure what the checksums cost, in
#: benchmarks/bench_extraction.py; the reader accepts stores without them)
CHECKSUMS = True
_WRITE_BYTES = 1 << 20  # rows buffered per dataset before a write of whole chunks (about 1 MiB)


def _chunk_rows(tail: tuple[int, ...], itemsize: int) -> int:
    row_bytes = max(1, int(np.prod(tail, dtype=np.int64)) * itemsize)
    return int(max(16, min(8192, _CHUNK_BYTES // row_bytes)))


def _new_dataset(f: h5py.File, key: str, dtype: Any, tail: tuple[int, ...], *, compression: str | None) -> h5py.Dataset:
    """An empty dataset growing along rows: chunked, compressed with ``compression`` (None or ``lzf``), each
    chunk of numbers with a Fletcher-32 checksum (HDF5 refuses one for variable-length strings: those carry a
    SHA-256 attribute instead)."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    is_str = dtype is STR_DTYPE
    itemsize = 16 if is_str else np.dtype(dtype).itemsize
    return f.create_dataset(key, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype,
                            chunks=(_chunk_rows(tail, itemsize), *tail), compression=compression,
                            fletcher32=CHECKSUMS and not is_str)


def string_digest(values: Any, digest: Any = None) -> Any:
    """Feed the strings ``values`` into a SHA-256 (a new one when ``digest`` is None): each string's UTF-8
    bytes followed by NUL (HDF5 strings hold no NUL). HDF5 keeps variable-length strings outside the
    checksummed chunks, so string datasets carry this digest (attribute ``utf8_sha256``) instead."""
    digest = hashlib.sha256() if digest is None else digest
    if len(values):
        try:
            digest.update(("\0".join(values) + "\0").encode("utf-8"))  # str (what readers hold)
        except TypeError:  # bytes (what the writers hold), or a mix
            digest.update(b"\0".join(v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values) + b"\0")
    return digest


#: dataset attribute: SHA-256 of the dataset's name, NUL, then its content in row order (numbers: their bytes;
#: strings: as :func:`string_digest`), so that chunks moved between positions or datasets are caught
CONTENT_ATTR = "sha256"
#: root attribute: SHA-256 of every root attribute but itself and ``complete``, and of every dataset's name,
#: dtype, shape and attributes (class names, kinds, content digests): see :func:`metadata_digest`
META_ATTR = "meta_sha256"


def content_digest(key: str) -> Any:
    """A SHA-256 bound to the dataset name ``key`` (fed its content next, see :data:`CONTENT_ATTR`)."""
    return hashlib.sha256(key.encode("utf-8") + b"\0")


def feed_content(digest: Any, values: np.ndarray, is_str: bool) -> None:
    """Feed rows of a dataset into its content digest (strings as :func:`string_digest`, numbers as bytes)."""
    if is_str:
        string_digest(values, digest)
    elif len(values):
        digest.update(np.ascontiguousarray(values).view(np.uint8).reshape(-1))  # the bytes, without a copy


def _plain(value: Any) -> Any:
    """An attribute value as JSON-able plain data (bytes as text; undecodable bytes kept as escapes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def metadata_digest(f: h5py.File) -> str:
    """SHA-256 of what a reader trusts besides the data: every root attribute except :data:`META_ATTR` and
    ``complete`` (config, schema, provenance, ...), and each dataset's name, dtype, shape and attributes (label
    kinds and class names, the group names as dataset names, the content digests). May raise what h5py raises on
    damaged metadata (the reader turns that into one line)."""
    names: list[str] = []
    f.visit(names.append)
    datasets = []
    for name in sorted(names):
        obj = f[name]
        if isinstance(obj, h5py.Dataset):
            datasets.append([name, str(obj.dtype), list(obj.shape),
                             {k: _plain(v) for k, v in sorted(obj.attrs.items())}])
        else:
            datasets.append([name, "group", [], {k: _plain(v) for k, v in sorted(obj.attrs.items())}])
    root = {k: _plain(v) for k, v in sorted(f.attrs.items()) if k not in (META_ATTR, "complete")}
    text = json.dumps({"attrs": root, "datasets": datasets}, sort_keys=True, ensure_ascii=True, default=repr)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _append(ds: h5py.Dataset, arr: np.ndarray) -> None:
    """Write ``arr`` after the last row of ``ds``."""
    n = ds.shape[0]
    ds.resize(n + len(arr), axis=0)
    ds[n:] = arr


class _Appender:
    """Buffers rows for one dataset and writes them in runs of whole chunks of about ``write_bytes`` (only the
    last write of the dataset ends in a partly filled chunk), so nothing is read back or compressed twice.
    A ``write_bytes`` below one chunk writes smaller, unaligned runs (slower; for tests of interrupted merges)."""

    def __init__(self, ds: h5py.Dataset, is_str: bool, write_bytes: int = _WRITE_BYTES) -> None:
        self.ds, self.is_str = ds, is_str
        chunk = int(ds.chunks[0]) if ds.chunks else 1
        row_bytes = max(1, (16 if is_str else ds.dtype.itemsize) * int(np.prod(ds.shape[1:], dtype=np.int64)))
        if write_bytes >= row_bytes * chunk:
            self.write_rows = chunk * (write_bytes // (row_bytes * chunk))
        else:
            self.write_rows = max(1, write_bytes // row_bytes)
        self.buffer: np.ndarray | None = None  # write_rows rows, allocated on first use
        self.count = 0
        self.digest = hashlib.sha256() if is_str else None
        self.content = content_digest(ds.name.lstrip("/"))

    def add(self, arr: np.ndarray) -> None:
        """Copy ``arr`` into the buffer (so that nothing keeps the caller's larger blocks alive), writing each
        time it is full."""
        pos = 0
        while pos < len(arr):
            if self.buffer is None:
                self.buffer = np.empty((self.write_rows, *self.ds.shape[1:]),
                                       dtype=object if self.is_str else self.ds.dtype)
            take = min(len(arr) - pos, self.write_rows - self.count)
            self.buffer[self.count:self.count + take] = arr[pos:pos + take]
            self.count, pos = self.count + take, pos + take
            if self.count == self.write_rows:
                self.write(last=False)

    def write(self, last: bool) -> None:
        """Write the buffered rows (a whole run of chunks unless ``last``; with ``last`` also the digest)."""
        if self.count and self.buffer is not None:
            data = self.buffer[:self.count]
            if self.digest is not None:
                string_digest(data, self.digest)
            feed_content(self.content, data, self.is_str)
            _append(self.ds, data)
            self.count = 0
            if self.is_str:
                self.buffer[:] = None  # let the strings go
        if last:
            self.buffer = None
            if self.digest is not None:
                self.ds.attrs[SHA_ATTR] = self.digest.hexdigest()
            self.ds.attrs[CONTENT_ATTR] = self.content.hexdigest()


class StoreLayout:
    """The datasets of ``schema`` created empty in ``f``; rows are appended in output order.

    ``row_keys``: the per-row datasets (ids, labels, groups, features, projections, present, fused), in the
    store's fixed order. Label datasets carry their ``kind`` and ``class_names`` attributes. Appends are
    buffered and written in whole chunks; :meth:`close` writes what is left (call it before setting
    ``complete``). ``compression``: None or ``lzf`` for every dataset; ``write_bytes``: about how much of each
    dataset is buffered before it is written.
    """

    def __init__(self, f: h5py.File, schema: StoreSchema, compression: str | None = None,
                 write_bytes: int = _WRITE_BYTES) -> None:
        self.schema = schema
        self._f = f
        self.specs = {k: v for k, v in schema.row_specs().items() if not k.startswith("sequences/")}
        self.row_keys = list(self.specs)
        self._out: dict[str, _Appender] = {}
        for key, (dtype, tail) in self.specs.items():
            ds = _new_dataset(f, key, dtype, tail, compression=compression)
            self._out[key] = _Appender(ds, dtype is STR_DTYPE, write_bytes)
            if key.startswith("labels/"):
                spec = schema.labels[key.split("/", 1)[1]]
                ds.attrs["kind"] = spec.kind
                if spec.class_names is not None:
                    ds.attrs["class_names"] = list(spec.class_names)
        self.sequence_dtype = np.dtype(schema.sequence_dtype)
        self._totals: dict[str, int] = {}
        for m, dim in schema.sequence_dims.items():
            frames = _new_dataset(f, f"sequences/{m}", self.sequence_dtype, (dim,), compression=compression)
            self._out[f"sequences/{m}"] = _Appender(frames, False, write_bytes)
            offsets = _Appender(_new_dataset(f, f"sequences/{m}_offsets", np.int64, (), compression=compression), False,
                                write_bytes)
            offsets.add(np.zeros(1, dtype=np.int64))
            self._out[f"sequences/{m}_offsets"] = offsets
            self._totals[m] = 0

    def append(self, key: str, values: np.ndarray) -> None:
        """Append rows to the per-row dataset ``key``."""
        self._out[key].add(values)

    def append_sequences(self, m: str, frames: np.ndarray, lengths: np.ndarray) -> None:
        """Append the frames ``(sum T_i, D)`` of rows with ``lengths`` ``(B,)`` and their end offsets."""
        lengths = np.asarray(lengths, dtype=np.int64)
        self._out[f"sequences/{m}"].add(np.asarray(frames).astype(self.sequence_dtype, copy=False))
        self._out[f"sequences/{m}_offsets"].add(self._totals[m] + np.cumsum(lengths))
        self._totals[m] += int(lengths.sum())

    def close(self) -> None:
        """Write every dataset's buffered rows, the content digests, then the metadata digest (the root
        attributes must be final: only ``complete`` may follow)."""
        for out in self._out.values():
            out.write(last=True)
        self._f.attrs[META_ATTR] = metadata_digest(self._f)
