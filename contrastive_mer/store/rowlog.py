"""The row log of a :class:`~contrastive_mer.store.hdf5.FeatureStoreWriter`: one append-only file of framed records.

Every flushed block of rows is one record appended to ``<out>.parts/rows.log``::

    header (24 bytes): magic b"CMERROWS" | rows uint32 | payload bytes uint64 | CRC-32 of the payload uint32
    payload: the datasets of :meth:`StoreSchema.row_specs` in its order, each for the record's rows:
        strings (ids, groups): uint64 byte length, then the UTF-8 strings joined by NUL
        numbers: the rows in little-endian order of the dataset's dtype
        sequences/<m>_lengths: int64 frame counts, then the frames (sum T_i, D) of ``sequences/<m>``

A record is complete only when its header, its payload and its CRC agree: a process killed while appending (or a
power loss before the log was synced) leaves a tail that :func:`scan` stops at, and the writer truncates it away
on resume. Appending is a single ``write`` of bytes that are already in memory: no per-record file creation, no
HDF5 object headers, no fsync (the writer syncs the log at most once per ``sync_seconds``).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

import numpy as np

from contrastive_mer.store._layout import STR_DTYPE, StoreSchema

__all__ = ["LOG_NAME", "RowLog", "count_records", "decode", "encode", "good_length", "scan"]

LOG_NAME = "rows.log"
MAGIC = b"CMERROWS"
_HEADER = struct.Struct("<8sIQI")


def _fields(schema: StoreSchema) -> list[tuple[str, Any, tuple[int, ...]]]:
    """(key, dtype, trailing shape) in payload order; ``sequences/<m>`` follows its ``_lengths``."""
    out: list[tuple[str, Any, tuple[int, ...]]] = []
    for key, (dtype, tail) in schema.row_specs().items():
        out.append((key, dtype, tail))
        if key.startswith("sequences/"):
            m = key[len("sequences/"):].removesuffix("_lengths")
            out.append((f"sequences/{m}", np.dtype(schema.sequence_dtype), (schema.sequence_dims[m],)))
    return out


def _le(dtype: Any) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


def encode(schema: StoreSchema, rows: Mapping[str, np.ndarray]) -> list[bytes]:
    """One record of the rows ``rows`` (as :func:`~contrastive_mer.store.parts.build_rows` returns them): the
    header followed by the pieces of the payload (written as they are, without joining them)."""
    pieces: list[bytes] = []
    for key, dtype, _ in _fields(schema):
        arr = rows[key]
        if dtype is STR_DTYPE:
            strings = [str(s) for s in arr]
            blob = "\0".join(strings).encode("utf-8")
            if blob.count(b"\0") != max(0, len(strings) - 1):
                bad = next(s for s in strings if "\0" in s)
                raise ValueError(f"{key}: {bad!r} holds a NUL character, which HDF5 strings cannot store")
            pieces += [struct.pack("<Q", len(blob)), blob]
        else:
            pieces.append(np.ascontiguousarray(arr, dtype=_le(dtype)).tobytes())
    crc = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
    return [_HEADER.pack(MAGIC, len(rows["ids"]), sum(map(len, pieces)), crc), *pieces]


def decode(schema: StoreSchema, n: int, payload: bytes | memoryview, *, ids_only: bool = False,
           raw_strings: bool = False) -> dict[str, np.ndarray]:
    """The rows of one record's payload (``ids_only``: stop after the ids; ``raw_strings``: strings as UTF-8
    ``bytes``, which HDF5 stores as they are); ValueError when it does not fit."""
    out: dict[str, np.ndarray] = {}
    pos, buf = 0, memoryview(payload)

    def take(dtype: np.dtype, count: int) -> np.ndarray:
        nonlocal pos
        end = pos + dtype.itemsize * count
        if end > len(buf):
            raise ValueError("record shorter than its rows")
        if count < 0:
            raise ValueError("negative size")
        arr = np.frombuffer(buf[pos:end], dtype=dtype)
        pos = end
        return arr

    frames: dict[str, int] = {}
    for key, dtype, tail in _fields(schema):
        if dtype is STR_DTYPE:
            size = int(take(np.dtype("<u8"), 1)[0])
            blob = bytes(take(np.dtype("u1"), size))
            strings: list[Any] = (blob.split(b"\0") if raw_strings else blob.decode("utf-8").split("\0")) if n else []
            if len(strings) != n:
                raise ValueError(f"{key} holds {len(strings)} strings for {n} rows")
            out[key] = np.array(strings, dtype=object)
            if ids_only:
                return out
            continue
        count = frames[key] if key in frames else n
        arr = take(_le(dtype), count * int(np.prod(tail, dtype=np.int64))).reshape(count, *tail)
        out[key] = arr.astype(dtype, copy=False)
        if key.endswith("_lengths") and key.startswith("sequences/"):
            if (arr < 0).any():
                raise ValueError(f"negative frame count in {key}")
            frames[key.removesuffix("_lengths")] = int(arr.sum())
    if pos != len(buf):
        raise ValueError("record longer than its rows")
    return out


def scan(path: Path, schema: StoreSchema, *, ids_only: bool = False, verify: bool = True,
         raw_strings: bool = False) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """``(rows, end offset)`` of each complete record of the log ``path``, in order; stops at the first record
    that is cut short or does not check out (a crash's tail). Rows are ids only with ``ids_only``. ``verify=False``
    skips the CRC (for a log whose records were verified when the writer opened it or written by it since);
    ``raw_strings``: see :func:`decode`."""
    if not path.exists():
        return
    size = path.stat().st_size
    with open(path, "rb") as f:
        end = 0
        while end + _HEADER.size <= size:
            magic, n, length, crc = _HEADER.unpack(f.read(_HEADER.size))
            if magic != MAGIC or length > size - end - _HEADER.size:
                return
            payload = f.read(length)
            if len(payload) != length or (verify and zlib.crc32(payload) != crc):
                return
            try:
                rows = decode(schema, n, payload, ids_only=ids_only, raw_strings=raw_strings)
            except (ValueError, UnicodeDecodeError):
                return
            end += _HEADER.size + length
            yield rows, end


def count_records(path: Path) -> int:
    """How many records the log ``path`` holds, from their headers alone (the last one may still be
    incomplete); 0 when it does not exist. For progress checks and tests, not for resuming."""
    if not path.exists():
        return 0
    size, count, end = path.stat().st_size, 0, 0
    with open(path, "rb") as f:
        while end + _HEADER.size <= size:
            f.seek(end)
            magic, _, length, _ = _HEADER.unpack(f.read(_HEADER.size))
            if magic != MAGIC:
                break
            count, end = count + 1, end + _HEADER.size + length
    return count


def good_length(path: Path, schema: StoreSchema) -> tuple[list[str], int]:
    """Every id in the complete records of ``path`` and the byte length those records take."""
    ids: list[str] = []
    end = 0
    for rows, end in scan(path, schema, ids_only=True):
        ids.extend(rows["ids"].tolist())
    return ids, end


class RowLog:
    """The log opened for appending (after :func:`good_length` cut off any incomplete tail)."""

    def __init__(self, path: Path, schema: StoreSchema, length: int) -> None:
        self.path, self.schema = path, schema
        self._f: BinaryIO = open(path, "r+b" if path.exists() else "w+b", buffering=0)
        self._f.truncate(length)
        self._f.seek(length)
        self.length = length

    def append(self, rows: Mapping[str, np.ndarray]) -> None:
        """Append one record; on failure (a full disk) cut the log back to its last complete record and raise
        an OSError naming the log."""
        record = encode(self.schema, rows)
        try:
            self._write(record)
        except OSError as e:
            try:
                self._f.truncate(self.length)
                self._f.seek(self.length)
            except OSError:
                pass  # the next run cuts the tail off (scan stops at it)
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        self.length += sum(map(len, record))

    def _write(self, pieces: list[bytes]) -> None:
        total = sum(map(len, pieces))
        done = os.writev(self._f.fileno(), pieces)
        if done < total:  # a short write: the rest the slow way
            rest = memoryview(b"".join(pieces))[done:]
            while len(rest):
                rest = rest[self._f.write(rest) or 0:]

    def sync(self) -> None:
        """Make what was appended durable (power loss)."""
        os.fdatasync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
