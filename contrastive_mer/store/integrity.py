"""What :class:`~contrastive_mer.store.hdf5.FeatureStore` checks before it trusts a store's bytes.

A store is data from elsewhere (copied, shared, possibly crafted), so the reader checks, before allocating
anything: every dataset's dtype is a plain number, bool or (ids, groups) string, never an object, reference,
compound or variable-length array; every per-row dataset holds exactly one row per id, with the trailing shape
the store's schema declares; and no dataset declares more data than its bytes on disk can hold (a 5 MB file that
declares (960, 2e6) float32 would otherwise cost 7.7 GB to read). When the data is read, Fletcher-32 checksums
(numbers) and SHA-256 digests (strings) catch bytes changed inside a finished store. Every failure is a
:class:`StoreIntegrityError`: one line naming the file and the dataset.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from contrastive_mer.errors import UserError
from contrastive_mer.store._layout import (
    CONTENT_ATTR,
    META_ATTR,
    SHA_ATTR,
    STR_DTYPE,
    StoreSchema,
    content_digest,
    feed_content,
    metadata_digest,
    string_digest,
)

__all__ = ["StoreIntegrityError", "check_content", "check_layout", "check_metadata", "check_offsets",
           "check_strings", "read"]

#: the most a filter can shrink a chunk (lzf stores zeros about 88x smaller, deflate about 1000x)
_MAX_RATIO = {None: 1.0, "lzf": 128.0, "gzip": 1100.0}
_SMALL = 1 << 20  # datasets declaring at most this many bytes are not worth a size check
_STRING_KEYS = ("ids", "groups/")


class StoreIntegrityError(UserError, OSError):
    """A store whose bytes do not match what it declares (corrupted, truncated, crafted or foreign).

    An OSError with errno EIO (as HDF5's own read errors are), so callers catching OSError still do, and the
    command line prints its one line."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(errno.EIO, f"{path}: {message}")
        self.path = str(path)


def _is_string_key(key: str) -> bool:
    return key == "ids" or key.startswith("groups/")


def _check_dtype(path: Path, key: str, ds: h5py.Dataset) -> None:
    dt = ds.dtype
    if _is_string_key(key):
        if h5py.check_string_dtype(dt) is None:
            raise StoreIntegrityError(path, f"dataset {key} has dtype {dt}, expected strings")
        return
    if (dt.names is not None or dt.subdtype is not None or h5py.check_vlen_dtype(dt) is not None
            or h5py.check_ref_dtype(dt) is not None or dt.kind not in "biuf"):
        kind = ("compound" if dt.names is not None else "reference" if h5py.check_ref_dtype(dt) is not None
                else "variable-length" if h5py.check_vlen_dtype(dt) is not None else str(dt))
        raise StoreIntegrityError(path, f"dataset {key} has a {kind} dtype; a feature store holds numbers only")


def _check_size(path: Path, key: str, ds: h5py.Dataset) -> None:
    declared = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
    if declared <= _SMALL:
        return
    if ds.compression not in _MAX_RATIO:
        raise StoreIntegrityError(path, f"dataset {key} uses the filter {ds.compression!r}, which this library "
                                        "never writes")
    stored = ds.id.get_storage_size()
    if stored * _MAX_RATIO[ds.compression] < declared:
        raise StoreIntegrityError(path, f"dataset {key} declares shape {ds.shape} ({declared / 2**20:.0f} MiB) "
                                        f"but holds {stored / 2**20:.1f} MiB on disk; the file is damaged or crafted")


def _expected(schema: StoreSchema, n: int) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """key -> (dtype, full shape or None for an unknown first dimension) of the datasets ``schema`` declares."""
    out: dict[str, tuple[Any, tuple[int, ...]]] = {}
    for key, (dtype, tail) in schema.row_specs().items():
        if key.startswith("sequences/"):
            m = key[len("sequences/"):].removesuffix("_lengths")
            out[f"sequences/{m}_offsets"] = (np.int64, (n + 1,))
            out[f"sequences/{m}"] = (np.dtype(schema.sequence_dtype), (-1, schema.sequence_dims[m]))
        else:
            out[key] = (dtype, (n, *tail))
    return out


def _datasets(f: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}

    def note(name: str, obj: Any) -> None:  # returning anything but None would stop the visit
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    f.visititems(note)
    return found


def check_layout(f: h5py.File, path: Path, schema_json: str | None) -> int:
    """Check dtypes, shapes and sizes of every dataset of ``f`` (see the module docstring); return N."""
    found = _datasets(f)
    if "ids" not in found:
        if found:
            raise StoreIntegrityError(path, "has no ids dataset")
        return 0
    for key, ds in found.items():
        _check_dtype(path, key, ds)
        _check_size(path, key, ds)
    ids = found["ids"]
    if ids.ndim != 1:
        raise StoreIntegrityError(path, f"dataset ids has shape {ids.shape}, expected (N,)")
    n = int(ids.shape[0])
    if schema_json is not None:
        try:
            schema = StoreSchema.from_json(schema_json)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise StoreIntegrityError(path, f"its schema attribute cannot be read ({e})") from None
        for key, (dtype, shape) in _expected(schema, n).items():
            if key not in found:
                raise StoreIntegrityError(path, f"dataset {key} is missing (its schema declares it)")
            ds = found[key]
            want = h5py.check_string_dtype(ds.dtype) is not None if dtype is STR_DTYPE else ds.dtype == np.dtype(dtype)
            if not want:
                raise StoreIntegrityError(path, f"dataset {key} has dtype {ds.dtype}, its schema declares "
                                                f"{'strings' if dtype is STR_DTYPE else np.dtype(dtype)}")
            if len(ds.shape) != len(shape) or any(w not in (-1, g) for w, g in zip(shape, ds.shape)):
                shown = tuple("T" if w == -1 else w for w in shape)
                raise StoreIntegrityError(path, f"dataset {key} has shape {ds.shape}, expected {shown}")
        return n
    for key, ds in found.items():  # no schema (an early or foreign store): one row per id where it must be
        group = key.split("/", 1)[0]
        if group in ("features", "projections", "fused", "present", "labels", "groups") and (
                ds.ndim < 1 or ds.shape[0] != n or (group in ("features", "projections", "fused") and ds.ndim != 2)):
            raise StoreIntegrityError(path, f"dataset {key} has shape {ds.shape} for {n} ids")
    return n


def read(path: Path, key: str, ds: h5py.Dataset, selection: Any = Ellipsis) -> np.ndarray:
    """``ds[selection]``; a failed checksum or unreadable chunk is a :class:`StoreIntegrityError`."""
    try:
        return ds.asstr()[selection] if h5py.check_string_dtype(ds.dtype) is not None else ds[selection]
    except (OSError, RuntimeError, UnicodeDecodeError) as e:
        if isinstance(e, StoreIntegrityError):
            raise
        text = " ".join(str(e).split())
        checked = "checksum" in text.lower() or (ds.fletcher32 and "filter returned failure" in text)
        reason = "a chunk fails its checksum: bytes changed on disk" if checked else text[:200]
        raise StoreIntegrityError(path, f"dataset {key} cannot be read ({reason})") from None


def check_strings(path: Path, key: str, ds: h5py.Dataset, values: np.ndarray) -> None:
    """Compare the strings just read from ``ds`` with its SHA-256 attribute (stores written before it existed
    have none)."""
    expected = ds.attrs.get(SHA_ATTR)
    if expected is None:
        return
    if isinstance(expected, bytes):
        expected = expected.decode()
    if string_digest(values).hexdigest() != expected:
        raise StoreIntegrityError(path, f"dataset {key} does not match its SHA-256 (bytes changed on disk)")


def check_metadata(f: h5py.File, path: Path) -> None:
    """Compare the store's metadata (root attributes, dataset names, dtypes, shapes and attributes: class names,
    kinds, content digests) with its ``meta_sha256``. A store whose datasets carry content digests must carry it
    (a damaged attribute name cannot switch the check off); stores written before either existed have neither."""
    expected = f.attrs.get(META_ATTR)
    if expected is None:
        digested = [name for name, ds in _datasets(f).items() if CONTENT_ATTR in ds.attrs]
        if digested:
            raise StoreIntegrityError(path, f"has no {META_ATTR} attribute although dataset {digested[0]} "
                                            "carries a digest: its metadata is damaged")
        return
    if isinstance(expected, bytes):
        expected = expected.decode("utf-8", "replace")
    if metadata_digest(f) != expected:
        raise StoreIntegrityError(path, "its metadata (root attributes such as config and schema, label class "
                                        "names, group names, dataset shapes) does not match its SHA-256: bytes "
                                        "changed on disk")


def check_content(path: Path, key: str, ds: h5py.Dataset, values: np.ndarray) -> None:
    """Compare a whole dataset just read with its content digest (name + rows in order); chunks that were
    swapped or moved from another dataset pass their Fletcher-32 checks but not this."""
    expected = ds.attrs.get(CONTENT_ATTR)
    if expected is None:
        return
    if isinstance(expected, bytes):
        expected = expected.decode("utf-8", "replace")
    digest = content_digest(key)
    feed_content(digest, values, h5py.check_string_dtype(ds.dtype) is not None)
    if digest.hexdigest() != expected:
        raise StoreIntegrityError(path, f"dataset {key} does not match its SHA-256 (bytes changed or chunks "
                                        "moved on disk)")


def check_offsets(path: Path, key: str, offsets: np.ndarray, frames: int) -> None:
    """``sequences/<m>_offsets`` must start at 0, never decrease and end at the frame count."""
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != frames or (np.diff(offsets) < 0).any():
        raise StoreIntegrityError(path, f"dataset {key} does not describe the {frames} frames stored")
