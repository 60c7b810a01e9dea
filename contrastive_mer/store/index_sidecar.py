"""The JSON sidecar of a FAISS index (``<index>.json``): what it records and how it is checked on load.

A sidecar (version 2) holds the index's settings (``kind``, ``metric``, ``params``, ``dim``, ``count``), the id of
each row (``ids``), the source (store path, view key, the store's identity), and three SHA-256 digests:

* ``ids_sha256``: of the ids in row order (shuffled or renamed ids are caught by name);
* ``index_sha256`` (+ ``index_bytes``): of the FAISS file, checked before FAISS parses it, so a swapped,
  truncated or damaged index file is refused without handing its bytes to FAISS;
* ``sidecar_sha256``: of every other field (canonical JSON), so an edited metric, key, kind or source is caught.

The digests guard against mix-ups and damage, not against someone who rewrites them on purpose. Every failure is
a :class:`SidecarError` (a ``ValueError``) of one line that names the file and says to rebuild the index.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Sequence

from contrastive_mer.data.safe_files import BadFileError, read_text

__all__ = ["SIDECAR_VERSION", "SidecarError", "check_index_file", "ids_sha256", "parse_sidecar", "rebuild_hint",
           "seal_sidecar"]

SIDECAR_VERSION = 2
#: a sidecar lists every id: 1 GiB is room for tens of millions of them
MAX_SIDECAR_BYTES = 1 << 30
_FIELDS = ("kind", "metric", "params", "dim", "count", "source", "ids", "ids_sha256", "index_sha256",
           "index_bytes", "sidecar_sha256")


class SidecarError(ValueError):
    """An index sidecar or index file that does not check out; the message names it and says to rebuild."""


def ids_sha256(ids: Sequence[str]) -> str:
    """SHA-256 of ids in order, joined by newlines (the same digest as a store's ``ids_sha256``)."""
    return hashlib.sha256("\n".join(str(i) for i in ids).encode("utf-8")).hexdigest()


def _digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "sidecar_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def file_digest(path: Path) -> tuple[str, int]:
    """(SHA-256, size) of a regular file, read in 1 MiB blocks."""
    h, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise SidecarError(f"{path} is not a regular file")
        os.set_blocking(fh.fileno(), True)
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def seal_sidecar(meta: dict[str, Any], index_file: Path) -> dict[str, Any]:
    """``meta`` with the version, the ids' and the index file's digests and its own digest added."""
    sha, size = file_digest(index_file)
    out = {"sidecar_version": SIDECAR_VERSION, **meta, "ids_sha256": ids_sha256(meta["ids"]),
           "index_sha256": sha, "index_bytes": size}
    out["sidecar_sha256"] = _digest(out)
    return out


def _is_int(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def rebuild_hint(meta: Any, index_file: Path) -> str:
    """How to rebuild the index: the ``cmer index`` command of its source when the sidecar names one."""
    src = meta.get("source") if isinstance(meta, dict) else None
    if isinstance(src, dict) and isinstance(src.get("store"), str) and isinstance(src.get("key"), str):
        return f"rebuild it with `cmer index --features {src['store']} --modality {src['key']} --out {index_file}`"
    return "rebuild the index with `cmer index`"


def parse_sidecar(side: Path, index_file: Path) -> dict[str, Any]:
    """Read and check the sidecar ``side`` of ``index_file``: structure, ids, digests."""
    meta: Any = None

    def fail(why: str) -> SidecarError:
        return SidecarError(f"{side} {why}; {rebuild_hint(meta, index_file)}")

    try:
        meta = json.loads(read_text(side, MAX_SIDECAR_BYTES, "index sidecar"))
    except BadFileError as e:
        raise SidecarError(f"{e}; {rebuild_hint(None, index_file)}") from None
    except (ValueError, RecursionError) as e:
        raise fail(f"is not a valid index sidecar (not JSON: {e})") from None
    if not isinstance(meta, dict):
        raise fail("is not a valid index sidecar (not a JSON object)")
    if meta.get("sidecar_version") != SIDECAR_VERSION:
        raise fail(f"is a sidecar of version {meta.get('sidecar_version')!r}, not {SIDECAR_VERSION}: it records no "
                   "digests of its ids and index file to check them by (written by an older contrastive-mer or "
                   "not by `cmer index`)")
    missing = [k for k in _FIELDS if k not in meta]
    if missing:
        raise fail(f"is not a valid index sidecar (no {', '.join(missing)})")
    ids, count, dim = meta["ids"], meta["count"], meta["dim"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise fail("is not a valid index sidecar (ids must be a list of strings)")
    if not _is_int(count) or not _is_int(dim, 1) or not _is_int(meta["index_bytes"]):
        raise fail("is not a valid index sidecar (count, dim and index_bytes must be whole numbers)")
    if len(ids) != count:
        raise fail(f"lists {len(ids)} ids but records count {count}")
    if len(set(ids)) != len(ids):
        raise fail("lists an id more than once")
    if not isinstance(meta["params"], dict) or not isinstance(meta["source"], dict):
        raise fail("is not a valid index sidecar (params and source must be objects)")
    if meta["ids_sha256"] != ids_sha256(ids):
        raise fail("lists ids that are not the ones the index was built with (shuffled, renamed or edited: their "
                   "SHA-256 differs from the one recorded)")
    if meta["sidecar_sha256"] != _digest(meta):
        raise fail("was edited or damaged after `cmer index` wrote it (its SHA-256 differs from the one recorded: "
                   "metric, kind, key, source or settings changed)")
    return meta


def check_index_file(path: Path, meta: dict[str, Any], rebuild: str) -> None:
    """Refuse an index file whose size or SHA-256 is not the one ``meta`` recorded (checked before FAISS reads it)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SidecarError(f"cannot read index file {path}: {e.strerror or e}; {rebuild}") from None
    if size != meta["index_bytes"]:
        raise SidecarError(f"{path} holds {size} bytes but its sidecar records {meta['index_bytes']}: it is not the "
                           f"index file the sidecar describes (swapped, truncated or rewritten); {rebuild}")
    try:
        sha, _ = file_digest(path)
    except OSError as e:
        raise SidecarError(f"cannot read index file {path}: {e.strerror or e}; {rebuild}") from None
    if sha != meta["index_sha256"]:
        raise SidecarError(f"{path} is not the index file its sidecar describes (SHA-256 differs: swapped or "
                           f"damaged); {rebuild}")
