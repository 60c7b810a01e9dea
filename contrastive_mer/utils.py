"""Small helpers every stage shares: file hashing, row-wise L2 normalisation, conversion to numpy, the number
of classes of integer class codes.

One spelling each, so that extraction, the store, the probes and the front end hash, normalise and convert
the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["file_sha256", "infer_num_classes", "l2_normalize", "to_numpy", "write_text_atomic"]


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a report file (``--json``, ``--out``, ``evaluation.json``) through ``.<name>.tmp-<pid>`` beside it
    and ``os.replace``: the file appears whole or not at all (a full disk leaves no 0-byte or cut file, and an
    older file of that name stays as it was). The folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes, read in 1 MiB blocks (checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def l2_normalize(x: Any, eps: float = 1e-12, dtype: Any = np.float32) -> np.ndarray:
    """Row-wise L2-normalised, C-contiguous ``dtype`` (float32) copy of the 2-D ``x``; all-zero rows stay zero."""
    x = np.ascontiguousarray(to_numpy(x), dtype=dtype)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view of ``x``: torch tensors are detached and moved to the CPU, anything else goes through
    :func:`numpy.asarray` (no copy when ``x`` already is an array)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def infer_num_classes(*codes: Any) -> int:
    """Number of classes of integer class codes: the largest code in any of the non-empty ``codes`` arrays
    plus one (None entries and NaN ignored); 0 when there is no code at all."""
    tops = [int(np.nanmax(to_numpy(c))) for c in codes if c is not None and np.size(to_numpy(c))]
    return max(tops) + 1 if tops else 0
