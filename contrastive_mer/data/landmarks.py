"""Facial landmark sequences from OpenFace ``FeatureExtraction`` CSVs (one CSV per clip, one row per frame).

The 2-D landmarks are the columns ``x_0 .. x_67`` and ``y_0 .. y_67`` (68-point iBUG layout, in pixels), found by
name: OpenFace writes its header with a space after each comma (``frame, face_id, ... x_0, ...``), and the 3-D
columns ``X_0 .. Z_67`` and the eye-region ``eye_lmk_x_*`` columns are different names. As in the paper's official
code, x and y are min-max normalised per clip (over every frame and all 68 points, each axis on its own) and the
17 jaw points are then dropped, leaving the 51 nodes of the face graph (``encoders/graph.py``), node = point - 17.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

N_POINTS = 68
JAW_POINTS = 17


def landmark_columns(n_points: int = N_POINTS) -> tuple[list[str], list[str]]:
    """The x and y column names of OpenFace's 2-D landmarks."""
    return [f"x_{k}" for k in range(n_points)], [f"y_{k}" for k in range(n_points)]


def minmax_normalize(points: np.ndarray, source: str = "landmarks") -> np.ndarray:
    """Scale ``(T, N, 2)`` points to [0, 1] per axis over the whole clip; raises naming ``source`` if an axis is
    constant (nothing to scale: a failed track is usually all zeros)."""
    lo = points.min(axis=(0, 1), keepdims=True)
    span = points.max(axis=(0, 1), keepdims=True) - lo
    for axis, name in enumerate("xy"):
        if span[0, 0, axis] <= 0:
            raise ValueError(f"{source}: every {name} coordinate is {lo[0, 0, axis]:g}; cannot min-max normalise "
                             "(was the face tracked?)")
    return (points - lo) / span


def read_openface_landmarks(path: str | Path, *, drop_jaw: bool = True, normalize: bool = True,
                            skip_failed_frames: bool = False) -> np.ndarray:
    """Read one clip's landmarks as a float32 ``(T, 51, 2)`` array (``(T, 68, 2)`` with ``drop_jaw=False``).

    Args:
        path: an OpenFace CSV with columns ``x_0..x_67`` and ``y_0..y_67`` (other columns are ignored).
        drop_jaw: drop points 0-16 (the jaw line), as the paper does.
        normalize: min-max normalise x and y per clip (computed with the jaw points, as the official code).
        skip_failed_frames: drop frames whose ``success`` column is 0 (OpenFace writes zeros for them).

    Raises ValueError (or FileNotFoundError) naming the file, and the line and column where relevant.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"landmark CSV not found: {file}")
    with file.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{file}: empty landmark CSV (no header)")
    header = [name.strip() for name in rows[0]]
    index = {name: k for k, name in enumerate(header)}
    xs, ys = landmark_columns()
    wanted = xs + ys + (["success"] if skip_failed_frames else [])
    missing = [name for name in wanted if name not in index]
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise ValueError(f"{file}: missing OpenFace landmark column(s) {shown} ({len(missing)} missing)")
    columns = [index[name] for name in xs + ys]
    frames = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{file}: line {line} has {len(row)} fields, the header has {len(header)}")
        if skip_failed_frames and _number(row[index["success"]], file, line, "success") == 0:
            continue
        frames.append([_number(row[k], file, line, header[k]) for k in columns])
    if not frames:
        raise ValueError(f"{file}: no frames" + (" with success = 1" if skip_failed_frames and len(rows) > 1 else ""))
    table = np.asarray(frames, dtype=np.float64)  # (T, 136): x_0..x_67, y_0..y_67
    points = np.stack([table[:, :N_POINTS], table[:, N_POINTS:]], axis=-1)  # (T, 68, 2)
    if normalize:
        points = minmax_normalize(points, str(file))
    if drop_jaw:
        points = points[:, JAW_POINTS:]
    return points.astype(np.float32)


def flatten_landmarks(points: np.ndarray) -> np.ndarray:
    """``(T, N, 2)`` -> ``(T, N * 2)`` node-major (``x0, y0, x1, y1, ...``), the frame-vector layout the ``stgcn``
    encoder accepts."""
    return points.reshape(points.shape[0], -1)


def landmark_frames(points: np.ndarray, source: str = "landmarks") -> np.ndarray:
    """Raw 68-point landmarks ``(T, 68, 2)`` -> the model's frame vectors ``(T, 102)`` float32: min-max normalised
    per clip, jaw dropped, flattened node-major (what adapters emit for a ``landmarks`` modality)."""
    if points.ndim != 3 or points.shape[1:] != (N_POINTS, 2):
        raise ValueError(f"{source}: expected landmarks (T, {N_POINTS}, 2), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{source}: landmarks hold NaN or Inf")
    return flatten_landmarks(minmax_normalize(points.astype(np.float64), source)[:, JAW_POINTS:]).astype(np.float32)


def read_landmark_frames(path: str | Path) -> np.ndarray:
    """One OpenFace CSV -> ``(T, 102)`` float32 frame vectors (:func:`read_openface_landmarks`, flattened)."""
    return flatten_landmarks(read_openface_landmarks(path))


def load_landmark_source(record_id: str, path: str | Path) -> np.ndarray:
    """:func:`read_landmark_frames` for an adapter: a bad file raises
    :class:`~contrastive_mer.data.datasets.base.SampleError` naming the clip and the file (the clip is skipped)."""
    from contrastive_mer.data.datasets.base import SampleError

    try:
        return read_landmark_frames(path)
    except (ValueError, OSError) as err:
        raise SampleError(record_id, f"landmarks: {err}", str(path)) from err


def index_landmark_csvs(folder: str | Path) -> dict[str, Path]:
    """File stem -> path of every ``.csv`` under ``folder`` (recursively, OpenFace names its output after the
    input video); raises FileNotFoundError when the folder is missing and ValueError on a stem found twice."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"landmarks_dir not found: {root}")
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.csv")):
        if path.stem in found:
            raise ValueError(f"landmarks_dir {root}: two landmark CSVs for {path.stem!r}: {found[path.stem]} "
                             f"and {path}")
        found[path.stem] = path
    return found


def _number(text: str, file: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{file}: line {line}, column {column!r}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{file}: line {line}, column {column!r}: {text.strip()!r} is not finite")
    return value
