"""Schema, shard files and the shard -> store merge behind :class:`~contrastive_mer.store.hdf5.FeatureStoreWriter`.

While an extraction runs, every flushed block of rows is its own small HDF5 file in ``<out>.parts/``, written
under a ``.tmp`` name and atomically renamed once it is complete. A ``manifest.json`` in that folder records
the :class:`StoreSchema` so that a resumed run can check it is compatible. ``finish`` merges the shards in
order into the final layout (see DESIGN.md) with :func:`merge_shards`.

Inside a shard, every dataset is keyed by its final path (``ids``, ``features/audio``, ...), plus
``sequences/<m>_lengths`` (B,) in place of the offsets of the final file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import h5py
import numpy as np

FORMAT_VERSION = 1
PARTS_SUFFIX = ".parts"
MANIFEST_NAME = "manifest.json"
FINISHED_NAME = "FINISHED"
_SHARD_RE = re.compile(r"^shard-(\d+)\.h5$")
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
        """Per-row datasets of a shard: key -> (dtype, trailing shape), in the store's fixed order."""
        specs: dict[str, tuple[Any, tuple[int, ...]]] = {"ids": (STR_DTYPE, ())}
        for name, spec in self.labels.items():
            if spec.kind == "categorical":
                specs[f"labels/{name}"] = (np.int64, ())
            else:
                specs[f"labels/{name}"] = (np.float32, (spec.width,) if spec.multi_label else ())
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


# ----------------------------------------------------------------------------------------------- batches
def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _ragged(schema: StoreSchema, m: str, value: Any, ids: list[str], where: str) -> tuple[np.ndarray, np.ndarray]:
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
    """Check one batch against ``schema`` and flatten it to shard datasets (key -> array with B rows).

    ``given`` maps section (labels, groups, features, projections, present, fused, sequences) -> name -> value.
    """
    b = len(ids)
    specs = schema.row_specs()
    rows: dict[str, np.ndarray] = {"ids": np.array(ids, dtype=object)}
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
        if arr.shape != (b, *tail):
            raise ValueError(f"{where}: {key} has shape {arr.shape}, expected {(b, *tail)}")
        rows[key] = arr if dtype is STR_DTYPE else arr.astype(dtype, copy=False)
    for m in schema.sequence_dims:
        if m not in given["sequences"]:
            raise ValueError(f"{where}: batch lacks sequences/{m}")
        rows[f"sequences/{m}"], rows[f"sequences/{m}_lengths"] = _ragged(schema, m, given["sequences"][m], ids, where)
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


def atomic_write_text(path: Path, text: str, fsync: bool = True) -> None:
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


def parts_dir_for(path: Path) -> Path:
    return path.with_name(path.name + PARTS_SUFFIX)


def list_shards(parts: Path) -> list[Path]:
    """Completed shard files of ``parts`` in write order."""
    found = []
    for p in parts.iterdir():
        m = _SHARD_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def shard_path(parts: Path, index: int) -> Path:
    return parts / f"shard-{index:06d}.h5"


def write_shard(path: Path, rows: Mapping[str, np.ndarray], fsync: bool = True) -> None:
    """Write one shard atomically: ``<path>.tmp`` first, renamed to ``path`` once closed."""
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for key, arr in rows.items():
            f.create_dataset(key, data=arr)
    if fsync:
        fsync_file(tmp)
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)


def read_shard_ids(path: Path) -> list[str]:
    try:
        with h5py.File(path, "r") as f:
            return list(f["ids"].asstr()[...])
    except (OSError, KeyError) as e:
        raise OSError(f"cannot read shard {path}: {e}; delete it to re-extract its rows") from e


# ----------------------------------------------------------------------------------------------- merge
def _chunk_rows(tail: tuple[int, ...], itemsize: int) -> int:
    row_bytes = max(1, int(np.prod(tail, dtype=np.int64)) * itemsize)
    return int(max(16, min(8192, _CHUNK_BYTES // row_bytes)))


def _new_dataset(f: h5py.File, key: str, dtype: Any, tail: tuple[int, ...]) -> h5py.Dataset:
    itemsize = 16 if dtype is STR_DTYPE else np.dtype(dtype).itemsize
    return f.create_dataset(key, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype,
                            chunks=(_chunk_rows(tail, itemsize), *tail), compression="lzf")


def _append(ds: h5py.Dataset, arr: np.ndarray) -> None:
    n = ds.shape[0]
    if len(arr) == 0:
        return
    ds.resize(n + len(arr), axis=0)
    ds[n:] = arr


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


def merge_shards(shards: Iterable[Path], schema: StoreSchema, f: h5py.File,
                 root_attrs: Mapping[str, Any]) -> int:
    """Write the final layout into the open file ``f`` from ``shards`` (one at a time); return N.

    ``root_attrs`` are written before the data; the caller sets ``complete`` afterwards.
    """
    json_keys = set_attrs(f, root_attrs)
    f.attrs["json_attrs"] = json.dumps(sorted(json_keys + ["json_attrs"]))
    specs = schema.row_specs()
    out: dict[str, h5py.Dataset] = {}
    for key, (dtype, tail) in specs.items():
        if key.startswith("sequences/"):
            continue
        out[key] = _new_dataset(f, key, dtype, tail)
        name = key.split("/", 1)[-1]
        if key.startswith("labels/"):
            spec = schema.labels[name]
            out[key].attrs["kind"] = spec.kind
            if spec.class_names is not None:
                out[key].attrs["class_names"] = list(spec.class_names)
    seq_dtype = np.dtype(schema.sequence_dtype)
    offsets: dict[str, h5py.Dataset] = {}
    totals: dict[str, int] = {}
    for m, dim in schema.sequence_dims.items():
        out[f"sequences/{m}"] = _new_dataset(f, f"sequences/{m}", seq_dtype, (dim,))
        offsets[m] = _new_dataset(f, f"sequences/{m}_offsets", np.int64, ())
        _append(offsets[m], np.zeros(1, dtype=np.int64))
        totals[m] = 0
    n = 0
    for shard in shards:
        with h5py.File(shard, "r") as s:
            for key, ds in out.items():
                if key.startswith("sequences/"):
                    continue
                _append(ds, s[key].asstr()[...] if key in ("ids",) or key.startswith("groups/") else s[key][...])
            for m in schema.sequence_dims:
                lengths = s[f"sequences/{m}_lengths"][...].astype(np.int64)
                _append(out[f"sequences/{m}"], s[f"sequences/{m}"][...].astype(seq_dtype, copy=False))
                _append(offsets[m], totals[m] + np.cumsum(lengths))
                totals[m] += int(lengths.sum())
            n += int(s["ids"].shape[0])
    return n
