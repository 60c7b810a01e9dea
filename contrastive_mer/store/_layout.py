"""The layout of a finished feature store, shared by both merges (private to :mod:`contrastive_mer.store`).

:class:`StoreSchema` says which datasets a store holds (dtype and trailing shape of each); :class:`StoreLayout`
creates them empty in an open HDF5 file (chunked, lzf, growing along rows) and appends rows and frame-level
sequences in output order, keeping ``sequences/<m>_offsets`` (N+1,) in step. Used by
:func:`contrastive_mer.store.parts.merge_parts` (a writer's part files -> its store) and
:func:`contrastive_mer.store.merge.merge_shards` (the stores of a sharded extraction -> one store). The layout
itself is described in ``docs/architecture.md``.
"""

from __future__ import annotations

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


class StoreLayout:
    """The datasets of ``schema`` created empty in ``f``; rows are appended in output order.

    ``row_keys``: the per-row datasets (ids, labels, groups, features, projections, present, fused), in the
    store's fixed order. Label datasets carry their ``kind`` and ``class_names`` attributes.
    """

    def __init__(self, f: h5py.File, schema: StoreSchema) -> None:
        self.schema = schema
        self.specs = {k: v for k, v in schema.row_specs().items() if not k.startswith("sequences/")}
        self.row_keys = list(self.specs)
        self._rows: dict[str, h5py.Dataset] = {}
        for key, (dtype, tail) in self.specs.items():
            self._rows[key] = _new_dataset(f, key, dtype, tail)
            if key.startswith("labels/"):
                spec = schema.labels[key.split("/", 1)[1]]
                self._rows[key].attrs["kind"] = spec.kind
                if spec.class_names is not None:
                    self._rows[key].attrs["class_names"] = list(spec.class_names)
        self.sequence_dtype = np.dtype(schema.sequence_dtype)
        self._frames: dict[str, h5py.Dataset] = {}
        self._offsets: dict[str, h5py.Dataset] = {}
        self._totals: dict[str, int] = {}
        for m, dim in schema.sequence_dims.items():
            self._frames[m] = _new_dataset(f, f"sequences/{m}", self.sequence_dtype, (dim,))
            self._offsets[m] = _new_dataset(f, f"sequences/{m}_offsets", np.int64, ())
            _append(self._offsets[m], np.zeros(1, dtype=np.int64))
            self._totals[m] = 0

    def append(self, key: str, values: np.ndarray) -> None:
        """Append rows to the per-row dataset ``key``."""
        _append(self._rows[key], values)

    def append_sequences(self, m: str, frames: np.ndarray, lengths: np.ndarray) -> None:
        """Append the frames ``(sum T_i, D)`` of rows with ``lengths`` ``(B,)`` and their end offsets."""
        lengths = np.asarray(lengths, dtype=np.int64)
        _append(self._frames[m], np.asarray(frames).astype(self.sequence_dtype, copy=False))
        _append(self._offsets[m], self._totals[m] + np.cumsum(lengths))
        self._totals[m] += int(lengths.sum())
